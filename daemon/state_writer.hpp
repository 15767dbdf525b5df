// The only writer of the state file. Holds the single-writer lock, builds each
// new file aside and renames it into place (never truncating a mapped file),
// and publishes every probe round under the seqlock.
#pragma once

#include <boost/interprocess/mapped_region.hpp>

#include <string>
#include <vector>

#include "config.hpp"
#include "privileges.hpp"
#include "state_format.hpp"

namespace mcwatch {

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
    // file are given to it. Returns "" or a message; a second daemon gets
    // "another mcwatchd (pid N) already publishes ...".
    std::string lock(const std::string& state_file, const RunAs& owner = current_user());

    // Builds a file for `config` with `servers` as its first contents, renames
    // it over the state path and marks the file it replaced as superseded.
    // `resolved` gives each server's numeric address ("" if unknown).
    std::string publish(const Config& config, const std::vector<std::string>& resolved,
                        const std::vector<state::ServerDynamic>& servers);

    // Writes every server's dynamic part in one seqlock section; bumps the
    // generation when `routing_changed`. Then the heartbeat.
    void update(const std::vector<state::ServerDynamic>& servers, bool routing_changed);

    // Writes every server's dynamic part now, between rounds (an operator's
    // command): the generation as in update(), no heartbeat.
    void write_servers(const std::vector<state::ServerDynamic>& servers, bool routing_changed);

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
    boost::interprocess::mapped_region region_;
    state::Header* header_ = nullptr;
    state::Slot* slots_ = nullptr;
};

}  // namespace mcwatch
