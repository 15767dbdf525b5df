// The router reading mcwatchd's view from a state file: generation-driven
// snapshots, address matching, staleness, replacement, and concurrent
// rewrites that must never show a reader a torn server list.
#include <doctest/doctest.h>

#include <atomic>
#include <ctime>
#include <thread>

#include "libshim/clock.hpp"
#include "libshim/router.hpp"
#include "libshim/slot_status.hpp"
#include "scratch_dir.hpp"
#include "state_fixture.hpp"
#include "test_router_support.hpp"

using namespace mcwatch;
using namespace mcwatch::route;
using test::fixture_servers;
using test::FixtureServer;
using test::StateFixture;

namespace {

std::unique_ptr<Router> router_for(const std::string& path, std::vector<ServerAddress> specs,
                                   state::Distribution distribution = state::Distribution::ketama) {
    return std::make_unique<Router>(test::topology_of(std::move(specs), distribution, state::Hash::md5),
                                    std::make_shared<StateSource>(path));
}

bool same(const Decision& a, const Decision& b) {
    return a.native == b.native && a.target == b.target && a.fallback == b.fallback && a.flags == b.flags;
}

}  // namespace

TEST_CASE("router: state file drives routing") {
    test::ScratchDir dir;
    const std::string path = dir.file("state");
    StateFixture file(path, fixture_servers(4));
    auto router = router_for(path, test::numbered_servers(4));
    const auto keys = test::router_keys(5000);

    for (const std::string& key : keys) {
        const Decision d = router->route(key.data(), key.size());
        REQUIRE(d.flags == 0);
        REQUIRE(d.target == int32_t(router->topology().native(key.data(), key.size())));
    }

    SUBCASE("a dead server's keys move at the next call after the generation changes") {
        file.set_state(2, state::ServerState::dead);
        size_t moved = 0;
        for (const std::string& key : keys) {
            const Decision d = router->route(key.data(), key.size());
            if (d.native == 2) {
                ++moved;
                CHECK(d.flags == kRouteSubstitute);
                CHECK(d.target != 2);
            } else {
                CHECK(d.target == d.native);
            }
        }
        CHECK(moved > 0);
        file.set_state(2, state::ServerState::live, state::kFlagRecentlyDown);
        for (const std::string& key : keys) {
            const Decision d = router->route(key.data(), key.size());
            CHECK(d.target == d.native);
            if (d.native == 2) CHECK(d.flags == kRouteRecentlyDown);
        }
    }
    SUBCASE("unknown routes as live; draining as dead") {
        file.set_states({{state::ServerState::unknown, 0},
                         {state::ServerState::draining, 0},
                         {state::ServerState::live, 0},
                         {state::ServerState::live, 0}});
        for (const std::string& key : keys) {
            const Decision d = router->route(key.data(), key.size());
            if (d.native == 1)
                CHECK(d.flags == (kRouteSubstitute | kRouteDraining));
            else
                CHECK(d.flags == 0);
        }
    }
    SUBCASE("all dead is an error") {
        file.set_states(std::vector<std::pair<state::ServerState, uint32_t>>(4, {state::ServerState::dead, 0}));
        const Decision d = router->route("k", 1);
        CHECK(d.flags == kRouteAllDead);
        CHECK(d.target == -1);
    }
    SUBCASE("a replaced file is picked up; the old mapping stays valid") {
        std::vector<FixtureServer> servers = fixture_servers(4);
        servers.push_back({"10.9.9.9:11211", "", 1});
        StateFixture replacement(path, servers);
        replacement.set_state(3, state::ServerState::dead);
        file.supersede();
        router->source()->check_now();
        size_t moved = 0;
        for (const std::string& key : keys) {
            const Decision d = router->route(key.data(), key.size());
            if (d.native == 3) {
                ++moved;
                CHECK(d.flags == kRouteSubstitute);
            }
        }
        CHECK(moved > 0);
    }
}

TEST_CASE("router: a missing or invalid state file means native placement") {
    test::ScratchDir dir;
    auto router = router_for(dir.file("nothing-here"), test::numbered_servers(3));
    const Decision d = router->route("key", 3);
    CHECK(d.flags == kRouteStale);
    CHECK(d.target == int32_t(router->topology().native("key", 3)));
    CHECK(router->source()->problem().find("does not exist") != std::string::npos);

    {
        FILE* garbage = std::fopen(dir.file("garbage").c_str(), "w");
        REQUIRE(garbage);
        std::fputs(std::string(4096, 'x').c_str(), garbage);
        std::fclose(garbage);
    }
    auto on_garbage = router_for(dir.file("garbage"), test::numbered_servers(3));
    CHECK(on_garbage->route("key", 3).flags == kRouteStale);

    // The file appears later: found at the next check.
    StateFixture file(dir.file("nothing-here"), fixture_servers(3));
    file.set_state(0, state::ServerState::dead);
    router->source()->check_now();
    CHECK(router->route("key", 3).flags != kRouteStale);
}

