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

std::optional<size_t> Daemon::find_server(const std::string& text) const {
    for (size_t i = 0; i < config_.servers.size(); ++i)
        if (config_.servers[i].text == text) return i;
    // "localhost:11211" for a configured "127.0.0.1:11211", and the reverse.
    ServerAddress parsed;
    if (std::string why; !ServerAddress::parse_strict(text, parsed, why)) return std::nullopt;
    const std::string numeric = parsed.numeric();
    if (numeric.empty()) return std::nullopt;
    for (size_t i = 0; i < resolved_.size(); ++i)
        if (resolved_[i] == numeric) return i;
    return std::nullopt;
}

namespace {

// Why taking server `index` out (drain or down) would leave fewer live
// servers than min_live_servers, or "" when it would not. A server that is
// not live now changes nothing: the count is of servers clients can use.
std::string below_min_live(const Config& config, const std::vector<ServerHealth>& health, size_t index,
                           ControlCommand command) {
    const auto is_live = [](const ServerHealth& h) { return h.view().state == uint32_t(state::ServerState::live); };
    if (!is_live(health[index])) return "";
    const size_t live = size_t(std::count_if(health.begin(), health.end(), is_live));
    const size_t remaining = live - 1;
    if (remaining >= config.min_live_servers) return "";
    return fmt::format(
        "refused: {} {} would leave {} of {} servers live, fewer than min_live_servers = {} "
        "(clients would fail); add --force to do it anyway",
        control_command_name(command), config.servers[index].text, remaining, config.servers.size(),
        config.min_live_servers);
}

}  // namespace

std::optional<std::string> Daemon::on_control(const ControlRequest& request, ControlServer::Ticket ticket) {
    switch (request.command) {
    case ControlCommand::ping:
        return fmt::format("ok mcwatchd {} pid {}: {} servers, generation {}", kVersion, getpid(),
                           config_.servers.size(), writer_.generation());
    case ControlCommand::reload:
        // After the round under way, never inside it: a reload replaces the prober.
        pending_reloads_.push_back({ticket, ""});
        reload_requested = 1;
        return std::nullopt;
    default: break;
    }

    const std::optional<size_t> index = find_server(request.server);
    if (!index) {
        std::string known;
        for (size_t i = 0; i < config_.servers.size() && i < 8; ++i)
            known += fmt::format("{}{}", i ? ", " : "", config_.servers[i].text);
        if (config_.servers.size() > 8) known += ", ...";
        return fmt::format("error unknown server '{}' (configured: {})", request.server, known);
    }
    const std::string& address = config_.servers[*index].text;
    ServerHealth& health = health_[*index];
    const int64_t now = now_ms();
    if ((request.command == ControlCommand::drain || request.command == ControlCommand::down) && !request.force)
        if (std::string why = below_min_live(config_, health_, *index, request.command); !why.empty())
            return "error " + why;
    std::vector<HealthEvent> events;
    bool routing_changed = false;
    std::string said;
    switch (request.command) {
    case ControlCommand::drain: said = health.drain(now, events, routing_changed); break;
    case ControlCommand::undrain:
        if (health.override_kind() != Override::drain)
            return fmt::format("error {} is not draining (it is {}{})", address, state::state_name(health.view().state),
                               health.override_kind() == Override::down ? ", down by operator: use `mcctl up`" : "");
        said = health.clear_override(now, events, routing_changed);
        break;
    case ControlCommand::down: said = health.force_down(now, events, routing_changed); break;
    case ControlCommand::up: said = health.clear_override(now, events, routing_changed); break;
    case ControlCommand::flush:
        // Sent with the next probe, pipelined before its `stats`; answered
        // when memcached acknowledged it (or the probe failed).
        health.request_flush();
        pending_flushes_.push_back({ticket, address});
        return std::nullopt;
    default: return "error internal: unhandled command";
    }
    log_health_events(address, events);
    if (metrics_) metrics_->content_changed();
    // Clients see it now, not at the end of the next round.
    if (routing_changed) writer_.write_servers(views(), true);
    return fmt::format("ok {} {}", address, said);
}

std::string Daemon::render_metrics_now() const {
    MetricsInput input;
    for (size_t i = 0; i < health_.size(); ++i) input.servers.push_back({config_.servers[i].text, &health_[i]});
    input.heartbeat_unix_ms = writer_.heartbeat_unix_ms();
    input.generation = writer_.generation();
    input.rounds = writer_.rounds();
    input.reloads_ok = reloads_ok_;
    input.reloads_refused = reloads_refused_;
    input.start_unix_ms = start_unix_ms_;
    return render_metrics(input);
}

}  // namespace mcwatch
