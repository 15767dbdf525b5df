// Shared by the router tests: key sets, server lists, and libmemcached
// handles configured the way clients configure them.
#pragma once

#include <libmemcached/memcached.h>

#include <doctest/doctest.h>

#include <random>
#include <string>
#include <vector>

#include "libshim/placement.hpp"
#include "state_fixture.hpp"

namespace mcwatch::test {

// Keys of the shapes clients use, plus random bytes of every length a
// memcached key may have.
inline std::vector<std::string> router_keys(size_t count, uint32_t seed = 20240601) {
    std::vector<std::string> keys;
    keys.reserve(count);
    std::mt19937 rng(seed);
    for (size_t i = 0; keys.size() < count; ++i) {
        switch (i % 4) {
        case 0: keys.push_back("user:" + std::to_string(i)); break;
        case 1: keys.push_back("session/" + std::to_string(rng()) + "/cart"); break;
        case 2: keys.push_back(std::to_string(i * 2654435761u)); break;
        default: {
            std::string key(1 + rng() % 250, '\0');
            for (char& c : key) c = char(rng() % 256);
            keys.push_back(std::move(key));
        }
        }
    }
    return keys;
}

struct ListEntry {
    const char* address;
    uint32_t weight;
};

// Every way an address may be spelled: default port (point names "host-N"),
// other ports ("host:port-N"), names, a unix socket, IPv6.
inline const std::vector<ListEntry> kMixedList = {
    {"10.0.0.1:11211", 1},
    {"10.0.0.2:11212", 3},
    {"cache-a.example", 2},
    {"unix:/tmp/mcwatch-test.sock", 1},
    {"::1", 5},
    {"[fe80::1]:11300", 1},
    {"10.0.0.7:11211", 1},
    {"cache-b.example:11400", 4},
};

inline std::vector<ServerAddress> specs_of(const std::vector<ListEntry>& list, bool use_weights) {
    std::vector<ServerAddress> specs;
    for (const ListEntry& entry : list) {
        ServerAddress spec;
        std::string error;
        REQUIRE_MESSAGE(ServerAddress::parse(entry.address, use_weights ? entry.weight : 1, spec, error), error);
        specs.push_back(spec);
    }
    return specs;
}

inline std::vector<ServerAddress> numbered_servers(uint32_t count, uint16_t first_port = 11211) {
    std::vector<ServerAddress> specs;
    for (uint32_t i = 0; i < count; ++i) {
        ServerAddress spec;
        std::string error;
        REQUIRE(ServerAddress::parse("10.1.0." + std::to_string(i + 1) + ":" + std::to_string(first_port + i), 1, spec,
                                     error));
        specs.push_back(spec);
    }
    return specs;
}

inline memcached_server_distribution_t native_distribution(state::Distribution distribution) {
    switch (distribution) {
    case state::Distribution::modula: return MEMCACHED_DISTRIBUTION_MODULA;
    case state::Distribution::ketama: return MEMCACHED_DISTRIBUTION_CONSISTENT_KETAMA;
    case state::Distribution::ketama_weighted: return MEMCACHED_DISTRIBUTION_CONSISTENT_WEIGHTED;
    }
    return MEMCACHED_DISTRIBUTION_MODULA;
}

// A client handle: servers added, then the hash, then the distribution (the
// continuum is built with the hash in effect when the distribution is set).
inline memcached_st* native_handle(const std::vector<ServerAddress>& specs, state::Distribution distribution,
                                   state::Hash hash) {
    memcached_st* memc = memcached_create(nullptr);
    REQUIRE(memc);
    for (const ServerAddress& spec : specs) {
        const memcached_return_t rc =
            spec.is_unix ? memcached_server_add_unix_socket_with_weight(memc, spec.host.c_str(), spec.weight)
                         : memcached_server_add_with_weight(memc, spec.host.c_str(), spec.port, spec.weight);
        REQUIRE(rc == MEMCACHED_SUCCESS);
    }
    REQUIRE(memcached_behavior_set(memc, MEMCACHED_BEHAVIOR_HASH, uint64_t(hash)) == MEMCACHED_SUCCESS);
    REQUIRE(memcached_behavior_set(memc, MEMCACHED_BEHAVIOR_DISTRIBUTION, native_distribution(distribution)) ==
            MEMCACHED_SUCCESS);
    return memc;
}

// The handle's continuum, read through the public memcached_st layout.
inline std::vector<route::RingPoint> continuum_of(const memcached_st* memc) {
    const auto* points = reinterpret_cast<const route::RingPoint*>(memc->ketama.continuum);
    return {points, points + memc->ketama.continuum_points_counter};
}

inline route::Topology topology_of(std::vector<ServerAddress> specs, state::Distribution distribution,
                                   state::Hash hash) {
    route::Topology topology;
    std::string error;
    REQUIRE_MESSAGE(route::Topology::build(std::move(specs), distribution, hash, topology, error), error);
    return topology;
}

inline const std::vector<state::Hash>& available_hashes() {
    static const std::vector<state::Hash> hashes = [] {
        std::vector<state::Hash> out;
        for (uint32_t h = 0; h < state::kHashCount; ++h)
            if (route::hash_available(state::Hash(h))) out.push_back(state::Hash(h));
        return out;
    }();
    return hashes;
}

// `count` servers as a state file lists them: 10.1.0.N:1121N, weight 1.
inline std::vector<FixtureServer> fixture_servers(uint32_t count) {
    std::vector<FixtureServer> out;
    for (uint32_t i = 0; i < count; ++i) {
        const std::string address = "10.1.0." + std::to_string(i + 1) + ":" + std::to_string(11211 + i);
        out.push_back({address, address, 1});
    }
    return out;
}

}  // namespace mcwatch::test
