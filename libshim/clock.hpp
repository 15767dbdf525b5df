// The clocks: CLOCK_MONOTONIC for the state file's heartbeat (shared by every
// process of one boot, immune to wall-clock steps), its coarse variant for
// the shim's periodic checks on a client's call, and unix time in
// milliseconds for what humans read.
#pragma once

#include <cstdint>
#include <ctime>

namespace mcwatch {

inline uint64_t monotonic_ns() noexcept {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return uint64_t(ts.tv_sec) * 1000000000u + uint64_t(ts.tv_nsec);
}

// CLOCK_MONOTONIC_COARSE: a vDSO read of a few ns, precise to a tick (a
// few ms), which is all the shim's periodic checks need.
inline uint64_t coarse_monotonic_ns() noexcept {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return uint64_t(ts.tv_sec) * 1000000000u + uint64_t(ts.tv_nsec);
}

inline int64_t unix_ms() noexcept {
    timespec ts{};
    clock_gettime(CLOCK_REALTIME, &ts);
    return int64_t(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

}  // namespace mcwatch
