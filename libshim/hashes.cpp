#include "libshim/hashes.hpp"

#include <libhashkit-1.0/hashkit.h>

namespace mcwatch::route {

// The state file numbers hashes as libmemcached does; libhashkit's own enum
// is the same list (libmemcached casts between them).
static_assert(uint32_t(state::Hash::one_at_a_time) == HASHKIT_HASH_DEFAULT);
static_assert(uint32_t(state::Hash::md5) == HASHKIT_HASH_MD5);
static_assert(uint32_t(state::Hash::crc) == HASHKIT_HASH_CRC);
static_assert(uint32_t(state::Hash::fnv1_64) == HASHKIT_HASH_FNV1_64);
static_assert(uint32_t(state::Hash::fnv1a_64) == HASHKIT_HASH_FNV1A_64);
static_assert(uint32_t(state::Hash::fnv1_32) == HASHKIT_HASH_FNV1_32);
static_assert(uint32_t(state::Hash::fnv1a_32) == HASHKIT_HASH_FNV1A_32);
static_assert(uint32_t(state::Hash::hsieh) == HASHKIT_HASH_HSIEH);
static_assert(uint32_t(state::Hash::murmur) == HASHKIT_HASH_MURMUR);
static_assert(uint32_t(state::Hash::jenkins) == HASHKIT_HASH_JENKINS);
static_assert(uint32_t(state::Hash::murmur3) == HASHKIT_HASH_MURMUR3);
static_assert(state::kHashCount == HASHKIT_HASH_CUSTOM);

namespace {

template <uint32_t (*Function)(const char*, size_t)>
uint32_t adapt(const char* key, size_t length, void*) {
    return Function(key, length);
}

}  // namespace

bool hash_available(state::Hash hash) noexcept {
    const auto index = static_cast<uint32_t>(hash);
    return index < state::kHashCount && libhashkit_has_algorithm(static_cast<hashkit_hash_algorithm_t>(index));
}

KeyHasher key_hasher(state::Hash hash) noexcept {
    if (!hash_available(hash)) return {};
    switch (hash) {
    case state::Hash::one_at_a_time: return {adapt<libhashkit_one_at_a_time>};
    case state::Hash::md5: return {adapt<libhashkit_md5>};
    case state::Hash::crc: return {adapt<libhashkit_crc32>};
    case state::Hash::fnv1_64: return {adapt<libhashkit_fnv1_64>};
    case state::Hash::fnv1a_64: return {adapt<libhashkit_fnv1a_64>};
    case state::Hash::fnv1_32: return {adapt<libhashkit_fnv1_32>};
    case state::Hash::fnv1a_32: return {adapt<libhashkit_fnv1a_32>};
    case state::Hash::hsieh: return {adapt<libhashkit_hsieh>};
    case state::Hash::murmur: return {adapt<libhashkit_murmur>};
    case state::Hash::jenkins: return {adapt<libhashkit_jenkins>};
    case state::Hash::murmur3: return {adapt<libhashkit_murmur3>};
    }
    return {};
}

void md5_signature(const char* text, size_t length, unsigned char digest[16]) noexcept {
    libhashkit_md5_signature(reinterpret_cast<const unsigned char*>(text), length, digest);
}

}  // namespace mcwatch::route
