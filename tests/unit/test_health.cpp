#include <doctest/doctest.h>

#include "daemon/health.hpp"
#include "tests/unit/health_helpers.hpp"

using namespace mcwatch;

using namespace mcwatch::health_test;

TEST_CASE("health: unknown until the first probe, live after one good one") {
    ServerHealth h(policy());
    CHECK(state_of(h) == ServerState::unknown);
    CHECK(h.view().rtt_us == state::kUnknown);
    CHECK(feed(h, {good()}) == "up ");
    CHECK(state_of(h) == ServerState::live);
    CHECK(h.view().rtt_us == 250);
    CHECK(h.view().curr_items == 7);
    CHECK(std::string(h.view().version) == "1.6.18");
    CHECK((h.view().flags & state::kFlagRecentlyDown) == 0);  // nothing to recover from
}

TEST_CASE("health: dead only after fail_after consecutive failures") {
    ServerHealth h(policy(3));
    feed(h, {good()});
    CHECK(feed(h, {bad(), bad()}) == "");
    CHECK(state_of(h) == ServerState::live);
    CHECK(feed(h, {good(), bad(), bad()}) == "");  // a good probe resets the count
    CHECK(state_of(h) == ServerState::live);
    CHECK(feed(h, {bad()}, 5000) == "down ");
    CHECK(state_of(h) == ServerState::dead);
    CHECK(h.view().since_unix_ms == 5000);
    CHECK(std::string(h.view().last_error) == "connection refused");
    CHECK(h.view().rtt_us == state::kUnknown);
}

