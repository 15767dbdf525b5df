// Placement stays native: with every server live, the router puts every key
// exactly where libmemcached 1.1.4 does for the same list and settings.
#include <doctest/doctest.h>

#include <libmemcached/memcached.h>

#include <cstring>

#include "libshim/placement.hpp"
#include "libshim/routing_names.hpp"
#include "test_router_support.hpp"

using namespace mcwatch;
using namespace mcwatch::route;
using mcwatch::test::native_handle;

namespace {

const state::Distribution kDistributions[] = {state::Distribution::modula, state::Distribution::ketama,
                                              state::Distribution::ketama_weighted};

std::vector<RingPoint> ring_of(const Topology& topology) { return {topology.ring().begin(), topology.ring().end()}; }

bool same_ring(const std::vector<RingPoint>& a, const std::vector<RingPoint>& b) {
    return a.size() == b.size() &&
           std::equal(a.begin(), a.end(), b.begin(),
                      [](const RingPoint& x, const RingPoint& y) { return x.index == y.index && x.value == y.value; });
}

}  // namespace

TEST_CASE("router: native placement matches memcached_generate_hash on 100,000 keys") {
    const auto keys = test::router_keys(100000);
    for (const state::Distribution distribution : kDistributions) {
        for (const state::Hash hash : test::available_hashes()) {
            for (const bool weighted_list : {false, true}) {
                CAPTURE(distribution_name(distribution));
                CAPTURE(hash_name(hash));
                CAPTURE(weighted_list);
                const auto specs = test::specs_of(test::kMixedList, weighted_list);
                memcached_st* memc = native_handle(specs, distribution, hash);
                const Topology topology = test::topology_of(specs, distribution, hash);
                if (distribution != state::Distribution::modula)
                    CHECK(same_ring(ring_of(topology), test::continuum_of(memc)));
                size_t mismatches = 0;
                for (const std::string& key : keys)
                    if (topology.native(key.data(), key.size()) !=
                        memcached_generate_hash(memc, key.data(), key.size()))
                        ++mismatches;
                CHECK(mismatches == 0);
                memcached_free(memc);
            }
        }
    }
}

TEST_CASE("router: golden vectors (libmemcached 1.1.4 results, pinned)") {
    SUBCASE("libhashkit's hashes of \"mcwatch\"") {
        const std::pair<state::Hash, uint32_t> golden[] = {
            {state::Hash::one_at_a_time, 3333227513u},
            {state::Hash::md5, 2625633820u},
            {state::Hash::crc, 28484u},
            {state::Hash::fnv1_64, 295157090u},
            {state::Hash::fnv1a_64, 240913820u},
            {state::Hash::fnv1_32, 4105337922u},
            {state::Hash::fnv1a_32, 217439900u},
            {state::Hash::murmur, 1205137616u},
            {state::Hash::jenkins, 495614016u},
            {state::Hash::murmur3, 2072495124u},
        };
        for (const auto& [hash, value] : golden) {
            CAPTURE(hash_name(hash));
            const KeyHasher hasher = key_hasher(hash);
            REQUIRE(hasher);
            CHECK(hasher("mcwatch", 7) == value);
        }
    }
    SUBCASE("servers 10.0.0.1..3:11211") {
        struct Golden {
            state::Distribution distribution;
            state::Hash hash;
            bool weights_123;
            uint32_t ring_size;
            uint32_t expected[5];  // foo, bar, mcwatch, user:42, session/9f3a
        };
        const Golden cases[] = {
            {state::Distribution::ketama, state::Hash::md5, false, 300, {1, 2, 1, 2, 1}},
            {state::Distribution::ketama, state::Hash::one_at_a_time, false, 300, {2, 0, 1, 1, 0}},
            {state::Distribution::ketama_weighted, state::Hash::md5, true, 480, {1, 1, 2, 1, 1}},
            {state::Distribution::modula, state::Hash::crc, false, 0, {1, 1, 2, 1, 0}},
            {state::Distribution::modula, state::Hash::one_at_a_time, false, 0, {0, 1, 2, 0, 0}},
        };
        const char* keys[] = {"foo", "bar", "mcwatch", "user:42", "session/9f3a"};
        for (const Golden& g : cases) {
            CAPTURE(distribution_name(g.distribution));
            CAPTURE(hash_name(g.hash));
            std::vector<ServerAddress> specs = test::numbered_servers(3);
            for (uint32_t i = 0; i < 3; ++i) {
                specs[i].host = "10.0.0." + std::to_string(i + 1);
                specs[i].port = 11211;
                specs[i].weight = g.weights_123 ? i + 1 : 1;
            }
            const Topology topology = test::topology_of(specs, g.distribution, g.hash);
            CHECK(topology.ring().size() == g.ring_size);
            for (int k = 0; k < 5; ++k) {
                CAPTURE(keys[k]);
                CHECK(topology.native(keys[k], std::strlen(keys[k])) == g.expected[k]);
            }
        }
    }
}

