// The interposed single-key operations: get, the stores, delete, the
// arithmetic, touch, exist, each with its *_by_key form. Each routes the key
// it hashes (the group key of a *_by_key call), sends the request where the
// router says, and adds what docs/DESIGN.md asks around it: expirations capped on
// a substitute, the fallback read of a recently-down server, the move of a
// draining server's value, the delete of copies a write made stale.
#include <libmemcached-1.0/memcached.h>

#include <algorithm>
#include <cstdlib>
#include <ctime>

#include "libshim/preload/handle_error.hpp"
#include "libshim/preload/debug_log.hpp"
#include "libshim/preload/failover.hpp"
#include "libshim/preload/hint.hpp"
#include "libshim/preload/key_routing.hpp"
#include "libshim/preload/meta_connection.hpp"
#include "libshim/preload/to_server.hpp"
#include "libshim/preload/real.hpp"
#include "libshim/preload/replicate.hpp"
#include "libshim/preload/writeback.hpp"
#include "libshim/expiration.hpp"

#include "libshim/export.hpp"

namespace mcwatch::shim {

namespace {

bool all_dead(const Routed& routed) noexcept { return routed.decision.flags & route::kRouteAllDead; }

// The other copies a write makes stale go first: the draining server's
// included, or the drain's move (or a reader's look there) would bring back
// what the write replaced or deleted.
void drop_stale_copy(memcached_st* memc, const Routed& routed, const KeyRef& k) noexcept {
    for (const int32_t server : {other_copy_server(routed.decision), draining_copy(routed.decision)}) {
        if (server < 0) continue;
        ToServer to(memc, routed, server);
        real()->delete_by_key(memc, k.group, k.group_length, k.key, k.key_length, 0);
    }
}

// The expiration every copy of a written key gets: at most the window on a
// substitute, at most replica_max_ttl anywhere.
time_t capped(const Routed& routed, time_t expiration) noexcept {
    const int64_t now = int64_t(time(nullptr));
    int64_t e = expiration;
    if (routed.decision.flags & route::kRouteSubstitute)
        e = route::clamp_expiration(e, recently_down_window_s(*routed.routing), now);
    return time_t(route::bound_expiration(e, replica_max_ttl_s(*routed.routing), now));
}

// A write of one key. `call(expiration)` runs the real *_by_key function
// with the expiration, capped on a substitute for the commands that store an
// item (delete's time argument is not an expiration: memcached refuses it).
enum class Expiration { capped, as_given };

// Whether a write whose connection was lost under it is sent once more to
// the same server before anything else: only a command that, sent twice,
// leaves what it leaves sent once (set, replace, delete). The usual loss is
// a connection kept through the server's restart and found closed by this
// request, which then reached no live process; libmemcached reconnects for
// the second send.
enum class LostResend { once, never };

// Runs `attempt(routed)`; when its connection was lost and `resend` allows,
// runs it once more there first. When its request to the key's server was
// refused or its connection lost under it, and the daemon then publishes
// that server out within the wait (await_verdict), runs it once more on the
// key's new routing: no process reads the key there any more, and the
// server is flushed before it takes keys again, so what the first attempt
// did there, if anything, is never read. A timed-out request keeps its
// error: it has spent the handle's timeout already.
template <class Attempt>
memcached_return_t with_write_failover(memcached_st* memc, const KeyRef& k, const Routed& routed, LostResend resend,
                                       Attempt attempt) noexcept {
    memcached_return_t rc = attempt(routed);
    ConnectionFailure failure = connection_failure(memc, rc);
    if (failure == ConnectionFailure::lost && resend == LostResend::once && routed.decision.target >= 0) {
        if (debug_enabled())
            debug_line("write key=%.*s: connection to %s lost: sent once more",
                       int(std::min<size_t>(k.key_length, 120)), k.key,
                       routed.routing->addresses[size_t(routed.decision.target)].c_str());
        rc = attempt(routed);
        failure = connection_failure(memc, rc);
    }
    if (failure == ConnectionFailure::none) return rc;
    const int32_t failed = routed.decision.target;
    // No target: the shim failed it itself (every candidate dead).
    if (failed < 0) return rc;
    send_hint(*routed.routing, failed);
    if (!may_await_verdict(failure)) return rc;
    Routed after;
    if (!await_verdict(memc, k, failed, after)) {
        if (debug_enabled())
            debug_line("write key=%.*s: %s failed, no verdict in time: %s", int(std::min<size_t>(k.key_length, 120)),
                       k.key, routed.routing->addresses[size_t(failed)].c_str(), real()->strerror(memc, rc));
        return rc;
    }
    if (debug_enabled()) debug_decision("failover", after, k.key, k.key_length);
    return attempt(after);
}

template <class Call>
memcached_return_t write_one(memcached_st* memc, const KeyRef& k, time_t expiration, Expiration kind,
                             const Replica& replica, LostResend resend, Call call) noexcept {
    OuterCall outer;
    Routed routed;
    if (!outer.is_outer() || !route_key(memc, k.group, k.group_length, routed)) return call(expiration);
    return with_write_failover(memc, k, routed, resend, [&](const Routed& r) {
        if (all_dead(r)) return fail_all_dead(memc, *r.routing);
        // The other copy first, then the target: a reader's write-back, which
        // reads that copy under a lease on the target, then either misses it or
        // sees its lease broken by this write (writeback.hpp).
        drop_stale_copy(memc, r, k);
        const time_t e = kind == Expiration::capped ? capped(r, expiration) : expiration;
        memcached_return_t rc;
        {
            ToServer to(memc, r, r.decision.target);
            rc = call(e);
        }
        replicate(memc, r, k, replica, rc, e);
        return rc;
    });
}

// An operation that changes nothing elsewhere (exist).
template <class Call>
memcached_return_t route_one(memcached_st* memc, const char* hash_key, size_t hash_key_length, Call call) noexcept {
    OuterCall outer;
    Routed routed;
    if (!outer.is_outer() || !route_key(memc, hash_key, hash_key_length, routed)) return call(routed);
    if (all_dead(routed)) return fail_all_dead(memc, *routed.routing);
    ToServer to(memc, routed, routed.decision.target);
    return call(routed);
}

// After a miss on the target, the key may still be on other_copy_server(),
// then on draining_copy(): a hit there is returned and put where it belongs.
char* second_look(memcached_st* memc, const Routed& routed, const KeyRef& k, size_t* value_length, uint32_t* flags,
                  memcached_return_t* error) noexcept {
    route::Decision d = routed.decision;
    const int32_t draining = draining_copy(d);
    int32_t source = other_copy_server(d);
    size_t length = 0;
    uint32_t item_flags = 0;
    memcached_return_t rc;
    char* value = nullptr;
    for (int look = 0; look < 2 && !value; ++look) {
        if (look == 1) {
            if (draining < 0) break;
            d = from_draining_copy(d);
            source = draining;
        }
        if (source < 0) continue;
        ToServer to(memc, routed, source);
        value = real()->get_by_key(memc, k.group, k.group_length, k.key, k.key_length, &length, &item_flags, &rc);
    }
    if (!value) return nullptr;
    settle_second_look(memc, *routed.routing, d, k.key, k.key_length, "get", meta::exchange_deadline_ms(memc));
    *error = MEMCACHED_SUCCESS;
    if (value_length) *value_length = length;
    if (flags) *flags = item_flags;
    return value;
}

// An operation on the value a reader is served (increment, decrement,
// touch). Where the target lacks the key but other_copy_server() has it,
// that copy is first put where it belongs, as a read would (added, so a
// concurrent read or operation that moved it first wins), and the operation
// runs again on the target; the other copy is then deleted, so that no read
// goes back to a value the operation did not change. `call(routed,
// may_create)`: the first attempt in a window must not create a missing key
// (an increment with an initial value would restart the counter on P while
// its count lives on S).
template <class Call>
memcached_return_t on_served_copy(memcached_st* memc, const KeyRef& k, const Replica& replica, time_t expiration,
                                  Call call) noexcept {
    OuterCall outer;
    Routed first;
    if (!outer.is_outer() || !route_key(memc, k.group, k.group_length, first)) return call(first, true);
    return with_write_failover(memc, k, first, LostResend::never, [&](const Routed& routed) {
        if (all_dead(routed)) return fail_all_dead(memc, *routed.routing);
        const bool window = other_copy_server(routed.decision) >= 0;
        auto on_target = [&](bool may_create) {
            ToServer to(memc, routed, routed.decision.target);
            return call(routed, may_create);
        };
        memcached_return_t rc = on_target(!window);
        if (!window) {
            replicate(memc, routed, k, replica, rc, capped(routed, expiration));
            return rc;
        }
        if (rc == MEMCACHED_NOTFOUND) {
            size_t length = 0;
            uint32_t flags = 0;
            memcached_return_t found = MEMCACHED_NOTFOUND;
            char* copy = second_look(memc, routed, k, &length, &flags, &found);
            const bool elsewhere = copy != nullptr;
            if (copy) memc->allocators.free(memc, copy, memc->allocators.context);
            // Once more even if nothing moved: a concurrent caller may have moved
            // it. A key that exists elsewhere is never created here: if its move
            // failed (no meta connection, a key meta cannot carry), an initial
            // value would restart the count that lives on the other copy.
            rc = on_target(!elsewhere);
            // Still missing while the other copy holds it: that copy is the only
            // one, and stays.
            if (elsewhere && rc == MEMCACHED_NOTFOUND) return rc;
        }
        // A failure on the target changed nothing: the other copy may be the only one.
        if (memcached_success(rc) || rc == MEMCACHED_NOTFOUND) {
            drop_stale_copy(memc, routed, k);
            replicate(memc, routed, k, replica, rc, capped(routed, expiration));
        }
        return rc;
    });
}

}  // namespace

}  // namespace mcwatch::shim

