// The interposed multi-get: memcached_mget[_by_key] and the
// memcached_fetch_result that drains it (memcached_fetch, fetch_execute,
// mget_execute and memcached_get itself reach these through the PLT).
// PHP does every get this way, so the recently-down fallback and the drain
// move must work here: when the program's fetches reach the end, the keys
// that missed on a recently-down or draining server are asked for once more,
// on their fallback (or the draining server), in a second multi-get whose
// hits are handed back in the same result stream; with replicas, those that
// missed there too and have a draining copy are asked of it in a third.
// Write-backs wait until that stream ends, so that no request interleaves
// with pending replies.
#include <libmemcached-1.0/memcached.h>

#include <string>
#include <unordered_map>
#include <vector>

#include "libshim/preload/failover.hpp"
#include "libshim/preload/handle_error.hpp"
#include "libshim/preload/hint.hpp"
#include "libshim/preload/debug_log.hpp"
#include "libshim/preload/key_routing.hpp"
#include "libshim/preload/meta_connection.hpp"
#include "libshim/preload/to_server.hpp"
#include "libshim/preload/real.hpp"
#include "libshim/preload/writeback.hpp"

#include "libshim/export.hpp"

namespace mcwatch::shim {

namespace {

// A key that may need a second look.
struct Pending {
    std::string key;           // as the program gave it (results carry it so)
    std::string hashed;        // as libmemcached hashes it
    route::Decision decision;  // as routed in the first round
    int32_t source = -1;       // where the next look goes; -1: none (yet)
    bool failover = false;     // its target failed: a hit there is served, not written back
    bool on_draining = false;  // source is draining_copy(decision): a hit there is settled so
    bool seen = false;
};

struct Found {
    size_t pending;  // index
};

// The rounds after the program's own: the second asks each key's
// other_copy_server(), the third its draining_copy() (docs/DESIGN.md,
// "Replicas", "A draining copy").
constexpr unsigned kLaterRounds = 2;

// One thread's multi-get in progress on one handle. A new multi-get, or any
// other query on the handle (query_id moves), ends it.
struct Session {
    memcached_st* memc = nullptr;
    // Shared: the per-thread cache may drop it while the program fetches.
    std::shared_ptr<const HandleRouting> routing;
    uint64_t query_id = 0;
    bool grouped = false;
    std::string group;  // the group key of mget_by_key, as given
    std::vector<Pending> pending;
    std::unordered_map<std::string, size_t> index;    // key -> pending
    unsigned later_rounds = 0;                        // how many of kLaterRounds have started
    memcached_return_t first_ending = MEMCACHED_END;  // how the first round ended
    std::vector<Found> found;

