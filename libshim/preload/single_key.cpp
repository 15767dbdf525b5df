// The interposed single-key operations: get, the stores, delete, the
// arithmetic, touch, exist, each with its *_by_key form. Each routes the key
// it hashes (the group key of a *_by_key call), sends the request where the
// router says, and adds what DESIGN.md asks around it: expirations capped on
// a substitute, the fallback read of a recently-down server, the move of a
// draining server's value, the delete of copies a write made stale.
#include <libmemcached-1.0/memcached.h>

#include "handle_error.hpp"
#include "operation.hpp"
#include "real.hpp"

#define MCSHIM_EXPORT extern "C" __attribute__((visibility("default")))

namespace mcwatch::shim {

namespace {

bool all_dead(const Routed& routed) noexcept { return routed.decision.flags & route::kRouteAllDead; }

void drop_stale_copy(memcached_st* memc, const Routed& routed, const char* hash_key, size_t hash_key_length,
                     const char* key, size_t key_length) noexcept {
    const int32_t server = other_copy_server(routed.decision);
    if (server < 0) return;
    ToServer to(memc, routed, server);
    real()->delete_by_key(memc, hash_key, hash_key_length, key, key_length, 0);
}

time_t capped(const Routed& routed, time_t expiration) noexcept {
    if (!(routed.decision.flags & route::kRouteSubstitute)) return expiration;
    return time_t(route::clamp_expiration(expiration, recently_down_window_s(*routed.routing), now_unix_s()));
}

// A write of one key. `call(expiration)` runs the real *_by_key function
// with the expiration, capped on a substitute for the commands that store an
// item (delete's time argument is not an expiration: memcached refuses it).
enum class Expiration { capped, as_given };

template <class Call>
memcached_return_t write_one(memcached_st* memc, const char* hash_key, size_t hash_key_length, const char* key,
                             size_t key_length, time_t expiration, Expiration kind, Call call) noexcept {
    OuterCall outer;
    Routed routed;
    if (!outer.is_outer() || !route_key(memc, hash_key, hash_key_length, routed)) return call(expiration);
    if (all_dead(routed)) return fail_all_dead(memc, *routed.routing);
    memcached_return_t rc;
    {
        ToServer to(memc, routed, routed.decision.target);
        rc = call(kind == Expiration::capped ? capped(routed, expiration) : expiration);
    }
    drop_stale_copy(memc, routed, hash_key, hash_key_length, key, key_length);
    return rc;
}

// An operation that changes nothing elsewhere (touch, exist).
template <class Call>
memcached_return_t route_one(memcached_st* memc, const char* hash_key, size_t hash_key_length, Call call) noexcept {
    OuterCall outer;
    Routed routed;
    if (!outer.is_outer() || !route_key(memc, hash_key, hash_key_length, routed)) return call(routed);
    if (all_dead(routed)) return fail_all_dead(memc, *routed.routing);
    ToServer to(memc, routed, routed.decision.target);
    return call(routed);
}

// After a miss on the target, the key may still be on other_copy_server():
// a hit there is returned and put where it belongs.
char* second_look(memcached_st* memc, const Routed& routed, const char* hash_key, size_t hash_key_length,
                  const char* key, size_t key_length, size_t* value_length, uint32_t* flags,
                  memcached_return_t* error) noexcept {
    const route::Decision& d = routed.decision;
    const int32_t source = other_copy_server(d);
    if (source < 0) return nullptr;
    size_t length = 0;
    uint32_t item_flags = 0;
    memcached_return_t rc;
    char* value;
    {
        ToServer to(memc, routed, source);
        value = real()->get_by_key(memc, hash_key, hash_key_length, key, key_length, &length, &item_flags, &rc);
    }
    if (!value) return nullptr;
    settle_second_look(memc, *routed.routing, routed.key.bytes, routed.key.length, d, hash_key, hash_key_length, key,
                       key_length, value, length, item_flags, "get");
    *error = MEMCACHED_SUCCESS;
    if (value_length) *value_length = length;
    if (flags) *flags = item_flags;
    return value;
}

}  // namespace

}  // namespace mcwatch::shim

using namespace mcwatch::shim;

// --- reads

