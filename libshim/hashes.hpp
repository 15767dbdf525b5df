// The key hashes of libmemcached 1.1.4, taken from libhashkit's exported
// functions rather than written again, in the shape of libhashkit's
// hashkit_hash_fn so that a libmemcached handle's own (possibly custom) hash
// and ours are called alike.
#pragma once

#include <cstddef>
#include <cstdint>

#include "libshim/state_format.hpp"

namespace mcwatch::route {

// libhashkit's hashkit_hash_fn.
using HashFn = uint32_t (*)(const char* key, size_t length, void* context);

struct KeyHasher {
    HashFn function = nullptr;
    void* context = nullptr;

    uint32_t operator()(const char* key, size_t length) const noexcept { return function(key, length, context); }
    explicit operator bool() const noexcept { return function != nullptr; }
};

// The function libmemcached uses for MEMCACHED_BEHAVIOR_HASH = `hash`; empty
// when this libhashkit was built without it (libmemcached then refuses the
// behaviour too: Debian 12's libhashkit has no hsieh).
KeyHasher key_hasher(state::Hash hash) noexcept;
bool hash_available(state::Hash hash) noexcept;

// libhashkit_md5_signature: the 16 digest bytes weighted ketama points are cut from.
void md5_signature(const char* text, size_t length, unsigned char digest[16]) noexcept;

}  // namespace mcwatch::route
