// mcwatchd's main loop: probe every server each interval, run each result
// through its health state machine, publish the state file, log transitions;
// between and during rounds, serve the control socket and the metrics
// endpoint from the same thread.
#pragma once

#include <csignal>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/config.hpp"
#include "common/result.hpp"
#include "daemon/control_server.hpp"
#include "daemon/drain_mover.hpp"
#include "daemon/event_loop.hpp"
#include "daemon/fleet.hpp"
#include "daemon/health.hpp"
#include "daemon/hint_server.hpp"
#include "daemon/metrics_server.hpp"
#include "daemon/prober.hpp"
#include "daemon/state_writer.hpp"

namespace mcwatch {

// One configured server and what the daemon knows of it. The daemon keeps
// them in the configuration's order, which is the state file's slot order
// and the order of the prober's results.
struct ServerRecord {
    ServerAddress address;  // as configured
    std::string resolved;   // its numeric address, "" if it has none (a name, a unix socket)
    ServerHealth health;
    ProbeResult last_result;  // of the last round
    // The last round sent flush_all because the operator asked (mcctl flush).
    bool operator_flush = false;

    ServerRecord(ServerAddress address, ServerHealth health);
};

class Daemon {
public:
    explicit Daemon(Config config);
    ~Daemon();

    // Takes the lock, opens the control socket and the metrics endpoint,
    // switches to `user`, publishes the first file.
    Result<> start();
    // Rounds until a stop is requested. Returns the exit status.
    int run();

    // Set from signal handlers.
    static volatile std::sig_atomic_t stop_requested;
    static volatile std::sig_atomic_t reload_requested;

private:
    // A control request answered after the next probe round (flush) or the
    // next reload.
    struct Deferred {
        ControlServer::Ticket ticket;
        std::string server;  // flush: the configured address
        bool force = false;  // reload: remove servers that still hold items
    };

    // Unix milliseconds that never jump: the wall clock when the daemon
    // started plus the monotonic time since. Every time the health machines
    // compare (the recently-down windows) is on it, so a step of the wall
    // clock neither ends a window nor stretches one.
    int64_t now_ms() const;
    // States, windows, overrides and counters of the file a predecessor
    // published, for the servers of this configuration it listed.
    void carry_over(const PublishedFile& previous);

    void round();
    // Applies the configuration file again; the value is what the operator is told.
    // `force`: even if it removes a server that still holds items.
    Result<std::string> reload(bool force);
    // Serves the control socket and metrics endpoint for up to timeout_ms.
    void serve(int timeout_ms);
    // Between rounds: serves as above and applies the probes hints asked for.
    void wait_between_rounds(int timeout_ms);
    void apply_hinted_probe(size_t index, const ProbeResult& result);
    std::vector<std::string> server_addresses() const;
    std::vector<state::ServerDynamic> views() const;
    std::vector<std::string> resolved_addresses() const;
    void log_health_events(const std::string& server, const std::vector<HealthEvent>& events) const;
    Result<std::unique_ptr<Prober>> make_prober(const Config& config);
    // The metrics endpoint `config` asks for; nullptr when it asks for none.
    Result<std::unique_ptr<MetricsServer>> open_metrics(const Config& config);

    // daemon_control.cpp: the control commands.
    std::optional<ControlReply> on_control(const ControlRequest& request, ControlServer::Ticket ticket);
    ServerRecord* find_server(const std::string& text);
    std::string render_metrics_now() const;

    Config config_;
    EventLoop loop_;
    StateWriter writer_;
    std::unique_ptr<Prober> prober_;
    std::vector<ServerRecord> servers_;  // of config_.servers, in its order
    // Servers a reload removed, by address, as they were: a reload that adds
    // one back must not forget its outage (bounded by state::kMaxServers).
    std::map<std::string, ServerHealth> departed_;
    // The list before the latest membership change, published with every
    // new file while it counts (empty: none).
    MembershipChange membership_;
    // Logs what a membership change added and removed, and until when the
    // previous list counts.
    void log_membership_change(const ServerList& after, const char* by) const;
    // The servers of this list `next` lacks, as last seen.
    std::vector<RemovedServer> removed_servers(const Config& next) const;
    std::unique_ptr<ControlServer> control_;
    std::unique_ptr<MetricsServer> metrics_;
    std::unique_ptr<HintServer> hints_;
    std::vector<Deferred> pending_flushes_;
    std::vector<Deferred> pending_reloads_;
    uint64_t reloads_ok_ = 0;
    uint64_t reloads_refused_ = 0;
    int64_t start_unix_ms_ = 0;
    uint64_t start_monotonic_ns_ = 0;
    // drain --move, by server address: running, or ended and kept for its
    // progress until the next drain of that server or a reload removing it.
    std::map<std::string, std::unique_ptr<DrainMover>> movers_;
    // Ends the move of `address`, if one runs, saying why.
    void stop_mover(const std::string& address, const std::string& why);