using namespace mcwatch::shim;

// --- reads

namespace {

// Another reader's write-back in flight (its lease) is never a value: on any
// path, any key, the program gets a miss, never "".
char* lease_as_miss(memcached_st* memc, char* value, size_t* value_length, uint32_t* flags,
                    memcached_return_t* error) noexcept {
    if (*error != MEMCACHED_SUCCESS || !is_lease(*value_length, *flags)) return value;
    // libmemcached 1.1.4 returns an empty value as null with MEMCACHED_SUCCESS.
    if (value) memc->allocators.free(memc, value, memc->allocators.context);
    *value_length = 0;
    *flags = 0;
    *error = MEMCACHED_NOTFOUND;
    return nullptr;
}

char* get_routed(memcached_st* memc, const char* group_key, size_t group_key_length, const char* key, size_t key_length,
                 size_t* value_length, uint32_t* flags, memcached_return_t* error) noexcept {
    const Real* r = real();
    // Ours when the program passes none: a lease is told by length and flags.
    size_t unused_length;
    uint32_t unused_flags;
    if (!value_length) value_length = &unused_length;
    if (!flags) flags = &unused_flags;
    if (!r) {
        *error = MEMCACHED_FAILURE;
        return nullptr;
    }
    auto call = [&] {
        return r->get_by_key(memc, group_key, group_key_length, key, key_length, value_length, flags, error);
    };
    // Without a group key libmemcached hashes the key itself; a get takes an
    // empty one for none (libmemcached 1.1.4 get.cc: `group_key and
    // group_key_length`), where the stores, delete, the arithmetic, touch
    // and exist hash it as given, empty or not.
    const bool grouped = group_key && group_key_length;
    const char* hash_key = grouped ? group_key : key;
    const size_t hash_key_length = grouped ? group_key_length : key_length;
    OuterCall outer;
    Routed routed;
    if (!outer.is_outer()) return call();  // the shim's own read: it judges what it gets
    if (!route_key(memc, hash_key, hash_key_length, routed))
        return lease_as_miss(memc, call(), value_length, flags, error);
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
    if (!value && connection_failure(memc, *error) != ConnectionFailure::none) {
        // Read where the key goes once the daemon publishes this server dead:
        // once, and a miss there is an ordinary miss.
        const int32_t failed = routed.decision.target;
        send_hint(*routed.routing, failed);
        const mcwatch::route::Decision instead = decision_without(routed, failed);
        if (instead.target < 0 || instead.target == failed) return value;
        if (debug_enabled())
            debug_line("get key=%.*s: %s failed (%s), read on %s", int(std::min<size_t>(key_length, 120)), key,
                       routed.routing->addresses[size_t(failed)].c_str(), real()->strerror(memc, *error),
                       routed.routing->addresses[size_t(instead.target)].c_str());
        {
            ToServer to(memc, expected_for(memc, *routed.routing, routed.key.bytes, routed.key.length, instead.native,
                                           instead.target, routed.has_native_hash ? &routed.native_hash : nullptr));
            value = call();
        }
        return lease_as_miss(memc, value, value_length, flags, error);
    }
    // A lease on the target: a miss, and in a window the other copy is asked.
    value = lease_as_miss(memc, value, value_length, flags, error);
    if (value || *error != MEMCACHED_NOTFOUND) return value;
    const KeyRef k{hash_key, hash_key_length, key, key_length};
    char* found = second_look(memc, routed, k, value_length, flags, error);
    return found ? found : value;
}

}  // namespace

