#include "daemon/control_request.hpp"

#include <fmt/format.h>

#include <array>
#include <utility>
#include <vector>

#include "libshim/state_format.hpp"

namespace mcwatch {

namespace {

ControlParse refuse(std::string why) { return {std::nullopt, std::move(why)}; }

}  // namespace

const char* control_command_name(ControlCommand command) {
    for (const ControlCommandSpec& spec : kControlCommands)
        if (spec.command == command) return spec.name.data();
    return "unknown";
}

ControlParse parse_control_request(std::string_view line) {
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.size() > kMaxControlRequestBytes)
        return refuse(fmt::format("request longer than {} bytes", kMaxControlRequestBytes));
    for (const char c : line) {
        const auto byte = static_cast<unsigned char>(c);
        if (byte != ' ' && byte != '\t' && (byte < 0x21 || byte > 0x7e))
            return refuse(fmt::format("request holds byte 0x{:02x}: printable ASCII only", byte));
    }
    std::vector<std::string_view> words;
    for (size_t i = 0; i < line.size();) {
        if (line[i] == ' ' || line[i] == '\t') {
            ++i;
            continue;
        }
        size_t end = i;
        while (end < line.size() && line[end] != ' ' && line[end] != '\t') ++end;
        if (words.size() == 4) return refuse("too many words: expected COMMAND [SERVER [force] [move]]");
        words.push_back(line.substr(i, end - i));
        i = end;
    }
    if (words.empty()) return refuse("empty request: expected COMMAND [SERVER]");

    for (const ControlCommandSpec& spec : kControlCommands) {
        if (words[0] != spec.name) continue;
        if (!spec.takes_server) {
            ControlRequest request{spec.command, ""};
            if (spec.takes_force && words.size() == 2 && words[1] == "force")
                request.force = true;
            else if (words.size() != 1)
                return refuse(spec.takes_force ? fmt::format("{} takes only `force`", spec.name)
                                               : fmt::format("{} takes no argument", spec.name));
            return {request, ""};
        }
        if (words.size() < 2) return refuse(fmt::format("{} needs a server: {} HOST:PORT", spec.name, spec.name));
        if (words[1].size() >= state::kAddressSize)
            return refuse(fmt::format("server address longer than {} bytes", state::kAddressSize - 1));
        ControlRequest request{spec.command, std::string(words[1])};
        for (size_t i = 2; i < words.size(); ++i) {
            if (spec.takes_force && words[i] == "force" && !request.force)
                request.force = true;
            else if (spec.command == ControlCommand::drain && words[i] == "move" && !request.move)
                request.move = true;
            else
                return refuse(
                    spec.command == ControlCommand::drain
                        ? fmt::format("{} HOST:PORT takes only `force` and `move` after the server", spec.name)
                    : spec.takes_force ? fmt::format("{} HOST:PORT takes only `force` after the server", spec.name)
                                       : fmt::format("{} takes one server and nothing after it", spec.name));
        }
        return {request, ""};
    }
    // Echo a bounded, already printable prefix of what was sent.
    return refuse(fmt::format("unknown command '{}' (expected ping, reload, drain, undrain, down, up or flush)",
                              words[0].substr(0, 32)));
}

}  // namespace mcwatch
