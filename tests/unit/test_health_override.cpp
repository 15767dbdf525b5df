// Operator overrides in the health state machine (docs/DESIGN.md, "Drain"):
// drain, down, up/undrain, flush; they win over probes until cleared, and
// clearing one is a rejoin.
#include <doctest/doctest.h>

#include "daemon/health.hpp"
#include "tests/unit/health_helpers.hpp"

using namespace mcwatch;

using namespace mcwatch::health_test;

TEST_CASE("override: drain publishes draining at once; probes keep the facts fresh") {
    ServerHealth h = live_server();
    const Command c = run(h, &ServerHealth::drain, 5000);
    CHECK(c.said == "draining (was live); 42 items held");
    CHECK(c.changed);
    CHECK(state_of(h) == ServerState::draining);
    CHECK(h.view().since_unix_ms == 5000);
    CHECK(flag(h, state::kFlagOperatorOverride));
    CHECK(flag(h, state::kFlagOperatorDrain));
    ProbeResult fewer = good();
    fewer.stats.curr_items = 7;
    CHECK(feed(h, {fewer, fewer, fewer}) == "");
    CHECK(state_of(h) == ServerState::draining);  // good probes do not make it live
    CHECK(h.view().curr_items == 7);
    CHECK_FALSE(h.wants_flush());
    CHECK(run(h, &ServerHealth::drain).said == "already draining");
}

TEST_CASE("override: a drained server that stops is dead, and draining again, flushed, when it answers") {
    ServerHealth h = live_server();
    run(h, &ServerHealth::drain);
    CHECK(feed(h, {bad()}) == "");
    CHECK(state_of(h) == ServerState::draining);  // fail_after = 2
    CHECK(feed(h, {bad()}) == "down ");
    CHECK(state_of(h) == ServerState::dead);
    CHECK(flag(h, state::kFlagOperatorDrain));  // still the operator's
    CHECK_FALSE(h.wants_flush());
    CHECK(feed(h, {good(), good()}) == "");
    CHECK(state_of(h) == ServerState::dead);  // recover_after = 3
    CHECK(h.wants_flush());                   // clients will read from it again: its old values go first
    CHECK(feed(h, {good()}) == "");
    CHECK(state_of(h) == ServerState::dead);  // a good reply without the flush
    CHECK(feed(h, {flushed()}) == "flush up ");
    CHECK(state_of(h) == ServerState::draining);
    CHECK_FALSE(h.wants_flush());
}

TEST_CASE("override: without flush_on_rejoin, a drained server cut off is draining again unflushed") {
    ServerHealth h = live_server(policy(2, 3, false));
    run(h, &ServerHealth::drain);
    feed(h, {bad(), bad()});
    CHECK_FALSE(h.wants_flush());
    CHECK(feed(h, {good(), good(), good()}) == "up ");
    CHECK(state_of(h) == ServerState::draining);
}

