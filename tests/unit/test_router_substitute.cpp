// Only a dead server's keys move, deterministically; recently-down fallback;
// all dead fails without hashing; expiration clamp for substitute writes.
#include <doctest/doctest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <map>
#include <set>

#include "libshim/placement.hpp"
#include "libshim/expiration.hpp"
#include "libshim/routing_names.hpp"
#include "test_router_support.hpp"

using namespace mcwatch;
using namespace mcwatch::route;

namespace {

struct Statuses {
    std::vector<uint8_t> bits;
    uint32_t allowed() const {
        uint32_t n = 0;
        for (uint8_t b : bits) n += !(b & kStatusAvoid);
        return n;
    }
    Decision route(const PlacementView& view, const std::string& key) const {
        return decide(
            view, key.data(), key.size(), [this](uint32_t i) { return bits[i]; }, allowed());
    }
};

Statuses with(uint32_t count, std::initializer_list<uint32_t> dead, uint8_t bits = kStatusAvoid) {
    Statuses s{std::vector<uint8_t>(count, 0)};
    for (uint32_t i : dead) s.bits[i] = bits;
    return s;
}

const state::Distribution kDistributions[] = {state::Distribution::modula, state::Distribution::ketama,
                                              state::Distribution::ketama_weighted};

}  // namespace

TEST_CASE("router: only a dead server's keys move, spread over the live ones") {
    const auto keys = test::router_keys(100000);
    constexpr uint32_t kServers = 8;
    const std::vector<std::vector<uint32_t>> dead_sets = {{3}, {0, 5}, {0, 1, 2, 3, 4, 5, 7}};
    for (const state::Distribution distribution : kDistributions) {
        std::vector<ServerAddress> specs = test::numbered_servers(kServers);
        if (distribution == state::Distribution::ketama_weighted)
            for (uint32_t i = 0; i < kServers; ++i) specs[i].weight = 1 + i % 3;
        const Topology topology = test::topology_of(specs, distribution, state::Hash::md5);
        const PlacementView view = topology.view();
        for (const auto& dead : dead_sets) {
            CAPTURE(distribution_name(distribution));
            CAPTURE(dead.size());
            Statuses statuses{std::vector<uint8_t>(kServers, 0)};
            for (uint32_t i : dead) statuses.bits[i] = kStatusAvoid;
            size_t moved_live = 0, landed_dead = 0, dead_keys = 0;
            std::map<int32_t, size_t> received;
            for (const std::string& key : keys) {
                const Decision d = statuses.route(view, key);
                REQUIRE(d.native == int32_t(topology.native(key.data(), key.size())));
                if (statuses.bits[d.native] & kStatusAvoid) {
                    ++dead_keys;
                    CHECK_EQ(d.flags, kRouteSubstitute);
                    if (d.target < 0 || (statuses.bits[d.target] & kStatusAvoid)) ++landed_dead;
                    ++received[d.target];
                } else {
                    if (d.target != d.native || d.flags != 0) ++moved_live;
                }
            }
            CHECK(moved_live == 0);
            CHECK(landed_dead == 0);
            CHECK(dead_keys > 0);
            const size_t live = kServers - dead.size();
            CHECK(received.size() == live);  // every live server takes a share
            for (const auto& [server, count] : received) {
                CAPTURE(server);
                // A fair share is dead_keys / live; ketama's walk is lumpier
                // than modula's salted rehash, so only a loose floor.
                CHECK(count * live * 4 > dead_keys);
            }
        }
    }
}

TEST_CASE("router: all servers dead fails at once, without hashing") {
    static size_t calls = 0;
    const KeyHasher counting{[](const char* key, size_t length, void*) -> uint32_t {
        ++calls;
        return key_hasher(state::Hash::md5)(key, length);
    }};
    for (const state::Distribution distribution : kDistributions) {
        Topology topology = test::topology_of(test::numbered_servers(4), distribution, state::Hash::md5);
        PlacementView view = topology.view();
        view.hasher = counting;
        const Statuses statuses = with(4, {0, 1, 2, 3});
        calls = 0;
        const Decision d = statuses.route(view, "any key");
        CHECK(calls == 0);
        CHECK(d.flags == kRouteAllDead);
        CHECK(d.native == -1);
        CHECK(d.target == -1);
        CHECK(d.fallback == -1);
        // Draining counts as dead for this purpose.
        const Statuses drained = with(4, {0, 1, 2, 3}, kStatusAvoid | kStatusDraining);
        CHECK(drained.route(view, "any key").flags == kRouteAllDead);
    }
    // A single dead server is all servers.
    const Topology one = test::topology_of(test::numbered_servers(1), state::Distribution::ketama, state::Hash::md5);
    CHECK(with(1, {0}).route(one.view(), "k").flags == kRouteAllDead);
}

