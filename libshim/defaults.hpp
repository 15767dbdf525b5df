// What mcwatchd, mcctl and the shim agree on without a state file to say it:
// where the state file is, where the control socket is beside it, the
// environment that points a process elsewhere, and the recently-down window
// and write-back TTL a client assumes until a state file gives the configured
// ones. The shim is the bottom layer, so this lives here and common/, daemon/
// and tools/ include it. Everything here is allocation-free: the shim calls
// it inside other programs.
#pragma once

#include <cstdint>

namespace mcwatch {

namespace route {
class StateSource;
}

inline constexpr const char* kDefaultStatePath = "/run/mcwatchd/state";
// The control socket's name in the state file's directory, unless
// mcwatchd.conf sets control_socket.
inline constexpr const char* kControlSocketName = "control";

// mcwatchd.conf(5)'s defaults of recently_down_window and writeback_ttl.
inline constexpr uint32_t kDefaultRecentlyDownWindowS = 3600;
inline constexpr uint32_t kDefaultWritebackTtlS = 600;
// The most copies of a key ([routing] replicas; route::kMaxCopies).
inline constexpr uint32_t kMaxReplicas = 8;

// A write-back's lease (the shim's, libshim/preload/writeback.hpp, and the
// drain mover's): an empty item with these flags, added only where the key is
// absent, living kLeaseTtlS at most. One definition, so that each side takes
// the other's lease for a miss and gives way to it.
inline constexpr uint32_t kLeaseFlags = 0x6d634c53;  // "mcLS"
inline constexpr int64_t kLeaseTtlS = 2;

// $MCSHIM_STATE if set and not empty, else kDefaultStatePath. Read with
// secure_getenv: a setuid program ignores it.
const char* state_path_from_environment() noexcept;

// $MCSHIM_DEBUG set, not empty and not "0" (secure_getenv, as above).
bool debug_from_environment() noexcept;

// The window and TTL of the file `source` currently maps, else the defaults
// (no source, or no usable file yet).
uint32_t recently_down_window_s_or_default(const route::StateSource* source) noexcept;
uint32_t writeback_ttl_s_or_default(const route::StateSource* source) noexcept;

// [routing] replicas (1..route::kMaxCopies) and replica_max_ttl (0 = none)
// of the file `source` currently maps, else 1 and 0.
uint32_t replicas_or_default(const route::StateSource* source) noexcept;
uint32_t replica_max_ttl_s_or_default(const route::StateSource* source) noexcept;

}  // namespace mcwatch
