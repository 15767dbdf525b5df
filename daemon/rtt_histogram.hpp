// Probe round-trip times as a cumulative histogram, for the metrics endpoint:
// a handful of fixed buckets from 100us to 1s, enough to see a server slow
// down long before it times out.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>

namespace mcwatch {

class RttHistogram {
public:
    // Upper bounds in seconds, Prometheus `le` labels; +Inf is implicit.
    static constexpr std::array<double, 12> kBounds = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                                       0.01,   0.025,   0.05,   0.1,   0.25,   1.0};

    void observe(std::chrono::microseconds rtt) {
        const double seconds = double(rtt.count()) / 1e6;
        for (size_t i = 0; i < kBounds.size(); ++i)
            if (seconds <= kBounds[i]) ++counts_[i];
        ++count_;
        sum_seconds_ += seconds;
    }

    // Observations at or below kBounds[i] (cumulative, as Prometheus wants).
    uint64_t at_or_below(size_t i) const { return counts_[i]; }
    uint64_t count() const { return count_; }
    double sum_seconds() const { return sum_seconds_; }

private:
    std::array<uint64_t, kBounds.size()> counts_{};
    uint64_t count_ = 0;
    double sum_seconds_ = 0;
};

}  // namespace mcwatch
