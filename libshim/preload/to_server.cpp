#include "libshim/preload/to_server.hpp"

namespace mcwatch::shim {

ExpectedKey expected_for(const memcached_st* memc, const HandleRouting& routing, const char* bytes, size_t length,
                         int32_t native, int32_t server, const uint32_t* native_hash) noexcept {
    ExpectedKey expected{bytes, length, false, 0};
    if (server < 0 || server == native) {
        if (native_hash) {
            expected.forced = true;
            expected.hash = *native_hash;
        }
    } else {
        expected.forced = true;
        expected.hash = dispatch_hash(memc, routing, uint32_t(server));
    }
    return expected;
}

}  // namespace mcwatch::shim
