// The control commands of mcwatchd (see control_request.hpp for the
// protocol): what each does to the daemon's state, and the reply line.
#include <unistd.h>

#include <fmt/format.h>

#include <algorithm>

#include "libshim/clock.hpp"
#include "daemon/daemon.hpp"
#include "daemon/log.hpp"
#include "daemon/metrics.hpp"
#include "common/version.hpp"

namespace mcwatch {

ServerRecord* Daemon::find_server(const std::string& text) {
    for (ServerRecord& server : servers_)
        if (server.address.text == text) return &server;
    // "localhost:11211" for a configured "127.0.0.1:11211", and the reverse.
    ServerAddress parsed;
    if (std::string why; !ServerAddress::parse_strict(text, parsed, why)) return nullptr;
    const std::string numeric = parsed.numeric();
    if (numeric.empty()) return nullptr;
    for (ServerRecord& server : servers_)
        if (server.resolved == numeric) return &server;
    return nullptr;
}

namespace {

// Why taking `target` out (drain or down) would leave fewer live servers
// than min_live_servers, or "" when it would not. A server that is not live
// now changes nothing: the count is of servers clients can use.
std::string below_min_live(const Config& config, const std::vector<ServerRecord>& servers, const ServerRecord& target,
                           ControlCommand command) {
    const auto is_live = [](const ServerRecord& s) {
        return s.health.view().state == uint32_t(state::ServerState::live);
    };
    if (!is_live(target)) return "";
    const size_t live = size_t(std::count_if(servers.begin(), servers.end(), is_live));
    const size_t remaining = live - 1;
    if (remaining >= config.min_live_servers) return "";
    return fmt::format(
        "refused: {} {} would leave {} of {} servers live, fewer than min_live_servers = {} "
        "(clients would fail); add --force to do it anyway",
        control_command_name(command), target.address.text, remaining, servers.size(), config.min_live_servers);
}

}  // namespace

std::optional<ControlReply> Daemon::on_control(const ControlRequest& request, ControlServer::Ticket ticket) {
    switch (request.command) {
    case ControlCommand::ping:
        return ControlReply::ok(fmt::format("mcwatchd {} pid {}: {} servers, generation {}", kVersion, getpid(),
                                            servers_.size(), writer_.generation()));
    case ControlCommand::reload:
        // After the round under way, never inside it: a reload replaces the prober.
        pending_reloads_.push_back({ticket, "", request.force});
        reload_requested = 1;
        return std::nullopt;
    default: break;
    }

    ServerRecord* server = find_server(request.server);
    if (!server) {
        std::string known;
        for (size_t i = 0; i < servers_.size() && i < 8; ++i)
            known += fmt::format("{}{}", i ? ", " : "", servers_[i].address.text);
        if (servers_.size() > 8) known += ", ...";
        return ControlReply::error(fmt::format("unknown server '{}' (configured: {})", request.server, known));
    }
    const std::string& address = server->address.text;
    ServerHealth& health = server->health;
    const int64_t now = now_ms();
    if ((request.command == ControlCommand::drain || request.command == ControlCommand::down) && !request.force)
        if (std::string why = below_min_live(config_, servers_, *server, request.command); !why.empty())
            return ControlReply::error(why);
    OperatorOutcome outcome;
    if (request.command != ControlCommand::drain && request.command != ControlCommand::flush)
        stop_mover(address, fmt::format("the operator's `{}`", control_command_name(request.command)));
    switch (request.command) {
    case ControlCommand::drain: outcome = health.drain(now); break;
    case ControlCommand::undrain:
        if (health.override_kind() != Override::drain)
            return ControlReply::error(
                fmt::format("{} is not draining (it is {}{})", address, state::state_name(health.view().state),
                            health.override_kind() == Override::down ? ", down by operator: use `mcctl up`" : ""));
        outcome = health.clear_override(now);
        break;
    case ControlCommand::down: outcome = health.force_down(now); break;
    case ControlCommand::up: outcome = health.clear_override(now); break;
    case ControlCommand::flush:
        // Sent with the next probe, pipelined before its `stats`; answered
        // when memcached acknowledged it (or the probe failed).
        health.request_flush();
        pending_flushes_.push_back({ticket, address});
        return std::nullopt;
    default: return ControlReply::error("internal: unhandled command");
    }
    log_health_events(address, outcome.change.events);
    if (metrics_) metrics_->content_changed();
    // Clients see it now, not at the end of the next round.
    if (outcome.change.routing_changed) writer_.write_servers(views(), true);
    if (request.command == ControlCommand::drain && (request.move || config_.drain_move) &&
        health.override_kind() == Override::drain) {
        const auto running = movers_.find(address);
        if (running != movers_.end() && running->second->progress().running())
            return ControlReply::ok(fmt::format("{} {}; its keys are being moved already", address, outcome.said));
        movers_.insert_or_assign(address, DrainMover::start(config_, size_t(server - servers_.data())));
        // Published before the reply: `drain --move --wait` must not read the previous move's outcome.
        writer_.write_servers(views(), false);
        return ControlReply::ok(
            fmt::format("{} {}; moving every key at most {} per second", address, outcome.said, config_.drain_rate));
    }
    return ControlReply::ok(fmt::format("{} {}", address, outcome.said));
}

void Daemon::stop_mover(const std::string& address, const std::string& why) {
    if (const auto it = movers_.find(address); it != movers_.end()) it->second->stop(why);
}

std::string Daemon::render_metrics_now() const {
    MetricsInput input;
    for (const ServerRecord& server : servers_)
        input.servers.push_back({server.address.text, &server.health, hints_ ? hints_->hints(server.address.text) : 0});
    input.invalid_hints = hints_ ? hints_->invalid() : 0;
    input.heartbeat_unix_ms = writer_.heartbeat_unix_ms();
    input.generation = writer_.generation();
    input.rounds = writer_.rounds();
    input.reloads_ok = reloads_ok_;
    input.reloads_refused = reloads_refused_;
    input.start_unix_ms = start_unix_ms_;
    // The drain --move figures as the state file has them.
    const std::vector<state::ServerDynamic> published = views();
    for (size_t i = 0; i < servers_.size(); ++i) input.servers[i].published = &published[i];
    if (fleet_) input.fleet = fleet_status();
    input.now_unix_ms = unix_ms();
    return render_metrics(input);
}

}  // namespace mcwatch
