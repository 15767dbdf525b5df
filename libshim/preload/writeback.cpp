#include "libshim/preload/writeback.hpp"

#include <algorithm>
#include <cstdio>
#include <ctime>

#include "libshim/expiration.hpp"
#include "libshim/preload/meta_connection.hpp"
#include "libshim/preload/debug_log.hpp"

namespace mcwatch::shim {

int32_t other_copy_server(const route::Decision& d) noexcept {
    if (d.flags & (route::kRouteRecentlyDown | route::kRouteJoined)) return d.fallback;
    if (d.flags & route::kRouteDraining) return d.native;
    return -1;
}

int32_t draining_copy(const route::Decision& d) noexcept {
    if (d.draining < 0 || d.draining == d.target || d.draining == other_copy_server(d)) return -1;
    return d.draining;
}

route::Decision from_draining_copy(route::Decision d) noexcept {
    // Moved off the draining server to the target, as a draining native's
    // key is with one copy (other_copy_server() = native).
    d.native = d.draining;
    d.flags = route::kRouteSubstitute | route::kRouteDraining;
    d.fallback = d.draining = -1;
    return d;
}

int64_t copy_ttl(int64_t remaining_s, uint32_t limit_s) noexcept {
    const int64_t limit = std::max<int64_t>(limit_s, 1);
    if (remaining_s < 0) return limit;
    return std::min(remaining_s, limit);
}

// Why no interleaving leaves an older value on the destination D (the
// returned server, or a draining server's substitute) after a write or
// delete W of the key through the shim, which drops the copy on the source
// S first and only then writes or deletes on D:
//   1. lease: add an empty placeholder on D (fails if anything is there);
//   2. read S afresh (value, flags, time left);
//   3. set D to that value only if D still holds our lease (cas).
// If W's drop on S comes before step 2, step 2 misses: nothing is written.
// Otherwise W's operation on D comes after step 2, so after step 1: if it
// lands before step 3 it replaces or removes the lease and step 3 fails; if
// after, W overwrites or deletes what step 3 wrote. A lease that expired
// first makes step 3 fail too (no item, or another reader's cas).
void settle_second_look(memcached_st* memc, const HandleRouting& routing, const route::Decision& d, const char* key,
                        size_t key_length, const char* operation, int64_t deadline) noexcept {
    const bool recently_down = d.flags & route::kRouteRecentlyDown;
    // After a membership change the key lives at target from now on: the copy
    // keeps all the time it has left (none: it never expires), and the one
    // before goes, as a drain's does, so that a later change that brings the
    // key back there finds no older value.
    const bool joined = d.flags & route::kRouteJoined;
    const int32_t source = other_copy_server(d);
    const int32_t destination = d.target;
    const char* outcome = "not written back: no meta connection";
    char unreadable[160];  // outcome, when it names the source's problem
    int64_t ttl = 0;
    std::string wire;
    meta::Item item;
    uint64_t lease = 0;
    if (meta::past(deadline)) {
        outcome = "not written back: out of time (the multi-get's write-backs share one poll timeout)";
    } else if (!meta::wire_key(memc, key, key_length, wire)) {
        outcome = "not written back: key not in the meta protocol's alphabet";
    } else if (meta::Connection* to = meta::connection_to(memc, uint32_t(destination), deadline); !to) {
    } else if (const meta::Stored leased = meta::store(*to, wire, "", 0, kLeaseFlags, kLeaseTtlS, true, 0, &lease);
               leased != meta::Stored::stored) {
        outcome = leased == meta::Stored::not_stored ? "not written back: a newer value or another reader's lease there"
                                                     : "not written back: lease refused";
    } else {
        meta::Connection* from = meta::connection_to(memc, uint32_t(source), deadline);
        const bool read = from && meta::get(*from, wire, item);
        // A joined key keeps all the time it has left: past 30 days memcached
        // reads a number as a unix time, so that is sent as one.
        ttl = joined ? (item.ttl_s > 0 ? route::encode_from_now(item.ttl_s, time(nullptr)) : 0)
                     : copy_ttl(item.ttl_s, recently_down ? writeback_ttl_s(routing) : recently_down_window_s(routing));
        meta::Stored stored = meta::Stored::failed;
        if (!read) {
            outcome = "not written back: source unreadable";
            if (from && meta::problem(*from)) {
                std::snprintf(unreadable, sizeof unreadable, "not written back: source's %s", meta::problem(*from));
                outcome = unreadable;
            }
        } else if (!item.found)
            outcome = "not written back: deleted meanwhile";
        else if (joined ? item.ttl_s == 0 : ttl <= 0)
            outcome = "not written back: expiring";
        else if ((to = meta::connection_to(memc, uint32_t(destination), deadline)))
            stored = meta::store(*to, wire, item.value.data(), item.value.size(), item.flags, ttl, false, lease);
        if (stored == meta::Stored::stored) {
            outcome = recently_down ? "written back"
                      : joined      ? "moved after the membership change"
                                    : "moved off the draining server";
            // The draining (or previous) server's copy goes, unless a newer one came meanwhile.
            if (!recently_down && (from = meta::connection_to(memc, uint32_t(source), deadline)))
                meta::remove(*from, wire, item.cas);
        } else {
            if (stored != meta::Stored::failed) outcome = "not written back: written or deleted meanwhile";
            // Our lease, if still there, goes at once rather than in kLeaseTtlS.
            if ((to = meta::connection_to(memc, uint32_t(destination), deadline))) meta::remove(*to, wire, lease);
        }
    }
    if (debug_enabled())
        debug_line("%s key=%.*s: miss on %s, hit on %s, %s, ttl=%lld", operation,
                   int(std::min<size_t>(key_length, 120)), key, routing.addresses[size_t(destination)].c_str(),
                   routing.addresses[size_t(source)].c_str(), outcome, static_cast<long long>(ttl));
}

}  // namespace mcwatch::shim
