#include "daemon/metrics.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <functional>

#include "common/version.hpp"

namespace mcwatch {

using state::kUnknown;
using state::ServerState;

namespace {

// One metric family: its HELP and TYPE lines, then a sample per server
// (a sample function may skip a server whose fact is unknown).
class Writer {
public:
    explicit Writer(const MetricsInput& input) : input_(input) {}

    void family(const char* name, const char* type, const char* help) {
        out_ += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
    }
    void sample(std::string_view name, std::string_view labels, std::string_view value) {
        out_ += fmt::format("{}{}{}{} {}\n", name, labels.empty() ? "" : "{", labels, labels.empty() ? "" : "}", value);
    }
    // A family with one sample per server: `value` returns "" to skip one.
    void per_server(const char* name, const char* type, const char* help,
                    const std::function<std::string(const state::ServerDynamic&)>& value) {
        family(name, type, help);
        for (const MetricsInput::Server& server : input_.servers) {
            const std::string text = value(server.health->view());
            if (!text.empty()) sample(name, server_label(server), text);
        }
    }
    static std::string server_label(const MetricsInput::Server& server) {
        return fmt::format("server=\"{}\"", escape_label_value(server.address));
    }
    std::string take() { return std::move(out_); }

private:
    const MetricsInput& input_;
    std::string out_;
};

std::string number(uint64_t value) { return fmt::format("{}", value); }
std::string fact(uint64_t value) { return value == kUnknown ? "" : number(value); }
std::string seconds(int64_t unix_ms) { return fmt::format("{:.3f}", double(unix_ms) / 1000.0); }

constexpr ServerState kStates[] = {ServerState::unknown, ServerState::live, ServerState::dead, ServerState::draining};
constexpr state::DrainMove kMoveStates[] = {state::DrainMove::listing, state::DrainMove::moving, state::DrainMove::done,
                                            state::DrainMove::failed, state::DrainMove::stopped};

}  // namespace

std::string escape_label_value(std::string_view value) {
    std::string out;
    for (const char c : value) {
        if (c == '\\')
            out += "\\\\";
        else if (c == '"')
            out += "\\\"";
        else if (c == '\n')
            out += "\\n";
        else
            out += c;
    }
    return out;
}

std::string render_metrics(const MetricsInput& input) {
    Writer w(input);
    w.family("mcwatch_build_info", "gauge", "Always 1; the version of mcwatchd.");
    w.sample("mcwatch_build_info", fmt::format("version=\"{}\"", kVersion), "1");
    w.family("mcwatch_start_timestamp_seconds", "gauge", "When mcwatchd started, unix time.");
    w.sample("mcwatch_start_timestamp_seconds", "", seconds(input.start_unix_ms));
    w.family("mcwatch_heartbeat_timestamp_seconds", "gauge",
             "Last heartbeat written to the state file, unix time; clients ignore the file after stale_after.");
    w.sample("mcwatch_heartbeat_timestamp_seconds", "", seconds(input.heartbeat_unix_ms));
    w.family("mcwatch_rounds_total", "counter", "Probe rounds published in the current state file.");
    w.sample("mcwatch_rounds_total", "", number(input.rounds));
    w.family("mcwatch_generation", "gauge", "Generation of the state file: bumped whenever routing changes.");
    w.sample("mcwatch_generation", "", number(input.generation));
    w.family("mcwatch_reloads_total", "counter", "Configuration reloads (SIGHUP, mcctl reload), by result.");
    w.sample("mcwatch_reloads_total", "result=\"ok\"", number(input.reloads_ok));
    w.sample("mcwatch_reloads_total", "result=\"refused\"", number(input.reloads_refused));
    w.family("mcwatch_servers", "gauge", "Servers configured.");
    w.sample("mcwatch_servers", "", number(input.servers.size()));

    w.per_server("mcwatch_server_up", "gauge", "1 if the server is live (it gets its own keys), else 0.",
                 [](const state::ServerDynamic& s) { return s.state == uint32_t(ServerState::live) ? "1" : "0"; });
    w.family("mcwatch_server_state", "gauge", "1 for the server's current state (unknown, live, dead, draining).");
    for (const MetricsInput::Server& server : input.servers)
        for (const ServerState state : kStates)
            w.sample("mcwatch_server_state",
                     fmt::format("{},state=\"{}\"", Writer::server_label(server), state::state_name(uint32_t(state))),
                     server.health->view().state == uint32_t(state) ? "1" : "0");
    w.per_server("mcwatch_server_recently_down", "gauge",
                 "1 while the server is within recently_down_window after an outage.",
                 [](const state::ServerDynamic& s) { return s.flags & state::kFlagRecentlyDown ? "1" : "0"; });
    w.per_server("mcwatch_server_operator_override", "gauge",
                 "1 while an operator's drain or down (mcctl) decides the state instead of probes.",
                 [](const state::ServerDynamic& s) { return s.flags & state::kFlagOperatorOverride ? "1" : "0"; });

    w.family("mcwatch_server_transitions_total", "counter", "State changes of the server, by the state entered.");
    for (const MetricsInput::Server& server : input.servers)
        for (const ServerState state : kStates)
            w.sample("mcwatch_server_transitions_total",
                     fmt::format("{},to=\"{}\"", Writer::server_label(server), state::state_name(uint32_t(state))),
                     number(server.health->history().transitions_to[size_t(state)]));
    w.per_server("mcwatch_server_restarts_total", "counter",
                 "memcached restarts seen (pid changed or uptime went backwards).",
                 [](const state::ServerDynamic& s) { return number(s.restarts); });
    w.per_server("mcwatch_flushes_total", "counter", "flush_all sent and acknowledged (rejoins and mcctl flush).",
                 [](const state::ServerDynamic& s) { return number(s.flushes); });
    w.family("mcwatch_probes_total", "counter", "Probes of the server, by result.");
    for (const MetricsInput::Server& server : input.servers) {
        const std::string label = Writer::server_label(server);
        w.sample("mcwatch_probes_total", label + ",result=\"ok\"", number(server.health->view().probes_ok));
        w.sample("mcwatch_probes_total", label + ",result=\"failed\"", number(server.health->view().probes_failed));
        w.sample("mcwatch_probes_total", label + ",result=\"error_reply\"",
                 number(server.health->history().error_replies));
    }
    w.family("mcwatch_server_probe_error_reply", "gauge",
             "1 while the server answers probes with an error line (e.g. at its connection limit): up, not probed.");
    for (const MetricsInput::Server& server : input.servers)
        w.sample("mcwatch_server_probe_error_reply", Writer::server_label(server),
                 server.health->answering_errors() ? "1" : "0");
    w.family("mcwatch_server_rejoin_blocked", "gauge",
             "1 while the server is kept out after an outage: it refuses flush_all (memcached -F) and holds items.");
    for (const MetricsInput::Server& server : input.servers)
        w.sample("mcwatch_server_rejoin_blocked", Writer::server_label(server),
                 server.health->rejoin_blocked() ? "1" : "0");

    if (input.fleet) {
        const state::FleetStatus& fleet = *input.fleet;
        w.family("mcwatch_fleet_etcd_up", "gauge", "1 if etcd answered the fleet view's latest request, else 0.");
        w.sample("mcwatch_fleet_etcd_up", "", fleet.flags & state::kFleetEtcdAnswers ? "1" : "0");
        w.family("mcwatch_fleet_etcd_change_timestamp_seconds", "gauge",
                 "When etcd last began or stopped answering (mcwatch_fleet_etcd_up's latest change), unix time.");
        w.sample("mcwatch_fleet_etcd_change_timestamp_seconds", "", seconds(fleet.etcd_since_unix_ms));
        w.family("mcwatch_fleet_last_answer_age_seconds", "gauge",
                 "Seconds since etcd last answered; absent before its first answer.");
        if (fleet.last_answer_unix_ms > 0)
            w.sample("mcwatch_fleet_last_answer_age_seconds", "",
                     seconds(std::max<int64_t>(0, input.now_unix_ms - fleet.last_answer_unix_ms)));
        w.family("mcwatch_fleet_fallback", "gauge",
                 "1 while etcd has not answered for longer than fallback_after: this host's own probes decide.");
        w.sample("mcwatch_fleet_fallback", "", fleet.flags & state::kFleetFallback ? "1" : "0");
        w.family("mcwatch_server_unreachable_here", "gauge",
                 "1 while the fleet holds the server live and this host cannot reach it (its clients get errors).");
        for (const MetricsInput::Server& server : input.servers)
            w.sample("mcwatch_server_unreachable_here", Writer::server_label(server),
                     server.published && (server.published->flags & state::kFlagUnreachableHere) ? "1" : "0");
    }

    w.family("mcwatch_hints_total", "counter",
             "Hints from clients (a failed connection to the server): each may trigger one probe per 100ms.");
    for (const MetricsInput::Server& server : input.servers)
        w.sample("mcwatch_hints_total", Writer::server_label(server), number(server.hints));
    w.family("mcwatch_hints_invalid_total", "counter",
             "Datagrams on the hint socket that were not a hint for a configured server: ignored.");
    w.sample("mcwatch_hints_invalid_total", "", number(input.invalid_hints));

    w.family("mcwatch_probe_rtt_seconds", "histogram",
             "Round-trip time of good probes, from the probe's send to its reply's arrival.");
    for (const MetricsInput::Server& server : input.servers) {
        const std::string label = Writer::server_label(server);
        const RttHistogram& rtt = server.health->history().rtt;
        for (size_t i = 0; i < RttHistogram::kBounds.size(); ++i)
            w.sample("mcwatch_probe_rtt_seconds_bucket", fmt::format("{},le=\"{}\"", label, RttHistogram::kBounds[i]),
                     number(rtt.at_or_below(i)));
        w.sample("mcwatch_probe_rtt_seconds_bucket", label + ",le=\"+Inf\"", number(rtt.count()));
        w.sample("mcwatch_probe_rtt_seconds_sum", label, fmt::format("{}", rtt.sum_seconds()));
        w.sample("mcwatch_probe_rtt_seconds_count", label, number(rtt.count()));
    }

    // memcached's own figures, as of the last good probe; a server never
    // probed successfully has none.
    w.per_server("mcwatch_server_items", "gauge", "Items the server holds (curr_items).",
                 [](const state::ServerDynamic& s) { return fact(s.curr_items); });
    w.per_server("mcwatch_server_connections", "gauge", "Open connections (curr_connections).",
                 [](const state::ServerDynamic& s) { return fact(s.curr_connections); });
    w.per_server("mcwatch_server_get_hits_total", "counter", "Get hits (get_hits); resets when memcached restarts.",
                 [](const state::ServerDynamic& s) { return fact(s.get_hits); });
    w.per_server("mcwatch_server_get_misses_total", "counter",
                 "Get misses (get_misses); resets when memcached restarts.",
                 [](const state::ServerDynamic& s) { return fact(s.get_misses); });
    w.per_server("mcwatch_server_evictions_total", "counter", "Evictions (evictions); resets when memcached restarts.",
                 [](const state::ServerDynamic& s) { return fact(s.evictions); });
    w.per_server("mcwatch_server_uptime_seconds", "gauge", "memcached's uptime as of the last good probe.",
                 [](const state::ServerDynamic& s) {
                     return s.state == uint32_t(ServerState::dead) ? std::string() : fact(s.uptime_s);
                 });

    // drain --move, for each server with one (running, or the latest ended):
    // the state file's figures, so that they survive a restart alike.
    const auto moves = [&](const std::function<void(const std::string&, const state::ServerDynamic&)>& sample) {
        for (const MetricsInput::Server& server : input.servers)
            if (server.published && server.published->drain_move != uint32_t(state::DrainMove::none))
                sample(Writer::server_label(server), *server.published);
    };
    w.family("mcwatch_drain_move_keys_total", "counter",
             "Keys of a draining server handled by `mcctl drain --move`, by result (moved, or skipped: vanished, "
             "changed, or written by a client meanwhile).");
    moves([&](const std::string& label, const state::ServerDynamic& s) {
        w.sample("mcwatch_drain_move_keys_total", label + ",result=\"moved\"", number(s.drain_moved));
        w.sample("mcwatch_drain_move_keys_total", label + ",result=\"skipped\"", number(s.drain_skipped));
    });
    w.family("mcwatch_drain_move_remaining", "gauge", "Keys listed by a drain --move and not handled yet.");
    moves([&](const std::string& label, const state::ServerDynamic& s) {
        w.sample("mcwatch_drain_move_remaining", label, number(s.drain_remaining));
    });
    w.family("mcwatch_drain_move_running", "gauge", "1 while a drain --move lists or moves the server's keys.");
    moves([&](const std::string& label, const state::ServerDynamic& s) {
        w.sample("mcwatch_drain_move_running", label, state::drain_move_running(s.drain_move) ? "1" : "0");
    });
    w.family("mcwatch_drain_move_state", "gauge",
             "1 for where the server's latest drain --move stands (listing, moving, done, failed, stopped).");
    moves([&](const std::string& label, const state::ServerDynamic& s) {
        for (const state::DrainMove move : kMoveStates)
            w.sample("mcwatch_drain_move_state",
                     fmt::format("{},state=\"{}\"", label, state::drain_move_name(uint32_t(move))),
                     s.drain_move == uint32_t(move) ? "1" : "0");
    });
    w.family("mcwatch_drain_move_start_timestamp_seconds", "gauge",
             "When the server's latest drain --move started, unix time.");
    moves([&](const std::string& label, const state::ServerDynamic& s) {
        w.sample("mcwatch_drain_move_start_timestamp_seconds", label, seconds(s.drain_move_started_unix_ms));
    });

    // The move after the latest membership change (one for the daemon).
    if (const state::MembershipMove& m = input.membership_move; m.state != uint32_t(state::DrainMove::none)) {
        w.family("mcwatch_membership_move_keys_total", "counter",
                 "Keys the move after the latest membership change handled, by result (moved to their new server, "
                 "or skipped: vanished, expiring, or already there).");
        w.sample("mcwatch_membership_move_keys_total", "result=\"moved\"", number(m.moved));
        w.sample("mcwatch_membership_move_keys_total", "result=\"skipped\"", number(m.skipped));
        w.family("mcwatch_membership_move_remaining", "gauge",
                 "Keys the move after the latest membership change listed and has not looked at yet.");
        w.sample("mcwatch_membership_move_remaining", "", number(m.remaining));
        w.family("mcwatch_membership_move_running", "gauge",
                 "1 while the move after the latest membership change lists or moves keys.");
        w.sample("mcwatch_membership_move_running", "", state::drain_move_running(m.state) ? "1" : "0");
    }
    return w.take();
}

}  // namespace mcwatch