MCSHIM_EXPORT char* memcached_get_by_key(memcached_st* memc, const char* group_key, size_t group_key_length,
                                         const char* key, size_t key_length, size_t* value_length, uint32_t* flags,
                                         memcached_return_t* error) {
    const Real* r = real();
    memcached_return_t unused;
    if (!error) error = &unused;
    if (!r) {
        *error = MEMCACHED_FAILURE;
        return nullptr;
    }
    auto call = [&] { return r->get_by_key(memc, group_key, group_key_length, key, key_length, value_length, flags, error); };
    // Without a group key libmemcached hashes the key itself.
    const char* hash_key = group_key ? group_key : key;
    const size_t hash_key_length = group_key ? group_key_length : key_length;
    OuterCall outer;
    Routed routed;
    if (!outer.is_outer() || !route_key(memc, hash_key, hash_key_length, routed)) return call();
    if (all_dead(routed)) {
        *error = fail_all_dead(memc, *routed.routing);
        if (value_length) *value_length = 0;
        return nullptr;
    }
    char* value;
    {
        ToServer to(memc, routed, routed.decision.target);
        value = call();
    }
    if (value || *error != MEMCACHED_NOTFOUND) return value;
    char* found = second_look(memc, routed, hash_key, hash_key_length, key, key_length, value_length, flags, error);
    return found ? found : value;
}

MCSHIM_EXPORT char* memcached_get(memcached_st* memc, const char* key, size_t key_length, size_t* value_length,
                                  uint32_t* flags, memcached_return_t* error) {
    return memcached_get_by_key(memc, nullptr, 0, key, key_length, value_length, flags, error);
}

MCSHIM_EXPORT memcached_return_t memcached_exist_by_key(memcached_st* memc, const char* group_key,
                                                        size_t group_key_length, const char* key, size_t key_length) {
    const Real* r = real();
    if (!r) return MEMCACHED_FAILURE;
    return route_one(memc, group_key, group_key_length, [&](const Routed&) {
        return r->exist_by_key(memc, group_key, group_key_length, key, key_length);
    });
}

MCSHIM_EXPORT memcached_return_t memcached_exist(memcached_st* memc, const char* key, size_t key_length) {
    return memcached_exist_by_key(memc, key, key_length, key, key_length);
}

// --- stores: one definition per storage command, in both forms

#define MCSHIM_STORE(name)                                                                                        \
    MCSHIM_EXPORT memcached_return_t memcached_##name##_by_key(                                                   \
        memcached_st* memc, const char* group_key, size_t group_key_length, const char* key, size_t key_length,   \
        const char* value, size_t value_length, time_t expiration, uint32_t flags) {                              \
        const Real* r = real();                                                                                   \
        if (!r) return MEMCACHED_FAILURE;                                                                         \
        return write_one(memc, group_key, group_key_length, key, key_length, expiration, Expiration::capped,      \
                         [&](time_t e) {                                                                          \
            return r->name##_by_key(memc, group_key, group_key_length, key, key_length, value, value_length, e,  \
                                    flags);                                                                       \
        });                                                                                                       \
    }                                                                                                             \
    MCSHIM_EXPORT memcached_return_t memcached_##name(memcached_st* memc, const char* key, size_t key_length,     \
                                                      const char* value, size_t value_length, time_t expiration, \
                                                      uint32_t flags) {                                           \
        return memcached_##name##_by_key(memc, key, key_length, key, key_length, value, value_length, expiration, \
                                         flags);                                                                  \
    }

MCSHIM_STORE(set)
MCSHIM_STORE(add)
MCSHIM_STORE(replace)
MCSHIM_STORE(append)
MCSHIM_STORE(prepend)
#undef MCSHIM_STORE

MCSHIM_EXPORT memcached_return_t memcached_cas_by_key(memcached_st* memc, const char* group_key,
                                                      size_t group_key_length, const char* key, size_t key_length,
                                                      const char* value, size_t value_length, time_t expiration,
                                                      uint32_t flags, uint64_t cas) {
    const Real* r = real();
    if (!r) return MEMCACHED_FAILURE;
    return write_one(memc, group_key, group_key_length, key, key_length, expiration, Expiration::capped, [&](time_t e) {
        return r->cas_by_key(memc, group_key, group_key_length, key, key_length, value, value_length, e, flags, cas);
    });
}

