#include "tools/mcctl/fleet.hpp"

#include <fmt/format.h>

#include <chrono>
#include <nlohmann/json.hpp>

#include "common/config.hpp"
#include "daemon/etcd_client.hpp"
#include "daemon/fleet_verdict.hpp"
#include "tools/mcctl/snapshot.hpp"

namespace mcwatch {

namespace {

constexpr std::chrono::milliseconds kTimeout{2000};

int unusable(const std::string& message, bool as_json, const std::string& endpoint = "") {
    if (as_json)
        fmt::print("{}\n",
                   nlohmann::json{{"etcd", {{"endpoint", endpoint}, {"answers", false}, {"error", message}}}}.dump(
                       2, ' ', false, nlohmann::json::error_handler_t::replace));
    fmt::print(stderr, "mcctl: {}\n", message);
    return kExitUnusable;
}

}  // namespace

int mcctl_fleet(const std::string& config_path, bool as_json) {
    const Result<Config> config = load_config(config_path);
    if (!config) return unusable(config.error().message, as_json);
    const FleetConfig& fleet = config->fleet;
    if (!fleet.enabled())
        return unusable(fmt::format("{}: no [fleet] etcd = ...: the fleet view is off", config_path), as_json);
    Result<std::unique_ptr<EtcdClient>> client = EtcdClient::create(fleet.etcd, kTimeout);
    if (!client) return unusable(client.error().message, as_json);
    const Result<EtcdRange> range = (*client)->range_prefix(fleet_keys::prefix(fleet.name));
    if (!range) return unusable(range.error().message, as_json, (*client)->endpoint());
    const FleetSnapshot snapshot = read_snapshot(fleet.name, *range);

    nlohmann::json report = {
        {"fleet", fleet.name},
        {"verdict_rule", fleet_rule_name(fleet.verdict)},
        {"etcd", {{"endpoint", (*client)->endpoint()}, {"answers", true}, {"revision", snapshot.revision}}},
        {"hosts", snapshot.hosts},
        {"servers", nlohmann::json::array()},
        {"unreadable", snapshot.unreadable},
    };
    bool all_live = true;
    std::string text = fmt::format("fleet {}: etcd {} answers (revision {}), verdict {}\nhosts with a live lease: {}\n",
                                   fleet.name, (*client)->endpoint(), snapshot.revision, fleet_rule_name(fleet.verdict),
                                   snapshot.hosts.empty() ? "none" : fmt::format("{}", fmt::join(snapshot.hosts, " ")));
    // A key no host reads (bad JSON, a newer version's) is a host or a record the fleet does not count.
    for (const std::string& unreadable : snapshot.unreadable) text += fmt::format("unreadable key {}\n", unreadable);
    for (const ServerAddress& server : config->servers) {
        const auto observed = snapshot.observations.find(server.text);
        const std::map<std::string, FleetObservation> none;
        const auto& observations = observed == snapshot.observations.end() ? none : observed->second;
        const FleetVerdict verdict =
            fleet_verdict(observations, snapshot.hosts, fleet.verdict, outage_recorded(snapshot, server.text));
        std::optional<RejoinRecord> rejoin;
        if (const auto r = snapshot.rejoins.find(server.text); r != snapshot.rejoins.end()) rejoin = r->second.first;
        const FleetVerdict::Kind published = published_verdict(verdict, rejoin);
        const auto overridden = snapshot.operators.find(server.text);
        // An operator's override wins over the verdict on every host.
        all_live &= published == FleetVerdict::Kind::live && overridden == snapshot.operators.end();
        nlohmann::json entry = {{"address", server.text},
                                {"published", fleet_verdict_name(published)},
                                {"verdict", fleet_verdict_name(verdict.kind)},
                                {"reason", verdict.reason},
                                {"observations", nlohmann::json::object()}};
        if (rejoin)
            entry["rejoin"] = {{"epoch", rejoin->epoch},
                               {"phase", rejoin_phase_name(rejoin->phase)},
                               {"host", rejoin->host},
                               {"at_unix_ms", rejoin->at_unix_ms},
                               {"flushed", rejoin->flushed}};
        std::string by_operator;
        if (overridden != snapshot.operators.end()) {
            const OperatorRecord& o = overridden->second;
            entry["operator"] = {{"op", operator_op_name(o.op)},
                                 {"host", o.host},
                                 {"at_unix_ms", o.at_unix_ms},
                                 {"move", o.move},
                                 {"mover", o.mover.empty() ? nlohmann::json() : nlohmann::json(o.mover)},
                                 {"mover_since_unix_ms", o.mover_since_unix_ms}};
            by_operator =
                fmt::format("  {}{} by the operator on {}", operator_op_name(o.op), o.move ? " --move" : "", o.host);
            if (o.move) by_operator += o.mover.empty() ? ", move ended" : fmt::format(", keys moved by {}", o.mover);
        }
        std::string seen;
        for (const auto& [host, o] : observations) {
            const bool counted = snapshot.hosts.count(host) > 0;
            entry["observations"][host] = {{"state", fleet_state_name(o.state)},
                                           {"since_unix_ms", o.since_unix_ms},
                                           {"error", o.error},
                                           {"restarts", o.restarts},
                                           {"counted", counted}};
            seen +=
                fmt::format("  {} {}{}{}", host, fleet_state_name(o.state),
                            o.error.empty() ? "" : fmt::format(" ({})", o.error), counted ? "" : " [lease expired]");
        }
        text += fmt::format("{}  {}{}{}  {}\n{}\n", server.text, fleet_verdict_name(published), by_operator,
                            rejoin ? fmt::format("  rejoin epoch {} {} by {}", rejoin->epoch,
                                                 rejoin_phase_name(rejoin->phase), rejoin->host)
                                   : "",
                            verdict.reason, seen.empty() ? "  no observations" : seen);
        report["servers"].push_back(std::move(entry));
    }
    if (as_json)
        fmt::print("{}\n", report.dump(2, ' ', false, nlohmann::json::error_handler_t::replace));
    else
        fmt::print("{}", text);
    return all_live ? 0 : 1;
}

}  // namespace mcwatch
