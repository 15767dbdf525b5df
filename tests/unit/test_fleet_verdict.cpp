#include <doctest/doctest.h>
#include <fmt/format.h>

#include "daemon/fleet_verdict.hpp"

using namespace mcwatch;

namespace {

using State = FleetObservation::State;
using Kind = FleetVerdict::Kind;

FleetObservation seen(State state, std::string error = "") {
    FleetObservation o;
    o.state = state;
    o.error = std::move(error);
    return o;
}

const std::set<std::string> kAll = {"h1", "h2", "h3"};

}  // namespace

TEST_CASE("fleet verdict: majority: dead only when more than half of the reporting hosts see it dead") {
    CHECK(fleet_verdict({{"h1", seen(State::dead)}, {"h2", seen(State::live)}, {"h3", seen(State::live)}}, kAll,
                        FleetRule::majority, true)
              .kind == Kind::live);
    const FleetVerdict dead = fleet_verdict(
        {{"h1", seen(State::dead, "connection refused")}, {"h2", seen(State::dead)}, {"h3", seen(State::live)}}, kAll,
        FleetRule::majority, true);
    CHECK(dead.kind == Kind::dead);
    CHECK(dead.reason == "2 of 3 hosts see it dead (majority needs more than half): h1 (connection refused), h2");
    // A tie is not a majority: one host of two never empties a server.
    CHECK(fleet_verdict({{"h1", seen(State::dead)}, {"h2", seen(State::live)}}, kAll, FleetRule::majority, true).kind ==
          Kind::live);
    CHECK(fleet_verdict({{"h1", seen(State::dead)}}, kAll, FleetRule::majority, true).kind == Kind::dead);
}

TEST_CASE("fleet verdict: any and all") {
    const std::map<std::string, FleetObservation> one_dead = {{"h1", seen(State::dead)}, {"h2", seen(State::live)}};
    CHECK(fleet_verdict(one_dead, kAll, FleetRule::any, true).kind == Kind::dead);
    CHECK(fleet_verdict(one_dead, kAll, FleetRule::all, true).kind == Kind::live);
    CHECK(fleet_verdict({{"h1", seen(State::dead)}, {"h2", seen(State::dead)}}, kAll, FleetRule::all, true).kind ==
          Kind::dead);
}

TEST_CASE("fleet verdict: hosts without a live lease, and hosts that do not know yet, do not count") {
    const FleetVerdict verdict =
        fleet_verdict({{"h1", seen(State::dead)}, {"gone", seen(State::live)}, {"h2", seen(State::unknown)}}, kAll,
                      FleetRule::majority, true);
    CHECK(verdict.kind == Kind::dead);
    CHECK(verdict.reporting == 1);
    const FleetVerdict nobody = fleet_verdict({{"gone", seen(State::dead)}}, kAll, FleetRule::majority, true);
    CHECK(nobody.kind == Kind::unknown);
    CHECK(nobody.reason == "no host with a live lease reports on it");
}

TEST_CASE("fleet verdict: a server the fleet held dead stays dead until its rejoin is recorded done") {
    FleetVerdict live;
    live.kind = Kind::live;
    RejoinRecord record;
    CHECK(published_verdict(live, std::nullopt) == Kind::live);
    record.phase = RejoinRecord::Phase::dead;
    CHECK(published_verdict(live, record) == Kind::dead);
    record.phase = RejoinRecord::Phase::flushing;
    CHECK(published_verdict(live, record) == Kind::dead);
    record.phase = RejoinRecord::Phase::done;
    CHECK(published_verdict(live, record) == Kind::live);
    FleetVerdict dead;
    dead.kind = Kind::dead;
    CHECK(published_verdict(dead, record) == Kind::dead);
}