TEST_CASE("router: servers are matched to slots by address") {
    test::ScratchDir dir;
    const std::string path = dir.file("state");
    // Configured by name in the daemon, by number in the client, and back.
    StateFixture file(path, {{"localhost:11211", "127.0.0.1:11211", 1},
                             {"127.0.0.1:11212", "127.0.0.1:11212", 1},
                             {"unix:/run/mc.sock", "", 1},
                             {"10.0.0.9:11211", "10.0.0.9:11211", 1}});
    file.set_states({{state::ServerState::dead, 0},
                     {state::ServerState::dead, 0},
                     {state::ServerState::dead, 0},
                     {state::ServerState::dead, 0}});
    std::vector<ServerAddress> specs;
    for (const char* address : {"127.0.0.1:11211", "localhost:11212", "/run/mc.sock", "10.0.0.10:11211"}) {
        ServerAddress spec;
        std::string error;
        REQUIRE(ServerAddress::parse(address, 1, spec, error));
        specs.push_back(spec);
    }
    auto router = router_for(path, specs);
    CHECK(router->slot_of(0) == 0);   // 127.0.0.1:11211 is localhost:11211's resolved address
    CHECK(router->slot_of(1) == 1);   // localhost resolves to the slot's 127.0.0.1:11212
    CHECK(router->slot_of(2) == 2);   // /run/mc.sock is unix:/run/mc.sock
    CHECK(router->slot_of(3) == -1);  // not in the file: unpublished
    // Server 3 keeps its own keys; nothing says it is alive, so the dead
    // servers' keys fail rather than go there.
    for (const std::string& key : test::router_keys(1000)) {
        const Decision d = router->route(key.data(), key.size());
        if (d.native == 3)
            CHECK((d.target == 3 && d.flags == 0));
        else
            CHECK(d.flags == kRouteAllDead);
    }
}