MCSHIM_EXPORT char* memcached_get_by_key(memcached_st* memc, const char* group_key, size_t group_key_length,
                                         const char* key, size_t key_length, size_t* value_length, uint32_t* flags,
                                         memcached_return_t* error) {
    const KeptErrno kept;
    memcached_return_t unused;
    if (!error) error = &unused;
    char* value = get_routed(memc, group_key, group_key_length, key, key_length, value_length, flags, error);
    kept(*error);
    return value;
}

MCSHIM_EXPORT char* memcached_get(memcached_st* memc, const char* key, size_t key_length, size_t* value_length,
                                  uint32_t* flags, memcached_return_t* error) {
    return memcached_get_by_key(memc, nullptr, 0, key, key_length, value_length, flags, error);
}

MCSHIM_EXPORT memcached_return_t memcached_exist_by_key(memcached_st* memc, const char* group_key,
                                                        size_t group_key_length, const char* key, size_t key_length) {
    const Real* r = real();
    if (!r) return MEMCACHED_FAILURE;
    const KeptErrno kept;
    return kept(route_one(memc, group_key, group_key_length, [&](const Routed&) {
        return r->exist_by_key(memc, group_key, group_key_length, key, key_length);
    }));
}

MCSHIM_EXPORT memcached_return_t memcached_exist(memcached_st* memc, const char* key, size_t key_length) {
    return memcached_exist_by_key(memc, key, key_length, key, key_length);
}

