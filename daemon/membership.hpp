// Membership changes (docs/DESIGN.md, "Membership changes"): which server
// list counts as the one before the latest change, for how long, and what a
// change added and removed. Pure functions of lists and times: the daemon
// decides when to call them, the state writer publishes the result.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/config.hpp"
#include "libshim/state_format.hpp"

namespace mcwatch {

// One server of a list as the state file holds it.
struct ListedServer {
    std::string address;   // as configured
    std::string resolved;  // numeric form, "" if none
    uint32_t weight = 1;
    // Published draining or dead at the change (state::kPreviousAvoided):
    // its keys were on their substitutes. Placement ignores it otherwise.
    bool avoided = false;
    bool operator==(const ListedServer&) const = default;
};

// A server list and how keys are placed on it.
struct ServerList {
    std::vector<ListedServer> servers;
    state::Distribution distribution = state::Distribution::ketama;
    state::Hash hash = state::Hash::md5;
};

// The list in effect before the latest membership change, and when that
// change was published. `previous.servers` empty: no change to publish.
struct MembershipChange {
    ServerList previous;
    int64_t changed_unix_ms = 0;
    bool empty() const { return previous.servers.empty(); }
};

// `config`'s list, each server with its numeric form.
ServerList server_list(const Config& config);

// Marks the servers of `list` that `published` (the same servers, in order,
// as the state file shows them) has draining or dead: a list about to become
// the previous one records where its keys were.
void mark_avoided(ServerList& list, const std::vector<state::ServerDynamic>& published);

// Whether going from `before` to `after` moves keys: a server added,
// removed, moved in the order or reweighted, or another distribution or hash.
bool placement_changes(const ServerList& before, const ServerList& after);

// The change still counts (readers fall back to the previous list) until
// its time plus `window`; after that the daemon stops publishing it.
bool membership_counts(const MembershipChange& change, Millis window, int64_t now_unix_ms);

// Why a change of placement must wait while `change` still counts (its
// window open): a second change would replace the previous list, so keys
// the first moved that nobody read since would be looked for nowhere and
// their old copies would linger as stale values. Names the change (when,
// servers added and removed against `current`) and when its window ends;
// "" when it no longer counts.
std::string change_in_effect(const MembershipChange& change, const ServerList& current, Millis window,
                             int64_t now_unix_ms);

// Why a change of placement must wait, after `change`'s window, while the
// move after it still runs: a second change stops it, and the keys it has
// not moved yet stay where no client looks once the window is over (their
// old copies stale values for a change that brings them back). "" when the
// move is not listing or moving.
std::string move_in_progress(const MembershipChange& change, const state::MembershipMove& move);

// Whether `list` holds `server`: the same address as configured, or the
// same server spelled as its numeric form.
bool lists(const ServerList& list, const ListedServer& server);

// Addresses in `a`'s list that are not in `b`'s (as lists() matches them).
std::vector<std::string> servers_missing_from(const ServerList& a, const ServerList& b);

// A server a reload would remove, as the daemon last saw it.
struct RemovedServer {
    std::string address;
    uint32_t state = 0;            // state::ServerState
    uint64_t curr_items = 0;       // at its last stats sample, state::kUnknown if never
    bool drained_by_move = false;  // draining, and its drain --move ended done
};

// Why removing `servers` would lose keys clients still read, naming each
// server, its items and the documented way; "" when nothing would be lost:
// a dead server (its keys are on substitutes already), one never seen with
// items, one whose drain --move moved every key.
std::string undrained_removal(const std::vector<RemovedServer>& servers);

}  // namespace mcwatch
