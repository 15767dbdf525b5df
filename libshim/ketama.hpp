// libmemcached's ketama continuum, rebuilt point for point, and its lookup.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "libshim/hashes.hpp"
#include "libshim/server_address.hpp"

namespace mcwatch::route {

// Layout of libmemcached's memcached_continuum_item_st, so that a handle's
// own continuum can be walked with the same code as ours.
struct RingPoint {
    uint32_t index;  // server position in the list
    uint32_t value;  // point on the circle
};

// libmemcached 1.1.4's update_continuum (distribution CONSISTENT/KETAMA/
// WEIGHTED, no auto-eject) for `servers` in list order:
// - unweighted: 100 points per server, each the key hash (`hasher`, i.e.
//   MEMCACHED_BEHAVIOR_HASH, not KETAMA_HASH) of "host-N" when the port is
//   11211, else "host:port-N", N = 0..99 (a unix socket is "path:0-N");
// - weighted: floor(float(weight/total) * 160/4 * servers + 1e-10f) * 4
//   points per server, four per md5 digest of the same names (each
//   digest's little-endian 32-bit words 0..3), whatever the key hash is;
// - sorted by value, then by server index.
std::vector<RingPoint> build_ketama_ring(std::span<const ServerAddress> servers, bool weighted,
                                         const KeyHasher& hasher);

// libmemcached's dispatch_host: the first point whose value is >= hash,
// wrapping to the first point past the end. `size` must be > 0.
inline uint32_t ring_position(const RingPoint* ring, uint32_t size, uint32_t hash) noexcept {
    uint32_t left = 0, right = size;
    while (left < right) {
        const uint32_t middle = left + (right - left) / 2;
        if (ring[middle].value < hash)
            left = middle + 1;
        else
            right = middle;
    }
    return right == size ? 0 : right;
}

}  // namespace mcwatch::route
