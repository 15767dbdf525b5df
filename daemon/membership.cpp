#include "daemon/membership.hpp"

#include <algorithm>

namespace mcwatch {

ServerList server_list(const Config& config, const std::vector<std::string>& resolved) {
    ServerList list{{}, config.distribution, config.hash};
    for (size_t i = 0; i < config.servers.size(); ++i)
        list.servers.push_back(
            {config.servers[i].text, i < resolved.size() ? resolved[i] : std::string(), config.servers[i].weight});
    return list;
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

std::vector<std::string> servers_missing_from(const ServerList& a, const ServerList& b) {
    std::vector<std::string> missing;
    for (const ListedServer& server : a.servers) {
        const bool found = std::any_of(b.servers.begin(), b.servers.end(), [&](const ListedServer& other) {
            return other.address == server.address || (!server.resolved.empty() && (other.resolved == server.resolved ||
                                                                                    other.address == server.resolved));
        });
        if (!found) missing.push_back(server.address);
    }
    return missing;
}

}  // namespace mcwatch
