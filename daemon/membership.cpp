#include "daemon/membership.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>

#include "common/rfc3339.hpp"

namespace mcwatch {

ServerList server_list(const Config& config) {
    ServerList list{{}, config.distribution, config.hash};
    for (const ServerAddress& server : config.servers)
        list.servers.push_back({server.text, server.numeric(), server.weight});
    return list;
}

void mark_avoided(ServerList& list, const std::vector<state::ServerDynamic>& published) {
    for (size_t i = 0; i < list.servers.size() && i < published.size(); ++i) {
        const auto state = state::ServerState(published[i].state);
        list.servers[i].avoided = state == state::ServerState::draining || state == state::ServerState::dead;
    }
}

bool placement_changes(const ServerList& before, const ServerList& after) {
    if (before.distribution != after.distribution || before.hash != after.hash) return true;
    if (before.servers.size() != after.servers.size()) return true;
    for (size_t i = 0; i < before.servers.size(); ++i)
        if (before.servers[i].address != after.servers[i].address ||
            before.servers[i].weight != after.servers[i].weight)
            return true;
    return false;
}

bool membership_counts(const MembershipChange& change, Millis window, int64_t now_unix_ms) {
    return !change.empty() && now_unix_ms < change.changed_unix_ms + window.count();
}

bool lists(const ServerList& list, const ListedServer& server) {
    return std::any_of(list.servers.begin(), list.servers.end(), [&](const ListedServer& other) {
        return other.address == server.address ||
               (!server.resolved.empty() && (other.resolved == server.resolved || other.address == server.resolved));
    });
}

std::vector<std::string> servers_missing_from(const ServerList& a, const ServerList& b) {
    std::vector<std::string> missing;
    for (const ListedServer& server : a.servers)
        if (!lists(b, server)) missing.push_back(server.address);
    return missing;
}

std::string change_in_effect(const MembershipChange& change, const ServerList& current, Millis window,
                             int64_t now_unix_ms) {
    if (!membership_counts(change, window, now_unix_ms)) return "";
    const auto named = [](const std::vector<std::string>& addresses) {
        return addresses.empty() ? std::string("none") : fmt::format("{}", fmt::join(addresses, ", "));
    };
    return fmt::format(
        "the membership change of {} (added {}; removed {}) still counts until {} (recently_down_window): "
        "a second change now would leave the keys it moved that no client has read and its move has not moved "
        "yet where no client looks; reload once its move is done (`mcctl status`) or after that",
        rfc3339_utc(change.changed_unix_ms), named(servers_missing_from(current, change.previous)),
        named(servers_missing_from(change.previous, current)), rfc3339_utc(change.changed_unix_ms + window.count()));
}

std::string move_in_progress(const MembershipChange& change, const state::MembershipMove& move) {
    if (!state::drain_move_running(move.state)) return "";
    return fmt::format(
        "the move after the membership change of {} still runs ({} keys moved, {} left to move): a second change "
        "now would stop it and leave the keys it has not moved where no client looks; reload once it is done "
        "(`mcctl status`)",
        rfc3339_utc(change.changed_unix_ms), move.moved, move.remaining);
}

std::string undrained_removal(const std::vector<RemovedServer>& servers) {
    std::string holding;
    std::string first;
    for (const RemovedServer& server : servers) {
        const auto state = state::ServerState(server.state);
        if (state != state::ServerState::live && state != state::ServerState::draining) continue;
        if (server.curr_items == state::kUnknown || server.curr_items == 0 || server.drained_by_move) continue;
        holding += fmt::format("{}{} ({}, {} items)", holding.empty() ? "" : ", ", server.address,
                               state::state_name(server.state), server.curr_items);
        if (first.empty()) first = server.address;
    }
    if (holding.empty()) return "";
    return fmt::format(
        "the configuration removes {}, whose keys clients still read: move them first with "
        "`mcctl drain --move --wait {}`, then remove the server and reload",
        holding, first);
}

}  // namespace mcwatch
