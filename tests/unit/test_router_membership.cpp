// The router after a membership change (docs/DESIGN.md, "Membership
// changes"): within the window, a key whose server changed with the list
// looks, on a miss, at its server before the change.
#include <doctest/doctest.h>

#include "libshim/clock.hpp"
#include "libshim/router.hpp"
#include "scratch_dir.hpp"
#include "state_fixture.hpp"
#include "test_router_support.hpp"

using namespace mcwatch;
using namespace mcwatch::route;
using test::fixture_servers;
using test::FixtureServer;
using test::StateFixture;

namespace {

test::FixtureOptions joined_after(uint32_t previous_count, state::Distribution distribution, int64_t changed_ms) {
    test::FixtureOptions options;
    options.distribution = options.previous_distribution = distribution;
    options.previous = fixture_servers(previous_count);
    options.membership_changed_unix_ms = changed_ms;
    options.recently_down_window_s = 60;
    return options;
}

}  // namespace

TEST_CASE("router membership: a key placed elsewhere before a join looks at its server before") {
    for (const state::Distribution distribution : {state::Distribution::ketama, state::Distribution::modula}) {
        CAPTURE(int(distribution));
        test::ScratchDir dir;
        const std::string path = dir.file("state");
        StateFixture file(path, fixture_servers(5), joined_after(4, distribution, unix_ms()));
        Router router(test::topology_of(test::numbered_servers(5), distribution, state::Hash::md5),
                      std::make_shared<StateSource>(path));
        const Topology before = test::topology_of(test::numbered_servers(4), distribution, state::Hash::md5);
        size_t moved = 0;
        const auto keys = test::router_keys(4000);
        for (const std::string& key : keys) {
            const Decision d = router.route(key.data(), key.size());
            const uint32_t was = before.native(key.data(), key.size());
            REQUIRE(d.target == int32_t(router.topology().native(key.data(), key.size())));
            if (int32_t(was) == d.target) {
                REQUIRE(d.flags == 0);
            } else {
                ++moved;
                REQUIRE(d.flags == kRouteJoined);
                REQUIRE(d.fallback == int32_t(was));
            }
        }
        // ketama moves about a fifth of the keys to the new server; modula most.
        CHECK(moved > keys.size() / 10);
        if (distribution == state::Distribution::modula) CHECK(moved > keys.size() / 2);
    }
}

TEST_CASE("router membership: no fallback after the window, to a dead server, or for another list") {
    test::ScratchDir dir;
    const std::string path = dir.file("state");
    const auto keys = test::router_keys(2000);
    auto joined = [&](Router& router) {
        size_t n = 0;
        for (const std::string& key : keys)
            if (router.route(key.data(), key.size()).flags & kRouteJoined) ++n;
        return n;
    };
    SUBCASE("the window is over") {
        StateFixture file(path, fixture_servers(5), joined_after(4, state::Distribution::ketama, unix_ms() - 61'000));
        Router router(test::topology_of(test::numbered_servers(5), state::Distribution::ketama, state::Hash::md5),
                      std::make_shared<StateSource>(path));
        CHECK(joined(router) == 0);
    }
    SUBCASE("the server before is dead: its keys are lost anyway, not looked for") {
        StateFixture file(path, fixture_servers(5), joined_after(4, state::Distribution::ketama, unix_ms()));
        file.set_state(1, state::ServerState::dead);
        Router router(test::topology_of(test::numbered_servers(5), state::Distribution::ketama, state::Hash::md5),
                      std::make_shared<StateSource>(path));
        for (const std::string& key : keys) {
            const Decision d = router.route(key.data(), key.size());
            if (d.flags & kRouteJoined) CHECK(d.fallback != 1);
        }
    }
    SUBCASE("a handle whose list is not the file's routes as before") {
        StateFixture file(path, fixture_servers(5), joined_after(4, state::Distribution::ketama, unix_ms()));
        Router router(test::topology_of(test::numbered_servers(4), state::Distribution::ketama, state::Hash::md5),
                      std::make_shared<StateSource>(path));
        CHECK(joined(router) == 0);
    }
}

TEST_CASE("router membership: a removed server's keys have no fallback unless it was drained") {
    test::ScratchDir dir;
    const std::string path = dir.file("state");
    // Before: 10.1.0.1 .. 10.1.0.5; now the fifth is gone.
    StateFixture file(path, fixture_servers(4), joined_after(5, state::Distribution::ketama, unix_ms()));
    Router router(test::topology_of(test::numbered_servers(4), state::Distribution::ketama, state::Hash::md5),
                  std::make_shared<StateSource>(path));
    // The fifth server's keys have nowhere to be looked for (drain --move
    // moved them first); with ketama the others' keys never moved.
    for (const std::string& key : test::router_keys(2000)) CHECK(router.route(key.data(), key.size()).flags == 0);
}

TEST_CASE("router membership: a drained server's keys are looked for where its drain put them") {
    for (const state::Distribution distribution : {state::Distribution::ketama, state::Distribution::modula}) {
        CAPTURE(int(distribution));
        test::ScratchDir dir;
        // While the fifth server drained, clients (and drain --move) put its
        // keys on their substitutes: a router over a file with it draining.
        const std::string draining_path = dir.file("draining");
        StateFixture draining_file(draining_path, fixture_servers(5), joined_after(0, distribution, 0));
        draining_file.set_state(4, state::ServerState::draining);
        Router while_draining(test::topology_of(test::numbered_servers(5), distribution, state::Hash::md5),
                              std::make_shared<StateSource>(draining_path));
        // Then it was removed: the previous list marks it as taking no keys.
        const std::string path = dir.file("state");
        test::FixtureOptions options = joined_after(5, distribution, unix_ms());
        options.previous_flags = {0, 0, 0, 0, state::kPreviousAvoided};
        StateFixture file(path, fixture_servers(4), options);
        Router router(test::topology_of(test::numbered_servers(4), distribution, state::Hash::md5),
                      std::make_shared<StateSource>(path));
        const Topology five = test::topology_of(test::numbered_servers(5), distribution, state::Hash::md5);
        size_t drained_keys = 0, looked_for = 0;
        for (const std::string& key : test::router_keys(4000)) {
            if (five.native(key.data(), key.size()) != 4) continue;
            ++drained_keys;
            const int32_t put = while_draining.route(key.data(), key.size()).target;
            const Decision d = router.route(key.data(), key.size());
            if (put == d.target) {
                REQUIRE(d.flags == 0);
            } else {
                ++looked_for;
                REQUIRE(d.flags == kRouteJoined);
                REQUIRE(d.fallback == put);
            }
        }
        REQUIRE(drained_keys > 400);
        // ketama's substitute is the key's server once the fifth is gone;
        // modula's salted rehash is almost never its placement over four.
        if (distribution == state::Distribution::ketama)
            CHECK(looked_for == 0);
        else
            CHECK(looked_for > drained_keys / 2);
    }
}
