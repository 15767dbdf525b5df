// The C API of include/mcshim.h over Router. Nothing crosses it but C types;
// every entry point is noexcept and catches what the C++ below could throw.
#include "mcshim.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <memory>
#include <new>
#include <string>

#include "libshim/defaults.hpp"
#include "libshim/clock.hpp"
#include "libshim/router.hpp"
#include "libshim/expiration.hpp"
#include "libshim/routing_names.hpp"

#include "libshim/export.hpp"

using namespace mcwatch;
using namespace mcwatch::route;

struct mcshim {
    std::shared_ptr<StateSource> source;
    std::unique_ptr<Router> router;
    std::string error;    // about the last failed declaration, "" after a success
    std::string message;  // what mcshim_last_error last returned
};

static_assert(MCSHIM_ROUTE_SUBSTITUTE == kRouteSubstitute);
static_assert(MCSHIM_MAX_COPIES == kMaxCopies);
static_assert(MCSHIM_ROUTE_RECENTLY_DOWN == kRouteRecentlyDown);
static_assert(MCSHIM_ROUTE_ALL_DEAD == kRouteAllDead);
static_assert(MCSHIM_ROUTE_STALE == kRouteStale);
static_assert(MCSHIM_ROUTE_DRAINING == kRouteDraining);
static_assert(MCSHIM_ROUTE_JOINED == kRouteJoined);
static_assert(MCSHIM_MODULA == int(state::Distribution::modula));
static_assert(MCSHIM_KETAMA == int(state::Distribution::ketama));
static_assert(MCSHIM_KETAMA_WEIGHTED == int(state::Distribution::ketama_weighted));
static_assert(MCSHIM_HASH_MD5 == int(state::Hash::md5));
static_assert(MCSHIM_HASH_MURMUR3 == int(state::Hash::murmur3));

namespace {

int install(mcshim_t* shim, std::vector<ServerAddress> servers, uint32_t distribution, uint32_t hash) {
    if (distribution > uint32_t(state::Distribution::ketama_weighted)) {
        shim->error = "unknown distribution " + std::to_string(distribution);
        return MCSHIM_E_INVALID;
    }
    if (hash >= state::kHashCount) {
        shim->error = "unknown hash " + std::to_string(hash);
        return MCSHIM_E_INVALID;
    }
    if (!hash_available(state::Hash(hash))) {
        shim->error = std::string("hash ") + hash_name(state::Hash(hash)) + " is not available in this libhashkit";
        return MCSHIM_E_HASH;
    }
    Topology topology;
    if (!Topology::build(std::move(servers), state::Distribution(distribution), state::Hash(hash), topology,
                         shim->error))
        return MCSHIM_E_INVALID;
    shim->router = std::make_unique<Router>(std::move(topology), shim->source);
    shim->error.clear();
    return MCSHIM_OK;
}

}  // namespace

MCSHIM_EXPORT mcshim_t* mcshim_open(const char* state_path) noexcept {
    try {
        std::string path = state_path ? state_path : state_path_from_environment();
        auto shim = std::make_unique<mcshim>();
        shim->source = std::make_shared<StateSource>(std::move(path), debug_from_environment());
        return shim.release();
    } catch (...) {
        return nullptr;
    }
}

MCSHIM_EXPORT int mcshim_set_servers(mcshim_t* shim, const char* const* addresses, const uint32_t* weights,
                                     size_t count, int distribution, int hash) noexcept {
    if (!shim || (!addresses && count)) return MCSHIM_E_INVALID;
    try {
        std::vector<ServerAddress> servers(count);
        for (size_t i = 0; i < count; ++i) {
            if (!addresses[i]) {
                shim->error = "server " + std::to_string(i + 1) + ": NULL address";
                return MCSHIM_E_INVALID;
            }
            if (!ServerAddress::parse(addresses[i], weights ? weights[i] : 1, servers[i], shim->error))
                return MCSHIM_E_INVALID;
        }
        return install(shim, std::move(servers), uint32_t(distribution), uint32_t(hash));
    } catch (const std::bad_alloc&) {
        return MCSHIM_E_NOMEM;
    } catch (...) {
        return MCSHIM_E_INVALID;
    }
}

MCSHIM_EXPORT int mcshim_use_state_servers(mcshim_t* shim) noexcept {
    if (!shim) return MCSHIM_E_INVALID;
    try {
        shim->source->check_now();
        const StateSource::Pin mapped = shim->source->pin();
        if (!mapped) {
            shim->error = shim->source->problem();
            return MCSHIM_E_NO_STATE;
        }
        const state::Header& header = mapped->map.header();
        std::vector<ServerAddress> servers(header.slot_count);
        for (uint32_t i = 0; i < header.slot_count; ++i) {
            const state::Slot& slot = mapped->map.slots()[i];
            const std::string address(slot.address, strnlen(slot.address, state::kAddressSize));
            if (!ServerAddress::parse(address, slot.weight, servers[i], shim->error)) {
                shim->error = shim->source->path() + ": server " + std::to_string(i + 1) + ": " + shim->error;
                return MCSHIM_E_NO_STATE;
            }
        }
        return install(shim, std::move(servers), header.distribution, header.hash);
    } catch (const std::bad_alloc&) {
        return MCSHIM_E_NOMEM;
    } catch (...) {
        return MCSHIM_E_INVALID;
    }
}