    void reset() noexcept {
        memc = nullptr;
        routing.reset();
        pending.clear();
        index.clear();
        found.clear();
        later_rounds = 0;
        grouped = false;
    }
};

thread_local Session session;
// Scratch reused across calls: the hashed keys and the hook's list.
thread_local std::vector<HashedKey> hashed_keys;
thread_local std::vector<ExpectedKey> expected_keys;

// One entry per distinct key, however many times the program named it: the
// second look asks for it once, so it hands back at most one result for it
// (a program sizes its results by the keys it asked for: pylibmc overran its
// array and aborted), and a key seen once in the first round is settled.
// Every key is kept, even one without a second look yet: its server's
// connection may still be lost while the replies are read (lost_in_stream).
void remember(const char* key, size_t key_length, const char* hashed, size_t hashed_length, route::Decision decision,
              int32_t source = -1) {
    const bool failover = source >= 0;
    if (!failover) source = other_copy_server(decision);
    // No fallback but a draining copy: the second round looks there at once.
    const bool on_draining = !failover && source < 0 && (source = draining_copy(decision)) >= 0;
    if (!session.index.emplace(std::string(key, key_length), session.pending.size()).second) return;
    session.pending.push_back(Pending{std::string(key, key_length), std::string(hashed, hashed_length), decision,
                                      source, failover, on_draining, false});
}

// In-band failover (failover.hpp): whether the multi-get just sent left
// `server` out. A server it sent keys to awaits their replies; one whose
// connection failed (refused, or held back by libmemcached) awaits none.
// (libmemcached 1.1.4's mget answers SUCCESS when one server of several
// failed, so each target is looked at.)
bool left_out(memcached_st* memc, const Real& r, memcached_return_t rc, int32_t server) {
    if (server < 0) return false;
    if (!memcached_success(rc) && rc != MEMCACHED_SOME_ERRORS &&
        connection_failure(memc, rc) == ConnectionFailure::none)
        return false;
    const memcached_instance_st* instance = r.instance_by_position(memc, uint32_t(server));
    return instance && r.server_response_count(instance) == 0 &&
           connection_failure(memc, r.server_error_return(instance)) != ConnectionFailure::none;
}

memcached_return_t grouped_mget(memcached_st* memc, const Real& r, const char* group_key, size_t group_key_length,
                                const char* const* keys, const size_t* key_length, size_t count) {
    Routed routed;
    if (!route_key(memc, group_key, group_key_length, routed))
        return r.mget_by_key(memc, group_key, group_key_length, keys, key_length, count);
    if (routed.decision.flags & route::kRouteAllDead) return fail_all_dead(memc, *routed.routing);
    memcached_return_t rc;
    {
        ToServer to(memc, routed, routed.decision.target);
        rc = r.mget_by_key(memc, group_key, group_key_length, keys, key_length, count);
    }
    int32_t instead = -1;
    if (left_out(memc, r, rc, routed.decision.target)) {
        send_hint(*routed.routing, routed.decision.target);
        const route::Decision d = decision_without(routed, routed.decision.target);
        if (d.target >= 0 && d.target != routed.decision.target) instead = d.target;
    }
    if (memcached_success(rc) || instead >= 0) session.routing = keep_routing(routed.routing);
    if (session.routing) {
        session.grouped = true;
        session.group.assign(group_key, group_key_length);
        for (size_t i = 0; i < count; ++i)
            remember(keys[i], key_length[i], routed.key.bytes, routed.key.length, routed.decision, instead);
        // Every key is asked again where the group goes now: for the program,
        // the multi-get was sent.
        if (instead >= 0) rc = MEMCACHED_SUCCESS;
    }
    return rc;
}

memcached_return_t keyed_mget(memcached_st* memc, const Real& r, const char* const* keys, const size_t* key_length,
                              size_t count, bool again = false) {
    const uint64_t epoch = routing_epoch.load(std::memory_order_acquire);
    const HandleRouting* routing = routing_for(memc);
    if (!routing || count == 0) return r.mget_by_key(memc, nullptr, 0, keys, key_length, count);
    const route::PlacementView view = handle_view(memc, *routing);
    // Sized before use: a HashedKey may point into itself.
    if (hashed_keys.size() < count) hashed_keys = std::vector<HashedKey>(count);
    expected_keys.resize(count);
    std::vector<route::Decision> decisions(count);
    for (size_t i = 0; i < count; ++i) {
        HashedKey& hashed = hashed_keys[i];
        hashed.set(memc, keys[i], key_length[i]);
        expected_keys[i] = ExpectedKey{hashed.bytes, hashed.length, false, 0};
        if (!keys[i] || !hashed.hashable) continue;
        bool has_native_hash = false;
        uint32_t native_hash = 0;
        decisions[i] = decide(memc, *routing, view, hashed.bytes, hashed.length, has_native_hash, native_hash);
        if (decisions[i].flags & route::kRouteAllDead) return fail_all_dead(memc, *routing);
        if (debug_enabled() && decisions[i].flags) {
            Routed shown{routing, view, {}, decisions[i]};
            debug_decision("mget", shown, keys[i], key_length[i]);
        }
        expected_keys[i] = expected_for(memc, *routing, hashed.bytes, hashed.length, decisions[i].native,
                                        decisions[i].target, has_native_hash ? &native_hash : nullptr);
    }
    // A new state file mapped meanwhile (its list may be a managed one): the
    // keys are routed again, once, on the handle's routing for it.
    if (!again && routing_epoch.load(std::memory_order_acquire) != epoch)
        return keyed_mget(memc, r, keys, key_length, count, true);
    memcached_return_t rc;
    {
        HookScope scope(memc, expected_keys.data(), count);
        rc = r.mget_by_key(memc, nullptr, 0, keys, key_length, count);
    }
    // The keys of servers the multi-get left out go, in the second round,
    // where they would go if those servers were published dead.
    std::vector<int32_t> instead(count, -1);
    bool failing_over = false;
    {
        std::vector<int8_t> failed(real()->server_count(memc), -1);  // -1 unknown, 0 no, 1 yes
        Routed key_routing;
        key_routing.routing = routing;
        key_routing.view = view;
        for (size_t i = 0; i < count; ++i) {
            const int32_t target = decisions[i].target;
            if (!keys[i] || !hashed_keys[i].hashable || target < 0 || size_t(target) >= failed.size()) continue;
            if (failed[size_t(target)] < 0) {
                failed[size_t(target)] = left_out(memc, r, rc, target) ? 1 : 0;
                if (failed[size_t(target)]) send_hint(*routing, target);
            }
            if (!failed[size_t(target)]) continue;
            key_routing.key = hashed_keys[i];
            key_routing.key.bytes =
                hashed_keys[i].bytes == hashed_keys[i].buffer ? key_routing.key.buffer : hashed_keys[i].bytes;
            const route::Decision d = decision_without(key_routing, target);
            if (d.target >= 0 && d.target != target) {
                instead[i] = d.target;
                failing_over = true;
            }
        }
    }
    if (memcached_success(rc) || failing_over) session.routing = keep_routing(routing);
    if (session.routing) {
        for (size_t i = 0; i < count; ++i)
            if (keys[i] && hashed_keys[i].hashable)
                remember(keys[i], key_length[i], hashed_keys[i].bytes, hashed_keys[i].length, decisions[i], instead[i]);
        // The keys left out are asked again: for the program, the multi-get was sent.
        if (failing_over) rc = MEMCACHED_SUCCESS;
    }
    return rc;
}

// In-band failover (failover.hpp): the first round ended on a connection
// failure, a server's connection lost after it was sent its keys. Each key of
// such a server not answered yet is read, in the second round, where it goes
// once the daemon publishes that server dead. True: some key fails over.
bool lost_in_stream(memcached_st* memc, const Real& r) {
    std::vector<int8_t> failed(r.server_count(memc), -1);  // -1 unknown, 0 no, 1 yes
    bool any = false;
    Routed key_routing;
    key_routing.routing = session.routing.get();
    key_routing.view = handle_view(memc, *session.routing);
    for (Pending& p : session.pending) {
        const int32_t target = p.decision.target;
        if (p.seen || target < 0 || size_t(target) >= failed.size()) continue;
        if (failed[size_t(target)] < 0) {
            const memcached_instance_st* instance = r.instance_by_position(memc, uint32_t(target));
            failed[size_t(target)] =
                instance && connection_failure(memc, r.server_error_return(instance)) != ConnectionFailure::none;
            if (failed[size_t(target)]) send_hint(*session.routing, target);
        }
        if (!failed[size_t(target)]) continue;
        key_routing.key.bytes = p.hashed.data();
        key_routing.key.length = p.hashed.size();
        key_routing.decision = p.decision;
        const route::Decision d = decision_without(key_routing, target);
        if (d.target < 0 || d.target == target) continue;
        p.source = d.target;
        p.failover = true;
        any = true;
    }
    return any;
}

// After the second round: each key still unseen that may have a copy on a
// draining server is asked there next, as a single get does (single_key.cpp,
// second_look); no other key is asked again. True: some key is.
bool look_on_draining_copies() noexcept {
    bool any = false;
    for (Pending& p : session.pending) {
        if (p.seen) continue;  // settled by how it was found
        p.source = p.failover || p.on_draining ? -1 : draining_copy(p.decision);
        if (p.source < 0) continue;
        p.on_draining = true;
        any = true;
    }
    return any;
}

// Asks the sources of every pending key not seen yet. False: nothing to ask.
bool start_next_round(memcached_st* memc, const Real& r) {
    std::vector<const char*> keys;
    std::vector<size_t> lengths;
    expected_keys.clear();
    for (const Pending& p : session.pending) {
        if (p.seen || p.source < 0) continue;
        keys.push_back(p.key.data());
        lengths.push_back(p.key.size());
        expected_keys.push_back(
            expected_for(memc, *session.routing, p.hashed.data(), p.hashed.size(), p.decision.native, p.source));
    }
    if (keys.empty()) return false;
    ++session.later_rounds;
    memcached_return_t rc;
    if (session.grouped) {
        HookScope scope(memc, expected_keys.data(), 1);  // one group key, one server
        rc = r.mget_by_key(memc, session.group.data(), session.group.size(), keys.data(), lengths.data(), keys.size());
    } else {
        HookScope scope(memc, expected_keys.data(), expected_keys.size());
        rc = r.mget_by_key(memc, nullptr, 0, keys.data(), lengths.data(), keys.size());
    }
    session.query_id = memc->query_id;
    return memcached_success(rc);
}

// True: the result goes to the program. A later round's reply is handed
// back only for a key still unseen, once.
bool note_result(const memcached_result_st* result, const Real& r) {
    const std::string key(r.result_key_value(result), r.result_key_length(result));
    const auto it = session.index.find(key);
    const bool later = session.later_rounds > 0;
    if (it == session.index.end()) return !later;
    Pending& p = session.pending[it->second];
    if (later) {
        if (p.seen) return false;
        session.found.push_back(Found{it->second});
    }
    p.seen = true;
    return true;
}

// Another reader's write-back in flight (its lease) is never a value: for
// the program, a miss, in every round and for every key (a key with another
// copy stays pending, for the second round).
bool hides_lease(const memcached_result_st* result, const Real& r) {
    return is_lease(r.result_length(result), r.result_flags(result));
}

// A reply the program never sees: neither handed back nor counted.
void drop_reply(memcached_result_st* got, const memcached_result_st* result, const Real& r) {
    if (got != result && got->options.is_allocated)
        r.result_free(got);
    else
        --got->count;
}

// The program's fetch outside a session of ours (a list the shim does not
// route, another query): libmemcached's stream, leases taken out. Each pass
// reads one reply: bounded by the replies.
memcached_result_st* fetch_without_leases(memcached_st* memc, const Real& r, memcached_result_st* result,
                                          memcached_return_t* error) {
    for (;;) {
        memcached_result_st* got = r.fetch_result(memc, result, error);
        if (!got || !hides_lease(got, r)) return got;
        drop_reply(got, result, r);
    }
}

// The stream has ended: each second-look hit goes where it belongs, all
// of them within one poll timeout (a hung server holds the program's last
// fetch once, not once per key).
void finish(memcached_st* memc) noexcept {
    const int64_t deadline = meta::exchange_deadline_ms(memc);
    for (const Found& f : session.found) {
        const Pending& p = session.pending[f.pending];
        if (p.failover) continue;  // served from where the key goes while its server is out
        settle_second_look(memc, *session.routing, p.on_draining ? from_draining_copy(p.decision) : p.decision,
                           p.key.data(), p.key.size(), "mget", deadline);
    }
    session.reset();
}

// libmemcached ends a stream with END if the program's result struct
// received any result, else NOT FOUND, then resets that struct, or frees it
// if it was allocated. The program's stream ends after the last round, so
// the end of an earlier one must neither free the struct nor lose its count,
// and the code that ends it is the one libmemcached gives for every round as
// one stream: never a failure of a later look itself, which only adds hits.
memcached_result_st* fetch_in_session(memcached_st* memc, const Real& r, memcached_result_st* result,
                                      memcached_return_t& error) {
    // Each pass reads one reply or one end of a round: bounded by the replies.
    for (;;) {
        // Kept through a round's end that another may follow: libmemcached would free it there.
        const bool kept = result && result->options.is_allocated && session.later_rounds < kLaterRounds;
        const uint64_t count = result ? result->count : 0;
        if (kept) result->options.is_allocated = false;
        memcached_result_st* got = r.fetch_result(memc, result, &error);
        if (kept) result->options.is_allocated = true;
        if (got) {
            // Another reader's lease stays pending, for the second round.
            if (!hides_lease(got, r) && note_result(got, r)) return got;
            drop_reply(got, result, r);
            continue;
        }
        const bool ended_normally = error == MEMCACHED_END || error == MEMCACHED_NOTFOUND;
        bool next = false;
        if (session.later_rounds == 0) {
            session.first_ending = error;
            const bool lost = !ended_normally && connection_failure(memc, error) != ConnectionFailure::none &&
                              lost_in_stream(memc, r);
            next = (ended_normally || lost) && start_next_round(memc, r);
        } else if (session.later_rounds < kLaterRounds) {
            // Whatever ended the second round: the draining server is another.
            next = look_on_draining_copies() && start_next_round(memc, r);
        }
        if (next) {
            if (result) result->count = count;
            continue;
        }
        if (kept) r.result_free(result);  // what libmemcached would have done
        if (session.later_rounds > 0 && !ended_normally) error = count > 0 ? MEMCACHED_END : session.first_ending;
        const memcached_return_t ending = error;
        finish(memc);
        error = ending;
        return nullptr;
    }
}

memcached_return_t mget_routed(memcached_st* memc, const char* group_key, size_t group_key_length,
                               const char* const* keys, const size_t* key_length, size_t number_of_keys) noexcept {
    const Real* r = real();
    if (!r) return MEMCACHED_FAILURE;
    OuterCall outer;
    if (!outer.is_outer() || !memc || !keys || !key_length)
        return r->mget_by_key(memc, group_key, group_key_length, keys, key_length, number_of_keys);
    session.reset();
    memcached_return_t rc;
    try {
        // An empty group key is none: libmemcached hashes each key then.
        rc = group_key && group_key_length
                 ? grouped_mget(memc, *r, group_key, group_key_length, keys, key_length, number_of_keys)
                 : keyed_mget(memc, *r, keys, key_length, number_of_keys);
    } catch (...) {
        // Out of memory before the request went out: plain libmemcached.
        session.reset();
        return r->mget_by_key(memc, group_key, group_key_length, keys, key_length, number_of_keys);
    }
    if (session.pending.empty())
        session.reset();
    else {
        session.memc = memc;
        session.query_id = memc->query_id;
    }
    return rc;
}

memcached_result_st* fetch_routed(memcached_st* memc, memcached_result_st* result, memcached_return_t* error) noexcept {
    const Real* r = real();
    if (!r) {
        *error = MEMCACHED_FAILURE;
        return nullptr;
    }
    OuterCall outer;
    if (!outer.is_outer()) return r->fetch_result(memc, result, error);  // the shim's own: it judges
    if (!memc || session.memc != memc) return fetch_without_leases(memc, *r, result, error);
    if (memc->query_id != session.query_id) {
        session.reset();  // the program started another query: this one is over
        return fetch_without_leases(memc, *r, result, error);
    }
    try {
        return fetch_in_session(memc, *r, result, *error);
    } catch (...) {
        session.reset();  // out of memory: the stream ends here, and says so
        *error = MEMCACHED_MEMORY_ALLOCATION_FAILURE;
    }
    return nullptr;
}

}  // namespace

}  // namespace mcwatch::shim

using namespace mcwatch::shim;

MCSHIM_EXPORT memcached_return_t memcached_mget_by_key(memcached_st* memc, const char* group_key,
                                                       size_t group_key_length, const char* const* keys,
                                                       const size_t* key_length, size_t number_of_keys) {
    const KeptErrno kept;
    return kept(mget_routed(memc, group_key, group_key_length, keys, key_length, number_of_keys));
}

MCSHIM_EXPORT memcached_return_t memcached_mget(memcached_st* memc, const char* const* keys, const size_t* key_length,
                                                size_t number_of_keys) {
    return memcached_mget_by_key(memc, nullptr, 0, keys, key_length, number_of_keys);
}

MCSHIM_EXPORT memcached_result_st* memcached_fetch_result(memcached_st* memc, memcached_result_st* result,
                                                          memcached_return_t* error) {
    const KeptErrno kept;
    memcached_return_t unused;
    if (!error) error = &unused;
    memcached_result_st* got = fetch_routed(memc, result, error);
    kept(*error);
    return got;
}
