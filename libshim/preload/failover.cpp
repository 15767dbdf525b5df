#include "libshim/preload/failover.hpp"

#include <time.h>

#include <algorithm>
#include <cerrno>

#include "libshim/clock.hpp"
#include "libshim/preload/real.hpp"

namespace mcwatch::shim {

ConnectionFailure connection_failure(const memcached_st* memc, memcached_return_t rc) noexcept {
    switch (rc) {
    case MEMCACHED_SERVER_MARKED_DEAD:
    case MEMCACHED_SERVER_TEMPORARILY_DISABLED: return ConnectionFailure::not_sent;
    case MEMCACHED_TIMEOUT: return ConnectionFailure::timed_out;
    case MEMCACHED_READ_FAILURE:
    case MEMCACHED_WRITE_FAILURE: return ConnectionFailure::lost;
    case MEMCACHED_CONNECTION_FAILURE:
    case MEMCACHED_ERRNO:
        switch (real()->last_error_errno(memc)) {
        case ECONNREFUSED:
        case ENETUNREACH:
        case EHOSTUNREACH: return ConnectionFailure::not_sent;
        case ETIMEDOUT: return ConnectionFailure::timed_out;
        case ECONNRESET:
        case ECONNABORTED:
        case EPIPE:
        case ENOTCONN:
        case ESHUTDOWN: return ConnectionFailure::lost;
        default:
            // libmemcached 1.1.4 says CONNECTION FAILURE without an
            // errno when a kept connection turns out closed; an ERRNO
            // of another kind is not the connection's.
            return rc == MEMCACHED_CONNECTION_FAILURE ? ConnectionFailure::lost : ConnectionFailure::none;
        }
    default: return ConnectionFailure::none;
    }
}

route::Decision decision_without(const Routed& routed, int32_t failed) noexcept {
    if (failed < 0) return routed.decision;
    return routed.routing->router->route_without(routed.view, routed.key.bytes, routed.key.length, uint32_t(failed));
}

bool await_verdict(memcached_st* memc, const KeyRef& k, int32_t failed, Routed& out) noexcept {
    // libmemcached's poll timeout is in ms; 0 or less: no wait of its own.
    const int64_t own = memc->poll_timeout > 0 ? int64_t(memc->poll_timeout) : 0;
    const uint64_t deadline = monotonic_ns() + uint64_t(std::min(own, kVerdictWaitCapMs)) * 1'000'000u;
    // Each look is a few atomic loads: the router follows a new generation
    // at once. 1 ms between looks costs the waiting thread nothing.
    for (unsigned look = 0; look < 10'000; ++look) {
        if (!route_key(memc, k.group, k.group_length, out)) return false;
        const route::Decision& d = out.decision;
        if (d.flags & (route::kRouteAllDead | route::kRouteStale)) return false;
        if (d.target >= 0 && d.target != failed) return true;
        if (monotonic_ns() >= deadline) return false;
        const timespec pause{0, 1'000'000};
        nanosleep(&pause, nullptr);
    }
    return false;
}

}  // namespace mcwatch::shim
