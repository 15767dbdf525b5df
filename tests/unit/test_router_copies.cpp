// A key's copies (docs/DESIGN.md, "Replicas"): the first live servers of its
// order, the second being where the key goes when its server dies.
#include <doctest/doctest.h>

#include <set>

#include "libshim/placement.hpp"
#include "mcshim.h"
#include "libshim/router.hpp"
#include "libshim/routing_names.hpp"
#include "scratch_dir.hpp"
#include "state_fixture.hpp"
#include "test_router_support.hpp"

using namespace mcwatch;
using namespace mcwatch::route;

namespace {

const state::Distribution kDistributions[] = {state::Distribution::modula, state::Distribution::ketama,
                                              state::Distribution::ketama_weighted};

std::vector<ServerAddress> servers_for(state::Distribution distribution, uint32_t count) {
    std::vector<ServerAddress> specs = test::numbered_servers(count);
    if (distribution == state::Distribution::ketama_weighted)
        for (uint32_t i = 0; i < count; ++i) specs[i].weight = 1 + i % 3;
    return specs;
}

uint32_t copies_of(const PlacementView& view, const std::string& key, const std::vector<uint8_t>& status, uint32_t n,
                   int32_t* out) {
    return copies(
        view, key.data(), key.size(), [&](uint32_t i) { return status[i]; }, n, out);
}

}  // namespace

TEST_CASE("copies: the second copy is where the key goes when its server dies, for every distribution") {
    const auto keys = test::router_keys(5000);
    for (const state::Distribution distribution : kDistributions) {
        CAPTURE(distribution_name(distribution));
        test::ScratchDir dir;
        const std::string path = dir.file("state");
        std::vector<test::FixtureServer> fixture;
        for (const ServerAddress& spec : servers_for(distribution, 6)) {
            const std::string address = spec.text;
            fixture.push_back({address, address, spec.weight});
        }
        test::FixtureOptions options;
        options.distribution = distribution;
        test::StateFixture file(path, fixture, options);
        Router router(test::topology_of(servers_for(distribution, 6), distribution, state::Hash::md5),
                      std::make_shared<StateSource>(path));
        const PlacementView view = router.topology().view();
        for (const std::string& key : keys) {
            int32_t out[kMaxCopies];
            const uint32_t n = router.copies_with(view, key.data(), key.size(), 3, out);
            REQUIRE(n == 3);
            const Decision d = router.route_with(view, key.data(), key.size());
            CHECK(out[0] == d.target);
            const Decision without = router.route_without(view, key.data(), key.size(), uint32_t(out[0]));
            CHECK(out[1] == without.target);
            CHECK(std::set<int32_t>(out, out + n).size() == n);
        }
    }
}

TEST_CASE("copies: order[k] is the substitute once order[0..k-1] are dead; dead servers are skipped") {
    const auto keys = test::router_keys(5000);
    constexpr uint32_t kServers = 6;
    for (const state::Distribution distribution : kDistributions) {
        CAPTURE(distribution_name(distribution));
        const Topology topology =
            test::topology_of(servers_for(distribution, kServers), distribution, state::Hash::md5);
        const PlacementView view = topology.view();
        const std::vector<uint8_t> live(kServers, 0);
        for (const std::string& key : keys) {
            int32_t order[kMaxCopies];
            REQUIRE(copies_of(view, key, live, kServers, order) == kServers);
            CHECK(order[0] == int32_t(topology.native(key.data(), key.size())));
            // Kill the first k of the order: the copies are the rest, in order,
            // and the first is where decide() sends the key.
            for (uint32_t k = 1; k < kServers; ++k) {
                std::vector<uint8_t> status(kServers, 0);
                for (uint32_t j = 0; j < k; ++j) status[size_t(order[j])] = kStatusAvoid;
                int32_t out[kMaxCopies];
                REQUIRE(copies_of(view, key, status, 2, out) == std::min(2u, kServers - k));
                CHECK(out[0] == order[k]);
                if (k + 1 < kServers) CHECK(out[1] == order[k + 1]);
                uint32_t allowed = kServers - k;
                const Decision d = decide(
                    view, key.data(), key.size(), [&](uint32_t i) { return status[i]; }, allowed);
                CHECK(d.target == order[k]);
            }
            // A dead server in the middle of the order is skipped, the rest keep their rank.
            std::vector<uint8_t> status(kServers, 0);
            status[size_t(order[1])] = kStatusAvoid | kStatusDraining;
            int32_t out[kMaxCopies];
            REQUIRE(copies_of(view, key, status, 3, out) == 3);
            CHECK(out[0] == order[0]);
            CHECK(out[1] == order[2]);
            CHECK(out[2] == order[3]);
        }
    }
}

