// mcwatchd's main loop: probe every server each interval, run each result
// through its health state machine, publish the state file, log transitions;
// between and during rounds, serve the control socket and the metrics
// endpoint from the same thread.
#pragma once

#include <csignal>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "config.hpp"
#include "control_server.hpp"
#include "event_loop.hpp"
#include "health.hpp"
#include "metrics_server.hpp"
#include "prober.hpp"
#include "state_writer.hpp"

namespace mcwatch {

class Daemon {
public:
    explicit Daemon(Config config);
    ~Daemon();

    // Takes the lock, opens the control socket and the metrics endpoint,
    // switches to `user`, publishes the first file. "" or a message.
    std::string start();
    // Rounds until a stop is requested. Returns the exit status.
    int run();

    // Set from signal handlers.
    static volatile std::sig_atomic_t stop_requested;
    static volatile std::sig_atomic_t reload_requested;

private:
    struct ReloadOutcome {
        bool ok = false;
        std::string message;
    };
    // A control request answered after the next probe round (flush) or the
    // next reload.
    struct Deferred {
        ControlServer::Ticket ticket;
        std::string server;  // flush: the configured address
    };

    void round();
    ReloadOutcome reload();
    // Serves the control socket and metrics endpoint for up to timeout_ms.
    void serve(int timeout_ms);
    std::vector<state::ServerDynamic> views() const;
    void log_health_events(const std::string& server, const std::vector<HealthEvent>& events) const;
    std::unique_ptr<Prober> make_prober(const Config& config);
    std::unique_ptr<MetricsServer> open_metrics(const Config& config, std::string& error);

    // daemon_control.cpp: the control commands.
    std::optional<std::string> on_control(const ControlRequest& request, ControlServer::Ticket ticket);
    std::optional<size_t> find_server(const std::string& text) const;
    std::string render_metrics_now() const;

    Config config_;
    EventLoop loop_;
    StateWriter writer_;
    std::unique_ptr<Prober> prober_;
    std::vector<ServerHealth> health_;
    std::vector<std::string> resolved_;  // numeric address of each server, "" if none
    std::unique_ptr<ControlServer> control_;
    std::unique_ptr<MetricsServer> metrics_;
    std::vector<Deferred> pending_flushes_;
    std::vector<Deferred> pending_reloads_;
    uint64_t reloads_ok_ = 0;
    uint64_t reloads_refused_ = 0;
    int64_t start_unix_ms_ = 0;
};

}  // namespace mcwatch
