// Replicas (docs/DESIGN.md, "Replicas"): after an operation on a key's first
// copy, what its further copies get, over the shim's own meta connection
// (never the program's handle). With [routing] replicas = 1 nothing.
#pragma once

#include <libmemcached-1.0/memcached.h>

#include <cstddef>
#include <cstdint>

#include "libshim/preload/key_routing.hpp"

namespace mcwatch::shim {

// What the first copy's operation asks of the further copies.
enum class Replicate {
    set,     // set, replace, cas: the same value, flags and expiration
    add,     // add: only where the key is absent (a newer value there wins)
    remove,  // delete
    touch,   // touch: the same expiration
    drop     // append, prepend, increment, decrement: the value is not known here
};

struct Replica {
    Replicate what;
    const char* value = nullptr;
    size_t length = 0;
    uint32_t flags = 0;
};

// How many copies of each key the current state file asks for (1: none beyond the first).
uint32_t replica_count(const HandleRouting& routing) noexcept;

// Brings the further copies of `routed`'s key in line with what the
// operation did on its target, which answered `rc`; `expiration` is what
// the target was given (capped). A store that fails on a copy is followed
// by a delete there; a copy that cannot be reached gets a hint.
void replicate(memcached_st* memc, const Routed& routed, const KeyRef& k, const Replica& replica, memcached_return_t rc,
               int64_t expiration) noexcept;

}  // namespace mcwatch::shim
