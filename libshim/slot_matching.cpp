#include "libshim/slot_matching.hpp"

#include <cstring>

#include "libshim/server_address.hpp"

namespace mcwatch::route {

std::vector<std::vector<std::string>> server_names(const Topology& topology, bool resolve) {
    std::vector<std::vector<std::string>> names;
    names.reserve(topology.size());
    for (const ServerAddress& server : topology.servers()) {
        std::vector<std::string> forms{server.canonical()};
        if (resolve)
            for (std::string& numeric : server.resolve())
                if (numeric != forms.front()) forms.push_back(std::move(numeric));
        names.push_back(std::move(forms));
    }
    return names;
}

std::vector<int32_t> match_slots(const std::vector<std::vector<std::string>>& names, const state::Header& header,
                                 const state::Slot* slots) {
    const uint32_t slot_count = header.slot_count;
    std::vector<std::string> configured(slot_count), resolved(slot_count);
    for (uint32_t s = 0; s < slot_count; ++s) {
        configured[s] = ServerAddress::canonical(
            std::string_view(slots[s].address, strnlen(slots[s].address, state::kAddressSize)));
        resolved[s] = ServerAddress::canonical(
            std::string_view(slots[s].resolved, strnlen(slots[s].resolved, state::kResolvedSize)));
    }
    std::vector<int32_t> slot_of(names.size(), -1);
    for (size_t i = 0; i < names.size(); ++i) {
        for (uint32_t s = 0; s < slot_count && slot_of[i] < 0; ++s)
            if (!configured[s].empty() && configured[s] == names[i].front()) slot_of[i] = int32_t(s);
        for (uint32_t s = 0; s < slot_count && slot_of[i] < 0; ++s) {
            for (const std::string& name : names[i])
                if (name == resolved[s] || name == configured[s]) slot_of[i] = int32_t(s);
        }
    }
    return slot_of;
}

}  // namespace mcwatch::route
