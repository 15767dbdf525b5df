// The error a handle reports when the shim, not libmemcached, fails an
// operation: libmemcached's tools and PHP print memcached_last_error_message,
// which would otherwise say "SUCCESS".
#pragma once

#include <libmemcached-1.0/memcached.h>

#include "libshim/preload/handle_routing.hpp"

namespace mcwatch::shim {

// Records on `memc` that every server the key may go to is published dead
// or draining, as libmemcached records an error of its own (replacing the
// errors of earlier operations), and returns MEMCACHED_SERVER_MARKED_DEAD.
// Allocates through the handle's allocators: a failure path, never taken
// while any server may take keys.
memcached_return_t fail_all_dead(memcached_st* memc, const HandleRouting& routing) noexcept;

}  // namespace mcwatch::shim
