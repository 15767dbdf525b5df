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
    if (request.command == ControlCommand::undrain && health.override_kind() != Override::drain)
        return ControlReply::error(
            fmt::format("{} is not draining (it is {}{})", address, state::state_name(health.view().state),
                        health.override_kind() == Override::down ? ", down by operator: use `mcctl up`" : ""));
    if (fleet_ && request.command != ControlCommand::flush) {
        // The fleet's command: answered once etcd recorded it (or refused it),
        // with the view read after (apply_fleet_operators). A flush needs no
        // record: the one flush_all below reaches the server every host shares.
        std::optional<OperatorRecord::Op> op;
        if (request.command == ControlCommand::drain) op = OperatorRecord::Op::drain;
        if (request.command == ControlCommand::down) op = OperatorRecord::Op::down;
        fleet_->record_operator({ticket, control_command_name(request.command), address, op,
                                 request.command == ControlCommand::drain && (request.move || config_.drain_move)});
        return std::nullopt;
    }
    OperatorOutcome outcome;
    if (request.command != ControlCommand::drain && request.command != ControlCommand::flush)
        stop_mover(address, fmt::format("the operator's `{}`", control_command_name(request.command)));
    switch (request.command) {
    case ControlCommand::drain: outcome = health.drain(now); break;
    case ControlCommand::undrain: outcome = health.clear_override(now); break;
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
        health.override_kind() == Override::drain)
        return ControlReply::ok(fmt::format("{} {}; {}", address, outcome.said, start_move(*server)));
    return ControlReply::ok(fmt::format("{} {}", address, outcome.said));
}

std::string Daemon::start_move(ServerRecord& server) {
    const auto running = movers_.find(server.address.text);
    if (running != movers_.end() && running->second->progress().running()) return "its keys are being moved already";
    movers_.insert_or_assign(server.address.text, DrainMover::start(config_, size_t(&server - servers_.data())));
    // Published before the reply: `drain --move --wait` must not read the previous move's outcome.
    writer_.write_servers(views(), false);
    return fmt::format("moving every key at most {} per second", config_.drain_rate);
}

OperatorOutcome Daemon::apply_override(ServerRecord& server, std::optional<OperatorRecord::Op> op,
                                       const std::string& why) {
    if (op != OperatorRecord::Op::drain) stop_mover(server.address.text, why);
    const int64_t now = now_ms();
    OperatorOutcome outcome = !op                                ? server.health.clear_override(now)
                              : *op == OperatorRecord::Op::drain ? server.health.drain(now)
                                                                 : server.health.force_down(now);
    log_health_events(server.address.text, outcome.change.events);
    // With [fleet] this host never flushes for a rejoin: the fleet's rejoin
    // record does (Fleet::write_operator), which the health machine's
    // sentence cannot know.
    if (!op && fleet_ && outcome.change.routing_changed)
        outcome.said = config_.flush_on_rejoin
                           ? "override cleared: a rejoin of the fleet, one host sends flush_all, then it is live"
                           : "override cleared (flush_on_rejoin is off: not flushed)";
    return outcome;
}

