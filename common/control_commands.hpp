// The commands of mcwatchd's control socket, which daemon/control_request.cpp
// parses and mcctl sends: one list, so that a command added to the daemon is
// one mcctl knows.
#pragma once

#include <array>
#include <string_view>

namespace mcwatch {

enum class ControlCommand { ping, reload, drain, undrain, down, up, flush };

struct ControlCommandSpec {
    std::string_view name;
    ControlCommand command;
    bool takes_server;
    // `force` last: drain and down past min_live_servers, reload past the
    // refusal to remove a server that still holds items.
    bool takes_force;
};

inline constexpr std::array<ControlCommandSpec, 7> kControlCommands = {{
    {"ping", ControlCommand::ping, false, false},
    {"reload", ControlCommand::reload, false, true},
    {"drain", ControlCommand::drain, true, true},
    {"undrain", ControlCommand::undrain, true, false},
    {"down", ControlCommand::down, true, true},
    {"up", ControlCommand::up, true, false},
    {"flush", ControlCommand::flush, true, false},
}};

// The spec of the command called `name`, or null.
inline constexpr const ControlCommandSpec* find_control_command(std::string_view name) {
    for (const ControlCommandSpec& spec : kControlCommands)
        if (spec.name == name) return &spec;
    return nullptr;
}

}  // namespace mcwatch
