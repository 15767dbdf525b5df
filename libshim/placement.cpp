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

namespace {

int64_t encode_from_now(int64_t seconds, int64_t now_unix_s) noexcept {
    return seconds <= kRelativeExpirationLimit ? seconds : now_unix_s + seconds;
}

}  // namespace

int64_t clamp_expiration(int64_t expiration, uint32_t window_s, int64_t now_unix_s) noexcept {
    const int64_t window = window_s ? int64_t(window_s) : 1;
    if (expiration < 0) return expiration;  // already expired: nothing to cap
    if (expiration == 0) return encode_from_now(window, now_unix_s);
    if (expiration <= kRelativeExpirationLimit)
        return expiration <= window ? expiration : encode_from_now(window, now_unix_s);
    const int64_t remaining = expiration - now_unix_s;
    if (remaining <= window) return expiration;  // already within (or past: expired)
    return encode_from_now(window, now_unix_s);
}

}  // namespace mcwatch::route
