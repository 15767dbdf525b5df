// The C API as a C caller sees it.
#include <doctest/doctest.h>

#include <cstdlib>
#include <cstring>
#include <ctime>

#include "mcshim.h"
#include "libshim/placement.hpp"
#include "scratch_dir.hpp"
#include "state_fixture.hpp"
#include "test_router_support.hpp"

using namespace mcwatch;
using test::StateFixture;

TEST_CASE("router: C API routes like the router") {
    test::ScratchDir dir;
    const std::string path = dir.file("state");
    test::FixtureOptions options;
    options.distribution = state::Distribution::modula;
    options.hash = state::Hash::crc;
    options.recently_down_window_s = 120;
    options.writeback_ttl_s = 30;
    StateFixture file(path,
                      {{"127.0.0.1:11211", "127.0.0.1:11211", 1},
                       {"127.0.0.1:11212", "127.0.0.1:11212", 2},
                       {"unix:/run/mc.sock", "", 1}},
                      options);
    file.set_state(1, state::ServerState::dead);

    mcshim_t* shim = mcshim_open(path.c_str());
    REQUIRE(shim);
    mcshim_route_t r;
    CHECK(mcshim_route(shim, "k", 1, &r) == MCSHIM_E_NO_SERVERS);

    SUBCASE("servers from the state file") {
        REQUIRE(mcshim_use_state_servers(shim) == MCSHIM_OK);
        REQUIRE(mcshim_server_count(shim) == 3);
        CHECK(std::string(mcshim_server_address(shim, 2)) == "unix:/run/mc.sock");
        CHECK(mcshim_server_address(shim, 3) == nullptr);
        const auto topology = test::topology_of(
            test::specs_of({{"127.0.0.1:11211", 1}, {"127.0.0.1:11212", 2}, {"unix:/run/mc.sock", 1}}, true),
            state::Distribution::modula, state::Hash::crc);
        size_t moved = 0;
        for (const std::string& key : test::router_keys(3000)) {
            REQUIRE(mcshim_route(shim, key.data(), key.size(), &r) == MCSHIM_OK);
            CHECK(r.native == int32_t(topology.native(key.data(), key.size())));
            if (r.native == 1) {
                ++moved;
                CHECK(r.flags == MCSHIM_ROUTE_SUBSTITUTE);
                CHECK(r.target != 1);
            } else {
                CHECK(r.target == r.native);
            }
            CHECK(r.fallback == -1);
        }
        CHECK(moved > 0);
        CHECK(mcshim_state_usable(shim) == 1);
        CHECK(mcshim_writeback_ttl(shim) == 30);
        const int64_t clamped = mcshim_clamp_expiration(shim, 0);
        CHECK(clamped == 120);
        CHECK(mcshim_clamp_expiration(shim, 60) == 60);
        CHECK(mcshim_clamp_expiration(shim, int64_t(time(nullptr)) + 86400) == 120);
    }
    SUBCASE("declared servers, spelled differently from the daemon's") {
        const char* servers[] = {"localhost:11211", "localhost:11212", "/run/mc.sock"};
        const uint32_t weights[] = {1, 2, 1};
        REQUIRE(mcshim_set_servers(shim, servers, weights, 3, MCSHIM_KETAMA, MCSHIM_HASH_MD5) == MCSHIM_OK);
        bool saw_substitute = false;
        for (const std::string& key : test::router_keys(2000)) {
            REQUIRE(mcshim_route(shim, key.data(), key.size(), &r) == MCSHIM_OK);
            CHECK(r.target != 1);
            saw_substitute |= (r.flags & MCSHIM_ROUTE_SUBSTITUTE) != 0;
        }
        CHECK(saw_substitute);
        file.set_states({{state::ServerState::dead, 0}, {state::ServerState::dead, 0}, {state::ServerState::dead, 0}});
        CHECK(mcshim_route(shim, "k", 1, &r) == MCSHIM_E_ALL_DEAD);
        CHECK(r.flags == MCSHIM_ROUTE_ALL_DEAD);
        CHECK(r.target == -1);
    }
    SUBCASE("bad input") {
        const char* servers[] = {"localhost:11211", nullptr};
        CHECK(mcshim_set_servers(shim, servers, nullptr, 2, MCSHIM_KETAMA, MCSHIM_HASH_MD5) == MCSHIM_E_INVALID);
        CHECK(std::string(mcshim_last_error(shim)).find("NULL") != std::string::npos);
        const char* bad_port[] = {"localhost:0"};
        CHECK(mcshim_set_servers(shim, bad_port, nullptr, 1, MCSHIM_KETAMA, MCSHIM_HASH_MD5) == MCSHIM_E_INVALID);
        const char* good[] = {"localhost"};
        CHECK(mcshim_set_servers(shim, good, nullptr, 1, 7, MCSHIM_HASH_MD5) == MCSHIM_E_INVALID);
        CHECK(mcshim_set_servers(shim, good, nullptr, 1, MCSHIM_MODULA, 42) == MCSHIM_E_INVALID);
        if (!route::hash_available(state::Hash::hsieh))
            CHECK(mcshim_set_servers(shim, good, nullptr, 1, MCSHIM_MODULA, MCSHIM_HASH_HSIEH) == MCSHIM_E_HASH);
        CHECK(mcshim_set_servers(shim, good, nullptr, 0, MCSHIM_MODULA, MCSHIM_HASH_MD5) == MCSHIM_E_INVALID);
        CHECK(mcshim_route(nullptr, "k", 1, &r) == MCSHIM_E_INVALID);
        CHECK(mcshim_route(shim, "k", 1, nullptr) == MCSHIM_E_INVALID);
        CHECK(std::string(mcshim_strerror(MCSHIM_E_ALL_DEAD)) == "all servers are dead");
    }
    mcshim_close(shim);
}

