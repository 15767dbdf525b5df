#include "libshim/routing_names.hpp"

namespace mcwatch {

namespace {

struct DistributionName {
    const char* name;
    state::Distribution value;
};

constexpr DistributionName kDistributions[] = {
    {"modula", state::Distribution::modula},
    {"ketama", state::Distribution::ketama},
    {"ketama_weighted", state::Distribution::ketama_weighted},
};

// Indexed by the enum's value; the canonical name first.
constexpr const char* kHashNames[state::kHashCount] = {
    "one_at_a_time", "md5",   "crc",    "fnv1_64", "fnv1a_64", "fnv1_32",
    "fnv1a_32",      "hsieh", "murmur", "jenkins", "murmur3",
};

}  // namespace

bool distribution_from_name(std::string_view name, state::Distribution& out) noexcept {
    for (const auto& entry : kDistributions) {
        if (name == entry.name) {
            out = entry.value;
            return true;
        }
    }
    return false;
}

const char* distribution_name(state::Distribution distribution) noexcept {
    for (const auto& entry : kDistributions)
        if (entry.value == distribution) return entry.name;
    return "invalid";
}

bool hash_from_name(std::string_view name, state::Hash& out) noexcept {
    if (name == "default") {
        out = state::Hash::one_at_a_time;
        return true;
    }
    for (uint32_t i = 0; i < state::kHashCount; ++i) {
        if (name == kHashNames[i]) {
            out = static_cast<state::Hash>(i);
            return true;
        }
    }
    return false;
}

const char* hash_name(state::Hash hash) noexcept {
    const auto index = static_cast<uint32_t>(hash);
    return index < state::kHashCount ? kHashNames[index] : "invalid";
}

}  // namespace mcwatch
