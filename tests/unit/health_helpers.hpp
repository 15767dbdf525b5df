// What the health unit tests feed a ServerHealth and read back from it, for
// test_health.cpp (probes) and test_health_override.cpp (operator commands).
#pragma once

#include <doctest/doctest.h>

#include <initializer_list>
#include <string>

#include "daemon/health.hpp"

namespace mcwatch::health_test {

using state::ServerState;

// A good probe's reply.
struct Good {
    uint64_t pid = 100;
    uint64_t uptime_s = 10;
    uint64_t items = 7;
    bool flushed = false;  // flush_all was sent first and acknowledged
};

inline ProbeResult good(const Good& reply = {}) {
    ProbeResult r;
    r.ok = true;
    r.flushed = reply.flushed;
    r.rtt = std::chrono::microseconds(250);
    r.stats.pid = reply.pid;
    r.stats.uptime_s = reply.uptime_s;
    r.stats.curr_items = reply.items;
    r.stats.version = "1.6.18";
    return r;
}

inline ProbeResult flushed() { return good({.flushed = true}); }

inline ProbeResult bad(const char* why = "connection refused") {
    ProbeResult r;
    r.refused = true;
    r.error = why;
    return r;
}

inline ProbeResult error_reply(const char* line = "error reply: \"ERROR Too many open connections\"") {
    ProbeResult r;
    r.answered_error = true;
    r.error = line;
    return r;
}

inline HealthPolicy policy(uint32_t fail_after = 2, uint32_t recover_after = 3, bool flush = true) {
    return {fail_after, recover_after, 60'000, flush};
}

inline ServerState state_of(const ServerHealth& h) { return ServerState(h.view().state); }
inline bool flag(const ServerHealth& h, uint32_t bit) { return (h.view().flags & bit) != 0; }

// The events' names, each followed by a space: "flush up ".
inline std::string names(const std::vector<HealthEvent>& events) {
    std::string out;
    for (const HealthEvent& e : events) out += std::string(health_event_name(e.kind)) + " ";
    return out;
}

// Feeds results in order at one time, returns the events' names.
inline std::string feed(ServerHealth& h, std::initializer_list<ProbeResult> results, int64_t now = 1000) {
    std::string out;
    for (const ProbeResult& r : results) out += names(h.on_probe(r, now).events);
    return out;
}

// An operator's command, as the tests read it.
struct Command {
    std::string said;
    bool changed = false;
    std::string events;
};

inline Command run(ServerHealth& h, OperatorOutcome (ServerHealth::*command)(int64_t), int64_t now = 2000) {
    const OperatorOutcome outcome = (h.*command)(now);
    return {outcome.said, outcome.change.routing_changed, names(outcome.change.events)};
}

// Probed once: live, holding `items`.
inline ServerHealth live_server(const HealthPolicy& p = policy(), uint64_t items = 42) {
    ServerHealth h(p);
    feed(h, {good({.items = items})});
    REQUIRE(state_of(h) == ServerState::live);
    return h;
}

}  // namespace mcwatch::health_test
