#include "common/control_reply.hpp"

#include <fmt/format.h>

namespace mcwatch {

const char* control_status_name(ControlStatus status) { return status == ControlStatus::ok ? "ok" : "error"; }

std::string control_reply_line(const ControlReply& reply) {
    return fmt::format("{} {}", control_status_name(reply.status), reply.text);
}

Result<ControlReply> parse_control_reply(std::string_view line) {
    if (line == "ok") return ControlReply::ok("");
    if (line.starts_with("ok ")) return ControlReply::ok(std::string(line.substr(3)));
    if (line.starts_with("error ")) return ControlReply::error(std::string(line.substr(6)));
    return failure(fmt::format("unexpected answer '{}'", line.substr(0, 200)));
}

}  // namespace mcwatch
