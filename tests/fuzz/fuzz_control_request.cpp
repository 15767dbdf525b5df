// The control socket's request parser (daemon/control_request.cpp) on
// arbitrary bytes from a local client. It answers a request or an error
// sentence; a request names a known command and, for the commands that take
// one, a server address that fits the state file; an error is one printable
// line, safe to send back as the reply.
#include <cstdint>
#include <string>
#include <string_view>

#include "daemon/control_request.hpp"
#include "fuzz_check.hpp"
#include "libshim/state_format.hpp"

using namespace mcwatch;

namespace {

bool printable_line(std::string_view text) {
    for (const char c : text)
        if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) > 0x7e) return false;
    return true;
}

bool takes_server(ControlCommand command) {
    return command != ControlCommand::ping && command != ControlCommand::reload;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string_view line(reinterpret_cast<const char*>(data), size);
    const ControlParse parsed = parse_control_request(line);
    if (!parsed.request) {
        FUZZ_CHECK(!parsed.error.empty());
        FUZZ_CHECK(parsed.error.size() < 300);
        FUZZ_CHECK(printable_line(parsed.error));
        return 0;
    }
    const ControlRequest& request = *parsed.request;
    const std::string name = control_command_name(request.command);
    FUZZ_CHECK(name != "unknown");
    FUZZ_CHECK(takes_server(request.command) == !request.server.empty());
    FUZZ_CHECK(request.server.size() < state::kAddressSize);
    FUZZ_CHECK(printable_line(request.server));
    FUZZ_CHECK(request.server.find_first_of(" \t") == std::string::npos);
    FUZZ_CHECK(size <= kMaxControlRequestBytes + 1);

    // The request written back in its plain form reads the same.
    const std::string again = request.server.empty() ? name : name + " " + request.server;
    const ControlParse reparsed = parse_control_request(again);
    FUZZ_CHECK(reparsed.request && reparsed.request->command == request.command &&
               reparsed.request->server == request.server);
    return 0;
}
