#include "writeback.hpp"

#include <algorithm>

#include "meta_connection.hpp"
#include "operation.hpp"

namespace mcwatch::shim {

int32_t other_copy_server(const route::Decision& d) noexcept {
    if (d.flags & route::kRouteRecentlyDown) return d.fallback;
    if (d.flags & route::kRouteDraining) return d.native;
    return -1;
}

int64_t copy_ttl(int64_t remaining_s, uint32_t limit_s) noexcept {
    const int64_t limit = std::max<int64_t>(limit_s, 1);
    if (remaining_s < 0) return limit;
    return std::min(remaining_s, limit);
}

void settle_second_look(memcached_st* memc, const HandleRouting& routing, const route::Decision& d,
                        const char* key, size_t key_length, const char* operation) noexcept {
    const bool recently_down = d.flags & route::kRouteRecentlyDown;
    const int32_t source = other_copy_server(d);
    const int32_t destination = recently_down ? d.native : d.target;
    const char* outcome = "not written back: no meta connection";
    std::string wire;
    meta::Item item;
    if (!meta::wire_key(memc, key, key_length, wire)) {
        outcome = "not written back: key not in the meta protocol's alphabet";
    } else if (meta::Connection* from = meta::connection_to(memc, uint32_t(source)); from && meta::get(*from, wire, item)) {
        const int64_t ttl = copy_ttl(item.ttl_s, recently_down ? writeback_ttl_s(routing)
                                                                : recently_down_window_s(routing));
        if (!item.found) {
            outcome = "gone from the source meanwhile";
        } else if (ttl <= 0) {
            outcome = "not written back: expiring";
        } else if (meta::Connection* to = meta::connection_to(memc, uint32_t(destination))) {
            // add, never set: a newer value written meanwhile wins.
            const meta::Stored stored = meta::store(*to, wire, item.value.data(), item.value.size(), item.flags, ttl,
                                                    true, 0);
            outcome = stored == meta::Stored::stored ? "written back" : "not written back: newer value there";
        }
        if (!recently_down && item.found) {
            // The draining server's copy goes: the key now lives on the substitute.
            if (meta::Connection* again = meta::connection_to(memc, uint32_t(source))) meta::remove(*again, wire, 0);
        }
        if (debug_enabled())
            debug_line("%s key=%.*s: miss on %s, hit on %s, %s, ttl=%lld", operation,
                       int(std::min<size_t>(key_length, 120)), key, routing.addresses[size_t(destination)].c_str(),
                       routing.addresses[size_t(source)].c_str(), outcome, static_cast<long long>(ttl));
        return;
    }
    if (debug_enabled())
        debug_line("%s key=%.*s: %s", operation, int(std::min<size_t>(key_length, 120)), key, outcome);
}

}  // namespace mcwatch::shim
