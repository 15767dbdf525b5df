// The addresses of server names for the shim's own connections
// (meta_connection.cpp), looked up off the client's call: getaddrinfo may
// wait on DNS for seconds, and a write-back or a replica store must never
// hold the program for that (docs/DESIGN.md, "Write-backs and leases").
#pragma once

#include <cstddef>
#include <cstdint>

#include "libshim/server_address.hpp"

namespace mcwatch::shim {

// The most addresses of one name a connection tries.
inline constexpr size_t kMaxAddresses = 4;

// The socket addresses of `host` at `port`, into `out`; returns how many
// (0: none known). A numeric address is converted at once. A name is looked
// up once per process, on a thread of its own, and its answer kept: the
// first caller waits for it until `deadline_ms` (monotonic ms) at most, a
// later one never waits.
size_t addresses_of(const char* host, uint16_t port, int64_t deadline_ms, SocketAddress* out) noexcept;

// No address of `host` took a connection: look the name up again, on its
// thread (at most one lookup at a time, at most one a second); the
// addresses known are served until it answers. Nothing for a numeric host.
void look_up_again(const char* host) noexcept;

}  // namespace mcwatch::shim
