// What mcwatchd serves at /metrics, in the Prometheus text exposition format
// (version 0.0.4): the daemon's own counters and, per server, its state and
// the facts its probes read. A pure function of the daemon's memory.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "daemon/health.hpp"

namespace mcwatch {

struct MetricsInput {
    struct Server {
        std::string address;
        const ServerHealth* health = nullptr;
        uint64_t hints = 0;  // well-formed hints received for it
        // What the state file publishes for it, for the drain --move figures
        // (null: none shown).
        const state::ServerDynamic* published = nullptr;
    };
    std::vector<Server> servers;
    int64_t heartbeat_unix_ms = 0;
    uint64_t generation = 0;
    uint64_t rounds = 0;
    uint64_t reloads_ok = 0;
    uint64_t reloads_refused = 0;
    int64_t start_unix_ms = 0;
    uint64_t invalid_hints = 0;  // datagrams on the hint socket that were no hint for a known server
    // [fleet]: what the state file's header says of etcd (none: no [fleet],
    // and no fleet families), and the time its ages are counted to.
    std::optional<state::FleetStatus> fleet;
    // The move after the latest membership change, as the header publishes
    // it (state none: no membership move families).
    state::MembershipMove membership_move;
    int64_t now_unix_ms = 0;
};

inline constexpr const char* kMetricsContentType = "text/plain; version=0.0.4; charset=utf-8";

std::string render_metrics(const MetricsInput& input);

// A label value with \, " and newline escaped, as the format requires.
std::string escape_label_value(std::string_view value);

}  // namespace mcwatch