// --- stores: one definition per storage command, in both forms

// What each storage command asks of a key's further copies.
constexpr Replicate replicate_set = Replicate::set;
constexpr Replicate replicate_add = Replicate::add;
constexpr Replicate replicate_replace = Replicate::set;
constexpr Replicate replicate_append = Replicate::drop;
constexpr Replicate replicate_prepend = Replicate::drop;
// Which of them is sent again on a lost connection (LostResend): add would
// answer NOT_STORED to its own success, append and prepend would apply twice.
constexpr LostResend resend_set = LostResend::once;
constexpr LostResend resend_add = LostResend::never;
constexpr LostResend resend_replace = LostResend::once;
constexpr LostResend resend_append = LostResend::never;
constexpr LostResend resend_prepend = LostResend::never;

#define MCSHIM_STORE(name)                                                                                           \
    MCSHIM_EXPORT memcached_return_t memcached_##name##_by_key(                                                      \
        memcached_st* memc, const char* group_key, size_t group_key_length, const char* key, size_t key_length,      \
        const char* value, size_t value_length, time_t expiration, uint32_t flags) {                                 \
        const Real* r = real();                                                                                      \
        if (!r) return MEMCACHED_FAILURE;                                                                            \
        const KeptErrno kept;                                                                                        \
        return kept(write_one(memc, KeyRef{group_key, group_key_length, key, key_length}, expiration,                \
                              Expiration::capped, Replica{replicate_##name, value, value_length, flags},             \
                              resend_##name, [&](time_t e) {                                                         \
                                  return r->name##_by_key(memc, group_key, group_key_length, key, key_length, value, \
                                                          value_length, e, flags);                                   \
                              }));                                                                                   \
    }                                                                                                                \
    MCSHIM_EXPORT memcached_return_t memcached_##name(memcached_st* memc, const char* key, size_t key_length,        \
                                                      const char* value, size_t value_length, time_t expiration,     \
                                                      uint32_t flags) {                                              \
        return memcached_##name##_by_key(memc, key, key_length, key, key_length, value, value_length, expiration,    \
                                         flags);                                                                     \
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
    const KeptErrno kept;
    return kept(write_one(memc, KeyRef{group_key, group_key_length, key, key_length}, expiration, Expiration::capped,
                          Replica{Replicate::set, value, value_length, flags}, LostResend::never, [&](time_t e) {
                              return r->cas_by_key(memc, group_key, group_key_length, key, key_length, value,
                                                   value_length, e, flags, cas);
                          }));
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
    const KeptErrno kept;
    return kept(write_one(memc, KeyRef{group_key, group_key_length, key, key_length}, expiration, Expiration::as_given,
                          Replica{Replicate::remove}, LostResend::once, [&](time_t e) {
                              return r->delete_by_key(memc, group_key, group_key_length, key, key_length, e);
                          }));
}

