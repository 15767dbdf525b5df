// The control protocol's replies (daemon/control_request.hpp has its
// requests): mcwatchd answers each request line with one line, `ok TEXT` or
// `error TEXT`, and closes. The status is a field of the protocol, not a
// word to look for in a message: the daemon builds a ControlReply, the wire
// carries its line, mcctl reads the line back into a ControlReply.
#pragma once

#include <string>
#include <string_view>

#include "common/result.hpp"

namespace mcwatch {

enum class ControlStatus {
    ok,     // done (mcctl exits 0 and prints the text on stdout)
    error,  // refused or failed (mcctl exits 1 and prints the text on stderr)
};

struct ControlReply {
    ControlStatus status = ControlStatus::ok;
    std::string text;  // one line, for the operator

    static ControlReply ok(std::string text) { return {ControlStatus::ok, std::move(text)}; }
    static ControlReply error(std::string text) { return {ControlStatus::error, std::move(text)}; }
};

// "ok" or "error".
const char* control_status_name(ControlStatus status);

// The reply's line on the wire, without its newline: `ok TEXT`, `error TEXT`.
std::string control_reply_line(const ControlReply& reply);

// A reply line as received, without its newline: `ok`, `ok TEXT` or
// `error TEXT`; anything else is an error quoting (a bounded prefix of) it.
Result<ControlReply> parse_control_reply(std::string_view line);

}  // namespace mcwatch
