#include "libshim/preload/managed_list.hpp"

#include <cstring>
#include <string>

#include "libshim/preload/debug_log.hpp"
#include "libshim/preload/handle_routing.hpp"
#include "libshim/preload/hook.hpp"
#include "libshim/server_address.hpp"
#include "libshim/state_format.hpp"
#include "libshim/state_source.hpp"

#include "libshim/export.hpp"

namespace mcwatch::shim {

namespace {

bool parse_slot(const state::Slot& slot, ServerAddress& out) {
    std::string error;
    return ServerAddress::parse(std::string_view(slot.address, strnlen(slot.address, sizeof slot.address)), slot.weight,
                                out, error);
}

// Whether the handle's server i is `wanted`, by the terms libmemcached places
// keys in (hostname as given, port). libmemcached 1.1.4 keeps an instance's
// weight out of reach: a change of weight alone is not seen here.
bool names(const memcached_st* memc, const Real& real, uint32_t i, const ServerAddress& wanted) {
    const memcached_instance_st* instance = real.instance_by_position(memc, i);
    const char* name = instance ? real.server_name(instance) : nullptr;
    if (!name || wanted.host != name) return false;
    const bool is_unix = std::strcmp(real.server_type(instance), "SOCKET") == 0;
    return is_unix == wanted.is_unix && (is_unix || real.server_port(instance) == wanted.port);
}

}  // namespace

bool adopt_managed_list(memcached_st* memc, const Real& real) noexcept {
    if (!memc || memc->flags.use_udp) return false;
    route::StateSource* source = process_state_source();
    if (!source || !source->usable()) return false;
    const route::StateSource::Mapped* mapped = source->current();
    if (!mapped) return false;
    const state::Header& header = mapped->map.header();
    if (!(header.flags & state::kHeaderManagedList) || header.slot_count == 0) return false;
    try {
        const uint32_t count = header.slot_count;
        std::vector<ServerAddress> wanted(count);
        for (uint32_t i = 0; i < count; ++i)
            if (!parse_slot(mapped->map.slots()[i], wanted[i])) return false;  // the daemon wrote it: cannot be
        bool same = real.server_count(memc) == count;
        for (uint32_t i = 0; same && i < count; ++i) same = names(memc, real, i, wanted[i]);
        if (same) return false;
        real.servers_reset(memc);
        memcached_return_t rc = MEMCACHED_SUCCESS;
        for (uint32_t i = 0; i < count && memcached_success(rc); ++i) {
            const ServerAddress& server = wanted[i];
            rc = server.is_unix ? real.server_add_unix_socket_with_weight(memc, server.host.c_str(), server.weight)
                                : real.server_add_with_weight(memc, server.host.c_str(), server.port, server.weight);
        }
        invalidate_routing();
        if (debug_enabled())
            debug_line("managed list: handle %p now uses the %u servers of %s%s", static_cast<const void*>(memc), count,
                       source->path().c_str(), memcached_success(rc) ? "" : " (an add failed: out of memory?)");
        return true;
    } catch (...) {
        return false;  // out of memory: the handle keeps what it has
    }
}

}  // namespace mcwatch::shim

using namespace mcwatch::shim;

// PHP's getServerList() and the like walk the list with the cursor: it
// answers the file's list even before the handle's first operation.
MCSHIM_EXPORT memcached_return_t memcached_server_cursor(const memcached_st* memc, const memcached_server_fn* callback,
                                                         void* context, uint32_t number_of_callbacks) {
    const Real* r = real();
    if (!r) return MEMCACHED_FAILURE;
    OuterCall outer;
    if (outer.is_outer()) adopt_managed_list(const_cast<memcached_st*>(memc), *r);
    return r->server_cursor(memc, callback, context, number_of_callbacks);
}
