// ns per routing decision: libmemcached's memcached_generate_hash against the
// router (and the C API), same keys, same process, same run, interleaved;
// best of several rounds each. Prints one line per setup and the ratio.
//
//   build: g++ -std=c++20 -O2 -Ilibshim -Ilibshim/include -Itests/unit
//          tests/bench/bench_router.cpp build/libmcshim.a -lmemcached -lhashkit
//   run:   bench_router [ROUNDS]
#include <libmemcached/memcached.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "mcshim.h"
#include "router.hpp"
#include "routing_names.hpp"
#include "state_fixture.hpp"

using namespace mcwatch;
using namespace mcwatch::route;

namespace {

constexpr uint32_t kServers = 8;

std::vector<std::string> bench_keys() {
    std::vector<std::string> keys;
    for (uint32_t i = 0; i < 100000; ++i)
        keys.push_back("user:" + std::to_string(i * 7919u % 1000003u) + ":session");
    return keys;
}

template <class F>
double ns_per_op(const std::vector<std::string>& keys, F&& route_one) {
    uint64_t sink = 0;
    const auto start = std::chrono::steady_clock::now();
    for (const std::string& key : keys) sink += uint32_t(route_one(key));
    const auto stop = std::chrono::steady_clock::now();
    asm volatile("" : : "r"(sink));
    return std::chrono::duration<double, std::nano>(stop - start).count() / double(keys.size());
}

void bench(const char* label, state::Distribution distribution, state::Hash hash, bool one_dead,
           const std::vector<std::string>& keys, int rounds) {
    char dir_template[] = "/tmp/mcwatch-bench-XXXXXX";
    if (!mkdtemp(dir_template)) std::abort();
    const std::string path = std::string(dir_template) + "/state";
    std::vector<test::FixtureServer> servers;
    std::vector<const char*> addresses;
    static std::vector<std::string> texts;
    texts.clear();
    for (uint32_t i = 0; i < kServers; ++i) texts.push_back("10.2.0." + std::to_string(i + 1) + ":11211");
    for (const std::string& text : texts) {
        servers.push_back({text, text, 1});
        addresses.push_back(text.c_str());
    }
    test::FixtureOptions options;
    options.distribution = distribution;
    options.hash = hash;
    options.stale_after_ms = 600000;  // no daemon beats during the run
    test::StateFixture file(path, servers, options);
    if (one_dead) file.set_state(3, state::ServerState::dead);

    memcached_st* memc = memcached_create(nullptr);
    for (uint32_t i = 0; i < kServers; ++i)
        memcached_server_add(memc, ("10.2.0." + std::to_string(i + 1)).c_str(), 11211);
    memcached_behavior_set(memc, MEMCACHED_BEHAVIOR_HASH, uint64_t(hash));
    memcached_behavior_set(memc, MEMCACHED_BEHAVIOR_DISTRIBUTION,
                           distribution == state::Distribution::modula ? MEMCACHED_DISTRIBUTION_MODULA
                           : distribution == state::Distribution::ketama
                               ? MEMCACHED_DISTRIBUTION_CONSISTENT_KETAMA
                               : MEMCACHED_DISTRIBUTION_CONSISTENT_WEIGHTED);

    mcshim_t* shim = mcshim_open(path.c_str());
    if (!shim || mcshim_use_state_servers(shim) != MCSHIM_OK) std::abort();
    std::vector<ServerSpec> specs;
    for (const std::string& text : texts) {
        ServerSpec spec;
        std::string error;
        parse_server_spec(text, 1, spec, error);
        specs.push_back(spec);
    }
    Topology topology;
    std::string error;
    if (!Topology::build(specs, distribution, hash, topology, error)) std::abort();
    Router router(std::move(topology), std::make_shared<StateSource>(path));

    double native = 1e9, routed = 1e9, capi = 1e9;
    for (int round = 0; round < rounds; ++round) {
        native = std::min(native, ns_per_op(keys, [&](const std::string& k) {
                              return memcached_generate_hash(memc, k.data(), k.size());
                          }));
        routed = std::min(routed, ns_per_op(keys, [&](const std::string& k) {
                              return router.route(k.data(), k.size()).target;
                          }));
        capi = std::min(capi, ns_per_op(keys, [&](const std::string& k) {
                            mcshim_route_t r;
                            mcshim_route(shim, k.data(), k.size(), &r);
                            return r.target;
                        }));
    }
    std::printf("%-34s %-8s native %6.1f ns  router %6.1f ns (%.2fx)  C API %6.1f ns (%.2fx)\n", label,
                one_dead ? "1 dead" : "all live", native, routed, routed / native, capi, capi / native);
    mcshim_close(shim);
    memcached_free(memc);
    std::remove(path.c_str());
    rmdir(dir_template);
}

}  // namespace

int main(int argc, char** argv) {
    const int rounds = argc > 1 ? std::atoi(argv[1]) : 7;
    const auto keys = bench_keys();
    std::printf("bench_router: %zu keys, %u servers, best of %d rounds\n", keys.size(), kServers, rounds);
    struct Setup {
        const char* label;
        state::Distribution distribution;
        state::Hash hash;
    };
    const Setup setups[] = {
        {"ketama md5 (DESIGN.md's example)", state::Distribution::ketama, state::Hash::md5},
        {"ketama one_at_a_time", state::Distribution::ketama, state::Hash::one_at_a_time},
        {"ketama_weighted md5", state::Distribution::ketama_weighted, state::Hash::md5},
        {"modula md5", state::Distribution::modula, state::Hash::md5},
        {"modula one_at_a_time", state::Distribution::modula, state::Hash::one_at_a_time},
        {"modula murmur", state::Distribution::modula, state::Hash::murmur},
    };
    for (const Setup& setup : setups)
        for (const bool one_dead : {false, true})
            bench(setup.label, setup.distribution, setup.hash, one_dead, keys, rounds);
    return 0;
}