TEST_CASE("health: live again after recover_after good probes, the last one flushing") {
    ServerHealth h(policy(1, 3));
    feed(h, {good(), bad()});
    REQUIRE(state_of(h) == ServerState::dead);
    CHECK_FALSE(h.wants_flush());
    feed(h, {good()});
    CHECK_FALSE(h.wants_flush());
    feed(h, {good()});
    CHECK(h.wants_flush());  // the next good probe makes it live: flush first
    ProbeResult unflushed = good();
    CHECK(feed(h, {unflushed}) == "");  // a reply without the flush does not rejoin
    CHECK(state_of(h) == ServerState::dead);
    CHECK(feed(h, {good(), good(), flushed()}, 9000) == "flush up ");
    CHECK(state_of(h) == ServerState::live);
    CHECK(h.view().flushes == 1);
    CHECK((h.view().flags & state::kFlagRecentlyDown) != 0);
    CHECK(h.view().recently_down_until_unix_ms == 9000 + 60'000);
}

TEST_CASE("health: without flush_on_rejoin no flush is asked for") {
    ServerHealth h(policy(1, 1, false));
    feed(h, {good(), bad()});
    CHECK_FALSE(h.wants_flush());
    CHECK(feed(h, {good()}) == "up ");
}

TEST_CASE("health: the recently-down window ends on time") {
    ServerHealth h(policy(1, 1, false));
    feed(h, {good(), bad(), good()}, 1000);
    REQUIRE((h.view().flags & state::kFlagRecentlyDown) != 0);
    const HealthChange early = h.tick(1000 + 59'999);
    CHECK(early.events.empty());
    CHECK_FALSE(early.routing_changed);
    const HealthChange over = h.tick(1000 + 60'000);
    CHECK(over.events.size() == 1);
    CHECK(over.routing_changed);
    CHECK((h.view().flags & state::kFlagRecentlyDown) == 0);
    CHECK(h.view().recently_down_until_unix_ms == 0);
}

TEST_CASE("health: a restart is a new pid or uptime going backwards, even without a failure") {
    ServerHealth h(policy());
    feed(h, {good({.pid = 100, .uptime_s = 50})});
    CHECK(feed(h, {good({.pid = 100, .uptime_s = 51})}) == "");
    CHECK(feed(h, {good({.pid = 200, .uptime_s = 1})}, 7000) == "restart ");
    CHECK(h.view().restarts == 1);
    CHECK(h.view().last_restart_unix_ms == 7000);
    CHECK(feed(h, {good({.pid = 200, .uptime_s = 0})}) == "restart ");  // same pid, uptime went back
    CHECK(h.view().restarts == 2);
    CHECK(state_of(h) == ServerState::live);
}

TEST_CASE("health: routing_changed is set exactly when state or flags change") {
    ServerHealth h(policy(1, 1, false));
    CHECK(h.on_probe(good(), 1).routing_changed);
    CHECK_FALSE(h.on_probe(good(), 2).routing_changed);
    CHECK(h.on_probe(bad(), 3).routing_changed);
}

TEST_CASE("health: a server answering probes with an error line stays live, never flushed, with a warning") {
    ServerHealth h(policy(2, 3));
    feed(h, {good()});
    CHECK(feed(h, {error_reply(), error_reply(), error_reply(), error_reply()}) == "probe_error_reply ");
    CHECK(state_of(h) == ServerState::live);
    CHECK(h.view().consecutive_failures == 0);
    CHECK(h.view().probes_failed == 0);
    CHECK(h.history().error_replies == 4);
    CHECK(h.answering_errors());
    CHECK(std::string(h.view().last_error) == "error reply: \"ERROR Too many open connections\"");
    CHECK(!h.wants_flush());
    // An answer between two failures: they are not consecutive.
    CHECK(feed(h, {bad(), error_reply(), bad()}) == "probe_error_reply ");
    CHECK(state_of(h) == ServerState::live);
    CHECK(feed(h, {good()}) == "");
    CHECK(!h.answering_errors());
    CHECK(h.view().last_error[0] == '\0');
    CHECK(h.view().flushes == 0);
}

TEST_CASE("health: an error line is a first answer; a dead server answering errors stays dead") {
    ServerHealth fresh(policy());
    CHECK(feed(fresh, {error_reply()}) == "probe_error_reply up ");
    CHECK(state_of(fresh) == ServerState::live);

    ServerHealth h(policy(2, 3));
    feed(h, {good(), bad(), bad()});
    REQUIRE(state_of(h) == ServerState::dead);
    feed(h, {error_reply(), error_reply(), error_reply(), error_reply()});
    CHECK(state_of(h) == ServerState::dead);  // no stats, no flush: no rejoin
}

TEST_CASE("health: a server refusing flush_all rejoins only when it holds no items") {
    ServerHealth h(policy(2, 2));
    feed(h, {good(), bad(), bad()});
    REQUIRE(state_of(h) == ServerState::dead);
    ProbeResult refused = good();  // curr_items 7: values from before the outage
    refused.flush_refused = "client error: \"CLIENT_ERROR flush_all not allowed\"";
    CHECK(feed(h, {good()}) == "");
    REQUIRE(h.wants_flush());
    CHECK(feed(h, {refused, refused, refused}) == "rejoin_blocked ");
    CHECK(state_of(h) == ServerState::dead);
    CHECK(h.rejoin_blocked());
    CHECK(std::string(h.view().last_error) == "flush_all refused, 7 items held: kept out until empty (restart it)");
    CHECK(h.wants_flush());

    ProbeResult restarted = good({.pid = 101, .uptime_s = 1});
    restarted.stats.curr_items = 0;
    restarted.flush_refused = refused.flush_refused;
    CHECK(feed(h, {restarted}) == "restart up ");
    CHECK(state_of(h) == ServerState::live);
    CHECK(!h.rejoin_blocked());
    CHECK(h.view().last_error[0] == '\0');
    CHECK(h.view().flushes == 0);
}

TEST_CASE("health: another memcached answering for a live server is taken out and rejoins flushed") {
    // A name now resolving to a standby: a new address, a new pid.
    ServerHealth moved(policy(2, 3));
    ProbeResult first = good({.pid = 100, .uptime_s = 500});
    first.resolved = "127.0.0.1:11211";
    feed(moved, {first}, 1000);
    ProbeResult standby = good({.pid = 200, .uptime_s = 2});  // even a young process: the address changed
    standby.resolved = "127.0.0.2:11211";
    CHECK(feed(moved, {standby}, 2000) == "restart down ");
    CHECK(state_of(moved) == ServerState::dead);
    CHECK(std::string(moved.view().last_error).empty());
    CHECK(!moved.wants_flush());
    CHECK(feed(moved, {standby}, 3000) == "");
    REQUIRE(moved.wants_flush());  // the third good probe flushes, then it is live
    ProbeResult flushed = standby;
    flushed.flushed = true;
    CHECK(feed(moved, {flushed}, 4000) == "flush up ");
    CHECK(state_of(moved) == ServerState::live);

    // Same address, a process up since before our last probe: not a restart of ours.
    ServerHealth swapped(policy(2, 3));
    feed(swapped, {good({.pid = 100, .uptime_s = 500})}, 1000);
    CHECK(feed(swapped, {good({.pid = 300, .uptime_s = 9000})}, 2000) == "restart down ");
    // Same address, a process started since: a restart, empty, stays live.
    ServerHealth restarted(policy(2, 3));
    feed(restarted, {good({.pid = 100, .uptime_s = 500})}, 1000);
    CHECK(feed(restarted, {good({.pid = 300, .uptime_s = 2})}, 2000) == "restart ");
    CHECK(state_of(restarted) == ServerState::live);
}
