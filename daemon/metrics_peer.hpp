// Who is at the other end of a metrics connection, so that one peer cannot
// hold every connection the endpoint allows and starve the others.
#pragma once

#include <string>

namespace mcwatch {

// "uid N" when the peer's socket is on this host (every local user shares
// 127.0.0.1, so the address alone would make them one peer): the kernel's
// sock_diag says who owns it, as for `ss -e`. Otherwise, or if the kernel
// cannot tell, the peer's address ("addr 192.0.2.7"). "" if even that fails.
std::string metrics_peer_of(int fd);

}  // namespace mcwatch
