#include "libshim/preload/replicate.hpp"

#include <algorithm>
#include <string>

#include "libshim/defaults.hpp"
#include "libshim/preload/debug_log.hpp"
#include "libshim/preload/hint.hpp"
#include "libshim/preload/meta_connection.hpp"

namespace mcwatch::shim {

namespace {

enum class Action { none, store, add, touch, remove };

// What a further copy gets, given the first copy's answer. Whatever else
// the first copy answered (a refusal, an error, a lost connection: memcached
// itself drops a key whose set it refuses) the further copies are deleted:
// a copy never keeps a value the first may not hold.
Action action_for(Replicate what, memcached_return_t rc, int64_t expiration) noexcept {
    const bool ok = memcached_success(rc);
    switch (what) {
    case Replicate::set:
        if (ok) return expiration < 0 ? Action::remove : Action::store;
        return rc == MEMCACHED_DATA_EXISTS ? Action::none : Action::remove;  // cas: a newer value won
    case Replicate::add:
        if (ok) return expiration < 0 ? Action::remove : Action::add;
        // NOT STORED: the first copy holds a value the program did not write.
        return rc == MEMCACHED_NOTSTORED || rc == MEMCACHED_DATA_EXISTS ? Action::none : Action::remove;
    case Replicate::touch:
        if (ok) return expiration < 0 ? Action::remove : Action::touch;
        return Action::remove;
    case Replicate::remove:
    case Replicate::drop: return Action::remove;
    }
    return Action::none;
}

const char* action_name(Action a) noexcept {
    switch (a) {
    case Action::store: return "set";
    case Action::add: return "add";
    case Action::touch: return "touch";
    case Action::remove: return "delete";
    case Action::none: break;
    }
    return "none";
}

// The routing decision hashed the key already: its hash is reused, not
// computed twice more (copies_with routes the key and places it again; an
// md5 is most of a replicated set's own instructions). Other bytes (a
// modula substitute's salted rehash) go to the view's hasher.
struct Rehash {
    const Routed* routed;
    route::KeyHasher hasher;
};

uint32_t hash_once(const char* key, size_t length, void* context) noexcept {
    const Rehash& r = *static_cast<const Rehash*>(context);
    const Routed& routed = *r.routed;
    if (routed.has_native_hash && key == routed.key.bytes && length == routed.key.length) return routed.native_hash;
    return r.hasher(key, length);
}

// The wire form of the key, in a buffer kept per thread: after the first
// write no allocation.
thread_local std::string wire;

// One further copy on `server`. False if it could not be brought in line
// (the store failed and so did the delete after it).
bool on_copy(memcached_st* memc, uint32_t server, Action action, const Replica& replica, int64_t expiration,
             int64_t deadline, const char*& outcome) noexcept {
    meta::Connection* c = meta::connection_to(memc, server, deadline);
    if (!c) {
        outcome = "unreachable";
        return false;
    }
    bool done = false;
    switch (action) {
    case Action::store:
    case Action::add:
        // Not waited for: a failure is answered later and deleted then (meta::store_quiet).
        done = meta::store_quiet(*c, wire, replica.value, replica.length, replica.flags, expiration,
                                 action == Action::add);
        break;
    case Action::touch: done = meta::touch(*c, wire, expiration) != meta::Touched::failed; break;
    case Action::remove:
    case Action::none: break;
    }
    if (done) return true;
    // A store refused (too large for that server, out of memory) or a
    // connection lost: the copy must not keep an older value.
    if (action != Action::remove) outcome = "refused, deleted";
    c = meta::connection_to(memc, server, deadline);
    if (c && meta::remove(*c, wire, 0)) return true;
    outcome = "unreachable";
    return false;
}

}  // namespace

uint32_t replica_count(const HandleRouting& routing) noexcept { return replicas_or_default(routing.router->source()); }

void replicate(memcached_st* memc, const Routed& routed, const KeyRef& k, const Replica& replica, memcached_return_t rc,
               int64_t expiration) noexcept {
    const HandleRouting& routing = *routed.routing;
    const uint32_t n = replica_count(routing);
    if (n <= 1) return;
    const Action action = action_for(replica.what, rc, expiration);
    if (action == Action::none) return;
    int32_t copies[route::kMaxCopies];
    Rehash rehash{&routed, routed.view.hasher};
    route::PlacementView view = routed.view;
    view.hasher = route::KeyHasher{hash_once, &rehash};
    const uint32_t found = routing.router->copies_with(view, routed.key.bytes, routed.key.length, n, copies);
    const int32_t target = routed.decision.target;
    bool have_key = false;
    int64_t deadline = 0;
    for (uint32_t i = 0; i < found; ++i) {
        if (copies[i] == target || copies[i] < 0) continue;
        if (!have_key) {
            // A key the meta protocol cannot carry (binary-protocol keys with
            // spaces) keeps one copy: nothing is written elsewhere.
            if (!meta::wire_key(memc, k.key, k.key_length, wire)) return;
            deadline = meta::exchange_deadline_ms(memc);
            have_key = true;
        }
        const char* outcome = action_name(action);
        const bool ok = on_copy(memc, uint32_t(copies[i]), action, replica, expiration, deadline, outcome);
        if (!ok) send_hint(routing, copies[i]);
        if (debug_enabled() && (!ok || outcome != action_name(action)))
            debug_line("replica key=%.*s server=%s action=%s outcome=%s", int(std::min<size_t>(k.key_length, 120)),
                       k.key, routing.addresses[size_t(copies[i])].c_str(), action_name(action), outcome);
    }
}

}  // namespace mcwatch::shim
