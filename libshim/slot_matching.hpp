// Which slot of the state file each server of a caller's list is. The
// forms compared are ServerAddress's: what mcwatchd writes in a slot (the
// address as configured, its numeric form) against a list's canonical and
// numeric forms.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "libshim/placement.hpp"
#include "libshim/state_format.hpp"

namespace mcwatch::route {

// Which slot of the state file each server of a list is: matched by the
// canonical address as configured first, then by numeric address (the
// slot's resolved address, or its configured one if numeric, against the
// server's numeric forms). -1 for a server the file does not list.
// `names[i]` are server i's canonical address then its numeric forms.
std::vector<int32_t> match_slots(const std::vector<std::vector<std::string>>& names, const state::Header& header,
                                 const state::Slot* slots);

// server i's names for match_slots; `resolve` allows getaddrinfo.
std::vector<std::vector<std::string>> server_names(const Topology& topology, bool resolve);

}  // namespace mcwatch::route
