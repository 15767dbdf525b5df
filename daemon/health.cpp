#include "health.hpp"

#include <fmt/format.h>

#include <cstring>

namespace mcwatch {

using state::ServerState;

HealthPolicy HealthPolicy::from(const Config& config) {
    return {config.fail_after, config.recover_after, config.recently_down_window.count(),
            config.flush_on_rejoin};
}

ServerHealth::ServerHealth(const HealthPolicy& policy) : policy_(policy) {
    view_.state = uint32_t(ServerState::unknown);
    for (uint64_t* fact : {&view_.rtt_us, &view_.uptime_s, &view_.pid, &view_.curr_items,
                           &view_.curr_connections, &view_.get_hits, &view_.get_misses, &view_.evictions})
        *fact = state::kUnknown;
}

bool ServerHealth::wants_flush() const {
    return policy_.flush_on_rejoin && is(ServerState::dead) &&
           view_.consecutive_successes + 1 >= policy_.recover_after;
}

void ServerHealth::become(ServerState next, int64_t now_ms) {
    view_.state = uint32_t(next);
    view_.since_unix_ms = now_ms;
    ++view_.transitions;
}

std::vector<HealthEvent> ServerHealth::on_probe(const ProbeResult& result, int64_t now_ms,
                                                bool& routing_changed) {
    std::vector<HealthEvent> events;
    view_.last_probe_unix_ms = now_ms;
    // A rejoin needs its flush: a good reply without one (flush_on_rejoin was
    // switched on meanwhile) is not yet enough.
    const bool ok = result.ok && (!wants_flush() || result.flushed);

    if (!ok) {
        ++view_.probes_failed;
        view_.consecutive_successes = 0;
        ++view_.consecutive_failures;
        view_.rtt_us = state::kUnknown;
        std::strncpy(view_.last_error, result.error.c_str(), sizeof view_.last_error - 1);
        const bool enough = view_.consecutive_failures >= policy_.fail_after;
        if (enough && (is(ServerState::live) || is(ServerState::unknown))) {
            become(ServerState::dead, now_ms);
            view_.flags &= ~state::kFlagRecentlyDown;
            view_.recently_down_until_unix_ms = 0;
            routing_changed = true;
            events.push_back({"down", result.error});
        }
        return events;
    }

    ++view_.probes_ok;
    view_.consecutive_failures = 0;
    ++view_.consecutive_successes;
    if (result.flushed) {
        ++view_.flushes;
        events.push_back({"flush", "flush_all before rejoin"});
    }

    // A memcached whose pid changed or whose uptime went backwards since the
    // last good probe has restarted, even if no probe ever failed.
    const auto& stats = result.stats;
    const bool had_facts = view_.pid != state::kUnknown && view_.uptime_s != state::kUnknown;
    if (had_facts && stats.pid != state::kUnknown && stats.uptime_s != state::kUnknown &&
        (stats.pid != view_.pid || stats.uptime_s < view_.uptime_s)) {
        ++view_.restarts;
        view_.last_restart_unix_ms = now_ms;
        events.push_back({"restart", fmt::format("pid {} -> {}, uptime {}s -> {}s", view_.pid, stats.pid,
                                                 view_.uptime_s, stats.uptime_s)});
    }
    view_.rtt_us = uint64_t(result.rtt.count());
    view_.uptime_s = stats.uptime_s;
    view_.pid = stats.pid;
    view_.curr_items = stats.curr_items;
    view_.curr_connections = stats.curr_connections;
    view_.get_hits = stats.get_hits;
    view_.get_misses = stats.get_misses;
    view_.evictions = stats.evictions;
    std::strncpy(view_.version, stats.version.c_str(), sizeof view_.version - 1);
    view_.last_error[0] = '\0';

    if (is(ServerState::unknown)) {
        // Nothing was known before: one good probe is enough to say live,
        // and there is no outage to recover from.
        become(ServerState::live, now_ms);
        routing_changed = true;
        events.push_back({"up", "first good probe"});
    } else if (is(ServerState::dead) && view_.consecutive_successes >= policy_.recover_after) {
        become(ServerState::live, now_ms);
        if (policy_.recently_down_window_ms > 0) {
            view_.flags |= state::kFlagRecentlyDown;
            view_.recently_down_until_unix_ms = now_ms + policy_.recently_down_window_ms;
        }
        routing_changed = true;
        events.push_back({"up", fmt::format("{} good probes", view_.consecutive_successes)});
    }
    return events;
}

std::vector<HealthEvent> ServerHealth::tick(int64_t now_ms, bool& routing_changed) {
    std::vector<HealthEvent> events;
    if ((view_.flags & state::kFlagRecentlyDown) && now_ms >= view_.recently_down_until_unix_ms) {
        view_.flags &= ~state::kFlagRecentlyDown;
        view_.recently_down_until_unix_ms = 0;
        routing_changed = true;
        events.push_back({"window_end", "recently-down window over"});
    }
    return events;
}

}  // namespace mcwatch