MCSHIM_EXPORT memcached_return_t memcached_cas(memcached_st* memc, const char* key, size_t key_length,
                                               const char* value, size_t value_length, time_t expiration,
                                               uint32_t flags, uint64_t cas) {
    return memcached_cas_by_key(memc, key, key_length, key, key_length, value, value_length, expiration, flags, cas);
}

// --- delete, arithmetic, touch

MCSHIM_EXPORT memcached_return_t memcached_delete_by_key(memcached_st* memc, const char* group_key,
                                                         size_t group_key_length, const char* key, size_t key_length,
                                                         time_t expiration) {
    const Real* r = real();
    if (!r) return MEMCACHED_FAILURE;
    return write_one(memc, group_key, group_key_length, key, key_length, expiration, Expiration::as_given,
                     [&](time_t e) { return r->delete_by_key(memc, group_key, group_key_length, key, key_length, e);
    });
}

MCSHIM_EXPORT memcached_return_t memcached_delete(memcached_st* memc, const char* key, size_t key_length,
                                                  time_t expiration) {
    return memcached_delete_by_key(memc, key, key_length, key, key_length, expiration);
}

// Counters are not read from a fallback (an increment is not a read), but an
// increment on the target makes any copy elsewhere stale like a write does.
#define MCSHIM_ARITHMETIC(name)                                                                                   \
    MCSHIM_EXPORT memcached_return_t memcached_##name##_by_key(memcached_st* memc, const char* group_key,          \
                                                               size_t group_key_length, const char* key,         \
                                                               size_t key_length, uint64_t offset,               \
                                                               uint64_t* value) {                                 \
        const Real* r = real();                                                                                   \
        if (!r) return MEMCACHED_FAILURE;                                                                         \
        return write_one(memc, group_key, group_key_length, key, key_length, 0, Expiration::as_given,            \
                         [&](time_t) {                                                                            \
            return r->name##_by_key(memc, group_key, group_key_length, key, key_length, offset, value);           \
        });                                                                                                       \
    }                                                                                                             \
    MCSHIM_EXPORT memcached_return_t memcached_##name(memcached_st* memc, const char* key, size_t key_length,     \
                                                      uint32_t offset, uint64_t* value) {                         \
        return memcached_##name##_by_key(memc, key, key_length, key, key_length, offset, value);                  \
    }                                                                                                             \
    MCSHIM_EXPORT memcached_return_t memcached_##name##_with_initial_by_key(                                      \
        memcached_st* memc, const char* group_key, size_t group_key_length, const char* key, size_t key_length,   \
        uint64_t offset, uint64_t initial, time_t expiration, uint64_t* value) {                                  \
        const Real* r = real();                                                                                   \
        if (!r) return MEMCACHED_FAILURE;                                                                         \
        return write_one(memc, group_key, group_key_length, key, key_length, expiration, Expiration::capped,      \
                         [&](time_t e) {                                                                          \
            return r->name##_with_initial_by_key(memc, group_key, group_key_length, key, key_length, offset,      \
                                                 initial, e, value);                                              \
        });                                                                                                       \
    }                                                                                                             \
    MCSHIM_EXPORT memcached_return_t memcached_##name##_with_initial(memcached_st* memc, const char* key,          \
                                                                     size_t key_length, uint64_t offset,          \
                                                                     uint64_t initial, time_t expiration,         \
                                                                     uint64_t* value) {                           \
        return memcached_##name##_with_initial_by_key(memc, key, key_length, key, key_length, offset, initial,    \
                                                      expiration, value);                                         \
    }

MCSHIM_ARITHMETIC(increment)
MCSHIM_ARITHMETIC(decrement)
#undef MCSHIM_ARITHMETIC

MCSHIM_EXPORT memcached_return_t memcached_touch_by_key(memcached_st* memc, const char* group_key,
                                                        size_t group_key_length, const char* key, size_t key_length,
                                                        time_t expiration) {
    const Real* r = real();
    if (!r) return MEMCACHED_FAILURE;
    return route_one(memc, group_key, group_key_length, [&](const Routed& routed) {
        const time_t e = routed.routing ? capped(routed, expiration) : expiration;
        return r->touch_by_key(memc, group_key, group_key_length, key, key_length, e);
    });
}

MCSHIM_EXPORT memcached_return_t memcached_touch(memcached_st* memc, const char* key, size_t key_length,
                                                 time_t expiration) {
    return memcached_touch_by_key(memc, key, key_length, key, key_length, expiration);
}
