// The interposed memcached_generate_hash: libmemcached's public answer to
// "which server does this key go to", and through it (a call through
// libmemcached's PLT) memcached_server_by_key, PHP's Memcached::getServerByKey
// and pylibmc's equivalents. Under the shim they answer where the shim sends
// the key, so an application that asks agrees with what its requests do.
#include <libmemcached-1.0/memcached.h>

#include "libshim/preload/hook.hpp"
#include "libshim/preload/key_routing.hpp"
#include "libshim/preload/real.hpp"

extern "C" __attribute__((visibility("default"))) uint32_t memcached_generate_hash(const memcached_st* memc,
                                                                                   const char* key, size_t key_length) {
    using namespace mcwatch::shim;
    const KeptErrno kept;  // an answer, always
    OuterCall outer;
    Routed routed;
    // route_key only reads the handle; libmemcached's own signature is const.
    if (outer.is_outer() && route_key(const_cast<memcached_st*>(memc), key, key_length, routed) &&
        routed.decision.target >= 0) {
        kept(MEMCACHED_SUCCESS);
        return uint32_t(routed.decision.target);
    }
    const Real* r = real();
    const uint32_t server = r ? r->generate_hash(memc, key, key_length) : UINT32_MAX;
    kept(MEMCACHED_SUCCESS);
    return server;
}