TEST_CASE("router: a background resolution matches a name to a slot configured by number, later") {
    test::ScratchDir dir;
    const std::string path = dir.file("state");
    StateFixture file(path, {{"127.0.0.1:11212", "127.0.0.1:11212", 1}, {"10.0.0.9:11211", "10.0.0.9:11211", 1}});
    file.set_states({{state::ServerState::dead, 0}, {state::ServerState::live, 0}});
    std::vector<ServerAddress> specs;
    for (const char* address : {"localhost:11212", "10.0.0.9:11211"}) {
        ServerAddress spec;
        std::string error;
        REQUIRE(ServerAddress::parse(address, 1, spec, error));
        specs.push_back(spec);
    }
    Router router(test::topology_of(std::move(specs), state::Distribution::ketama, state::Hash::md5),
                  std::make_shared<StateSource>(path), NameResolution::background);
    // Decisions never wait for it; once it has answered, server 0 is the dead slot.
    bool matched = false;
    for (int attempt = 0; attempt < 500 && !matched; ++attempt) {
        for (const std::string& key : test::router_keys(50)) router.route(key.data(), key.size());
        matched = router.slot_of(0) == 0;
        if (!matched) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    CHECK(matched);
    CHECK(router.slot_of(1) == 1);
    for (const std::string& key : test::router_keys(500)) CHECK(router.route(key.data(), key.size()).target == 1);
}

TEST_CASE("router: readers never see a torn server list while the table is rewritten") {
    test::ScratchDir dir;
    const std::string path = dir.file("state");
    constexpr uint32_t kServers = 6;
    StateFixture file(path, fixture_servers(kServers));
    using States = std::vector<std::pair<state::ServerState, uint32_t>>;
    const auto dead = [](std::initializer_list<uint32_t> which) {
        States s(kServers, {state::ServerState::live, 0});
        for (uint32_t i : which) s[i] = {state::ServerState::dead, 0};
        return s;
    };
    // Two views whose mixture routes differently from both.
    const States view_a = dead({0, 1, 2});
    const States view_b = dead({3, 4, 5});
    for (const state::Distribution distribution : {state::Distribution::ketama, state::Distribution::modula}) {
        file.set_states(view_a);
        auto router = router_for(path, test::numbered_servers(kServers), distribution);
        const auto keys = test::router_keys(2000, 99);
        // Expected decisions under each view, from a pure computation.
        std::vector<Decision> expect_a, expect_b;
        const PlacementView pv = router->topology().view();
        for (const States* view : {&view_a, &view_b}) {
            std::vector<uint8_t> bits(kServers);
            for (uint32_t i = 0; i < kServers; ++i)
                bits[i] = status_bits(uint32_t((*view)[i].first), (*view)[i].second);
            auto& out = view == &view_a ? expect_a : expect_b;
            for (const std::string& key : keys)
                out.push_back(decide(
                    pv, key.data(), key.size(), [&](uint32_t i) { return bits[i]; }, 3));
        }
        std::atomic<bool> stop{false};
        std::atomic<size_t> torn{0}, decisions{0};
        std::vector<std::thread> readers;
        for (int r = 0; r < 3; ++r) {
            readers.emplace_back([&, r] {
                size_t k = size_t(r) * 97;
                while (!stop.load(std::memory_order_relaxed)) {
                    k = (k + 1) % keys.size();
                    const Decision d = router->route(keys[k].data(), keys[k].size());
                    if (!same(d, expect_a[k]) && !same(d, expect_b[k])) ++torn;
                    ++decisions;
                }
            });
        }
        const uint64_t until = monotonic_ns() + 400'000'000ull;
        size_t flips = 0;
        while (monotonic_ns() < until) {
            file.set_states(flips++ % 2 ? view_a : view_b);
            if (flips % 64 == 0) std::this_thread::yield();
        }
        stop = true;
        for (auto& reader : readers) reader.join();
        CAPTURE(flips);
        CAPTURE(decisions.load());
        CHECK(torn == 0);
        CHECK(decisions > 1000);
    }
}

TEST_CASE("router: a libmemcached handle's own continuum and hash route alike") {
    test::ScratchDir dir;
    const std::string path = dir.file("state");
    StateFixture file(path, fixture_servers(5));
    file.set_state(2, state::ServerState::dead);
    const auto specs = test::numbered_servers(5);
    auto router = router_for(path, specs);
    const auto handle_view = [](const memcached_st* memc) {
        PlacementView view;
        view.consistent = true;
        view.server_count = memcached_server_count(memc);
        view.ring = reinterpret_cast<const RingPoint*>(memc->ketama.continuum);
        view.ring_size = memc->ketama.continuum_points_counter;
        view.hasher = {memc->hashkit.base_hash.function, memc->hashkit.base_hash.context};
        return view;
    };
    const auto keys = test::router_keys(20000);

    memcached_st* memc = test::native_handle(specs, state::Distribution::ketama, state::Hash::md5);
    for (const std::string& key : keys)
        REQUIRE(
            same(router->route_with(handle_view(memc), key.data(), key.size()), router->route(key.data(), key.size())));
    memcached_free(memc);

    // A client that set the hash after the distribution: its ring differs
    // from ours, but its own continuum still gives its own placement.
    memc = memcached_create(nullptr);
    for (const ServerAddress& spec : specs) memcached_server_add(memc, spec.host.c_str(), spec.port);
    memcached_behavior_set(memc, MEMCACHED_BEHAVIOR_DISTRIBUTION, MEMCACHED_DISTRIBUTION_CONSISTENT_KETAMA);
    memcached_behavior_set(memc, MEMCACHED_BEHAVIOR_HASH, MEMCACHED_HASH_MD5);
    size_t moved = 0;
    for (const std::string& key : keys) {
        const Decision d = router->route_with(handle_view(memc), key.data(), key.size());
        REQUIRE(d.native == int32_t(memcached_generate_hash(memc, key.data(), key.size())));
        if (d.native == 2) {
            ++moved;
            CHECK(d.flags == kRouteSubstitute);
            CHECK(d.target != 2);
        } else {
            CHECK(d.target == d.native);
        }
    }
    CHECK(moved > 0);
    memcached_free(memc);
}

namespace {

void sleep_ms(int ms) {
    timespec pause{ms / 1000, (ms % 1000) * 1'000'000L};
    nanosleep(&pause, nullptr);
}

}  // namespace

// Staleness is judged by the reader's own clock: whether the heartbeat
// changed within stale_after, never the daemon's monotonic time against ours.
TEST_CASE("router: a heartbeat that stops changing means native placement, flagged") {
    test::ScratchDir dir;
    const std::string path = dir.file("state");
    test::FixtureOptions options;
    options.stale_after_ms = 200;
    StateFixture file(path, fixture_servers(4), options);
    // The daemon's monotonic clock, as far from ours as a time namespace or
    // another boot can put it; the wall clock is the host's.
    int64_t offset_ns = 0;
    SUBCASE("written by a daemon whose monotonic clock is ours") {}
    SUBCASE("written by a daemon whose monotonic clock is an hour ahead of ours") { offset_ns = 3'600'000'000'000; }
    SUBCASE("written by a daemon whose monotonic clock is an hour behind ours") { offset_ns = -3'600'000'000'000; }
    const auto beat = [&] { file.set_heartbeat(uint64_t(int64_t(monotonic_ns()) + offset_ns), unix_ms()); };
    beat();
    file.set_state(0, state::ServerState::dead);
    beat();
    auto router = router_for(path, test::numbered_servers(4));
    const auto keys = test::router_keys(200);
    CHECK(router->source()->usable());
    sleep_ms(100);
    beat();  // a round, seen at once: still fresh past the first stale_after
    router->source()->check_now();
    sleep_ms(150);
    router->source()->check_now();
    CHECK(router->source()->usable());
    sleep_ms(100);  // 250 ms without a change
    router->source()->check_now();
    CHECK_FALSE(router->source()->usable());
    for (const std::string& key : keys) {
        const Decision d = router->route(key.data(), key.size());
        REQUIRE(d.flags == kRouteStale);
        REQUIRE(d.target == d.native);
    }
    CHECK(router->source()->problem().find("heartbeat unchanged for") != std::string::npos);
    beat();
    router->source()->check_now();
    CHECK(router->route("k", 1).flags != kRouteStale);
}

TEST_CASE("router: a file first seen with an old heartbeat is stale until it changes") {
    test::ScratchDir dir;
    const std::string path = dir.file("state");
    StateFixture file(path, fixture_servers(4));
    file.set_heartbeat(42, unix_ms() - 6'000);  // stale_after 5 s, by the wall clock
    auto router = router_for(path, test::numbered_servers(4));
    CHECK(router->route("k", 1).flags == kRouteStale);
    file.set_heartbeat(43, unix_ms());
    router->source()->check_now();
    CHECK(router->route("k", 1).flags != kRouteStale);
}

TEST_CASE("router: a daemon killed inside its write leaves the last view, cheaply") {
    test::ScratchDir dir;
    const std::string path = dir.file("state");
    test::FixtureOptions options;
    options.stale_after_ms = 1000;
    StateFixture file(path, fixture_servers(4), options);
    file.set_state(1, state::ServerState::dead);
    auto router = router_for(path, test::numbered_servers(4));
    const auto keys = test::router_keys(20000);
    std::vector<Decision> before;
    for (const std::string& key : keys) before.push_back(router->route(key.data(), key.size()));

    // Killed mid-write: the sequence stays odd, the generation moved.
    file.header().seq.fetch_add(1);
    file.slots()[2].state.store(uint32_t(state::ServerState::dead));
    file.header().generation.fetch_add(1);
    const uint64_t start = monotonic_ns();
    for (size_t k = 0; k < keys.size(); ++k) REQUIRE(same(router->route(keys[k].data(), keys[k].size()), before[k]));
    // Spinning on the odd sequence at every call would take far longer.
    CHECK(monotonic_ns() - start < 500'000'000ull);

    // No heartbeat since: stale, native.
    sleep_ms(1100);
    router->source()->check_now();
    CHECK(router->route("k", 1).flags == kRouteStale);
}

TEST_CASE("router: route_without sends a failed server's keys where its death would, and nothing else") {
    test::ScratchDir dir;
    const std::string path = dir.file("state");
    StateFixture file(path, fixture_servers(4));
    auto router = router_for(path, test::numbered_servers(4));
    const PlacementView view = router->topology().view();
    const auto keys = test::router_keys(2000);
    // What the keys do once server 2 is published dead.
    std::vector<Decision> after_death;
    file.set_state(2, state::ServerState::dead);
    for (const std::string& key : keys) after_death.push_back(router->route(key.data(), key.size()));
    file.set_state(2, state::ServerState::live);
    size_t moved = 0;
    for (size_t i = 0; i < keys.size(); ++i) {
        const Decision d = router->route_without(view, keys[i].data(), keys[i].size(), 2);
        CHECK(same(d, after_death[i]));
        moved += d.native == 2;
    }
    CHECK(moved > 0);
    SUBCASE("with another server dead already, neither takes keys") {
        file.set_state(0, state::ServerState::dead);
        for (const std::string& key : keys) {
            const Decision d = router->route_without(view, key.data(), key.size(), 2);
            CHECK(d.target != 0);
            CHECK(d.target != 2);
        }
    }
    SUBCASE("the last live server failing leaves no candidate") {
        file.set_states({{state::ServerState::dead, 0},
                         {state::ServerState::dead, 0},
                         {state::ServerState::live, 0},
                         {state::ServerState::dead, 0}});
        CHECK(router->route_without(view, "k", 1, 2).flags == kRouteAllDead);
    }
}

namespace {

// The state file's read-only mappings in this process (the fixtures' own
// are read-write): what the source holds.
int reader_mappings(const std::string& path) {
    std::FILE* maps = std::fopen("/proc/self/maps", "r");
    if (!maps) return -1;
    int count = 0;
    char line[4096];
    while (std::fgets(line, sizeof line, maps))
        if (std::strstr(line, " r--s ") && std::strstr(line, path.c_str())) ++count;
    std::fclose(maps);
    return count;
}

// Server 2's state as the reader pinned in `mapped` reads it.
state::ServerState state_of_server_2(const StateSource::Pin& mapped) {
    std::vector<state::ServerDynamic> dynamic(mapped->map.slot_count());
    REQUIRE(state::read_consistent(mapped->map.header(), mapped->map.slots(), mapped->map.slot_count(), dynamic.data(),
                                   nullptr));
    return state::ServerState(dynamic[2].state);
}

}  // namespace

TEST_CASE("state source: a reader stalled inside a mapping keeps it mapped through any number of replacements") {
    test::ScratchDir dir;
    const std::string path = dir.file("state");
    std::vector<std::unique_ptr<StateFixture>> files;
    files.push_back(std::make_unique<StateFixture>(path, fixture_servers(4)));
    files.back()->set_state(2, state::ServerState::dead);
    StateSource source(path);
    REQUIRE(source.usable());

    // A thread inside a read of the first file, descheduled for as long as
    // the daemon takes to restart twice (and far more).
    const StateSource::Pin stalled = source.pin();
    REQUIRE(stalled);
    for (int restart = 0; restart < 2; ++restart) {
        files.back()->supersede();
        files.push_back(std::make_unique<StateFixture>(path, fixture_servers(4)));
        source.check_now();
    }
    // The newest file is current at once, not after a grace.
    CHECK(source.pin()->serial == 3);
    CHECK(state_of_server_2(source.pin()) == state::ServerState::live);
    // The stalled reader carries on in its file: no fault, its own answer.
    CHECK(state_of_server_2(stalled) == state::ServerState::dead);
    CHECK(reader_mappings(path) == 2);  // the stalled one and the current; the middle one went

    // Address space stays bounded while the reader stays stalled: at most
    // kMaxMappings files, and a file that finds none free waits its turn.
    for (int restart = 0; restart < 30; ++restart) {
        files.back()->supersede();
        files.push_back(std::make_unique<StateFixture>(path, fixture_servers(4)));
        source.check_now();
        CHECK(reader_mappings(path) == 2);  // the stalled one and the current
    }
    CHECK(state_of_server_2(stalled) == state::ServerState::dead);
    CHECK(source.pin()->serial == 33);
}

TEST_CASE("state source: a newer file waits while readers hold every other mapping, then is taken") {
    test::ScratchDir dir;
    const std::string path = dir.file("state");
    std::vector<std::unique_ptr<StateFixture>> files;
    files.push_back(std::make_unique<StateFixture>(path, fixture_servers(4)));
    StateSource source(path);
    std::vector<std::unique_ptr<StateSource::Pin>> stalled;
    for (unsigned i = 0; i < kMaxMappings; ++i) {
        stalled.push_back(std::make_unique<StateSource::Pin>(source.pin()));
        files.back()->supersede();
        files.push_back(std::make_unique<StateFixture>(path, fixture_servers(4)));
        source.check_now();
    }
    // Every mapping held: the newest file waits, the superseded one serves.
    CHECK(source.pin()->serial == kMaxMappings);
    CHECK(reader_mappings(path) == int(kMaxMappings));
    stalled.clear();
    source.check_now();
    CHECK(source.pin()->serial == kMaxMappings + 1);
    CHECK(reader_mappings(path) == 1);
}
