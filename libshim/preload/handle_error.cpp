#include "libshim/preload/handle_error.hpp"

#include <algorithm>
#include <cstdio>
#include <cstring>

#include "libshim/preload/real.hpp"

namespace mcwatch::shim {

namespace {

// libmemcached 1.x's memcached_error_t (src/libmemcached/error.cc; opaque in
// its public headers, unchanged since 1.0): a list, newest first, that
// memcached_last_error_message and memcached_last_error read from its head.
struct ErrorRecord {
    memcached_st* root;
    uint64_t query_id;
    ErrorRecord* next;
    memcached_return_t rc;
    int local_errno;
    size_t size;
    char message[2048];
};

bool layout_known() noexcept {
    const Real* r = real();
    const char* version = r && r->lib_version ? r->lib_version() : nullptr;
    return version && std::strncmp(version, "1.", 2) == 0;
}

void free_errors(memcached_st* memc) noexcept {
    auto* error = reinterpret_cast<ErrorRecord*>(memc->error_messages);
    while (error) {
        ErrorRecord* next = error->next;
        memc->allocators.free(memc, error, memc->allocators.context);
        error = next;
    }
    memc->error_messages = nullptr;
}

}  // namespace

memcached_return_t fail_all_dead(memcached_st* memc, const HandleRouting& routing) noexcept {
    constexpr memcached_return_t rc = MEMCACHED_SERVER_MARKED_DEAD;
    if (!memc || !layout_known() || !memc->allocators.malloc || !memc->allocators.free) return rc;
    // libmemcached frees the previous operation's errors as an operation
    // starts (initialize_query); this operation is failed before it would.
    free_errors(memc);
    auto* error =
        static_cast<ErrorRecord*>(memc->allocators.malloc(memc, sizeof(ErrorRecord), memc->allocators.context));
    if (!error) return rc;
    error->root = memc;
    error->query_id = memc->query_id;
    error->next = nullptr;
    error->rc = rc;
    error->local_errno = 0;
    const route::StateSource* source = routing.router ? routing.router->source() : nullptr;
    const int n = std::snprintf(error->message, sizeof error->message,
                                "SERVER IS MARKED DEAD, mcwatchd publishes every server this key may go to dead or "
                                "draining (%zu servers in this handle, state file %s); failed without connecting",
                                routing.addresses.size(), source ? source->path().c_str() : "none");
    error->size = n < 0 ? 0 : std::min(size_t(n), sizeof error->message - 1);
    memc->error_messages = reinterpret_cast<memcached_error_t*>(error);
    return rc;
}

}  // namespace mcwatch::shim
