// The health state machine of one server: what a probe result means for its
// state. Pure logic, no I/O, so that every rule of DESIGN.md is unit-tested.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "config.hpp"
#include "prober.hpp"
#include "state_format.hpp"

namespace mcwatch {

struct HealthPolicy {
    uint32_t fail_after = 2;
    uint32_t recover_after = 3;
    int64_t recently_down_window_ms = 3'600'000;
    bool flush_on_rejoin = true;

    static HealthPolicy from(const Config& config);
};

// Something worth a log line. `what` is the event name of the log
// (up, down, restart, recovered_window_end), `detail` the reason.
struct HealthEvent {
    std::string what;
    std::string detail;
};

class ServerHealth {
public:
    explicit ServerHealth(const HealthPolicy& policy);

    // The next probe must send flush_all first: a dead server is one good
    // probe from rejoining, and must not serve values from before the outage.
    bool wants_flush() const;

    // Applies one probe result observed at `now_ms` (unix ms). Returns what
    // happened; `routing_changed` is set when state or flags changed.
    std::vector<HealthEvent> on_probe(const ProbeResult& result, int64_t now_ms, bool& routing_changed);

    // Ends the recently-down window once it has passed.
    std::vector<HealthEvent> tick(int64_t now_ms, bool& routing_changed);

    const state::ServerDynamic& view() const { return view_; }
    void set_policy(const HealthPolicy& policy) { policy_ = policy; }

private:
    void become(state::ServerState next, int64_t now_ms);
    bool is(state::ServerState s) const { return view_.state == uint32_t(s); }

    HealthPolicy policy_;
    state::ServerDynamic view_;
};

}  // namespace mcwatch