MCSHIM_EXPORT size_t mcshim_server_count(const mcshim_t* shim) noexcept {
    return shim && shim->router ? shim->router->topology().size() : 0;
}

MCSHIM_EXPORT const char* mcshim_server_address(const mcshim_t* shim, size_t index) noexcept {
    if (!shim || !shim->router || index >= shim->router->topology().size()) return nullptr;
    return shim->router->topology().server(uint32_t(index)).text.c_str();
}

MCSHIM_EXPORT int mcshim_route(mcshim_t* shim, const void* key, size_t key_length, mcshim_route_t* out) noexcept {
    if (!shim || !out || (!key && key_length)) return MCSHIM_E_INVALID;
    if (!shim->router) return MCSHIM_E_NO_SERVERS;
    const Decision d = shim->router->route(key ? static_cast<const char*>(key) : "", key_length);
    out->native = d.native;
    out->target = d.target;
    out->fallback = d.fallback;
    out->flags = d.flags;
    return (d.flags & kRouteAllDead) ? MCSHIM_E_ALL_DEAD : MCSHIM_OK;
}

MCSHIM_EXPORT int mcshim_copies(mcshim_t* shim, const void* key, size_t key_length, int32_t* out,
                                size_t capacity) noexcept {
    if (!shim || !out || capacity == 0 || (!key && key_length)) return MCSHIM_E_INVALID;
    if (!shim->router) return MCSHIM_E_NO_SERVERS;
    const char* bytes = key ? static_cast<const char*>(key) : "";
    const uint32_t wanted =
        std::min<uint32_t>(replicas_or_default(shim->source.get()), uint32_t(std::min<size_t>(capacity, kMaxCopies)));
    int32_t copies[kMaxCopies];
    const uint32_t found =
        shim->router->copies_with(shim->router->topology().view(), bytes, key_length, wanted, copies);
    if (found == 0) return MCSHIM_E_ALL_DEAD;
    for (uint32_t i = 0; i < found; ++i) out[i] = copies[i];
    return int(found);
}

MCSHIM_EXPORT int64_t mcshim_clamp_expiration(mcshim_t* shim, int64_t expiration) noexcept {
    const uint32_t window = recently_down_window_s_or_default(shim ? shim->source.get() : nullptr);
    return clamp_expiration(expiration, window, int64_t(time(nullptr)));
}

MCSHIM_EXPORT uint32_t mcshim_writeback_ttl(mcshim_t* shim) noexcept {
    return writeback_ttl_s_or_default(shim ? shim->source.get() : nullptr);
}

MCSHIM_EXPORT int mcshim_state_usable(mcshim_t* shim) noexcept {
    if (!shim) return 0;
    shim->source->poll(coarse_monotonic_ns());
    return shim->source->usable() ? 1 : 0;
}

MCSHIM_EXPORT const char* mcshim_last_error(mcshim_t* shim) noexcept {
    if (!shim) return "";
    try {
        shim->message = !shim->error.empty()     ? shim->error
                        : shim->source->usable() ? std::string()
                                                 : shim->source->problem();
    } catch (...) {
        shim->message.clear();
    }
    return shim->message.c_str();
}

MCSHIM_EXPORT const char* mcshim_strerror(int code) noexcept {
    switch (code) {
    case MCSHIM_OK: return "success";
    case MCSHIM_E_INVALID: return "invalid argument";
    case MCSHIM_E_NO_SERVERS: return "no server list declared";
    case MCSHIM_E_ALL_DEAD: return "all servers are dead";
    case MCSHIM_E_NO_STATE: return "no usable state file";
    case MCSHIM_E_HASH: return "hash not available in this libhashkit";
    case MCSHIM_E_NOMEM: return "out of memory";
    }
    return "unknown error";
}

MCSHIM_EXPORT int mcshim_distribution_from_name(const char* name) noexcept {
    state::Distribution d;
    return name && distribution_from_name(name, d) ? int(d) : -1;
}

MCSHIM_EXPORT int mcshim_hash_from_name(const char* name) noexcept {
    state::Hash h;
    return name && hash_from_name(name, h) ? int(h) : -1;
}

MCSHIM_EXPORT void mcshim_close(mcshim_t* shim) noexcept { delete shim; }