TEST_CASE("copies: more copies asked than servers may take keys gives the live ones; unpublished never a copy") {
    for (const state::Distribution distribution : kDistributions) {
        CAPTURE(distribution_name(distribution));
        const Topology topology = test::topology_of(servers_for(distribution, 4), distribution, state::Hash::md5);
        const PlacementView view = topology.view();
        std::vector<uint8_t> status = {0, kStatusAvoid, 0, kStatusUnpublished};
        for (const std::string& key : test::router_keys(2000)) {
            int32_t out[kMaxCopies];
            const uint32_t n = copies_of(view, key, status, 8, out);
            const uint32_t native = topology.native(key.data(), key.size());
            const std::set<int32_t> got(out, out + n);
            CHECK(got.count(1) == 0);
            if (native == 3) {
                // Its own key: copy 0, then the live ones.
                CHECK(n == 3);
                CHECK(out[0] == 3);
            } else {
                CHECK(n == 2);
                CHECK(got.count(3) == 0);
            }
            CHECK(got.size() == n);
        }
        const std::vector<uint8_t> all_dead(4, kStatusAvoid);
        int32_t out[kMaxCopies];
        CHECK(copies_of(view, "k", all_dead, 2, out) == 0);
    }
    // One server: one copy.
    const Topology one = test::topology_of(test::numbered_servers(1), state::Distribution::ketama, state::Hash::md5);
    int32_t out[kMaxCopies];
    CHECK(copies_of(one.view(), "k", {0}, 2, out) == 1);
    CHECK(out[0] == 0);
}

TEST_CASE("copies: the C API returns a key's copies in order, as many as the state file's replicas") {
    test::ScratchDir dir;
    const std::string path = dir.file("state");
    std::vector<test::FixtureServer> fixture;
    for (const ServerAddress& spec : test::numbered_servers(4)) fixture.push_back({spec.text, spec.text, 1});
    test::FixtureOptions options;
    options.replicas = 2;
    test::StateFixture file(path, fixture, options);
    file.set_state(2, state::ServerState::dead);
    mcshim_t* shim = mcshim_open(path.c_str());
    REQUIRE(shim);
    int32_t out[MCSHIM_MAX_COPIES];
    CHECK(mcshim_copies(shim, "k", 1, out, MCSHIM_MAX_COPIES) == MCSHIM_E_NO_SERVERS);
    REQUIRE(mcshim_use_state_servers(shim) == MCSHIM_OK);
    for (const std::string& key : test::router_keys(2000)) {
        mcshim_route_t r;
        REQUIRE(mcshim_route(shim, key.data(), key.size(), &r) == MCSHIM_OK);
        REQUIRE(mcshim_copies(shim, key.data(), key.size(), out, MCSHIM_MAX_COPIES) == 2);
        CHECK(out[0] == r.target);
        CHECK(out[1] != out[0]);
        CHECK(out[1] != 2);
        CHECK(mcshim_copies(shim, key.data(), key.size(), out, 1) == 1);
    }
    CHECK(mcshim_copies(shim, "k", 1, nullptr, 2) == MCSHIM_E_INVALID);
    mcshim_close(shim);
}