TEST_CASE("router: ketama facts of libmemcached 1.1.4") {
    const auto keys = test::router_keys(20000);

    SUBCASE("one server: never hashed, always server 0") {
        const auto specs = test::numbered_servers(1);
        for (const state::Distribution distribution : kDistributions) {
            const Topology topology = test::topology_of(specs, distribution, state::Hash::md5);
            for (const std::string& key : keys) REQUIRE(topology.native(key.data(), key.size()) == 0);
        }
    }

    SUBCASE("KETAMA_HASH does not change placement; the points use MEMCACHED_BEHAVIOR_HASH") {
        const auto specs = test::specs_of(test::kMixedList, false);
        memcached_st* memc = native_handle(specs, state::Distribution::ketama, state::Hash::fnv1a_32);
        const auto before = test::continuum_of(memc);
        REQUIRE(memcached_behavior_set(memc, MEMCACHED_BEHAVIOR_KETAMA_HASH, MEMCACHED_HASH_CRC) == MEMCACHED_SUCCESS);
        REQUIRE(memcached_behavior_set(memc, MEMCACHED_BEHAVIOR_DISTRIBUTION,
                                       MEMCACHED_DISTRIBUTION_CONSISTENT_KETAMA) == MEMCACHED_SUCCESS);
        CHECK(same_ring(before, test::continuum_of(memc)));
        const Topology topology = test::topology_of(specs, state::Distribution::ketama, state::Hash::fnv1a_32);
        CHECK(same_ring(ring_of(topology), test::continuum_of(memc)));
        memcached_free(memc);
    }

    SUBCASE("the continuum is not rebuilt when MEMCACHED_BEHAVIOR_HASH changes") {
        // A client that sets the hash after the distribution keeps points
        // hashed with the previous hash; mcwatch assumes the settled ring.
        const auto specs = test::specs_of(test::kMixedList, false);
        memcached_st* memc = memcached_create(nullptr);
        for (const ServerAddress& spec : specs)
            spec.is_unix ? memcached_server_add_unix_socket(memc, spec.host.c_str())
                         : memcached_server_add(memc, spec.host.c_str(), spec.port);
        memcached_behavior_set(memc, MEMCACHED_BEHAVIOR_DISTRIBUTION, MEMCACHED_DISTRIBUTION_CONSISTENT_KETAMA);
        memcached_behavior_set(memc, MEMCACHED_BEHAVIOR_HASH, MEMCACHED_HASH_MD5);
        const Topology default_points =
            test::topology_of(specs, state::Distribution::ketama, state::Hash::one_at_a_time);
        CHECK(same_ring(ring_of(default_points), test::continuum_of(memc)));
        memcached_free(memc);
    }

    SUBCASE("servers with weight > 1 added after choosing ketama turn weighting on") {
        const auto specs = test::specs_of(test::kMixedList, true);
        memcached_st* memc = memcached_create(nullptr);
        memcached_behavior_set(memc, MEMCACHED_BEHAVIOR_HASH, MEMCACHED_HASH_MD5);
        memcached_behavior_set(memc, MEMCACHED_BEHAVIOR_DISTRIBUTION, MEMCACHED_DISTRIBUTION_CONSISTENT_KETAMA);
        for (const ServerAddress& spec : specs)
            spec.is_unix ? memcached_server_add_unix_socket_with_weight(memc, spec.host.c_str(), spec.weight)
                         : memcached_server_add_with_weight(memc, spec.host.c_str(), spec.port, spec.weight);
        CHECK(memcached_behavior_get(memc, MEMCACHED_BEHAVIOR_KETAMA_WEIGHTED) == 1);
        const Topology weighted = test::topology_of(specs, state::Distribution::ketama_weighted, state::Hash::md5);
        CHECK(same_ring(ring_of(weighted), test::continuum_of(memc)));
        memcached_free(memc);
    }

    SUBCASE("weighted point counts use single-precision floats") {
        // Exact arithmetic gives 64 points to the weight-228 server of this
        // list (total 6270, 11 servers); libmemcached gives it 60.
        std::vector<ServerAddress> specs = test::numbered_servers(11);
        const uint32_t weights[11] = {228, 600, 600, 600, 600, 600, 600, 600, 600, 600, 642};
        for (uint32_t i = 0; i < 11; ++i) specs[i].weight = weights[i];
        memcached_st* memc = native_handle(specs, state::Distribution::ketama_weighted, state::Hash::md5);
        const Topology topology = test::topology_of(specs, state::Distribution::ketama_weighted, state::Hash::md5);
        CHECK(same_ring(ring_of(topology), test::continuum_of(memc)));
        size_t points_of_first = 0;
        for (const RingPoint& point : topology.ring()) points_of_first += point.index == 0;
        CHECK(points_of_first == 60);
        memcached_free(memc);
    }

    SUBCASE("random weights: rings equal, point for point") {
        std::mt19937 rng(7);
        for (int round = 0; round < 300; ++round) {
            std::vector<ServerAddress> specs = test::numbered_servers(2 + rng() % 15);
            const uint32_t spread = round % 3 == 0 ? 3 : round % 3 == 1 ? 100 : 100000;
            for (ServerAddress& spec : specs) spec.weight = 1 + rng() % spread;
            memcached_st* memc = native_handle(specs, state::Distribution::ketama_weighted, state::Hash::md5);
            const Topology topology = test::topology_of(specs, state::Distribution::ketama_weighted, state::Hash::md5);
            REQUIRE(same_ring(ring_of(topology), test::continuum_of(memc)));
            memcached_free(memc);
        }
    }
}

