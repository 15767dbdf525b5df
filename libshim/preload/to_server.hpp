// Sending a key (or a follow-up request for it) to a chosen server: the hash
// the hook hands libmemcached so that the handle's own dispatch lands there.
#pragma once

#include <libmemcached-1.0/memcached.h>

#include <cstdint>

#include "libshim/preload/handle_routing.hpp"
#include "libshim/preload/hook.hpp"
#include "libshim/preload/key_routing.hpp"

namespace mcwatch::shim {

// The hook's answer that sends a key whose hashed bytes are `bytes` and
// whose native server is `native` to `server`: for the native server the
// real hash (`native_hash` when known, else computed by the hook).
ExpectedKey expected_for(const memcached_st* memc, const HandleRouting& routing, const char* bytes, size_t length,
                         int32_t native, int32_t server, const uint32_t* native_hash = nullptr) noexcept;

// While alive, libmemcached sends the key to the server `expected` leads to.
class ToServer {
public:
    ToServer(const memcached_st* memc, const ExpectedKey& expected) noexcept
        : expected_(expected), scope_(memc, &expected_, 1) {}
    ToServer(const memcached_st* memc, const Routed& routed, int32_t server) noexcept
        : ToServer(memc,
                   expected_for(memc, *routed.routing, routed.key.bytes, routed.key.length, routed.decision.native,
                                server, routed.has_native_hash ? &routed.native_hash : nullptr)) {}

private:
    ExpectedKey expected_;
    HookScope scope_;
};

}  // namespace mcwatch::shim
