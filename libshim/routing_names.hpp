// Names of distributions and hashes as written in [routing] and printed by
// mcctl, mapped to the state file's enums.
#pragma once

#include <string_view>

#include "libshim/state_format.hpp"

namespace mcwatch {

// "modula", "ketama", "ketama_weighted". False for an unknown name.
bool distribution_from_name(std::string_view name, state::Distribution& out) noexcept;
// The canonical name, or "invalid" for a value outside the enum.
const char* distribution_name(state::Distribution distribution) noexcept;

// libmemcached's names without the MEMCACHED_HASH_ prefix, lower case:
// "one_at_a_time" (also "default"), "md5", "crc", "fnv1_64", "fnv1a_64",
// "fnv1_32", "fnv1a_32", "hsieh", "murmur", "jenkins", "murmur3".
bool hash_from_name(std::string_view name, state::Hash& out) noexcept;
const char* hash_name(state::Hash hash) noexcept;

}  // namespace mcwatch
