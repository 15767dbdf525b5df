// The per-thread context between an interposed operation and the hash hook.
// libmemcached picks a key's server with hashkit_digest(&memc->hashkit, key)
// followed by a lookup in the handle's own continuum (or a modulo); an
// operation that wants a key on another server lists the key here with the
// hash that lands there, and the hook returns it while the operation runs.
#pragma once

#include <libmemcached-1.0/memcached.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>

namespace mcwatch::shim {

// One key as libmemcached hashes it (namespace included when the handle
// hashes with it) and what the hook must answer for it.
struct ExpectedKey {
    const char* bytes = nullptr;
    size_t length = 0;
    bool forced = false;  // false: the real hash (native placement)
    uint32_t hash = 0;
};

struct HookContext {
    const memcached_st* memc = nullptr;  // null: the hook passes everything through
    const ExpectedKey* keys = nullptr;
    size_t count = 0;
    size_t cursor = 0;  // libmemcached hashes a multi-get's keys in order
};

// Installs `keys` for `memc` for this thread until destroyed; nests.
class HookScope {
public:
    HookScope(const memcached_st* memc, const ExpectedKey* keys, size_t count) noexcept;
    ~HookScope();
    HookScope(const HookScope&) = delete;
    HookScope& operator=(const HookScope&) = delete;

private:
    HookContext saved_;
};

// How deep this thread is in interposed calls. __thread, not thread_local:
// plain data with no initialiser to run, so an access is one load (no TLS
// wrapper call) on every interposed call.
extern __thread int call_depth;

// Re-entrancy guard: libmemcached calls some of its own exported functions
// through the PLT (memcached_get -> memcached_get_by_key, fetch ->
// fetch_result), which land in the shim again. Only the outermost call acts.
class OuterCall {
public:
    OuterCall() noexcept : outer_(call_depth++ == 0) {}
    ~OuterCall() { --call_depth; }
    OuterCall(const OuterCall&) = delete;
    OuterCall& operator=(const OuterCall&) = delete;
    bool is_outer() const noexcept { return outer_; }

private:
    bool outer_;
};

// errno as the program had it before an interposed call, given back when
// the call ends with an answer (not memcached_fatal: a hit, a miss, stored,
// exists): the shim's own work (state file checks, hints, write-backs,
// further copies) and libmemcached's EAGAIN never show in it
// (docs/DESIGN.md, "Interfaces").
class KeptErrno {
public:
    KeptErrno() noexcept : saved_(errno) {}
    memcached_return_t operator()(memcached_return_t rc) const noexcept {
        if (!memcached_fatal(rc)) errno = saved_;
        return rc;
    }

private:
    int saved_;
};

}  // namespace mcwatch::shim