TEST_CASE("fleet snapshot: keys sorted by kind; a host's record holds its observations, a server's '/' its own") {
    HostRecord h1{41, 7,
                  std::map<std::string, FleetObservation>{{"unix:/run/mc.sock", seen(State::dead, "refused")},
                                                          {"10.0.0.1:11211", seen(State::live)}}};
    EtcdRange range;
    range.revision = 9;
    range.kvs = {
        {fleet_keys::host("f", "h1"), host_record_json(h1), 1, 1, 1, 5},
        {"/mcwatch/f/rejoin/10.0.0.1:11211", rejoin_json({3, RejoinRecord::Phase::flushing, "h1", 7, false}), 4, 8, 2,
         0},
        {"/mcwatch/f/obs/nohost", "{}", 5, 5, 1, 0},
        {"/mcwatch/f/other", "x", 6, 6, 1, 0},
    };
    CHECK(fleet_keys::host("f", "h1") == "/mcwatch/f/hosts/h1");
    const FleetSnapshot snapshot = read_snapshot("f", range);
    CHECK(snapshot.revision == 9);
    CHECK(snapshot.hosts == std::set<std::string>{"h1"});
    CHECK(snapshot.observations.at("unix:/run/mc.sock").at("h1").error == "refused");
    CHECK(snapshot.observations.at("10.0.0.1:11211").at("h1").state == State::live);
    CHECK(snapshot.observations.size() == 2);
    CHECK(snapshot.rejoins.at("10.0.0.1:11211").first.epoch == 3);
    CHECK(snapshot.rejoins.at("10.0.0.1:11211").first.phase == RejoinRecord::Phase::flushing);
    CHECK(snapshot.rejoins.at("10.0.0.1:11211").second == 8);
    CHECK(snapshot.unreadable == std::vector<std::string>{"/mcwatch/f/obs/nohost: not obs/<server>/<host>",
                                                          "/mcwatch/f/other: no such kind of key"});
    // Round-tripped, and what it leaves out at its default (restarts 0, no error) reads back the same.
    CHECK(parse_host_record(host_record_json(h1)).value() == h1);
    CHECK(host_record_json(HostRecord{1, 2, std::map<std::string, FleetObservation>{{"a:1", seen(State::live)}}}) ==
          R"({"pid":1,"servers":{"a:1":{"since_unix_ms":0,"state":"live"}},"started_unix_ms":2})");
}

TEST_CASE("fleet snapshot: one key per host carries every server's observation, for many hosts and servers") {
    EtcdRange range;
    for (int h = 0; h < 20; ++h) {
        HostRecord record{h, 0, std::map<std::string, FleetObservation>{}};
        for (int s = 0; s < 50; ++s)
            (*record.observations)[fmt::format("10.0.{}.1:11211", s)] = seen(s == h ? State::dead : State::live);
        range.kvs.push_back({fleet_keys::host("f", fmt::format("h{}", h)), host_record_json(record), 1, 1, 1, 5});
    }
    const FleetSnapshot snapshot = read_snapshot("f", range);
    CHECK(snapshot.hosts.size() == 20);
    CHECK(snapshot.observations.size() == 50);
    CHECK(snapshot.unreadable.empty());
    for (const auto& [server, by_host] : snapshot.observations) CHECK(by_host.size() == 20);
    CHECK(snapshot.observations.at("10.0.3.1:11211").at("h3").state == State::dead);
    CHECK(snapshot.observations.at("10.0.3.1:11211").at("h4").state == State::live);
    CHECK(snapshot.observations.at("10.0.30.1:11211").at("h4").state == State::live);
}

TEST_CASE("fleet snapshot: a bad host record is named with its key; its host still holds a live lease") {
    EtcdRange range;
    range.kvs = {
        {fleet_keys::host("f", "h1"), "{not json", 1, 1, 1, 5},
        {fleet_keys::host("f", "h2"), R"({"pid":2,"servers":{"a:1":{"state":"asleep"}}})", 2, 2, 1, 5},
        {fleet_keys::host("f", "h3"), R"({"pid":3,"servers":["a:1"]})", 3, 3, 1, 5},
        {fleet_keys::host("f", "h4/x"), host_record_json({4, 0, std::map<std::string, FleetObservation>{}}), 4, 4, 1,
         5},
    };
    const FleetSnapshot snapshot = read_snapshot("f", range);
    CHECK(snapshot.hosts == std::set<std::string>{"h1", "h2", "h3"});
    CHECK(snapshot.observations.empty());
    REQUIRE(snapshot.unreadable.size() == 4);
    CHECK(snapshot.unreadable[0] == "/mcwatch/f/hosts/h1: host record is not a JSON object: '{not json'");
    CHECK(snapshot.unreadable[1] ==
          "/mcwatch/f/hosts/h2: host record: server 'a:1': observation: unknown state 'asleep'");
    CHECK(snapshot.unreadable[2] == R"(/mcwatch/f/hosts/h3: host record: "servers" is not a JSON object: ["a:1"])");
    CHECK(snapshot.unreadable[3] == "/mcwatch/f/hosts/h4/x: a host id holds no '/'");
}

