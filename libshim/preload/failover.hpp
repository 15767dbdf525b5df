// In-band failover (docs/DESIGN.md, "In-band failover"): what an interposed
// operation does when its server fails at the connection level before the
// daemon has published it dead. Reads go at once to the key's substitute;
// writes go there only once the daemon's verdict is in the state file.
#pragma once

#include <libmemcached-1.0/memcached.h>

#include <cstdint>

#include "libshim/preload/key_routing.hpp"

namespace mcwatch::shim {

enum class ConnectionFailure {
    none,      // an answer (a miss, NOT_STORED, a protocol error) or not a connection's fault
    not_sent,  // the request never left: connection refused, or libmemcached held the
               // server back (marked dead, or temporarily disabled after a failure)
    lost,      // the connection was reset or closed under the request, at once: it may
               // have reached the server
    timed_out  // no reply within the handle's timeout: the request may have reached it
};

// Whether a write that failed so may go to the key's substitute once the
// daemon has published the server out (docs/DESIGN.md, "In-band failover"):
// a timed-out one has spent the handle's timeout already.
inline bool may_await_verdict(ConnectionFailure failure) noexcept {
    return failure == ConnectionFailure::not_sent || failure == ConnectionFailure::lost;
}

// What `rc`, the code of the operation just run on `memc`, says.
ConnectionFailure connection_failure(const memcached_st* memc, memcached_return_t rc) noexcept;

// The longest a write waits for the daemon's verdict, whatever the handle's
// poll timeout: a refused write otherwise fails at once.
inline constexpr int64_t kVerdictWaitCapMs = 2000;

// Waits until the state file publishes `failed` out for the key `k` (its
// routing then sends the key elsewhere), within the handle's poll timeout
// and kVerdictWaitCapMs. True with the key's new routing in `out`.
bool await_verdict(memcached_st* memc, const KeyRef& k, int32_t failed, Routed& out) noexcept;

// The decision for `routed`'s key as if `failed` were published dead.
route::Decision decision_without(const Routed& routed, int32_t failed) noexcept;

}  // namespace mcwatch::shim
