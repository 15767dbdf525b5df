// The health state machine of one server: what a probe result, or an
// operator's command, means for its state. Pure logic, no I/O, so that every
// rule of docs/DESIGN.md is unit-tested.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "common/config.hpp"
#include "daemon/prober.hpp"
#include "daemon/rtt_histogram.hpp"
#include "libshim/state_format.hpp"

namespace mcwatch {

struct HealthPolicy {
    uint32_t fail_after = 2;
    uint32_t recover_after = 3;
    int64_t recently_down_window_ms = 3'600'000;
    bool flush_on_rejoin = true;

    static HealthPolicy from(const Config& config);
};

// What happened to a server, worth a log line.
enum class HealthEventKind : uint8_t { up, down, restart, flush, window_end, probe_error_reply, rejoin_blocked };

// The event name of its log line ("up", "down", ...).
const char* health_event_name(HealthEventKind kind);

struct HealthEvent {
    HealthEventKind kind;
    std::string detail;  // the reason, for the operator
};

// What a probe result, the passing of time or an operator's command did.
struct HealthChange {
    std::vector<HealthEvent> events;
    // The published state or a routing flag changed: clients must look again
    // (the state file's generation moves).
    bool routing_changed = false;

    void add(HealthChange other);
};

// An operator's command: the sentence the operator is told, and what it did.
struct OperatorOutcome {
    std::string said;
    HealthChange change;
};

// A state set by the operator (mcctl), which wins over probes until cleared.
enum class Override : uint8_t { none, drain, down };

// What the metrics endpoint shows beyond the state file's facts.
struct HealthHistory {
    std::array<uint64_t, 4> transitions_to{};  // by state::ServerState
    RttHistogram rtt;
    uint64_t error_replies = 0;  // probes answered with an error line
};

class ServerHealth {
public:
    explicit ServerHealth(const HealthPolicy& policy);

    // The next probe must send flush_all first: a server one good probe from
    // rejoining must not serve values from before its outage (or drain).
    bool wants_flush() const;

    // Applies one probe result observed at `now_ms` (unix ms).
    HealthChange on_probe(const ProbeResult& result, int64_t now_ms);

    // Ends the recently-down window once it has passed.
    HealthChange tick(int64_t now_ms);

    // Operator commands. Probes keep running under an override: facts stay
    // fresh, and clearing it lets them decide again.
    //
    // drain: published draining (keys routed as if dead; clients move values
    // off it on a miss). A draining server that stops answering is published
    // dead, and draining again if it answers (flush_all first, as for a
    // rejoin: clients read from a draining server), until the override is
    // cleared.
    OperatorOutcome drain(int64_t now_ms);
    // down: published dead whatever probes say.
    OperatorOutcome force_down(int64_t now_ms);
    // up / undrain: clears the override. A server that answers probes
    // rejoins as after an outage: flush_all first (flush_on_rejoin), then
    // live and recently down for the window. Until that flush it stays as
    // the override left it.
    OperatorOutcome clear_override(int64_t now_ms);

    // mcctl flush: the next probe sends flush_all. take_operator_flush()
    // returns whether one was asked for, and forgets it (the daemon sends it).
    void request_flush() { operator_flush_ = true; }
    bool take_operator_flush();

    // Takes over what a predecessor published for this server (mcwatchd
    // restarted, or a reload re-adds it), so that clients see no change:
    // state, flags, override, pending rejoin, counters. `window_left_ms` is
    // what remained of the recently-down window at the predecessor's last
    // heartbeat, by its own clock: the window resumes from there (capped at
    // the configured length), so no wall-clock step between the two daemons
    // can end it early.
    void carry_over(const state::ServerDynamic& published, int64_t window_left_ms, int64_t now_ms);

    const state::ServerDynamic& view() const { return view_; }
    const HealthHistory& history() const { return history_; }
    Override override_kind() const { return override_; }
    // What probes alone say, whatever the override shows: the fleet view's observation.
    state::ServerState probed_state() const { return probed_; }
    bool rejoin_pending() const { return rejoin_pending_; }
    // The last probe was answered with an error line (ProbeResult::answered_error).
    bool answering_errors() const { return answering_errors_; }
    // Its rejoin waits because it refused flush_all and holds items.
    bool rejoin_blocked() const { return rejoin_blocked_; }
    void set_policy(const HealthPolicy& policy) { policy_ = policy; }

private:
    // Whether a good probe now would publish the server live after an
    // outage or an override: then it needs its flush (with flush_on_rejoin).
    bool rejoin_flush_due() const;
    // The state the operator's override shows, given what probes say.
    state::ServerState overridden_state() const;
    void become(state::ServerState next, int64_t now_ms, HealthChange& change);
    // Published dead (or as the override shows a dead server) for `why`.
    void go_down(const std::string& why, int64_t now_ms, HealthChange& change);
    HealthChange on_error_reply(const ProbeResult& result, int64_t now_ms);
    void rejoin(int64_t now_ms, const std::string& why, HealthChange& change);
    // Publishes override_ in the flags; true when a routing flag changed.
    bool sync_override_flags();
    bool is(state::ServerState s) const { return view_.state == uint32_t(s); }

    HealthPolicy policy_;
    state::ServerDynamic view_;  // what is published
    HealthHistory history_;
    // What probes alone say (fail_after/recover_after hysteresis); the
    // published state is this unless an override says otherwise.
    state::ServerState probed_ = state::ServerState::unknown;
    Override override_ = Override::none;
    // The override was cleared while the server answers: it rejoins with
    // the next (flushed) good probe.
    bool rejoin_pending_ = false;
    bool operator_flush_ = false;
    bool answering_errors_ = false;
    // Of the last good probe: when, and the address that answered it.
    int64_t last_good_unix_ms_ = 0;
    std::string last_good_resolved_;
    bool rejoin_blocked_ = false;
    // While on_probe applies a hint-triggered probe: its transitions say so (kFlagHintTriggered).
    bool applying_hint_ = false;
};

}  // namespace mcwatch
