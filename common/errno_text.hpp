// The system's sentence for an errno value, for messages: "cannot bind
// control_socket /run/mcwatchd/control: Permission denied".
#pragma once

#include <cerrno>
#include <string>

namespace mcwatch {

// Thread-safe (the prober resolves names on a thread of its own). The default
// is the errno of the failed call just before: read when this is called.
std::string errno_text(int err = errno);

}  // namespace mcwatch
