// What routing reads of the slots on a client's call: each server's kStatus*
// bits, copied consistently under the seqlock. Allocation-free.
#pragma once

#include <cstdint>

#include "libshim/placement.hpp"
#include "libshim/state_format.hpp"

namespace mcwatch::route {

// kStatus* bits of one slot's state and flags.
uint8_t status_bits(uint32_t state, uint32_t flags) noexcept;

// The kStatus* bits of the slots in `slot_of` (kStatusUnpublished for -1) into `out`, as
// of one instant, by the seqlock protocol of seqlock.hpp but reading only
// state and flags. False if no consistent copy could be made now.
bool read_status(const state::Header& header, const state::Slot* slots, const int32_t* slot_of, uint32_t count,
                 uint8_t* out) noexcept;

}  // namespace mcwatch::route
