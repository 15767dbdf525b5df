#include "libshim/ketama.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace mcwatch::route {

namespace {

constexpr uint32_t kPointsPerServer = 100;          // MEMCACHED_POINTS_PER_SERVER
constexpr uint32_t kPointsPerServerWeighted = 160;  // MEMCACHED_POINTS_PER_SERVER_KETAMA

// libmemcached's point name. The buffer is larger than any host libmemcached
// accepts (NI_MAXHOST); a longer name is cut, as it could never be added there.
int point_name(const ServerAddress& server, uint32_t n, char* out, size_t size) {
    const int length = server.port == kDefaultPort
                           ? std::snprintf(out, size, "%s-%u", server.host.c_str(), n)
                           : std::snprintf(out, size, "%s:%u-%u", server.host.c_str(), unsigned(server.port), n);
    return std::min<int>(length, int(size) - 1);
}

// The float arithmetic of libmemcached 1.1.4, step by step in single
// precision (x86-64 SSE, no FMA contraction): counts differ from exact
// arithmetic for some weights, and must not.
uint32_t weighted_points(uint32_t weight, uint64_t total_weight, uint32_t server_count) {
    const float pct = float(weight) / float(total_weight);
    const float scaled = pct * float(kPointsPerServerWeighted) / 4.0f * float(server_count);
    const float biased = scaled + 0.0000000001F;
    return uint32_t(std::floor(biased) * 4);
}

}  // namespace

std::vector<RingPoint> build_ketama_ring(std::span<const ServerAddress> servers, bool weighted,
                                         const KeyHasher& hasher) {
    std::vector<RingPoint> ring;
    const auto count = static_cast<uint32_t>(servers.size());
    uint64_t total_weight = 0;
    for (const ServerAddress& server : servers) total_weight += server.weight ? server.weight : 1;
    ring.reserve(size_t(count) * (weighted ? kPointsPerServerWeighted : kPointsPerServer) + 16);
    char name[1100];
    for (uint32_t index = 0; index < count; ++index) {
        const ServerAddress& server = servers[index];
        if (weighted) {
            const uint32_t points = weighted_points(server.weight ? server.weight : 1, total_weight, count);
            for (uint32_t n = 0; n < points / 4; ++n) {
                const int length = point_name(server, n, name, sizeof name);
                unsigned char digest[16];
                md5_signature(name, size_t(length), digest);
                for (uint32_t word = 0; word < 4; ++word) {
                    const unsigned char* b = digest + word * 4;
                    const uint32_t value =
                        uint32_t(b[3]) << 24 | uint32_t(b[2]) << 16 | uint32_t(b[1]) << 8 | uint32_t(b[0]);
                    ring.push_back({index, value});
                }
            }
        } else {
            for (uint32_t n = 0; n < kPointsPerServer; ++n) {
                const int length = point_name(server, n, name, sizeof name);
                ring.push_back({index, hasher(name, size_t(length))});
            }
        }
    }
    std::sort(ring.begin(), ring.end(), [](const RingPoint& a, const RingPoint& b) {
        return a.value != b.value ? a.value < b.value : a.index < b.index;
    });
    return ring;
}

}  // namespace mcwatch::route
