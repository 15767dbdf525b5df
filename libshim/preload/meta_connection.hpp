// The shim's own connection to one memcached server, speaking the meta
// protocol that libmemcached 1.1.4 cannot send: the remaining time of an item
// (`mg <key> t`), a lease (`ms ... ME`), a store or delete conditional on a
// cas value. Used by write-backs of keys in a recently-down window or a
// drain, and with [routing] replicas > 1 by every write's further copies.
//
// One connection per thread and server, kept for reuse, reopened after a
// fork (the child never talks on its parent's socket), closed at thread exit.
// A whole exchange (every request of one write-back, connects included) ends
// by one deadline: the handle's poll timeout from its start, a connect also
// within the handle's connect timeout. Any error or timeout closes the
// connection and the caller does without. A server's name is never looked
// up on the caller's thread (name_lookup.hpp).
#pragma once

#include <libmemcached-1.0/memcached.h>

#include <cstdint>
#include <string>

namespace mcwatch::shim::meta {

// The key as it goes on the wire: libmemcached prefixes the handle's
// namespace. False when the meta protocol cannot carry it (too long, or a
// space or control character: the binary protocol allows those).
bool wire_key(memcached_st* memc, const char* key, size_t key_length, std::string& out) noexcept;

struct Item {
    bool found = false;
    std::string value;
    uint32_t flags = 0;
    int64_t ttl_s = -1;  // remaining seconds; -1: never expires
    uint64_t cas = 0;
};

enum class Stored { stored, not_stored, exists, not_found, failed };

class Connection;

// The end of an exchange starting now: the handle's poll timeout from now
// (5 s when the handle says "wait for ever"), on CLOCK_MONOTONIC in ms.
int64_t exchange_deadline_ms(const memcached_st* memc) noexcept;

// Whether `deadline_ms` (as exchange_deadline_ms gives it) has passed.
bool past(int64_t deadline_ms) noexcept;

// The calling thread's connection to the handle's server at `position`
// (opened if needed), its requests ending by `deadline_ms`; null if it
// cannot be had by then.
Connection* connection_to(memcached_st* memc, uint32_t position, int64_t deadline_ms) noexcept;

// Why the connection's last exchange failed on the peer's side, or null:
// "reply too large (...)", a value over 1 MiB or a line over 4096 bytes.
const char* problem(const Connection& c) noexcept;

// `mg <key> v f t c`. False on a connection or protocol error.
bool get(Connection& c, const std::string& key, Item& out) noexcept;

// `ms <key> <n> F T [ME] [C<cas>] c`: `add_only` stores only if the key is
// absent; `if_cas` (non-zero) only if the item's cas is still that one.
// `cas_out` receives the stored item's cas.
Stored store(Connection& c, const std::string& key, const char* value, size_t value_length, uint32_t flags,
             int64_t ttl_s, bool add_only, uint64_t if_cas, uint64_t* cas_out = nullptr) noexcept;

// A replica's store without waiting (docs/DESIGN.md, "Replicas"): `ms ...
// q k` (memcached answers only a failure), its replies read, with `mn`,
// before the connection's next other request or once kMaxQuiet are
// outstanding; a key whose store failed is then deleted there (an add that
// found a value excepted). False if the connection failed (the store may
// or may not have happened): the caller deletes the key or says why not.
inline constexpr uint32_t kMaxQuiet = 32;
bool store_quiet(Connection& c, const std::string& key, const char* value, size_t value_length, uint32_t flags,
                 int64_t ttl_s, bool add_only) noexcept;

// Reads the outstanding quiet replies now (`mn`), deleting what failed.
bool settle(Connection& c) noexcept;

// `mg <key> T<ttl>`: the item's new expiration (memcached's semantics).
enum class Touched { touched, not_found, failed };
Touched touch(Connection& c, const std::string& key, int64_t ttl_s) noexcept;

// `md <key> [C<cas>]`. False on a connection or protocol error.
bool remove(Connection& c, const std::string& key, uint64_t if_cas) noexcept;

}  // namespace mcwatch::shim::meta
