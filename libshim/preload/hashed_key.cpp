#include "libshim/preload/hashed_key.hpp"

#include <cstring>

#include "libshim/preload/real.hpp"

namespace mcwatch::shim {

void HashedKey::set(memcached_st* memc, const char* key, size_t key_length) noexcept {
    bytes = key;
    length = key_length;
    hashable = true;
    if (!memc->flags.hash_with_namespace) return;
    memcached_return_t rc;
    const auto* name = static_cast<const char*>(real()->callback_get(memc, MEMCACHED_CALLBACK_NAMESPACE, &rc));
    const size_t name_length = name ? std::strlen(name) : 0;
    if (name_length == 0) return;
    if (name_length + key_length > MEMCACHED_MAX_KEY - 1) {
        hashable = false;
        return;
    }
    std::memcpy(buffer, name, name_length);
    std::memcpy(buffer + name_length, key, key_length);
    bytes = buffer;
    length = name_length + key_length;
}

}  // namespace mcwatch::shim