TEST_CASE("override: undrain is a rejoin: flush_all first, then live and recently down") {
    ServerHealth h = live_server();
    run(h, &ServerHealth::drain);
    const Command c = run(h, &ServerHealth::clear_override, 3000);
    CHECK(c.said == "rejoining: the next probe sends flush_all, then it is live and recently down for 1m");
    CHECK_FALSE(c.changed);  // nothing published changes until the flush
    CHECK(state_of(h) == ServerState::draining);
    CHECK(h.wants_flush());
    CHECK(feed(h, {good()}) == "");  // a reply without the flush does not rejoin
    CHECK(state_of(h) == ServerState::draining);
    CHECK(feed(h, {flushed()}, 4000) == "flush up ");
    CHECK(state_of(h) == ServerState::live);
    CHECK(h.view().flushes == 1);
    CHECK_FALSE(flag(h, state::kFlagOperatorOverride));
    CHECK_FALSE(flag(h, state::kFlagOperatorDrain));
    CHECK(flag(h, state::kFlagRecentlyDown));
    CHECK(h.view().recently_down_until_unix_ms == 4000 + 60'000);
    CHECK_FALSE(h.wants_flush());
}

TEST_CASE("override: without flush_on_rejoin, undrain publishes live at once") {
    ServerHealth h = live_server(policy(2, 3, false));
    run(h, &ServerHealth::drain);
    const Command c = run(h, &ServerHealth::clear_override, 3000);
    CHECK(c.said == "live and recently down for 1m (flush_on_rejoin is off: not flushed)");
    CHECK(c.changed);
    CHECK(c.events == "up ");
    CHECK(state_of(h) == ServerState::live);
    CHECK(flag(h, state::kFlagRecentlyDown));
}

TEST_CASE("override: undrain of a server that does not answer leaves it to probes") {
    ServerHealth h = live_server();
    run(h, &ServerHealth::drain);
    feed(h, {bad(), bad()});
    REQUIRE(state_of(h) == ServerState::dead);
    const Command c = run(h, &ServerHealth::clear_override);
    CHECK(c.said == "override cleared; it does not answer: it rejoins, flushed, when it does");
    CHECK(c.changed);  // the flags changed
    CHECK_FALSE(flag(h, state::kFlagOperatorOverride));
    // Then the ordinary rejoin: recover_after good probes, the last one flushed.
    CHECK(feed(h, {good(), good()}) == "");
    CHECK(h.wants_flush());
    CHECK(feed(h, {flushed()}) == "flush up ");
    CHECK(state_of(h) == ServerState::live);
    CHECK(flag(h, state::kFlagRecentlyDown));
}

TEST_CASE("override: a server that fails before its rejoin flush is dead, override gone") {
    ServerHealth h = live_server();
    run(h, &ServerHealth::drain);
    run(h, &ServerHealth::clear_override);
    CHECK(feed(h, {bad(), bad()}) == "down ");
    CHECK(state_of(h) == ServerState::dead);
    CHECK_FALSE(flag(h, state::kFlagOperatorOverride));
}

TEST_CASE("override: down wins over good probes until up, and up is a rejoin") {
    ServerHealth h = live_server();
    const Command c = run(h, &ServerHealth::force_down);
    CHECK(c.said == "down (was live) until `mcctl up`");
    CHECK(state_of(h) == ServerState::dead);
    CHECK(flag(h, state::kFlagOperatorOverride));
    CHECK_FALSE(flag(h, state::kFlagOperatorDrain));
    CHECK(feed(h, {good(), good(), good(), good()}) == "");
    CHECK(state_of(h) == ServerState::dead);
    CHECK(h.view().last_error[0] == '\0');  // probes still run: no error to show
    run(h, &ServerHealth::clear_override);
    CHECK(feed(h, {flushed()}) == "flush up ");
    CHECK(state_of(h) == ServerState::live);
    CHECK(flag(h, state::kFlagRecentlyDown));
}

TEST_CASE("override: drain replaces down and the reverse; up without an override says so") {
    ServerHealth h = live_server();
    CHECK(run(h, &ServerHealth::clear_override).said == "no operator override: probes decide");
    run(h, &ServerHealth::force_down);
    run(h, &ServerHealth::drain);
    CHECK(state_of(h) == ServerState::draining);
    CHECK(h.override_kind() == Override::drain);
    run(h, &ServerHealth::force_down);
    CHECK(state_of(h) == ServerState::dead);
    CHECK(h.override_kind() == Override::down);
    // A drain during a pending rejoin cancels the rejoin.
    run(h, &ServerHealth::clear_override);
    REQUIRE(h.rejoin_pending());
    run(h, &ServerHealth::drain);
    CHECK_FALSE(h.rejoin_pending());
    CHECK_FALSE(h.wants_flush());
}

TEST_CASE("override: an operator's flush is sent once and counted, without changing the state") {
    ServerHealth h = live_server();
    CHECK_FALSE(h.take_operator_flush());
    h.request_flush();
    CHECK(h.take_operator_flush());
    CHECK_FALSE(h.take_operator_flush());
    const HealthChange change = h.on_probe(flushed(), 3000);
    REQUIRE(change.events.size() == 1);
    CHECK(change.events[0].detail == "flush_all asked by the operator");
    CHECK(h.view().flushes == 1);
    CHECK_FALSE(change.routing_changed);
    CHECK(state_of(h) == ServerState::live);
}

TEST_CASE("history: transitions counted by the state entered, probe round-trips in the histogram") {
    ServerHealth h = live_server();
    run(h, &ServerHealth::drain);
    run(h, &ServerHealth::clear_override);
    feed(h, {flushed()});
    feed(h, {bad(), bad()});
    const auto& to = h.history().transitions_to;
    CHECK(to[size_t(ServerState::live)] == 2);
    CHECK(to[size_t(ServerState::draining)] == 1);
    CHECK(to[size_t(ServerState::dead)] == 1);
    CHECK(h.view().transitions == 4);
    CHECK(h.history().rtt.count() == 2);         // the good probes: 250us each
    CHECK(h.history().rtt.at_or_below(0) == 0);  // <= 100us
    CHECK(h.history().rtt.at_or_below(2) == 2);  // <= 500us
}

// A restarted daemon takes over what its predecessor published (carry_over).
TEST_CASE("carry over: a dead server still owes its flush, an override and a pending rejoin survive") {
    ServerHealth before = live_server();
    feed(before, {bad(), bad()});
    REQUIRE(state_of(before) == ServerState::dead);
    ServerHealth after(policy());
    after.carry_over(before.view(), 0, 5000);
    CHECK(state_of(after) == ServerState::dead);
    CHECK(feed(after, {good(), good()}) == "");
    CHECK(after.wants_flush());
    CHECK(feed(after, {flushed()}) == "flush up ");
    CHECK(state_of(after) == ServerState::live);

    ServerHealth drained = live_server();
    run(drained, &ServerHealth::drain);
    run(drained, &ServerHealth::clear_override, 3000);  // rejoin pending
    ServerHealth successor(policy());
    successor.carry_over(drained.view(), 0, 5000);
    CHECK(state_of(successor) == ServerState::draining);
    CHECK(successor.override_kind() == Override::drain);
    CHECK(successor.rejoin_pending());
    CHECK(successor.wants_flush());
}

TEST_CASE("carry over: the window resumes with what it had left, never more than its length") {
    ServerHealth before = live_server();
    feed(before, {bad(), bad()});
    feed(before, {good(), good(), flushed()}, 10'000);
    REQUIRE(flag(before, state::kFlagRecentlyDown));
    ServerHealth after(policy());
    after.carry_over(before.view(), 20'000, 7'000'000);  // a wall-clock step between the two
    CHECK(flag(after, state::kFlagRecentlyDown));
    CHECK(after.view().recently_down_until_unix_ms == 7'020'000);
    ServerHealth capped(policy());
    capped.carry_over(before.view(), 99'000'000, 0);
    CHECK(capped.view().recently_down_until_unix_ms == 60'000);
    ServerHealth over(policy());
    over.carry_over(before.view(), 0, 0);
    CHECK_FALSE(flag(over, state::kFlagRecentlyDown));
}
