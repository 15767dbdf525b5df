// mcctl's commands that go through mcwatchd's control socket: drain,
// undrain, down, up, flush, reload, ping. One request line per connection,
// one reply line (`ok ...` or `error ...`).
#pragma once

#include <chrono>
#include <cstdio>
#include <string>

#include "common/result.hpp"

namespace mcwatch {

// Where the control socket is: -S, else the config's control_socket (-c),
// else `control` beside the state file (as the daemon's default).
Result<std::string> control_socket_path(const char* explicit_socket, const char* config_path,
                                        const std::string& state_path);

// Sends `request` and prints the reply's message: on `out` for ok (exit 0),
// on `err` for an error reply (exit 1). Exit 2 when the daemon cannot be
// reached or does not answer within `timeout`.
int mcctl_control(const std::string& socket_path, const std::string& request, std::chrono::milliseconds timeout,
                  std::FILE* out, std::FILE* err);

}  // namespace mcwatch
