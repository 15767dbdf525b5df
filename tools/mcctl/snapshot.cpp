#include "tools/mcctl/snapshot.hpp"

#include <signal.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "libshim/clock.hpp"
#include "libshim/seqlock.hpp"

namespace mcwatch {

Result<> load_snapshot(const std::string& path, Snapshot& out) {
    char why[256] = {};
    if (out.map.open(path.c_str(), why, sizeof why) != state::MapStatus::ok) return failure(why);
    const state::Header& header = out.map.header();
    out.servers.assign(header.slot_count, state::ServerDynamic{});
    // Bounded: the daemon's write section lasts microseconds; a sequence
    // stuck odd means it died inside one.
    bool copied = false;
    for (int attempt = 0; attempt < 50 && !copied; ++attempt) {
        copied = state::read_consistent(header, out.map.slots(), header.slot_count, out.servers.data(), &out.generation,
                                        state::kReadTries, &out.fleet, &out.membership_move);
        if (!copied) {
            struct timespec pause {
                0, 2'000'000
            };
            nanosleep(&pause, nullptr);
        }
    }
    if (!copied) return failure("state file " + path + ": stays mid-update (the daemon died while writing?)");
    // One look: the wall clock, which every process of the host shares.
    const int64_t now = unix_ms();
    out.heartbeat_age_ms = state::heartbeat_age_ms(header, now);
    out.stale = !state::heartbeat_fresh(header, now);
    out.daemon_running = header.daemon_pid != 0 && (kill(pid_t(header.daemon_pid), 0) == 0 || errno == EPERM);
    return {};
}

std::string slot_address(const Snapshot& snapshot, uint32_t i) {
    const char* address = snapshot.map.slots()[i].address;
    return std::string(address, strnlen(address, state::kAddressSize));
}

}  // namespace mcwatch
