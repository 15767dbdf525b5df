// `mcctl route [--json] KEY...`: where each key goes now, and why.
#pragma once

#include <cstdio>

namespace mcwatch {

// `state_path`: -s, or null (then the config's state_file with -c, else
// $MCSHIM_STATE, else /run/mcwatchd/state). `config_path`: -c, or null (then
// the server list, distribution and hash recorded in the state file).
// argv: the arguments after "route"; "-" reads keys from stdin, one per line.
// A key memcached would refuse (empty, over 250 bytes, a space or a control
// character) is answered `invalid key` with the reason.
// Exit: 0 every key has a server, 1 some key has none (all dead) or is invalid,
// 2 no server list (no readable state file and no -c), 64 usage.
int mcctl_route(const char* state_path, const char* config_path, int argc, char** argv);

// The same with explicit streams (tests).
int mcctl_route(const char* state_path, const char* config_path, int argc, char** argv, std::FILE* in, std::FILE* out,
                std::FILE* err);

}  // namespace mcwatch
