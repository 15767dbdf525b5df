// The only writer of the state file. Holds the single-writer lock, builds each
// new file aside and renames it into place (never truncating a mapped file),
// and publishes every probe round under the seqlock.
#pragma once

#include <boost/interprocess/mapped_region.hpp>

#include <optional>
#include <string>
#include <vector>

#include "common/config.hpp"
#include "common/result.hpp"
#include "daemon/membership.hpp"
#include "daemon/privileges.hpp"
#include "libshim/state_format.hpp"

namespace mcwatch {

// What the file at the state path published when this daemon took it over:
// a predecessor's last word, for carrying states over a restart.
struct PublishedFile {
    uint64_t generation = 0;
    int64_t heartbeat_unix_ms = 0;
    std::vector<std::string> addresses;  // as configured, per slot
    std::vector<std::string> resolved;   // numeric form, "" if none
    std::vector<uint32_t> weights;
    state::Distribution distribution = state::Distribution::ketama;
    state::Hash hash = state::Hash::md5;
    std::vector<state::ServerDynamic> servers;
    // The list before its latest membership change, as it published it.
    MembershipChange membership;
    // The move after that change, as it published it.
    state::MembershipMove membership_move;

    // Its own server list (the slots).
    ServerList server_list() const;
};

class StateWriter {
public:
    StateWriter() = default;
    ~StateWriter();
    StateWriter(const StateWriter&) = delete;
    StateWriter& operator=(const StateWriter&) = delete;

    // Creates the state directory if needed (mode 0755, refusing one that is
    // a symlink or writable by others) and takes the non-blocking flock on
    // "<state_file>.lock". `owner` is who will write the file (the daemon's
    // user after a privilege drop): a directory created here and the lock
    // file are given to it. A second daemon gets the error "another mcwatchd
    // (pid N) already publishes ...".
    Result<> lock(const std::string& state_file, const RunAs& owner = current_user());

    // Reads the valid state file a predecessor left at the path (call after
    // lock(): no writer can be changing it). nullopt when there is none; an
    // error saying why when there is one this daemon cannot trust.
    Result<std::optional<PublishedFile>> read_predecessor();

    // Builds a file for `config` with `servers` as its first contents, renames
    // it over the state path and marks the file it replaced as superseded.
    // Its generation continues from the highest one published at this path
    // (by this daemon or a predecessor): readers only see it move forward.
    // `resolved` gives each server's numeric address ("" if unknown);
    // `membership` the list before the latest membership change, after the
    // slots (none when empty).
    Result<> publish(const Config& config, const std::vector<std::string>& resolved,
                     const std::vector<state::ServerDynamic>& servers, const MembershipChange& membership = {});

    // Writes every server's dynamic part in one seqlock section; bumps the
    // generation when `routing_changed`. Then the heartbeat.
    void update(const std::vector<state::ServerDynamic>& servers, bool routing_changed);

    // Writes every server's dynamic part now, between rounds (an operator's
    // command): the generation as in update(), no heartbeat.
    void write_servers(const std::vector<state::ServerDynamic>& servers, bool routing_changed);

    // [fleet]: the header's fleet facts, written with the servers from the
    // next write on (in the same seqlock section), and into every new file.
    void set_fleet(const state::FleetStatus& fleet) { fleet_ = fleet; }
    // The move after the latest membership change: likewise.
    void set_membership_move(const state::MembershipMove& move) { membership_move_ = move; }

    const std::string& path() const { return path_; }
    // The published file's counters, for the metrics endpoint (0 before the first).
    int64_t heartbeat_unix_ms() const;
    uint64_t generation() const;
    uint64_t rounds() const;

private:
    std::string path_;       // the state file
    std::string base_name_;  // its name inside directory_fd_
    int directory_fd_ = -1;
    int lock_fd_ = -1;
    uint64_t generation_floor_ = 0;  // highest generation a predecessor published
    state::FleetStatus fleet_;
    state::MembershipMove membership_move_;
    boost::interprocess::mapped_region region_;
    state::Header* header_ = nullptr;
    state::Slot* slots_ = nullptr;
};

}  // namespace mcwatch
