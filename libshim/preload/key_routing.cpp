#include "libshim/preload/key_routing.hpp"

#include <algorithm>

#include "libshim/preload/debug_log.hpp"

namespace mcwatch::shim {

bool route_key(memcached_st* memc, const char* key, size_t key_length, Routed& out) noexcept {
    if (!memc || !key) return false;
    // Twice at most: a decision that mapped a new state file (its list may
    // be a managed one) is made again on the handle's routing for it.
    for (int attempt = 0; attempt < 2; ++attempt) {
        const uint64_t epoch = routing_epoch.load(std::memory_order_acquire);
        out.routing = routing_for(memc);
        if (!out.routing) return false;
        out.key.set(memc, key, key_length);
        if (!out.key.hashable) return false;
        out.view = handle_view(memc, *out.routing);
        out.decision =
            decide(memc, *out.routing, out.view, out.key.bytes, out.key.length, out.has_native_hash, out.native_hash);
        if (routing_epoch.load(std::memory_order_acquire) == epoch) break;
    }
    if (debug_enabled()) debug_decision("route", out, key, key_length);
    return true;
}

route::Decision decide(const memcached_st* memc, const HandleRouting& routing, const route::PlacementView& view,
                       const char* bytes, size_t length, bool& has_native_hash, uint32_t& native_hash) noexcept {
    forget_last_hash();  // a decision made without hashing must not pick up an older hash
    route::Decision decision = routing.router->route_with(view, bytes, length);
    if ((decision.flags & route::kRouteJoined) && !routing.placed_as_before) {
        decision.flags &= ~route::kRouteJoined;  // the previous list does not say where its keys were
        decision.fallback = -1;
    }
    // The router hashes the key first; a substitute search may then hash
    // salted copies, which live elsewhere and do not match these bytes.
    const LastHash& hashed = last_hash();
    has_native_hash = hashed.bytes == bytes && hashed.length == length && hashed.hashkit == &memc->hashkit;
    native_hash = hashed.value;
    return decision;
}

namespace {

const char* address(const Routed& routed, int32_t server) noexcept {
    if (server < 0 || size_t(server) >= routed.routing->addresses.size()) return "none";
    return routed.routing->addresses[size_t(server)].c_str();
}

}  // namespace

void debug_decision(const char* operation, const Routed& routed, const char* key, size_t key_length) noexcept {
    const route::Decision& d = routed.decision;
    const int shown = int(std::min<size_t>(key_length, 120));
    if (d.flags & route::kRouteAllDead)
        debug_line("%s key=%.*s: all servers dead, failing", operation, shown, key);
    else if (d.flags & route::kRouteSubstitute)
        debug_line("%s key=%.*s native=%s target=%s: %s", operation, shown, key, address(routed, d.native),
                   address(routed, d.target),
                   (d.flags & route::kRouteDraining) ? "native draining" : "substitute for dead native");
    else if (d.flags & route::kRouteRecentlyDown)
        debug_line("%s key=%.*s native=%s fallback=%s: native recently down", operation, shown, key,
                   address(routed, d.native), address(routed, d.fallback));
    else if (d.flags & route::kRouteJoined)
        debug_line("%s key=%.*s target=%s before=%s: placement changed with the server list", operation, shown, key,
                   address(routed, d.target), address(routed, d.fallback));
}

}  // namespace mcwatch::shim
