#include "daemon/health.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>

#include "common/duration.hpp"

namespace mcwatch {

using state::ServerState;

const char* health_event_name(HealthEventKind kind) {
    switch (kind) {
    case HealthEventKind::up: return "up";
    case HealthEventKind::down: return "down";
    case HealthEventKind::restart: return "restart";
    case HealthEventKind::flush: return "flush";
    case HealthEventKind::window_end: return "window_end";
    case HealthEventKind::probe_error_reply: return "probe_error_reply";
    case HealthEventKind::rejoin_blocked: return "rejoin_blocked";
    }
    return "?";
}

void HealthChange::add(HealthChange other) {
    for (HealthEvent& event : other.events) events.push_back(std::move(event));
    routing_changed |= other.routing_changed;
}

HealthPolicy HealthPolicy::from(const Config& config) {
    // With the fleet view, a rejoin's flush is the fleet's (one host's, once:
    // daemon/fleet.cpp), never this host's alone.
    return {config.fail_after, config.recover_after, config.recently_down_window.count(),
            config.flush_on_rejoin && !config.fleet.enabled()};
}

ServerHealth::ServerHealth(const HealthPolicy& policy) : policy_(policy) {
    view_.state = uint32_t(ServerState::unknown);
    for (uint64_t* fact : {&view_.rtt_us, &view_.uptime_s, &view_.pid, &view_.curr_items, &view_.curr_connections,
                           &view_.get_hits, &view_.get_misses, &view_.evictions})
        *fact = state::kUnknown;
}

bool ServerHealth::rejoin_flush_due() const {
    if (!policy_.flush_on_rejoin) return false;
    if (rejoin_pending_) return probed_ == ServerState::live;
    // Under `down` the server is published dead whatever probes say: its
    // flush comes when the override is cleared. A drained server is read
    // from again once it is draining (clients move its values off it), so
    // one that was cut off is flushed before that, as for any rejoin: its
    // values may predate deletes made meanwhile.
    if (override_ == Override::down) return false;
    return probed_ == ServerState::dead && view_.consecutive_successes + 1 >= policy_.recover_after;
}

bool ServerHealth::wants_flush() const { return rejoin_flush_due(); }

bool ServerHealth::take_operator_flush() {
    const bool asked = operator_flush_;
    operator_flush_ = false;
    return asked;
}

ServerState ServerHealth::overridden_state() const {
    if (override_ == Override::down) return ServerState::dead;
    // A drained server that stopped (the point of draining it) is dead:
    // clients must not keep looking for values on it.
    return probed_ == ServerState::dead ? ServerState::dead : ServerState::draining;
}

void ServerHealth::become(ServerState next, int64_t now_ms, HealthChange& change) {
    if (is(next)) return;
    view_.state = uint32_t(next);
    view_.since_unix_ms = now_ms;
    ++view_.transitions;
    ++history_.transitions_to[size_t(next)];
    view_.flags = applying_hint_ ? view_.flags | state::kFlagHintTriggered : view_.flags & ~state::kFlagHintTriggered;
    if (next != ServerState::live) {
        view_.flags &= ~state::kFlagRecentlyDown;
        view_.recently_down_until_unix_ms = 0;
    }
    change.routing_changed = true;
}

bool ServerHealth::sync_override_flags() {
    uint32_t flags =
        view_.flags & ~(state::kFlagOperatorOverride | state::kFlagOperatorDrain | state::kFlagRejoinPending);
    if (override_ != Override::none) flags |= state::kFlagOperatorOverride;
    if (override_ == Override::drain) flags |= state::kFlagOperatorDrain;
    if (override_ != Override::none && rejoin_pending_) flags |= state::kFlagRejoinPending;
    // The pending rejoin is for a successor daemon, not for routing: the next
    // round's update publishes it.
    const bool routing_changed = ((flags ^ view_.flags) & ~state::kFlagRejoinPending) != 0;
    view_.flags = flags;
    return routing_changed;
}

// Published live after an outage or an override: recently down for the
// window, so that clients find the keys their substitutes took meanwhile.
void ServerHealth::rejoin(int64_t now_ms, const std::string& why, HealthChange& change) {
    override_ = Override::none;
    rejoin_pending_ = false;
    change.routing_changed |= sync_override_flags();
    become(ServerState::live, now_ms, change);
    if (policy_.recently_down_window_ms > 0) {
        view_.flags |= state::kFlagRecentlyDown;
        view_.recently_down_until_unix_ms = now_ms + policy_.recently_down_window_ms;
    }
    change.events.push_back({HealthEventKind::up, why});
}

// A server that answers a probe with one of memcached's error lines is up
// and serving others (at its connection limit, memcached says so to new
// connections only): neither a failure nor a good probe. Nothing is
// published differently; the error is shown as a warning. A server not
// known yet is published live: it answers. A dead one stays dead: without
// its stats and a flush it cannot rejoin.
HealthChange ServerHealth::on_error_reply(const ProbeResult& result, int64_t now_ms) {
    HealthChange change;
    ++history_.error_replies;
    view_.consecutive_failures = 0;
    view_.rtt_us = state::kUnknown;
    std::strncpy(view_.last_error, result.error.c_str(), sizeof view_.last_error - 1);
    if (!answering_errors_) change.events.push_back({HealthEventKind::probe_error_reply, result.error});
    answering_errors_ = true;
    if (probed_ == ServerState::unknown) {
        probed_ = ServerState::live;
        if (override_ == Override::none) {
            become(ServerState::live, now_ms, change);
            change.events.push_back(
                {HealthEventKind::up, "first answer (an error line: it serves, but not this probe)"});
        }
    }
    return change;
}

void ServerHealth::go_down(const std::string& why, int64_t now_ms, HealthChange& change) {
    probed_ = ServerState::dead;
    if (override_ == Override::none) {
        become(ServerState::dead, now_ms, change);
        change.events.push_back({HealthEventKind::down, why});
    } else if (rejoin_pending_) {
        override_ = Override::none;
        rejoin_pending_ = false;
        change.routing_changed |= sync_override_flags();
        become(ServerState::dead, now_ms, change);
        change.events.push_back({HealthEventKind::down, why + " (before its rejoin)"});
    } else {
        become(overridden_state(), now_ms, change);
        change.events.push_back({HealthEventKind::down, fmt::format("{} (operator override: published {})", why,
                                                                    state::state_name(view_.state))});
    }
}

HealthChange ServerHealth::on_probe(const ProbeResult& result, int64_t now_ms) {
    applying_hint_ = result.hint_triggered;
    struct EndOfProbe {
        bool& applying;
        ~EndOfProbe() { applying = false; }
    } end_of_probe{applying_hint_};
    view_.last_probe_unix_ms = now_ms;
    if (!result.ok && result.answered_error) return on_error_reply(result, now_ms);
    answering_errors_ = false;
    HealthChange change;
    const bool flush_due = rejoin_flush_due();

    if (!result.ok) {
        rejoin_blocked_ = false;
        ++view_.probes_failed;
        view_.consecutive_successes = 0;
        ++view_.consecutive_failures;
        view_.rtt_us = state::kUnknown;
        std::strncpy(view_.last_error, result.error.c_str(), sizeof view_.last_error - 1);
        // A hint is evidence: a refused connection on the probe it asked for
        // is certain (nobody listens), a timeout is not, and needs fail_after.
        const bool certain = result.refused && result.hint_triggered;
        if ((view_.consecutive_failures < policy_.fail_after && !certain) || probed_ == ServerState::dead)
            return change;
        go_down(result.error, now_ms, change);
        return change;
    }

    ++view_.probes_ok;
    view_.consecutive_failures = 0;
    ++view_.consecutive_successes;
    if (result.flushed) {
        ++view_.flushes;
        change.events.push_back(
            {HealthEventKind::flush, flush_due ? "flush_all before rejoin" : "flush_all asked by the operator"});
    }

    // A memcached whose pid changed or whose uptime went backwards since the
    // last good probe has restarted, even if no probe ever failed.
    const auto& stats = result.stats;
    const bool had_facts = view_.pid != state::kUnknown && view_.uptime_s != state::kUnknown;
    const bool new_process = had_facts && stats.pid != state::kUnknown && stats.uptime_s != state::kUnknown &&
                             (stats.pid != view_.pid || stats.uptime_s < view_.uptime_s);
    if (new_process) {
        ++view_.restarts;
        view_.last_restart_unix_ms = now_ms;
        change.events.push_back({HealthEventKind::restart, fmt::format("pid {} -> {}, uptime {}s -> {}s", view_.pid,
                                                                       stats.pid, view_.uptime_s, stats.uptime_s)});
    }
    // A new process is either this server restarted (empty: it started
    // after our last good probe, memcached's uptime starting at about 2 s)
    // or another memcached answering for it: a name that now resolves to a
    // standby, or a long-running process. That one holds values that were
    // never ours to serve: while published live it is taken out, and
    // rejoins as after an outage, flushed, after recover_after good probes.
    const bool moved =
        !last_good_resolved_.empty() && !result.resolved.empty() && result.resolved != last_good_resolved_;
    // (A wall clock stepped back counts as no time since.)
    const int64_t since_good_ms = std::max<int64_t>(0, now_ms - last_good_unix_ms_);
    const bool started_since = new_process && int64_t(stats.uptime_s) * 1000 <= since_good_ms + 3000;
    const bool replaced = new_process && (moved || !started_since) && probed_ == ServerState::live;
    last_good_unix_ms_ = now_ms;
    last_good_resolved_ = result.resolved;
    view_.rtt_us = uint64_t(result.rtt.count());
    history_.rtt.observe(result.rtt);
    view_.uptime_s = stats.uptime_s;
    view_.pid = stats.pid;
    view_.curr_items = stats.curr_items;
    view_.curr_connections = stats.curr_connections;
    view_.get_hits = stats.get_hits;
    view_.get_misses = stats.get_misses;
    view_.evictions = stats.evictions;
    std::strncpy(view_.version, stats.version.c_str(), sizeof view_.version - 1);
    view_.last_error[0] = '\0';

    if (replaced) {
        go_down(fmt::format("another memcached answers{} (pid {}, up {}s): rejoins flushed",
                            moved ? " at " + result.resolved : "", stats.pid, stats.uptime_s),
                now_ms, change);
        view_.consecutive_successes = 1;  // this probe: it answers
        return change;
    }

    // A rejoin needs its flush: a good reply without one (flush_on_rejoin
    // was switched on, or the server was undrained, after the round began)
    // counts as good but does not publish the server yet.
    //
    // memcached -F refuses flush_all. A server that holds no items has no
    // value from before its outage to serve, and rejoins without the flush;
    // one that holds items stays out, loudly, until it is empty (restarted):
    // serving its pre-outage values would be silent corruption.
    const bool flush_refused = flush_due && !result.flushed && !result.flush_refused.empty();
    const bool empty = stats.curr_items == 0;
    const bool rejoin_allowed = !flush_due || result.flushed || (flush_refused && empty);
    const bool was_blocked = rejoin_blocked_;
    rejoin_blocked_ = flush_refused && !empty;
    if (rejoin_blocked_) {
        // Short enough for the state file's last_error (mcctl status).
        const std::string why =
            fmt::format("flush_all refused, {} items held: kept out until empty (restart it)", stats.curr_items);
        std::strncpy(view_.last_error, why.c_str(), sizeof view_.last_error - 1);
        if (!was_blocked)
            change.events.push_back(
                {HealthEventKind::rejoin_blocked, fmt::format("{}; {}", result.flush_refused, why)});
    }
    const std::string unflushed =
        flush_refused && empty
            ? fmt::format("; flush_all refused ({}), but it holds no items: not flushed", result.flush_refused)
            : "";
    const ServerState probed_before = probed_;
    if (probed_ == ServerState::unknown) {
        probed_ = ServerState::live;
    } else if (probed_ == ServerState::dead && view_.consecutive_successes >= policy_.recover_after && rejoin_allowed) {
        probed_ = ServerState::live;
    }

    if (override_ == Override::none) {
        if (probed_before == ServerState::unknown && probed_ == ServerState::live) {
            // Nothing was known before: one good probe is enough to say
            // live, and there is no outage to recover from.
            become(ServerState::live, now_ms, change);
            change.events.push_back({HealthEventKind::up, "first good probe"});
        } else if (probed_before == ServerState::dead && probed_ == ServerState::live) {
            rejoin(now_ms, fmt::format("{} good probes{}", view_.consecutive_successes, unflushed), change);
        }
    } else if (rejoin_pending_) {
        if (rejoin_allowed) rejoin(now_ms, "operator override cleared" + unflushed, change);
    } else if (!is(overridden_state())) {
        become(overridden_state(), now_ms, change);
        change.events.push_back({HealthEventKind::up, fmt::format("answers again (operator override: published {})",
                                                                  state::state_name(view_.state))});
    }
    return change;
}

HealthChange ServerHealth::tick(int64_t now_ms) {
    HealthChange change;
    if ((view_.flags & state::kFlagRecentlyDown) && now_ms >= view_.recently_down_until_unix_ms) {
        view_.flags &= ~state::kFlagRecentlyDown;
        view_.recently_down_until_unix_ms = 0;
        change.routing_changed = true;
        change.events.push_back({HealthEventKind::window_end, "recently-down window over"});
    }
    return change;
}

OperatorOutcome ServerHealth::drain(int64_t now_ms) {
    if (override_ == Override::drain && !rejoin_pending_) return {"already draining", {}};
    OperatorOutcome outcome;
    const std::string before = state::state_name(view_.state);
    override_ = Override::drain;
    rejoin_pending_ = false;
    outcome.change.routing_changed = sync_override_flags();
    become(overridden_state(), now_ms, outcome.change);
    const std::string items = view_.curr_items == state::kUnknown ? "unknown" : fmt::format("{}", view_.curr_items);
    outcome.said = is(ServerState::dead) ? "it does not answer, so it stays published dead; draining when it answers"
                                         : fmt::format("draining (was {}); {} items held", before, items);
    return outcome;
}

OperatorOutcome ServerHealth::force_down(int64_t now_ms) {
    if (override_ == Override::down && !rejoin_pending_) return {"already down by operator", {}};
    OperatorOutcome outcome;
    const std::string before = state::state_name(view_.state);
    override_ = Override::down;
    rejoin_pending_ = false;
    outcome.change.routing_changed = sync_override_flags();
    become(ServerState::dead, now_ms, outcome.change);
    outcome.said = fmt::format("down (was {}) until `mcctl up`", before);
    return outcome;
}

void ServerHealth::carry_over(const state::ServerDynamic& published, int64_t window_left_ms, int64_t now_ms) {
    view_ = published;
    const auto published_state = ServerState(published.state);
    if (published.flags & state::kFlagOperatorOverride) {
        override_ = (published.flags & state::kFlagOperatorDrain) ? Override::drain : Override::down;
        rejoin_pending_ = (published.flags & state::kFlagRejoinPending) != 0;
    } else {
        override_ = Override::none;
        rejoin_pending_ = false;
    }
    // What probes said, as far as the published state tells. A server under
    // `mcctl down` may have answered meanwhile: taken as dead, so that
    // clearing the override still costs recover_after good probes and a
    // flush, never a rejoin of a server whose outage was not seen.
    switch (published_state) {
    case ServerState::live:
    case ServerState::draining: probed_ = ServerState::live; break;
    case ServerState::dead: probed_ = ServerState::dead; break;
    case ServerState::unknown: probed_ = ServerState::unknown; break;
    default:  // a value this daemon does not know: trust nothing
        probed_ = ServerState::unknown;
        override_ = Override::none;
        rejoin_pending_ = false;
        view_.state = uint32_t(ServerState::unknown);
        view_.flags = 0;
    }
    if (override_ == Override::down && published_state != ServerState::dead) view_.state = uint32_t(ServerState::dead);
    const bool recently_down = is(ServerState::live) && (view_.flags & state::kFlagRecentlyDown);
    const int64_t left = std::min(window_left_ms, policy_.recently_down_window_ms);
    if (recently_down && left > 0) {
        view_.recently_down_until_unix_ms = now_ms + left;
    } else {
        view_.flags &= ~state::kFlagRecentlyDown;
        view_.recently_down_until_unix_ms = 0;
    }
    sync_override_flags();
}

OperatorOutcome ServerHealth::clear_override(int64_t now_ms) {
    if (override_ == Override::none) return {"no operator override: probes decide", {}};
    if (rejoin_pending_) return {"already rejoining: waiting for a good probe with flush_all", {}};
    OperatorOutcome outcome;
    const std::string window =
        policy_.recently_down_window_ms > 0
            ? fmt::format(" and recently down for {}", format_duration(Millis(policy_.recently_down_window_ms)))
            : "";
    if (probed_ == ServerState::live) {
        if (policy_.flush_on_rejoin) {
            rejoin_pending_ = true;
            outcome.change.routing_changed = sync_override_flags();
            outcome.said = fmt::format("rejoining: the next probe sends flush_all, then it is live{}", window);
            return outcome;
        }
        rejoin(now_ms, "operator override cleared", outcome.change);
        outcome.said = fmt::format("live{} (flush_on_rejoin is off: not flushed)", window);
        return outcome;
    }
    override_ = Override::none;
    outcome.change.routing_changed = sync_override_flags();
    become(probed_, now_ms, outcome.change);
    outcome.said = probed_ == ServerState::dead
                       ? "override cleared; it does not answer: it rejoins, flushed, when it does"
                       : "override cleared; not probed yet: probes decide";
    return outcome;
}

}  // namespace mcwatch
