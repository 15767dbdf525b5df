// MCSHIM_DEBUG's account of a handle, said once per handle and routing:
// what the handle really does (distribution, hash), what the state file's
// [routing] says (mcctl route answers with that), and every server of the
// handle that mcwatchd does not publish.
#pragma once

#include <libmemcached-1.0/memcached.h>

#include "libshim/preload/handle_routing.hpp"

namespace mcwatch::shim {

// Writes the lines unless this handle was last described with the same
// words. Not on the hot path: called when a handle's routing is built.
void describe_handle(const memcached_st* memc, const HandleRouting& routing) noexcept;

// The handle's placement in the state file's words ("ketama", "md5"), or
// one the file has none for ("ketama_spy", "custom").
const char* handle_distribution(const memcached_st* memc) noexcept;
const char* handle_hash(const memcached_st* memc) noexcept;

}  // namespace mcwatch::shim