TEST_CASE("router: recently down returns the outage substitute as fallback") {
    const auto keys = test::router_keys(20000);
    for (const state::Distribution distribution : kDistributions) {
        CAPTURE(distribution_name(distribution));
        const Topology topology =
            test::topology_of(test::numbered_servers(6), distribution, state::Hash::one_at_a_time);
        const PlacementView view = topology.view();
        // Server 2 is back but recently down, server 4 is dead now.
        const Statuses now = with(6, {4});
        Statuses recent = now;
        recent.bits[2] = kStatusRecent;
        // While 2 was down (4 dead as now), its keys went here:
        const Statuses outage = with(6, {2, 4});
        size_t recent_keys = 0;
        for (const std::string& key : keys) {
            const Decision d = recent.route(view, key);
            const Decision base = now.route(view, key);
            if (d.native == 2) {
                ++recent_keys;
                CHECK(d.flags == kRouteRecentlyDown);
                CHECK(d.target == 2);
                const Decision during = outage.route(view, key);
                CHECK(d.fallback == during.target);
                CHECK(d.fallback != 2);
                CHECK(d.fallback != 4);
            } else {
                CHECK(d.target == base.target);
                CHECK(d.flags == base.flags);
                CHECK(d.fallback == -1);
            }
        }
        CHECK(recent_keys > 0);
    }
    // Alone and recently down: no fallback exists.
    const Topology one = test::topology_of(test::numbered_servers(1), state::Distribution::modula, state::Hash::md5);
    const Decision d = with(1, {0}, kStatusRecent).route(one.view(), "k");
    CHECK(d.flags == kRouteRecentlyDown);
    CHECK(d.target == 0);
    CHECK(d.fallback == -1);
}

TEST_CASE("router: draining routes like dead and says so") {
    const Topology topology =
        test::topology_of(test::numbered_servers(5), state::Distribution::ketama, state::Hash::md5);
    const Statuses dead = with(5, {1});
    const Statuses draining = with(5, {1}, kStatusAvoid | kStatusDraining);
    for (const std::string& key : test::router_keys(5000)) {
        const Decision a = dead.route(topology.view(), key);
        const Decision b = draining.route(topology.view(), key);
        CHECK(a.target == b.target);
        if (b.native == 1)
            CHECK(b.flags == (kRouteSubstitute | kRouteDraining));
        else
            CHECK(b.flags == 0);
    }
}

TEST_CASE("router: modula salt format is the key followed by the decimal salt") {
    static std::vector<std::string> hashed;
    const KeyHasher recording{[](const char* key, size_t length, void*) -> uint32_t {
        hashed.emplace_back(key, length);
        return key_hasher(state::Hash::one_at_a_time)(key, length);
    }};
    PlacementView view;
    view.server_count = 4;
    view.hasher = recording;
    // Only server 0 may take keys; every salted candidate is tried in order.
    const Statuses statuses = with(4, {1, 2, 3});
    hashed.clear();
    const NativePlace native = place_key(view, "user:42", 7);
    std::vector<std::string> expected{"user:42"};
    int32_t chosen = -1;
    if (native.server != 0) {
        chosen =
            modula_substitute(view, "user:42", 7, native.server, [&](uint32_t i) { return statuses.bits[i] != 0; });
        CHECK(chosen == 0);
        // The rounds stop at the first salt that lands on server 0.
        for (uint32_t salt = 1; salt <= kModulaSaltRounds; ++salt) {
            const std::string salted = "user:42" + std::to_string(salt);
            expected.push_back(salted);
            if (key_hasher(state::Hash::one_at_a_time)(salted.data(), salted.size()) % 4 == 0) break;
        }
    }
    CHECK(hashed == expected);

    // Golden, for other implementations: 4 servers, modula, one_at_a_time,
    // server 1 dead. Native and substitute of a few keys.
    const Topology topology =
        test::topology_of(test::numbered_servers(4), state::Distribution::modula, state::Hash::one_at_a_time);
    const Statuses one_dead = with(4, {1});
    size_t substituted = 0;
    for (const std::string key : {"a", "b", "c", "d", "e", "f", "g", "h", "i", "j"}) {
        const Decision d = one_dead.route(topology.view(), key);
        if (d.native != 1) continue;
        ++substituted;
        // Recompute by the documented rule, independently.
        int32_t expected_target = -1;
        for (uint32_t salt = 1; salt <= kModulaSaltRounds && expected_target < 0; ++salt) {
            const std::string salted = key + std::to_string(salt);
            const uint32_t candidate = key_hasher(state::Hash::one_at_a_time)(salted.data(), salted.size()) % 4;
            if (candidate != 1) expected_target = int32_t(candidate);
        }
        CHECK(d.target == expected_target);
    }
    CHECK(substituted > 0);
}

TEST_CASE("router: modula past the salt rounds scans deterministically") {
    // A hash that always lands on dead server 2: after 32 rounds the scan
    // starts after the last candidate.
    const KeyHasher constant{[](const char*, size_t, void*) -> uint32_t { return 2; }};
    PlacementView view;
    view.server_count = 5;
    view.hasher = constant;
    const Statuses statuses = with(5, {2, 3});
    const Decision d = statuses.route(view, "k");
    CHECK(d.native == 2);
    CHECK(d.target == 4);
    // Keys longer than kMaxSaltedKey go straight to the scan from native + 1.
    const std::string long_key(kMaxSaltedKey + 1, 'x');
    CHECK(statuses.route(view, long_key).target == 4);
}

