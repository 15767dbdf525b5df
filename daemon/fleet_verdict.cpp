#include "daemon/fleet_verdict.hpp"

#include <fmt/format.h>

#include <nlohmann/json.hpp>

namespace mcwatch {

using json = nlohmann::json;

const char* fleet_state_name(FleetObservation::State state) {
    switch (state) {
    case FleetObservation::State::live: return "live";
    case FleetObservation::State::dead: return "dead";
    case FleetObservation::State::unknown: break;
    }
    return "unknown";
}

const char* rejoin_phase_name(RejoinRecord::Phase phase) {
    switch (phase) {
    case RejoinRecord::Phase::dead: return "dead";
    case RejoinRecord::Phase::flushing: return "flushing";
    case RejoinRecord::Phase::done: break;
    }
    return "done";
}

const char* fleet_verdict_name(FleetVerdict::Kind kind) {
    switch (kind) {
    case FleetVerdict::Kind::live: return "live";
    case FleetVerdict::Kind::dead: return "dead";
    case FleetVerdict::Kind::unknown: break;
    }
    return "unknown";
}

const char* operator_op_name(OperatorRecord::Op op) { return op == OperatorRecord::Op::down ? "down" : "drain"; }

namespace fleet_keys {
std::string prefix(std::string_view fleet) { return fmt::format("/mcwatch/{}/", fleet); }
std::string host(std::string_view fleet, std::string_view host) {
    return fmt::format("/mcwatch/{}/hosts/{}", fleet, host);
}
std::string rejoin(std::string_view fleet, std::string_view server) {
    return fmt::format("/mcwatch/{}/rejoin/{}", fleet, server);
}
std::string operator_override(std::string_view fleet, std::string_view server) {
    return fmt::format("/mcwatch/{}/ops/{}", fleet, server);
}
}  // namespace fleet_keys

namespace {

// nlohmann throws on a field of the wrong type: a record written by someone
// else is input, so it becomes an error here.
template <class F>
auto parsed_json(std::string_view text, const char* what, F read) -> decltype(read(json())) {
    const json object = json::parse(text.begin(), text.end(), nullptr, false);
    if (object.is_discarded() || !object.is_object())
        return failure(fmt::format("{} is not a JSON object: '{}'", what, text.substr(0, 200)));
    try {
        return read(object);
    } catch (const json::exception& e) {
        return failure(fmt::format("{} '{}': {}", what, text.substr(0, 200), e.what()));
    }
}

json observation_object(const FleetObservation& o) {
    json object = {{"state", fleet_state_name(o.state)}, {"since_unix_ms", o.since_unix_ms}};
    // Most servers never restart: the field is left out at 0, a few bytes of
    // every observation in every full read of the prefix.
    if (o.restarts != 0) object["restarts"] = o.restarts;
    if (!o.error.empty()) object["error"] = o.error;
    return object;
}

Result<FleetObservation> observation_from(const json& object) {
    if (!object.is_object()) return failure(fmt::format("observation is not a JSON object: {}", object.dump()));
    FleetObservation o;
    const std::string state = object.value("state", "");
    if (state == "live")
        o.state = FleetObservation::State::live;
    else if (state == "dead")
        o.state = FleetObservation::State::dead;
    else if (state != "unknown")
        return failure(fmt::format("observation: unknown state '{}'", state));
    o.since_unix_ms = object.value("since_unix_ms", int64_t(0));
    o.restarts = object.value("restarts", uint64_t(0));
    o.error = object.value("error", "");
    return o;
}

// The error quotes what a server answered, which need not be UTF-8: dump()
// would throw on it, so invalid bytes become U+FFFD.
std::string dumped(const json& object) { return object.dump(-1, ' ', false, json::error_handler_t::replace); }

}  // namespace

std::string observation_json(const FleetObservation& o) { return dumped(observation_object(o)); }

Result<FleetObservation> parse_observation(std::string_view text) {
    return parsed_json(text, "observation", observation_from);
}

std::string host_record_json(const HostRecord& r) {
    json object = {{"pid", r.pid}, {"started_unix_ms", r.started_unix_ms}};
    if (r.observations) {
        json servers = json::object();
        for (const auto& [server, observation] : *r.observations) servers[server] = observation_object(observation);
        object["servers"] = std::move(servers);
    }
    return dumped(object);
}

Result<HostRecord> parse_host_record(std::string_view text) {
    return parsed_json(text, "host record", [](const json& object) -> Result<HostRecord> {
        HostRecord r;
        r.pid = object.value("pid", int64_t(0));
        r.started_unix_ms = object.value("started_unix_ms", int64_t(0));
        const auto servers = object.find("servers");
        if (servers == object.end()) return r;  // an older daemon's: its observations are obs/ keys
        if (!servers->is_object())
            return failure(fmt::format("host record: \"servers\" is not a JSON object: {}", servers->dump()));
        r.observations.emplace();
        for (const auto& [server, value] : servers->items()) {
            Result<FleetObservation> observation = observation_from(value);
            if (!observation)
                return failure(fmt::format("host record: server '{}': {}", server, observation.error().message));
            (*r.observations)[server] = std::move(*observation);
        }
        return r;
    });
}

std::string rejoin_json(const RejoinRecord& r) {
    return json{{"epoch", r.epoch},
                {"phase", rejoin_phase_name(r.phase)},
                {"host", r.host},
                {"at_unix_ms", r.at_unix_ms},
                {"flushed", r.flushed}}
        .dump();
}

Result<RejoinRecord> parse_rejoin(std::string_view text) {
    return parsed_json(text, "rejoin record", [](const json& object) -> Result<RejoinRecord> {
        RejoinRecord r;
        r.epoch = object.value("epoch", uint64_t(0));
        const std::string phase = object.value("phase", "");
        if (phase == "dead")
            r.phase = RejoinRecord::Phase::dead;
        else if (phase == "flushing")
            r.phase = RejoinRecord::Phase::flushing;
        else if (phase != "done")
            return failure(fmt::format("rejoin record: unknown phase '{}'", phase));
        r.host = object.value("host", "");
        r.at_unix_ms = object.value("at_unix_ms", int64_t(0));
        r.flushed = object.value("flushed", false);
        return r;
    });
}

std::string operator_json(const OperatorRecord& r) {
    json object = {{"op", operator_op_name(r.op)}, {"host", r.host}, {"at_unix_ms", r.at_unix_ms}, {"move", r.move}};
    if (r.move) {
        object["mover"] = r.mover;
        object["mover_since_unix_ms"] = r.mover_since_unix_ms;
    }
    return object.dump();
}

Result<OperatorRecord> parse_operator(std::string_view text) {
    return parsed_json(text, "operator record", [](const json& object) -> Result<OperatorRecord> {
        OperatorRecord r;
        const std::string op = object.value("op", "");
        if (op == "down")
            r.op = OperatorRecord::Op::down;
        else if (op != "drain")
            return failure(fmt::format("operator record: unknown op '{}'", op));
        r.host = object.value("host", "");
        r.at_unix_ms = object.value("at_unix_ms", int64_t(0));
        r.move = object.value("move", false);
        // A record without "mover" predates the takeover: the command's host moves.
        r.mover = object.value("mover", r.move ? r.host : "");
        r.mover_since_unix_ms = object.value("mover_since_unix_ms", r.move ? r.at_unix_ms : int64_t(0));
        return r;
    });
}

FleetSnapshot read_snapshot(std::string_view fleet, const EtcdRange& range) {
    FleetSnapshot snapshot;
    snapshot.revision = range.revision;
    const std::string prefix = fleet_keys::prefix(fleet);
    const auto unreadable = [&](const EtcdKeyValue& kv, std::string_view why) {
        snapshot.unreadable.push_back(fmt::format("{}: {}", kv.key, why));
    };
    std::set<std::string> recorded;  // hosts whose record holds their observations
    // An older daemon's obs/<server>/<host> keys: server -> host -> observation.
    std::map<std::string, std::map<std::string, FleetObservation>> older;
    for (const EtcdKeyValue& kv : range.kvs) {
        if (kv.key.rfind(prefix, 0) != 0) {
            unreadable(kv, "not under the fleet's prefix");
            continue;
        }
        const std::string_view rest = std::string_view(kv.key).substr(prefix.size());
        if (rest.rfind("hosts/", 0) == 0 && rest.size() > 6) {
            const std::string host(rest.substr(6));
            if (host.find('/') != std::string::npos) {
                unreadable(kv, "a host id holds no '/'");
                continue;
            }
            // Its key exists: its lease is alive, whatever the value says.
            snapshot.hosts.insert(host);
            Result<HostRecord> record = parse_host_record(kv.value);
            if (!record) {
                unreadable(kv, record.error().message);
                continue;
            }
            if (!record->observations) continue;
            recorded.insert(host);
            for (auto& [server, observation] : *record->observations)
                snapshot.observations[server][host] = std::move(observation);
        } else if (rest.rfind("obs/", 0) == 0) {
            const std::string_view server_host = rest.substr(4);
            const size_t slash = server_host.rfind('/');
            if (slash == std::string_view::npos || slash == 0 || slash + 1 == server_host.size()) {
                unreadable(kv, "not obs/<server>/<host>");
                continue;
            }
            Result<FleetObservation> observation = parse_observation(kv.value);
            if (!observation) {
                unreadable(kv, observation.error().message);
                continue;
            }
            older[std::string(server_host.substr(0, slash))][std::string(server_host.substr(slash + 1))] =
                std::move(*observation);
        } else if (rest.rfind("rejoin/", 0) == 0 && rest.size() > 7) {
            Result<RejoinRecord> record = parse_rejoin(kv.value);
            if (!record) {
                unreadable(kv, record.error().message);
                continue;
            }
            snapshot.rejoins[std::string(rest.substr(7))] = {std::move(*record), kv.mod_revision};
        } else if (rest.rfind("ops/", 0) == 0 && rest.size() > 4) {
            Result<OperatorRecord> record = parse_operator(kv.value);
            if (!record) {
                unreadable(kv, record.error().message);
                continue;
            }
            snapshot.operators[std::string(rest.substr(4))] = std::move(*record);
            snapshot.operator_revisions[std::string(rest.substr(4))] = kv.mod_revision;
        } else {
            unreadable(kv, "no such kind of key");
        }
    }
    // A host's own record wins over obs/ keys it may have left (written by
    // the older daemon it replaced, until their lease ends).
    for (auto& [server, by_host] : older)
        for (auto& [host, observation] : by_host)
            if (!recorded.count(host)) snapshot.observations[server][host] = std::move(observation);
    return snapshot;
}

FleetVerdict fleet_verdict(const std::map<std::string, FleetObservation>& observations,
                           const std::set<std::string>& alive_hosts, FleetRule rule, bool outage_in_progress) {
    FleetVerdict verdict;
    std::string dead_hosts;
    for (const auto& [host, observation] : observations) {
        // A host whose lease expired stops counting; one that has not decided yet never counted.
        if (!alive_hosts.count(host) || observation.state == FleetObservation::State::unknown) continue;
        ++verdict.reporting;
        if (observation.state == FleetObservation::State::dead) {
            ++verdict.dead;
            dead_hosts += fmt::format("{}{}{}", dead_hosts.empty() ? "" : ", ", host,
                                      observation.error.empty() ? "" : fmt::format(" ({})", observation.error));
        }
    }
    if (verdict.reporting == 0) {
        verdict.reason = "no host with a live lease reports on it";
        return verdict;
    }
    if (!outage_in_progress) verdict.silent = uint32_t(alive_hosts.size()) - verdict.reporting;
    const uint32_t counted = verdict.reporting + verdict.silent;
    bool dead = false;
    switch (rule) {
    case FleetRule::majority: dead = verdict.dead * 2 > counted; break;
    case FleetRule::any: dead = verdict.dead > 0; break;
    case FleetRule::all: dead = verdict.dead == counted; break;
    }
    verdict.kind = dead ? FleetVerdict::Kind::dead : FleetVerdict::Kind::live;
    verdict.reason =
        fmt::format("{} of {} hosts see it dead ({} needs {}{}){}", verdict.dead, counted, fleet_rule_name(rule),
                    rule == FleetRule::majority ? "more than half"
                    : rule == FleetRule::any    ? "one"
                                                : "all",
                    verdict.silent ? fmt::format("; {} not reporting yet count as live", verdict.silent) : "",
                    dead_hosts.empty() ? "" : fmt::format(": {}", dead_hosts));
    return verdict;
}

bool outage_recorded(const FleetSnapshot& snapshot, const std::string& server) {
    const auto found = snapshot.rejoins.find(server);
    return found != snapshot.rejoins.end() && found->second.first.phase != RejoinRecord::Phase::done;
}

FleetVerdict::Kind published_verdict(const FleetVerdict& verdict, const std::optional<RejoinRecord>& rejoin) {
    if (verdict.kind == FleetVerdict::Kind::live && rejoin && rejoin->phase != RejoinRecord::Phase::done)
        return FleetVerdict::Kind::dead;
    return verdict.kind;
}

std::chrono::milliseconds claim_takeover_after(std::chrono::milliseconds request_timeout,
                                               std::chrono::milliseconds poll_interval) {
    return 3 * request_timeout + poll_interval;
}

RejoinStep rejoin_step(const RejoinRecord& record, int64_t mod_revision, const std::optional<OwnClaim>& own,
                       std::chrono::milliseconds seen_for, std::chrono::milliseconds takeover_after) {
    if (record.phase == RejoinRecord::Phase::done) return RejoinStep::wait;
    if (record.phase == RejoinRecord::Phase::dead) return RejoinStep::claim;
    if (own && own->mod_revision == mod_revision) return own->flushed ? RejoinStep::record_done : RejoinStep::retract;
    // Someone's claim (ours too, from before a restart: we cannot know
    // whether that flush went out): taken over only once it has stood
    // unchanged longer than any claimer takes.
    return seen_for > takeover_after ? RejoinStep::claim : RejoinStep::wait;
}

bool flush_may_be_sent(int64_t claimed_revision, std::optional<int64_t> mod_revision_now,
                       std::chrono::milliseconds since_claim_sent, std::chrono::milliseconds send_budget) {
    return mod_revision_now == claimed_revision && since_claim_sent <= send_budget;
}

}  // namespace mcwatch
