#include "libshim/preload/handle_routing.hpp"

#include <pthread.h>
#include <sched.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <map>

#include "libshim/defaults.hpp"
#include "libshim/preload/handle_debug.hpp"
#include "libshim/preload/debug_log.hpp"
#include "libshim/preload/managed_list.hpp"
#include "libshim/preload/real.hpp"
#include "libshim/routing_names.hpp"
#include "libshim/seqlock.hpp"

namespace mcwatch::shim {

// libmemcached 1.1.4's continuum items are {uint32_t index; uint32_t value}
// (the type is opaque in its public headers): route::RingPoint has that
// layout, so the router reads a handle's continuum in place.
static_assert(sizeof(route::RingPoint) == 8, "RingPoint must mirror memcached_continuum_item_st");

namespace {

// Routers and the state source, shared by every handle and thread of the
// process. Replaced (and the old one leaked on purpose) in a forked child:
// a lock held by a thread that does not exist there would never be freed.
struct Registry {
    std::shared_ptr<route::StateSource> source;
    std::map<std::string, std::shared_ptr<route::Router>> routers;  // by server list
    std::atomic<route::StateSource*> made_source{nullptr};          // source, once made (lock-free read)
};
std::atomic<Registry*> registry{new Registry};
std::atomic_flag registry_lock = ATOMIC_FLAG_INIT;

// Bounded: building a router takes microseconds (it never resolves a name:
// NameResolution::background). Past the bound the operation goes native.
bool lock_registry() noexcept {
    for (int attempt = 0; attempt < 2000; ++attempt) {
        if (!registry_lock.test_and_set(std::memory_order_acquire)) return true;
        if (attempt > 50)
            sched_yield();
        else
            state::cpu_relax();
    }
    return false;
}

void unlock_registry() noexcept { registry_lock.clear(std::memory_order_release); }

void after_fork_in_child() noexcept {
    registry.store(new (std::nothrow) Registry, std::memory_order_release);
    registry_lock.clear(std::memory_order_release);
    routing_epoch.fetch_add(1, std::memory_order_acq_rel);
}

__attribute__((constructor)) void register_fork_handler() { pthread_atfork(nullptr, nullptr, after_fork_in_child); }

// Under the registry lock. Each new mapping invalidates the handles'
// routings, so that a managed list is adopted at the next operation.
void make_source(Registry& r) {
    r.source = std::make_shared<route::StateSource>(state_path_from_environment(), debug_from_environment());
    r.source->on_new_mapping(invalidate_routing);
}

std::shared_ptr<route::Router> router_for(std::vector<ServerAddress> servers, const std::string& key) {
    if (!lock_registry()) return nullptr;
    struct Unlock {
        ~Unlock() { unlock_registry(); }
    } unlock;
    Registry* r = registry.load(std::memory_order_acquire);
    if (!r) return nullptr;
    if (auto it = r->routers.find(key); it != r->routers.end()) return it->second;
    if (!r->source) make_source(*r);
    // The router's own placement is never used (the handle's continuum is):
    // modula builds no ring.
    route::Topology topology;
    std::string error;
    if (!route::Topology::build(std::move(servers), state::Distribution::modula, state::Hash::one_at_a_time, topology,
                                error))
        return nullptr;
    auto router = std::make_shared<route::Router>(std::move(topology), r->source, route::NameResolution::background);
    r->routers.emplace(key, router);
    return router;
}

bool is_consistent(memcached_server_distribution_t distribution, bool& supported) {
    supported = true;
    switch (distribution) {
    case MEMCACHED_DISTRIBUTION_MODULA: return false;
    case MEMCACHED_DISTRIBUTION_CONSISTENT:
    case MEMCACHED_DISTRIBUTION_CONSISTENT_KETAMA:
    case MEMCACHED_DISTRIBUTION_CONSISTENT_KETAMA_SPY:
    case MEMCACHED_DISTRIBUTION_CONSISTENT_WEIGHTED: return true;
    default: supported = false; return false;
    }
}

const route::RingPoint* ring_of(const memcached_st* memc) noexcept {
    return reinterpret_cast<const route::RingPoint*>(memc->ketama.continuum);
}

std::shared_ptr<HandleRouting> build(const memcached_st* memc, const Real& real) {
    bool supported = false;
    const bool consistent = is_consistent(memc->distribution, supported);
    const uint32_t count = real.server_count(memc);
    if (!supported || count == 0 || (consistent && !memc->ketama.continuum)) return nullptr;

    auto routing = std::make_shared<HandleRouting>();
    routing->consistent = consistent;
    std::vector<ServerAddress> specs;
    std::string key;
    for (uint32_t i = 0; i < count; ++i) {
        const memcached_instance_st* instance = real.instance_by_position(memc, i);
        const char* name = instance ? real.server_name(instance) : nullptr;
        if (!name) return nullptr;
        const bool is_unix = std::strcmp(real.server_type(instance), "SOCKET") == 0;
        const std::string port = std::to_string(real.server_port(instance));
        std::string text = is_unix                             ? std::string(name)
                           : std::strchr(name, ':') != nullptr ? "[" + std::string(name) + "]:" + port
                                                               : std::string(name) + ":" + port;
        ServerAddress spec;
        std::string error;
        if (!ServerAddress::parse(text, 1, spec, error)) return nullptr;
        key += text + '\n';
        routing->addresses.push_back(std::move(text));
        specs.push_back(std::move(spec));
    }
    routing->router = router_for(std::move(specs), key);
    if (!routing->router) return nullptr;
    if (const route::StateSource::Pin mapped = routing->router->source()->pin()) {
        const state::Header& header = mapped->map.header();
        routing->placed_as_before =
            header.previous_distribution <= uint32_t(state::Distribution::ketama_weighted) &&
            header.previous_hash < state::kHashCount &&
            std::strcmp(handle_distribution(memc),
                        distribution_name(state::Distribution(header.previous_distribution))) == 0 &&
            std::strcmp(handle_hash(memc), hash_name(state::Hash(header.previous_hash))) == 0;
    }

    if (consistent) {
        const route::RingPoint* ring = ring_of(memc);
        const uint32_t size = memc->ketama.continuum_points_counter;
        routing->representative.assign(count, UINT32_MAX);
        // The lookup takes the first point >= hash: a point's own value
        // reaches it unless an earlier point has the same value.
        for (uint32_t p = 0; p < size; ++p) {
            const uint32_t server = ring[p].index;
            if (server < count && routing->representative[server] == UINT32_MAX &&
                (p == 0 || ring[p - 1].value != ring[p].value))
                routing->representative[server] = ring[p].value;
        }
    }
    return routing;
}

struct CacheEntry {
    HandleShape shape;
    std::shared_ptr<HandleRouting> routing;
};

// A few handles per thread, the most recent of them also in recent_routing.
constexpr unsigned kCacheEntries = 4;
thread_local CacheEntry cache[kCacheEntries];
thread_local unsigned cache_next = 0;

uint32_t hash_with_handle(const char* key, size_t length, void* hashkit) noexcept {
    const auto* kit = static_cast<const hashkit_st*>(hashkit);
    last_hashed = LastHash{key, length, kit, real()->hashkit_digest(kit, key, length)};
    return last_hashed.value;
}

}  // namespace

std::atomic<uint64_t> routing_epoch{1};
__thread RecentRouting recent_routing;
__thread LastHash last_hashed;

const HandleRouting* lookup_routing(const memcached_st* memc) noexcept {
    uint64_t now_epoch = routing_epoch.load(std::memory_order_acquire);
    for (const CacheEntry& entry : cache)
        if (entry.shape.matches(memc, now_epoch)) {
            recent_routing = RecentRouting{entry.shape, entry.routing.get()};
            return entry.routing.get();
        }
    const Real* r = real();
    if (!r) return nullptr;
    // The handle's first operation, or its first since its list, a
    // behaviour or the state file changed: the moment to adopt a managed list.
    if (adopt_managed_list(const_cast<memcached_st*>(memc), *r))
        now_epoch = routing_epoch.load(std::memory_order_acquire);  // adopting invalidated every routing
    std::shared_ptr<HandleRouting> routing;
    try {
        routing = build(memc, *r);
    } catch (...) {
        return nullptr;  // out of memory: stay native
    }
    if (!routing) return nullptr;
    if (debug_enabled()) describe_handle(memc, *routing);
    CacheEntry& entry = cache[cache_next++ % kCacheEntries];
    recent_routing = RecentRouting{};  // it may borrow the routing about to be dropped
    entry = CacheEntry{HandleShape::of(memc, now_epoch), std::move(routing)};
    recent_routing = RecentRouting{entry.shape, entry.routing.get()};
    return entry.routing.get();
}

std::shared_ptr<const HandleRouting> keep_routing(const HandleRouting* routing) noexcept {
    for (const CacheEntry& entry : cache)
        if (routing && entry.routing.get() == routing) return entry.routing;
    return nullptr;
}

route::PlacementView handle_view(const memcached_st* memc, const HandleRouting& routing) noexcept {
    route::PlacementView view;
    view.consistent = routing.consistent;
    view.server_count = uint32_t(routing.addresses.size());
    if (routing.consistent) {
        view.ring = ring_of(memc);
        view.ring_size = memc->ketama.continuum_points_counter;
    }
    view.hasher = route::KeyHasher{hash_with_handle, const_cast<hashkit_st*>(&memc->hashkit)};
    return view;
}

uint32_t dispatch_hash(const memcached_st* memc, const HandleRouting& routing, uint32_t server) noexcept {
    if (!routing.consistent) return server;  // modula: hash % count
    const route::RingPoint* ring = ring_of(memc);
    const uint32_t size = memc->ketama.continuum_points_counter;
    auto reaches = [&](uint32_t value) {
        return size && ring[route::ring_position(ring, size, value)].index == server;
    };
    const uint32_t cached = server < routing.representative.size() ? routing.representative[server] : UINT32_MAX;
    if (cached != UINT32_MAX && reaches(cached)) return cached;
    for (uint32_t p = 0; p < size; ++p)
        if (ring[p].index == server && reaches(ring[p].value)) return ring[p].value;
    return cached;  // no point of its own: cannot happen for a server the walk found
}

void invalidate_routing() noexcept { routing_epoch.fetch_add(1, std::memory_order_acq_rel); }

route::StateSource* process_state_source() noexcept {
    Registry* r = registry.load(std::memory_order_acquire);
    if (!r) return nullptr;
    // Set once under the lock, never reset while the registry lives.
    if (route::StateSource* made = r->made_source.load(std::memory_order_acquire)) return made;
    if (!lock_registry()) return nullptr;
    struct Unlock {
        ~Unlock() { unlock_registry(); }
    } unlock;
    try {
        if (!r->source) make_source(*r);
    } catch (...) {
        return nullptr;
    }
    r->made_source.store(r->source.get(), std::memory_order_release);
    return r->source.get();
}

uint32_t recently_down_window_s(const HandleRouting& routing) noexcept {
    return recently_down_window_s_or_default(routing.router->source());
}

uint32_t writeback_ttl_s(const HandleRouting& routing) noexcept {
    return writeback_ttl_s_or_default(routing.router->source());
}

uint32_t replica_max_ttl_s(const HandleRouting& routing) noexcept {
    return replica_max_ttl_s_or_default(routing.router->source());
}

}  // namespace mcwatch::shim
