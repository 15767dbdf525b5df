#include "libshim/slot_status.hpp"

#include "libshim/seqlock.hpp"

namespace mcwatch::route {

uint8_t status_bits(uint32_t state_value, uint32_t flags) noexcept {
    switch (static_cast<state::ServerState>(state_value)) {
    case state::ServerState::dead: return kStatusAvoid;
    case state::ServerState::draining: return kStatusAvoid | kStatusDraining;
    case state::ServerState::unknown:
    case state::ServerState::live: break;
    }
    return (flags & state::kFlagRecentlyDown) ? kStatusRecent : 0;
}

bool read_status(const state::Header& header, const state::Slot* slots, const int32_t* slot_of, uint32_t count,
                 uint8_t* out) noexcept {
    return state::seqlock_read(header, [&]() noexcept {
        for (uint32_t i = 0; i < count; ++i) {
            if (slot_of[i] < 0) {
                out[i] = kStatusUnpublished;
                continue;
            }
            const state::Slot& slot = slots[slot_of[i]];
            out[i] =
                status_bits(slot.state.load(std::memory_order_relaxed), slot.flags.load(std::memory_order_relaxed));
        }
    });
}

}  // namespace mcwatch::route
