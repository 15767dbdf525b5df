// Calls that change a handle's server list, distribution or hash: passed
// through, then every cached routing is rebuilt on its next use (cheap, and
// rare next to key operations). A change of the list, or the handle's end,
// also forgets the managed list the shim gave it (managed_list.hpp).
#include <libmemcached-1.0/memcached.h>

#include "libshim/preload/handle_routing.hpp"
#include "libshim/preload/managed_list.hpp"
#include "libshim/preload/real.hpp"

#include "libshim/export.hpp"

using namespace mcwatch::shim;

namespace {

template <class Call>
auto then_invalidate(Call call) -> decltype(call(*real())) {
    const Real* r = real();
    if (!r) {
        if constexpr (std::is_void_v<decltype(call(*r))>)
            return;
        else
            return MEMCACHED_FAILURE;
    }
    if constexpr (std::is_void_v<decltype(call(*r))>) {
        call(*r);
        invalidate_routing();
    } else {
        auto result = call(*r);
        invalidate_routing();
        return result;
    }
}

template <class Call>
auto list_change(const memcached_st* memc, Call call) -> decltype(call(*real())) {
    forget_managed_list(memc);
    return then_invalidate(call);
}

}  // namespace

MCSHIM_EXPORT memcached_return_t memcached_server_add(memcached_st* memc, const char* hostname, in_port_t port) {
    return list_change(memc, [&](const Real& r) { return r.server_add(memc, hostname, port); });
}

MCSHIM_EXPORT memcached_return_t memcached_server_add_with_weight(memcached_st* memc, const char* hostname,
                                                                  in_port_t port, uint32_t weight) {
    return list_change(memc, [&](const Real& r) { return r.server_add_with_weight(memc, hostname, port, weight); });
}

MCSHIM_EXPORT memcached_return_t memcached_server_add_udp(memcached_st* memc, const char* hostname, in_port_t port) {
    return list_change(memc, [&](const Real& r) { return r.server_add_udp(memc, hostname, port); });
}

MCSHIM_EXPORT memcached_return_t memcached_server_add_udp_with_weight(memcached_st* memc, const char* hostname,
                                                                      in_port_t port, uint32_t weight) {
    return list_change(memc, [&](const Real& r) { return r.server_add_udp_with_weight(memc, hostname, port, weight); });
}

MCSHIM_EXPORT memcached_return_t memcached_server_add_unix_socket(memcached_st* memc, const char* filename) {
    return list_change(memc, [&](const Real& r) { return r.server_add_unix_socket(memc, filename); });
}

MCSHIM_EXPORT memcached_return_t memcached_server_add_unix_socket_with_weight(memcached_st* memc, const char* filename,
                                                                              uint32_t weight) {
    return list_change(memc,
                       [&](const Real& r) { return r.server_add_unix_socket_with_weight(memc, filename, weight); });
}

MCSHIM_EXPORT memcached_return_t memcached_server_push(memcached_st* memc, const memcached_server_list_st list) {
    return list_change(memc, [&](const Real& r) { return r.server_push(memc, list); });
}

MCSHIM_EXPORT void memcached_servers_reset(memcached_st* memc) {
    list_change(memc, [&](const Real& r) { r.servers_reset(memc); });
}

MCSHIM_EXPORT memcached_return_t memcached_behavior_set(memcached_st* memc, const memcached_behavior_t flag,
                                                        uint64_t data) {
    return then_invalidate([&](const Real& r) { return r.behavior_set(memc, flag, data); });
}

MCSHIM_EXPORT void memcached_free(memcached_st* memc) {
    list_change(memc, [&](const Real& r) { r.free(memc); });
}
