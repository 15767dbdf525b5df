// Hints to mcwatchd: one datagram `hint <address>\n` on the unix socket
// `hints` beside the state file when an operation of this process failed at
// the connection level on a server (docs/DESIGN.md, "In-band failover").
// The daemon treats it as evidence and probes the server at once; a hint
// can do nothing else.
#pragma once

#include <cstdint>

#include "libshim/preload/handle_routing.hpp"

namespace mcwatch::shim {

// The shortest time between two hints for one server from one process.
inline constexpr uint64_t kHintIntervalNs = 100'000'000;

// Tells the daemon that a request to server `server` of `routing` failed at
// the connection level. At most one hint per server per process per
// kHintIntervalNs; never blocks (MSG_DONTWAIT), never reports an error (a
// missing daemon, a full socket, a refusal: the hint is dropped), leaves
// errno as it found it. Nothing is sent for a server the state file does
// not list, or without a state file.
void send_hint(const HandleRouting& routing, int32_t server) noexcept;

}  // namespace mcwatch::shim
