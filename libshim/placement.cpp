#include "libshim/placement.hpp"

#include "libshim/routing_names.hpp"

namespace mcwatch::route {

bool Topology::build(std::vector<ServerAddress> servers, state::Distribution distribution, state::Hash hash,
                     Topology& out, std::string& error) {
    if (servers.empty()) {
        error = "no servers";
        return false;
    }
    if (servers.size() > state::kMaxServers) {
        error = "more than " + std::to_string(state::kMaxServers) + " servers";
        return false;
    }
    if (distribution != state::Distribution::modula && distribution != state::Distribution::ketama &&
        distribution != state::Distribution::ketama_weighted) {
        error = "unknown distribution number " + std::to_string(uint32_t(distribution));
        return false;
    }
    const KeyHasher hasher = key_hasher(hash);
    if (!hasher) {
        error = uint32_t(hash) < state::kHashCount
                    ? std::string("hash ") + hash_name(hash) + " is not available in this libhashkit"
                    : "unknown hash number " + std::to_string(uint32_t(hash));
        return false;
    }
    Topology topology;
    for (ServerAddress& server : servers)
        if (server.weight == 0) server.weight = 1;
    topology.servers_ = std::move(servers);
    topology.distribution_ = distribution;
    topology.hash_ = hash;
    topology.hasher_ = hasher;
    if (distribution != state::Distribution::modula)
        topology.ring_ =
            build_ketama_ring(topology.servers_, distribution == state::Distribution::ketama_weighted, hasher);
    out = std::move(topology);
    return true;
}

PlacementView Topology::view() const noexcept {
    PlacementView v;
    v.consistent = distribution_ != state::Distribution::modula;
    v.server_count = size();
    v.ring = ring_.data();
    v.ring_size = uint32_t(ring_.size());
    v.hasher = hasher_;
    return v;
}

}  // namespace mcwatch::route