TEST_CASE("fleet snapshot: an older daemon's obs/<server>/<host> keys count for a host whose record has none") {
    // A rolling upgrade: h1 runs the older daemon (a record without
    // "servers", an obs/ key per server), h2 the new one, which also left an
    // obs/ key from before its upgrade: its record wins.
    EtcdRange range;
    range.kvs = {
        {fleet_keys::host("f", "h1"), R"({"pid":1,"started_unix_ms":5})", 1, 1, 1, 5},
        {fleet_keys::host("f", "h2"),
         host_record_json({2, 6, std::map<std::string, FleetObservation>{{"unix:/run/mc.sock", seen(State::live)}}}), 2,
         2, 1, 5},
        {"/mcwatch/f/obs/unix:/run/mc.sock/h1", observation_json(seen(State::dead, "refused")), 3, 3, 1, 5},
        {"/mcwatch/f/obs/unix:/run/mc.sock/h2", observation_json(seen(State::dead)), 4, 4, 1, 5},
        {"/mcwatch/f/obs/10.0.0.1:11211/h2", observation_json(seen(State::dead)), 5, 5, 1, 5},
    };
    const FleetSnapshot snapshot = read_snapshot("f", range);
    CHECK(snapshot.hosts == std::set<std::string>{"h1", "h2"});
    CHECK(snapshot.observations.at("unix:/run/mc.sock").at("h1").error == "refused");
    CHECK(snapshot.observations.at("unix:/run/mc.sock").at("h2").state == State::live);
    CHECK(snapshot.observations.count("10.0.0.1:11211") == 0);
    CHECK(parse_host_record(R"({"pid":1,"started_unix_ms":5})").value().observations == std::nullopt);
}

TEST_CASE("fleet snapshot: an operator's override under ops/<server>, round-tripped; a bad one is unreadable") {
    // A drain --move given on h2 whose move h3 took over.
    const OperatorRecord drain{OperatorRecord::Op::drain, "h2", 1234, true, "h3", 5678};
    const OperatorRecord down{OperatorRecord::Op::down, "h1", 5, false, "", 0};
    CHECK(fleet_keys::operator_override("f", "unix:/run/mc.sock") == "/mcwatch/f/ops/unix:/run/mc.sock");
    EtcdRange range;
    range.kvs = {
        {fleet_keys::operator_override("f", "10.0.0.1:11211"), operator_json(drain), 1, 1, 1, 0},
        {fleet_keys::operator_override("f", "unix:/run/mc.sock"), operator_json(down), 2, 2, 1, 0},
        {fleet_keys::operator_override("f", "10.0.0.2:11211"), R"({"op":"pause","host":"h1"})", 3, 3, 1, 0},
        {fleet_keys::operator_override("f", "10.0.0.3:11211"), R"({"op":"drain","move":"yes"})", 4, 4, 1, 0},
    };
    const FleetSnapshot snapshot = read_snapshot("f", range);
    CHECK(snapshot.operators.size() == 2);
    CHECK(snapshot.operators.at("10.0.0.1:11211") == drain);
    CHECK(snapshot.operators.at("unix:/run/mc.sock") == down);
    CHECK(snapshot.operator_revisions.at("unix:/run/mc.sock") == 2);
    CHECK(snapshot.unreadable.size() == 2);
    // Written before the takeover existed: the command's host is the mover.
    const Result<OperatorRecord> older = parse_operator(R"({"op":"drain","host":"h1","at_unix_ms":7,"move":true})");
    REQUIRE(older);
    CHECK((older->mover == "h1" && older->mover_since_unix_ms == 7));
    CHECK(parse_operator(R"({"op":"pause"})").error().message.find("unknown op 'pause'") != std::string::npos);
}