TEST_CASE("router: every process picks the same substitutes") {
    const auto keys = test::router_keys(30000);
    auto decisions = [&](uint64_t& digest) {
        const Topology topology =
            test::topology_of(test::numbered_servers(7), state::Distribution::ketama, state::Hash::md5);
        const Topology modula =
            test::topology_of(test::numbered_servers(7), state::Distribution::modula, state::Hash::crc);
        const Statuses statuses = with(7, {2, 5});
        digest = state::kFnvOffset;
        for (const std::string& key : keys) {
            for (const Topology* t : {&topology, &modula}) {
                const Decision d = statuses.route(t->view(), key);
                digest = state::fnv1a64(&d, sizeof d, digest);
            }
        }
    };
    int pipe_fds[2];
    REQUIRE(pipe(pipe_fds) == 0);
    const pid_t child = fork();
    REQUIRE(child >= 0);
    if (child == 0) {
        close(pipe_fds[0]);
        uint64_t digest = 0;
        decisions(digest);
        const ssize_t written = write(pipe_fds[1], &digest, sizeof digest);
        _exit(written == sizeof digest ? 0 : 1);
    }
    close(pipe_fds[1]);
    uint64_t ours = 0, theirs = 0;
    decisions(ours);
    REQUIRE(read(pipe_fds[0], &theirs, sizeof theirs) == sizeof theirs);
    close(pipe_fds[0]);
    int status = 0;
    waitpid(child, &status, 0);
    CHECK(WIFEXITED(status));
    CHECK(ours == theirs);
}

TEST_CASE("router: expiration clamp for writes to a substitute") {
    const int64_t now = 1700000000;
    const uint32_t hour = 3600;
    CHECK(clamp_expiration(0, hour, now) == 3600);             // never -> the window
    CHECK(clamp_expiration(60, hour, now) == 60);              // shorter stays
    CHECK(clamp_expiration(7200, hour, now) == 3600);          // longer is capped
    CHECK(clamp_expiration(2592000, hour, now) == 3600);       // 30 days, still relative
    CHECK(clamp_expiration(now + 60, hour, now) == now + 60);  // absolute, within
    CHECK(clamp_expiration(now + 86400, hour, now) == 3600);   // absolute, capped
    CHECK(clamp_expiration(now - 5, hour, now) == now - 5);    // absolute, already past
    CHECK(clamp_expiration(-1, hour, now) == -1);              // expired stays expired
    // A window beyond 30 days must be written as an absolute time.
    const uint32_t long_window = 40 * 86400;
    CHECK(clamp_expiration(0, long_window, now) == now + long_window);
    CHECK(clamp_expiration(now + 50 * 86400, long_window, now) == now + long_window);
    CHECK(clamp_expiration(86400, long_window, now) == 86400);
    CHECK(clamp_expiration(0, 0, now) == 1);  // no window: still capped
}

TEST_CASE("router: a server the state file does not publish takes its own keys and no one else's") {
    for (const state::Distribution distribution : kDistributions) {
        CAPTURE(distribution_name(distribution));
        const Topology topology = test::topology_of(test::numbered_servers(5), distribution, state::Hash::md5);
        // Server 1 is dead, server 3 recently down, server 4 unpublished.
        Statuses statuses = with(5, {1});
        statuses.bits[3] = kStatusRecent;
        statuses.bits[4] = kStatusUnpublished;
        size_t own = 0, moved = 0, fallbacks = 0;
        for (const std::string& key : test::router_keys(20000)) {
            const Decision d = statuses.route(topology.view(), key);
            if (d.native == 4) {
                ++own;
                CHECK(d.target == 4);
                CHECK(d.flags == 0);
            }
            if (d.native == 1) {
                ++moved;
                CHECK(d.flags == kRouteSubstitute);
                CHECK(d.target != 1);
                CHECK(d.target != 4);
            }
            if (d.native == 3) {
                ++fallbacks;
                CHECK(d.fallback >= 0);
                CHECK(d.fallback != 4);
                CHECK(d.fallback != 1);
            }
        }
        CHECK((own > 0 && moved > 0 && fallbacks > 0));
    }
    // The published servers all dead: the unpublished one keeps its own keys,
    // the others' keys fail rather than land on a server nobody watches.
    const Topology topology =
        test::topology_of(test::numbered_servers(3), state::Distribution::ketama, state::Hash::md5);
    Statuses statuses = with(3, {0, 1});
    statuses.bits[2] = kStatusUnpublished;
    for (const std::string& key : test::router_keys(2000)) {
        const Decision d = statuses.route(topology.view(), key);
        if (d.native == 2)
            CHECK((d.target == 2 && d.flags == 0));
        else
            CHECK(d.flags == kRouteAllDead);
    }
}