TEST_CASE("router: server addresses") {
    ServerAddress spec;
    std::string error;
    REQUIRE(ServerAddress::parse("localhost", 0, spec, error));
    CHECK(spec.host == "localhost");
    CHECK(spec.port == 11211);
    CHECK(spec.weight == 1);
    REQUIRE(ServerAddress::parse("[::1]:11300", 2, spec, error));
    CHECK(spec.host == "::1");
    CHECK(spec.port == 11300);
    CHECK(spec.canonical() == "[::1]:11300");
    REQUIRE(ServerAddress::parse("::1", 1, spec, error));
    CHECK(spec.canonical() == "[::1]:11211");
    REQUIRE(ServerAddress::parse("unix:/run/mc.sock", 1, spec, error));
    CHECK(spec.is_unix);
    CHECK(spec.host == "/run/mc.sock");
    CHECK(spec.port == 0);
    CHECK(ServerAddress::canonical("/run/mc.sock") == "unix:/run/mc.sock");
    CHECK(ServerAddress::canonical("Cache-A.example:11211") == "cache-a.example:11211");
    CHECK_FALSE(ServerAddress::parse("host:0", 1, spec, error));
    CHECK_FALSE(ServerAddress::parse("host:99999", 1, spec, error));
    CHECK_FALSE(ServerAddress::parse("[::1", 1, spec, error));
    CHECK_FALSE(ServerAddress::parse("unix:relative", 1, spec, error));
    CHECK_FALSE(ServerAddress::parse("", 1, spec, error));
}

TEST_CASE("router: hash and distribution names") {
    state::Hash hash;
    REQUIRE(hash_from_name("default", hash));
    CHECK(hash == state::Hash::one_at_a_time);
    for (uint32_t h = 0; h < state::kHashCount; ++h) {
        REQUIRE(hash_from_name(hash_name(state::Hash(h)), hash));
        CHECK(uint32_t(hash) == h);
    }
    CHECK_FALSE(hash_from_name("sha1", hash));
    CHECK(std::string(hash_name(state::Hash(99))) == "invalid");
    state::Distribution distribution;
    for (const state::Distribution d : kDistributions) {
        REQUIRE(distribution_from_name(distribution_name(d), distribution));
        CHECK(distribution == d);
    }
    CHECK_FALSE(distribution_from_name("consistent", distribution));
    // Debian 12's libhashkit is built without hsieh; libmemcached refuses it too.
    memcached_st* memc = memcached_create(nullptr);
    CHECK((memcached_behavior_set(memc, MEMCACHED_BEHAVIOR_HASH, MEMCACHED_HASH_HSIEH) == MEMCACHED_SUCCESS) ==
          hash_available(state::Hash::hsieh));
    memcached_free(memc);
}