    // membership_move.cpp: the move after the latest membership change
    // (docs/DESIGN.md, "Membership changes"), one mover per source server.
    std::vector<std::unique_ptr<DrainMover>> membership_movers_;
    // What the file says of the move while this daemon has run none: the
    // predecessor's, a move it was running taken as stopped.
    state::MembershipMove membership_move_carried_;
    int64_t membership_move_started_unix_ms_ = 0;
    int64_t membership_move_ended_unix_ms_ = 0;  // 0 while it runs
    bool membership_move_late_logged_ = false;
    // Starts moving, from each server of `previous` this list still has and
    // publishes live, the keys whose server changed. Call once the new file
    // is published (the movers place keys by it).
    void start_membership_move(const ServerList& previous);
    void stop_membership_move(const std::string& why);
    // The move's figures, summed over its sources, as the file publishes them.
    state::MembershipMove membership_move() const;
    bool membership_move_done() const;
    // Each round and between rounds: stops a source's mover when the source
    // is dead or draining, logs the move's end and a move outlasting its
    // window, and hands the figures to the writer. True when the move ended
    // since the last call (to be published now).
    bool watch_membership_move();
    // Starts moving the draining server's keys (drain --move); what the operator is told.
    std::string start_move(ServerRecord& server);
    // Sets (or, with no op, clears) the server's override as an operator's
    // command does, stopping a move it ends for `why`.
    OperatorOutcome apply_override(ServerRecord& server, std::optional<OperatorRecord::Op> op, const std::string& why);
    // [fleet] operator commands (daemon_control.cpp): the outcomes of this
    // host's and the overrides etcd holds, applied from a view; whether
    // routing changed. Their answers wait in fleet_answers_ until the view
    // is published (answer_fleet_operators).
    bool apply_fleet_operators(const FleetView& view);
    // The fleet's drain --move (the ops/ record names the host that moves):
    // started here when it names this host, stopped when it names another.
    void apply_fleet_moves(const FleetView& view);
    // A move of the fleet's ended: done or failed, etcd stops naming this host.
    void end_fleet_move(const std::string& address, const DrainMover& mover);
    // server -> OperatorRecord::mover_since_unix_ms of the fleet move this host took.
    std::map<std::string, int64_t> fleet_moves_;
    void answer_fleet_operators();
    std::vector<std::pair<ControlServer::Ticket, ControlReply>> fleet_answers_;

    // [fleet] (docs/DESIGN.md, "The fleet view"): what this host sees, for
    // the fleet thread; the fleet's verdicts over the servers' own views
    // while the fleet view decides (etcd answered within fallback_after).
    std::vector<Fleet::LocalServer> fleet_observations() const;
    void apply_fleet_verdicts(std::vector<state::ServerDynamic>& views) const;
    bool fleet_decides() const;
    void on_fleet_view();
    // Whether a server's published state differs from the last one written
    // (a verdict moved it): the generation must move too.
    bool states_moved(const std::vector<state::ServerDynamic>& published);
    FleetView fleet_view_;
    std::chrono::steady_clock::time_point fleet_last_answer_{};
    std::chrono::steady_clock::time_point fleet_started_{};
    // The fallback to this host's probes was logged (views() logs it, once).
    mutable bool fleet_fell_back_ = false;
    // Servers this host published dead on its own probes while the fleet
    // did not decide, by address: since when (the dead state's since). They
    // stay dead here, even once they answer, until the fleet thread has
    // taken them over (FleetView::dead_alone_taken): never a rejoin on
    // local evidence alone, so never one without the fleet's flush.
    mutable std::map<std::string, int64_t> fleet_dead_alone_;
    // What the state file's header and the metrics say of etcd.
    state::FleetStatus fleet_status() const;
    bool fleet_etcd_answers_ = false;
    int64_t fleet_etcd_since_unix_ms_ = 0;  // the latest change of fleet_etcd_answers_
    std::string fleet_last_error_;
    std::vector<uint32_t> published_states_;
    // Last member: its thread stops (and its lease is revoked) first.
    std::unique_ptr<Fleet> fleet_;
};

}  // namespace mcwatch