MCSHIM_EXPORT memcached_return_t memcached_delete(memcached_st* memc, const char* key, size_t key_length,
                                                  time_t expiration) {
    return memcached_delete_by_key(memc, key, key_length, key, key_length, expiration);
}

// Counters: an increment acts on the count a reader is served (see
// on_served_copy, and man/mcshim.3, "Counters and touch"). With an initial value (binary
// protocol only), the first attempt in a window is a plain increment, so that
// a count kept on S is moved rather than restarted.
#define MCSHIM_ARITHMETIC(name)                                                                                        \
    MCSHIM_EXPORT memcached_return_t memcached_##name##_by_key(memcached_st* memc, const char* group_key,              \
                                                               size_t group_key_length, const char* key,               \
                                                               size_t key_length, uint64_t offset, uint64_t* value) {  \
        const Real* r = real();                                                                                        \
        if (!r) return MEMCACHED_FAILURE;                                                                              \
        const KeptErrno kept;                                                                                          \
        return kept(on_served_copy(memc, KeyRef{group_key, group_key_length, key, key_length},                         \
                                   Replica{Replicate::drop}, 0, [&](const Routed&, bool) {                             \
                                       return r->name##_by_key(memc, group_key, group_key_length, key, key_length,     \
                                                               offset, value);                                         \
                                   }));                                                                                \
    }                                                                                                                  \
    MCSHIM_EXPORT memcached_return_t memcached_##name(memcached_st* memc, const char* key, size_t key_length,          \
                                                      uint32_t offset, uint64_t* value) {                              \
        return memcached_##name##_by_key(memc, key, key_length, key, key_length, offset, value);                       \
    }                                                                                                                  \
    MCSHIM_EXPORT memcached_return_t memcached_##name##_with_initial_by_key(                                           \
        memcached_st* memc, const char* group_key, size_t group_key_length, const char* key, size_t key_length,        \
        uint64_t offset, uint64_t initial, time_t expiration, uint64_t* value) {                                       \
        const Real* r = real();                                                                                        \
        if (!r) return MEMCACHED_FAILURE;                                                                              \
        const KeptErrno kept;                                                                                          \
        return kept(on_served_copy(memc, KeyRef{group_key, group_key_length, key, key_length},                         \
                                   Replica{Replicate::drop}, expiration, [&](const Routed& routed, bool may_create) {  \
                                       if (!may_create && memc->flags.binary_protocol)                                 \
                                           return r->name##_by_key(memc, group_key, group_key_length, key, key_length, \
                                                                   offset, value);                                     \
                                       const time_t e = routed.routing ? capped(routed, expiration) : expiration;      \
                                       return r->name##_with_initial_by_key(memc, group_key, group_key_length, key,    \
                                                                            key_length, offset, initial, e, value);    \
                                   }));                                                                                \
    }                                                                                                                  \
    MCSHIM_EXPORT memcached_return_t memcached_##name##_with_initial(                                                  \
        memcached_st* memc, const char* key, size_t key_length, uint64_t offset, uint64_t initial, time_t expiration,  \
        uint64_t* value) {                                                                                             \
        return memcached_##name##_with_initial_by_key(memc, key, key_length, key, key_length, offset, initial,         \
                                                      expiration, value);                                              \
    }

MCSHIM_ARITHMETIC(increment)
MCSHIM_ARITHMETIC(decrement)
#undef MCSHIM_ARITHMETIC

MCSHIM_EXPORT memcached_return_t memcached_touch_by_key(memcached_st* memc, const char* group_key,
                                                        size_t group_key_length, const char* key, size_t key_length,
                                                        time_t expiration) {
    const Real* r = real();
    if (!r) return MEMCACHED_FAILURE;
    // A touch acts on the copy a reader is served: a copy left elsewhere
    // would be served once the touched one expired.
    const KeptErrno kept;
    return kept(on_served_copy(memc, KeyRef{group_key, group_key_length, key, key_length}, Replica{Replicate::touch},
                               expiration, [&](const Routed& routed, bool) {
                                   const time_t e = routed.routing ? capped(routed, expiration) : expiration;
                                   return r->touch_by_key(memc, group_key, group_key_length, key, key_length, e);
                               }));
}

MCSHIM_EXPORT memcached_return_t memcached_touch(memcached_st* memc, const char* key, size_t key_length,
                                                 time_t expiration) {
    return memcached_touch_by_key(memc, key, key_length, key, key_length, expiration);
}