TEST_CASE("router: C API without a state file") {
    test::ScratchDir dir;
    const char* outer = std::getenv("MCSHIM_STATE");
    const std::string saved = outer ? outer : "";
    setenv("MCSHIM_STATE", dir.file("absent").c_str(), 1);
    mcshim_t* shim = mcshim_open(nullptr);
    if (outer)
        setenv("MCSHIM_STATE", saved.c_str(), 1);
    else
        unsetenv("MCSHIM_STATE");
    REQUIRE(shim);
    CHECK(mcshim_use_state_servers(shim) == MCSHIM_E_NO_STATE);
    CHECK(std::string(mcshim_last_error(shim)).find(dir.file("absent")) != std::string::npos);
    const char* servers[] = {"10.0.0.1", "10.0.0.2", "10.0.0.3"};
    REQUIRE(mcshim_set_servers(shim, servers, nullptr, 3, MCSHIM_KETAMA, MCSHIM_HASH_MD5) == MCSHIM_OK);
    mcshim_route_t r;
    // Golden (libmemcached 1.1.4): ketama, md5, 10.0.0.1..3:11211.
    REQUIRE(mcshim_route(shim, "foo", 3, &r) == MCSHIM_OK);
    CHECK(r.native == 1);
    CHECK(r.target == 1);
    CHECK(r.flags == MCSHIM_ROUTE_STALE);
    CHECK(mcshim_state_usable(shim) == 0);
    CHECK(mcshim_clamp_expiration(shim, 0) == 3600);
    CHECK(mcshim_writeback_ttl(shim) == 600);
    CHECK(mcshim_hash_from_name("murmur3") == MCSHIM_HASH_MURMUR3);
    CHECK(mcshim_hash_from_name("default") == MCSHIM_HASH_DEFAULT);
    CHECK(mcshim_hash_from_name("nope") == -1);
    CHECK(mcshim_distribution_from_name("ketama_weighted") == MCSHIM_KETAMA_WEIGHTED);
    mcshim_close(shim);
    mcshim_close(nullptr);
}
