// The control protocol's requests: one line of text per connection on the
// unix socket, `COMMAND [SERVER [force]]`, answered by one line
// (common/control_reply.hpp: `ok TEXT` or `error TEXT`). The parser is a pure function of the bytes received so
// that it can be fuzzed and unit-tested apart from any socket.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include "common/control_commands.hpp"

namespace mcwatch {

struct ControlRequest {
    ControlCommand command = ControlCommand::ping;
    std::string server;  // as the operator typed it; "" for ping and reload
    // drain and down: even if fewer than min_live_servers would stay live;
    // reload: even if it removes a server that still holds items.
    bool force = false;
    // drain: also move every key of the server (`move` after the server).
    bool move = false;
};

struct ControlParse {
    std::optional<ControlRequest> request;
    std::string error;  // a sentence for the `error` reply when request is empty
};

// Longest request line accepted, without its newline. A server address is at
// most 127 bytes; the rest is room for the command and spaces.
inline constexpr size_t kMaxControlRequestBytes = 512;

// One request line, without its '\n' (a trailing '\r' is ignored): a command
// in lower case, then its argument, separated by spaces or tabs; drain and
// down take a third word, `force`, and drain `move` as well; reload takes
// `force` alone. Anything
// else (control bytes, non-ASCII, a missing or extra word, an unknown
// command, too long) is an error. Never throws except std::bad_alloc.
ControlParse parse_control_request(std::string_view line);

const char* control_command_name(ControlCommand command);

}  // namespace mcwatch