TEST_CASE("fleet verdict: hosts with a lease that have not reported yet count as live when an outage begins") {
    // h1 alone has published: its dead does not begin an outage while h2 and h3 are silent.
    const FleetVerdict starting = fleet_verdict({{"h1", seen(State::dead)}}, kAll, FleetRule::majority, false);
    CHECK(starting.kind == Kind::live);
    CHECK(starting.silent == 2);
    CHECK(starting.reason ==
          "1 of 3 hosts see it dead (majority needs more than half; 2 not reporting yet count as live): h1");
    CHECK(fleet_verdict({{"h1", seen(State::dead)}, {"h2", seen(State::unknown)}}, kAll, FleetRule::all, false).kind ==
          Kind::live);
    CHECK(
        fleet_verdict({{"h1", seen(State::dead)}, {"h2", seen(State::dead)}}, kAll, FleetRule::majority, false).kind ==
        Kind::dead);
    // An outage in progress is not ended by hosts that have not looked.
    CHECK(fleet_verdict({{"h1", seen(State::dead)}}, kAll, FleetRule::majority, true).kind == Kind::dead);
}

namespace {

using std::chrono::milliseconds;

RejoinRecord in_phase(RejoinRecord::Phase phase, std::string host = "h2") {
    return RejoinRecord{4, phase, std::move(host), 1000, false};
}

const milliseconds kTakeover = claim_takeover_after(milliseconds(1000), milliseconds(500));

}  // namespace

TEST_CASE("rejoin: a claim is taken over only once it has stood longer than its claimer can take") {
    // The claimer sends flush_all within a request time of its claim, waits
    // a request time for the answer, writes done within one more: then a poll.
    CHECK(kTakeover == milliseconds(3500));
    const RejoinRecord flushing = in_phase(RejoinRecord::Phase::flushing);
    CHECK(rejoin_step(flushing, 7, std::nullopt, milliseconds(0), kTakeover) == RejoinStep::wait);
    CHECK(rejoin_step(flushing, 7, std::nullopt, kTakeover, kTakeover) == RejoinStep::wait);
    CHECK(rejoin_step(flushing, 7, std::nullopt, kTakeover + milliseconds(1), kTakeover) == RejoinStep::claim);
    // Its host's lease is not asked: a claim by this host's name from before
    // a restart is treated the same (whether its flush went out is unknown).
    CHECK(rejoin_step(in_phase(RejoinRecord::Phase::flushing, "h1"), 7, std::nullopt, milliseconds(0), kTakeover) ==
          RejoinStep::wait);
}

TEST_CASE("rejoin: an outage's record is claimed at once, a done one never") {
    CHECK(rejoin_step(in_phase(RejoinRecord::Phase::dead), 7, std::nullopt, milliseconds(0), kTakeover) ==
          RejoinStep::claim);
    CHECK(rejoin_step(in_phase(RejoinRecord::Phase::done), 7, std::nullopt, kTakeover * 10, kTakeover) ==
          RejoinStep::wait);
}

TEST_CASE("rejoin: our own claim is finished without a second flush, or put back when it was not flushed") {
    const RejoinRecord flushing = in_phase(RejoinRecord::Phase::flushing, "h1");
    CHECK(rejoin_step(flushing, 7, OwnClaim{7, true}, milliseconds(0), kTakeover) == RejoinStep::record_done);
    CHECK(rejoin_step(flushing, 7, OwnClaim{7, false}, milliseconds(0), kTakeover) == RejoinStep::retract);
    // A claim at another revision is someone else's (ours was taken over).
    CHECK(rejoin_step(flushing, 9, OwnClaim{7, true}, milliseconds(0), kTakeover) == RejoinStep::wait);
}

TEST_CASE("rejoin: flush_all is sent only on a claim still standing, within the send budget") {
    const milliseconds budget(1000);
    CHECK(flush_may_be_sent(7, 7, milliseconds(10), budget));
    CHECK(flush_may_be_sent(7, 7, budget, budget));
    CHECK_FALSE(flush_may_be_sent(7, 9, milliseconds(10), budget));             // taken over
    CHECK_FALSE(flush_may_be_sent(7, std::nullopt, milliseconds(10), budget));  // gone, or not read
    CHECK_FALSE(flush_may_be_sent(7, 7, budget + milliseconds(1), budget));     // too late: a taker may be on it
}
