// Second copies of a key: where one may live while its server is recently
// down or draining, and how a copy a read found there is put where the key
// belongs.
#pragma once

#include <libmemcached-1.0/memcached.h>

#include <cstdint>

#include "libshim/preload/handle_routing.hpp"
#include "libshim/defaults.hpp"
#include "libshim/placement.hpp"

namespace mcwatch::shim {

// The server that may hold another copy of a key besides its target: the
// fallback of a recently-down native server (reads fall back to it), or a
// draining native server (a miss moves its copy). -1 if none. A read that
// misses looks there; a write or delete makes that copy stale.
int32_t other_copy_server(const route::Decision& d) noexcept;

// With replicas, a key whose first copy is recently down may have its copy
// on a draining server too (route::note_draining_copy): that server, unless
// it is the target or other_copy_server(), else -1. Reads look there last
// (after other_copy_server()); a write deletes the key there first.
int32_t draining_copy(const route::Decision& d) noexcept;

// The decision a key read on draining_copy(d) is settled by: that of a
// draining native server's key, so that settle_second_look moves the copy
// to the target and deletes it from the draining server.
route::Decision from_draining_copy(route::Decision d) noexcept;

// The expiration a copy gets: `limit` seconds, never more than the original
// has left (`remaining_s`, -1 when it never expires). 0: too close to its
// end to copy (memcached reads 0 as "never expires").
int64_t copy_ttl(int64_t remaining_s, uint32_t limit_s) noexcept;

// A write-back holds a lease on the key's destination while it reads the
// copy (kLeaseFlags, kLeaseTtlS: libshim/defaults.hpp). Any write or delete
// of the key there replaces or removes it, and the write-back, conditional on
// the lease's cas, then fails. Readers through the shim take it for a miss.

// Whether a value read from a key's target is another reader's lease.
inline bool is_lease(size_t value_length, uint32_t flags) noexcept { return value_length == 0 && flags == kLeaseFlags; }

// A read found the key on other_copy_server() after a miss on the target:
// the copy there goes where the key belongs, to the recently-down native
// server (capped at writeback_ttl) or off the draining server to the
// substitute (capped at the window), never outliving the original, and
// never after a write or delete of the key (writers drop the other copy
// first, then write the target: see write_one). `key` is the key as the
// program gave it. The whole exchange ends by `deadline_ms`
// (meta::exchange_deadline_ms); one that has passed skips it.
void settle_second_look(memcached_st* memc, const HandleRouting& routing, const route::Decision& d, const char* key,
                        size_t key_length, const char* operation, int64_t deadline_ms) noexcept;

}  // namespace mcwatch::shim
