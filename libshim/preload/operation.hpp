// What every interposed operation does first: find where its key goes, and
// the means to send it (or a follow-up request for it) to a chosen server.
#pragma once

#include <libmemcached-1.0/memcached.h>

#include "libshim/preload/handle_routing.hpp"
#include "libshim/preload/hook.hpp"
#include "libshim/placement.hpp"

namespace mcwatch::shim {

// The bytes libmemcached hashes for a key: the namespace followed by the key
// when the handle hashes with its namespace, else the key itself.
struct HashedKey {
    char buffer[MEMCACHED_MAX_KEY];
    const char* bytes = nullptr;
    size_t length = 0;
    // False when libmemcached would not call the hash at all (namespace and
    // key longer than MEMCACHED_MAX_KEY - 1: it uses 0).
    bool hashable = true;

    void set(memcached_st* memc, const char* key, size_t key_length) noexcept;
};

struct Routed {
    const HandleRouting* routing = nullptr;
    route::PlacementView view;
    HashedKey key;
    route::Decision decision;
    // libmemcached's own hash of `key`, when the router computed it.
    bool has_native_hash = false;
    uint32_t native_hash = 0;
};

// Routes the key an operation hashes (its group key for *_by_key, else the
// key). False: the shim stays out (not a handle it can route, no servers,
// unhashable key); the caller runs the real function unchanged.
bool route_key(memcached_st* memc, const char* key, size_t key_length, Routed& out) noexcept;

// The router's decision for already hashed-form bytes, with libmemcached's
// own hash of them when the router computed it (`native_hash` null if not).
route::Decision decide(const memcached_st* memc, const HandleRouting& routing, const route::PlacementView& view,
                       const char* bytes, size_t length, bool& has_native_hash, uint32_t& native_hash) noexcept;

// The hook's answer that sends a key whose hashed bytes are `bytes` and
// whose native server is `native` to `server`: for the native server the
// real hash (`native_hash` when known, else computed by the hook).
ExpectedKey expected_for(const memcached_st* memc, const HandleRouting& routing, const char* bytes, size_t length,
                         int32_t native, int32_t server, const uint32_t* native_hash = nullptr) noexcept;

// While alive, libmemcached sends the key to the server `expected` leads to.
class ToServer {
public:
    ToServer(const memcached_st* memc, const ExpectedKey& expected) noexcept
        : expected_(expected), scope_(memc, &expected_, 1) {}
    ToServer(const memcached_st* memc, const Routed& routed, int32_t server) noexcept
        : ToServer(memc,
                   expected_for(memc, *routed.routing, routed.key.bytes, routed.key.length, routed.decision.native,
                                server, routed.has_native_hash ? &routed.native_hash : nullptr)) {}

private:
    ExpectedKey expected_;
    HookScope scope_;
};

// Seconds since the epoch, for expiration clamps.
int64_t now_unix_s() noexcept;

// "mcshim: ..." on stderr when MCSHIM_DEBUG is set: one line per decision
// that differs from native placement, and per fallback or drain move.
bool debug_enabled() noexcept;
void debug_decision(const char* operation, const Routed& routed, const char* key, size_t key_length) noexcept;
void debug_line(const char* format, ...) noexcept __attribute__((format(printf, 1, 2)));

}  // namespace mcwatch::shim
