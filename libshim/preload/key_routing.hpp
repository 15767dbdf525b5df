// Where an operation's key goes: the key as an operation names it, and the
// router's decision for the bytes libmemcached hashes.
#pragma once

#include <libmemcached-1.0/memcached.h>

#include <cstddef>
#include <cstdint>

#include "libshim/placement.hpp"
#include "libshim/preload/handle_routing.hpp"
#include "libshim/preload/hashed_key.hpp"

namespace mcwatch::shim {

// A key as a single-key operation names it: the key stored, and the group
// key libmemcached hashes to place it (the key itself for the calls without
// a group key; a *_by_key call's group key as given).
struct KeyRef {
    const char* group;
    size_t group_length;
    const char* key;
    size_t key_length;
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

// With MCSHIM_DEBUG: one line per decision that differs from native placement.
void debug_decision(const char* operation, const Routed& routed, const char* key, size_t key_length) noexcept;

}  // namespace mcwatch::shim