bool Daemon::apply_fleet_operators(const FleetView& view) {
    bool routing_changed = false;
    // This host's commands first: the view was read after etcd took them.
    for (const FleetOperatorOutcome& outcome : view.operator_outcomes) {
        const FleetOperatorCommand& command = outcome.command;
        ServerRecord* server = find_server(command.server);
        if (!server) {
            fleet_answers_.push_back(
                {command.ticket,
                 ControlReply::error(fmt::format("{}: removed from the configuration by a reload", command.server))});
            continue;
        }
        if (!outcome.error.empty()) {
            fleet_answers_.push_back({command.ticket, ControlReply::error(fmt::format(
                                                          "{} {}: not done on any host, etcd did not record it: {}",
                                                          command.command, command.server, outcome.error))});
            continue;
        }
        const OperatorOutcome applied =
            apply_override(*server, command.op, fmt::format("the operator's `{}`", command.command));
        routing_changed |= applied.change.routing_changed;
        std::string said = applied.said;
        if (command.move && server->health.override_kind() == Override::drain) {
            said += "; " + start_move(*server);
            // Recorded with this host as the mover (Fleet::write_operator): the move of that record.
            if (const auto record = view.operators.find(command.server);
                record != view.operators.end() && record->second.mover == config_.fleet.host)
                fleet_moves_[command.server] = record->second.mover_since_unix_ms;
        }
        fleet_answers_.push_back({command.ticket, ControlReply::ok(fmt::format("{} {}; recorded for the fleet in etcd",
                                                                               command.server, said))});
    }
    if (!view.etcd_answers) return routing_changed;  // the overrides last read stay
    const auto override_of = [](const std::optional<OperatorRecord::Op>& op) {
        return !op ? Override::none : *op == OperatorRecord::Op::drain ? Override::drain : Override::down;
    };
    for (ServerRecord& server : servers_) {
        const auto found = view.operators.find(server.address.text);
        std::optional<OperatorRecord::Op> op;
        if (found != view.operators.end()) op = found->second.op;
        if (server.health.override_kind() == override_of(op)) continue;
        const std::string by = found != view.operators.end() ? found->second.host : "-";
        const OperatorOutcome applied =
            apply_override(server, op, fmt::format("the fleet's `{}`", op ? operator_op_name(*op) : "up"));
        routing_changed |= applied.change.routing_changed;
        log_event("info", "fleet_operator",
                  {{"status", "applied"},
                   {"op", op ? operator_op_name(*op) : "cleared"},
                   {"server", server.address.text},
                   {"by", by},
                   {"detail", applied.said}});
    }
    apply_fleet_moves(view);
    return routing_changed;
}

void Daemon::apply_fleet_moves(const FleetView& view) {
    for (ServerRecord& server : servers_) {
        const std::string& address = server.address.text;
        const auto found = view.operators.find(address);
        const OperatorRecord* record = found != view.operators.end() ? &found->second : nullptr;
        const bool ours = record && record->op == OperatorRecord::Op::drain && record->mover == config_.fleet.host;
        const auto taken = fleet_moves_.find(address);
        if (ours && server.health.override_kind() == Override::drain &&
            (taken == fleet_moves_.end() || taken->second != record->mover_since_unix_ms)) {
            // Taken over from a host whose lease is gone, or named by a
            // record this daemon's predecessor was moving: the keys left move.
            fleet_moves_[address] = record->mover_since_unix_ms;
            log_event("info", "fleet_move",
                      {{"status", "started"},
                       {"server", address},
                       {"host", config_.fleet.host},
                       {"given_on", record->host},
                       {"detail", start_move(server)}});
        } else if (!ours && taken != fleet_moves_.end()) {
            // One mover at a time: another host took it over (this host's
            // lease lapsed), or the record no longer names a mover.
            if (record && !record->mover.empty())
                stop_mover(address, fmt::format("the fleet's move was taken over by {}", record->mover));
            fleet_moves_.erase(taken);
        }
    }
}

void Daemon::end_fleet_move(const std::string& address, const DrainMover& mover) {
    const auto taken = fleet_moves_.find(address);
    if (!fleet_ || taken == fleet_moves_.end()) return;
    const state::DrainMove phase = mover.progress().phase;
    // A move stopped (the daemon's stop, the server's death, a reload) stays
    // named: if this host goes, another takes the keys left over.
    if (phase == state::DrainMove::done || phase == state::DrainMove::failed)
        fleet_->release_move(address, taken->second);
}

void Daemon::answer_fleet_operators() {
    for (const auto& [ticket, reply] : fleet_answers_) control_->reply(ticket, reply);
    fleet_answers_.clear();
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
    input.membership_move = membership_move();
    input.now_unix_ms = unix_ms();
    return render_metrics(input);
}

}  // namespace mcwatch
