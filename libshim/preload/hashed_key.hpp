// The bytes libmemcached hashes for a key: the namespace followed by the key
// when the handle hashes with its namespace, else the key itself.
#pragma once

#include <libmemcached-1.0/memcached.h>

#include <cstddef>

namespace mcwatch::shim {

struct HashedKey {
    char buffer[MEMCACHED_MAX_KEY];
    const char* bytes = nullptr;
    size_t length = 0;
    // False when libmemcached would not call the hash at all (namespace and
    // key longer than MEMCACHED_MAX_KEY - 1: it uses 0).
    bool hashable = true;

    void set(memcached_st* memc, const char* key, size_t key_length) noexcept;
};

}  // namespace mcwatch::shim
