// Who mcwatchd runs as, and the directories it owns. Started as root with
// `user =`, it prepares its directories, lock, control socket and listening
// port as root, then switches to that user for good before it writes the
// state file, so that the file belongs to the user (readers trust files owned
// by root, themselves, or the owner of the file's directory).
#pragma once

#include <cstdint>
#include <string>

#include "common/config.hpp"
#include "common/result.hpp"

namespace mcwatch {

struct RunAs {
    uint32_t uid = 0;
    uint32_t gid = 0;
    std::string name;  // for messages: the user's name, or "uid N"
};

// Whoever this process is now.
RunAs current_user();
// config.user when set, else current_user().
RunAs run_as(const Config& config);

// Whether this process can become `config.user` (it is root, or already
// that user); the error says why not.
Result<> check_can_switch(const Config& config);

// mkdir -p with mode 0755, handing the last component to `owner` if we
// create it, then checks it: a directory, not a symbolic link, not writable
// by others, owned by `owner` (or by root, when `owner` is root).
Result<> prepare_runtime_directory(const std::string& directory, const RunAs& owner);

// The directory part of an absolute path ("/" for "/x").
std::string parent_directory(const std::string& path);

// Switches to config.user for good (its groups, then gid, then uid) and
// checks that root cannot be regained. Does nothing without `user =` or when
// already that user.
Result<> drop_privileges(const Config& config);

// Raises the soft descriptor limit to what probing `servers` servers needs
// (one kept connection each, plus the control socket's clients, the metrics
// port, the state and lock files): past it, healthy servers would fail with
// "Too many open files" and be published dead.
Result<> ensure_descriptor_limit(size_t servers);

}  // namespace mcwatch
