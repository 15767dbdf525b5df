#include "libshim/preload/managed_list.hpp"

#include <pthread.h>

#include <cstring>
#include <mutex>
#include <string>
#include <unordered_map>

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

// The list the shim gave a handle: the file's servers_digest (addresses and
// weights), and the handle's server array and count right after, so that a
// list changed behind the shim's back (not through an interposed call) is
// not taken for it.
struct Given {
    uint64_t servers_digest = 0;
    const void* servers = nullptr;
    uint32_t hosts = 0;
};

// One entry per handle given a list; touched only when a handle's routing
// is built, never on the hot path. The lock is taken around fork, so that
// the child inherits a consistent map (and its handles keep their entries).
struct GivenLists {
    std::mutex lock;
    std::unordered_map<const memcached_st*, Given> by_handle;
};

GivenLists& given_lists() {
    static GivenLists* lists = new GivenLists;  // never destroyed: handles are freed at exit too
    return *lists;
}

__attribute__((constructor)) void keep_given_lists_across_fork() {
    given_lists();
    pthread_atfork([] { given_lists().lock.lock(); }, [] { given_lists().lock.unlock(); },
                   [] { given_lists().lock.unlock(); });
}

bool given_already(const memcached_st* memc, uint64_t servers_digest) noexcept {
    GivenLists& lists = given_lists();
    std::lock_guard<std::mutex> guard(lists.lock);
    const auto it = lists.by_handle.find(memc);
    return it != lists.by_handle.end() && it->second.servers_digest == servers_digest &&
           it->second.servers == static_cast<const void*>(memc->servers) && it->second.hosts == memc->number_of_hosts;
}

void remember_given(const memcached_st* memc, uint64_t servers_digest) noexcept {
    GivenLists& lists = given_lists();
    std::lock_guard<std::mutex> guard(lists.lock);
    try {
        lists.by_handle[memc] = Given{servers_digest, memc->servers, memc->number_of_hosts};
    } catch (...) {
        // Out of memory: the handle is given the list again at its next build.
    }
}

}  // namespace

bool adopt_managed_list(memcached_st* memc, const Real& real) noexcept {
    if (!memc || memc->flags.use_udp) return false;
    route::StateSource* source = process_state_source();
    if (!source || !source->usable()) return false;
    const route::StateSource::Pin mapped = source->pin();
    if (!mapped) return false;
    const state::Header& header = mapped->map.header();
    if (!(header.flags & state::kHeaderManagedList) || header.slot_count == 0) return false;
    const uint64_t digest = header.servers_digest;
    if (given_already(memc, digest)) return false;
    try {
        const uint32_t count = header.slot_count;
        std::vector<ServerAddress> wanted(count);
        for (uint32_t i = 0; i < count; ++i)
            if (!parse_slot(mapped->map.slots()[i], wanted[i])) return false;  // the daemon wrote it: cannot be
        real.servers_reset(memc);
        memcached_return_t rc = MEMCACHED_SUCCESS;
        for (uint32_t i = 0; i < count && memcached_success(rc); ++i) {
            const ServerAddress& server = wanted[i];
            rc = server.is_unix ? real.server_add_unix_socket_with_weight(memc, server.host.c_str(), server.weight)
                                : real.server_add_with_weight(memc, server.host.c_str(), server.port, server.weight);
        }
        if (memcached_success(rc)) remember_given(memc, digest);
        invalidate_routing();
        if (debug_enabled())
            debug_line("managed list: handle %p now uses the %u servers of %s%s", static_cast<const void*>(memc), count,
                       source->path().c_str(), memcached_success(rc) ? "" : " (an add failed: out of memory?)");
        return true;
    } catch (...) {
        return false;  // out of memory: the handle keeps what it has
    }
}

void forget_managed_list(const memcached_st* memc) noexcept {
    GivenLists& lists = given_lists();
    std::lock_guard<std::mutex> guard(lists.lock);
    lists.by_handle.erase(memc);
}

}  // namespace mcwatch::shim

using namespace mcwatch::shim;

// PHP's getServerList() and the like walk the list with the cursor: it
// answers the file's list even before the handle's first operation.
MCSHIM_EXPORT memcached_return_t memcached_server_cursor(const memcached_st* memc, const memcached_server_fn* callback,
                                                         void* context, uint32_t number_of_callbacks) {
    const Real* r = real();
    if (!r) return MEMCACHED_FAILURE;
    const KeptErrno kept;
    OuterCall outer;
    if (outer.is_outer()) adopt_managed_list(const_cast<memcached_st*>(memc), *r);
    return kept(r->server_cursor(memc, callback, context, number_of_callbacks));
}
