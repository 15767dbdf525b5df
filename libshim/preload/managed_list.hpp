// The managed server list (docs/DESIGN.md, "Managed list"): with mcwatchd's
// `[routing] managed_list = on` (the state file's kHeaderManagedList), each
// libmemcached handle uses the file's server list, whatever the program gave
// it, so that one edit of mcwatchd.conf changes every process's list at once.
#pragma once

#include <libmemcached-1.0/memcached.h>

#include "libshim/preload/real.hpp"

namespace mcwatch::shim {

// While the state file is usable and flagged, gives `memc` the file's list
// (addresses as the file spells them, weights) through the real
// memcached_servers_reset and memcached_server_add*_with_weight, unless the
// shim gave the handle that very list already (the file's servers_digest,
// remembered per handle: libmemcached 1.1.4 hides an instance's weight, so
// a list that names the same servers may still differ). The handle keeps its
// behaviours (distribution, hash, timeouts); its connections to the servers
// it had are closed. A stale, missing or unflagged file changes nothing: a
// handle keeps the last list it was given (going back to the program's
// would move keys again). Never for a UDP handle. Called at the start of an
// operation (nothing of the handle's is in flight), never from inside
// libmemcached. True if the list was replaced.
bool adopt_managed_list(memcached_st* memc, const Real& real) noexcept;

// The program changed `memc`'s list itself, or freed the handle: what the
// shim remembered giving it no longer says what it holds.
void forget_managed_list(const memcached_st* memc) noexcept;

}  // namespace mcwatch::shim
