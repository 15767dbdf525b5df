// `mcctl drain --move`: a thread of its own that moves every key of a
// draining server D to where clients now send it (docs/DESIGN.md, "Drain
// that moves every key"). It lists D's keys with `lru_crawler metadump all`,
// then moves each under the write-back protocol (lease on the destination,
// read D, store under the lease, delete D's copy if unchanged), paced at
// drain_rate keys per second, over its own connections and timeouts, so that
// probes and the control socket never wait for it. The daemon reads its
// progress through atomics and stops it by a flag; nothing is shared
// across I/O. The same mover, with another purpose, is the move after a
// membership change (docs/DESIGN.md, "Membership changes"): from a live
// server, only the keys whose server changed, with all their time left.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include <fmt/format.h>

#include "common/config.hpp"
#include "common/result.hpp"
#include "libshim/state_format.hpp"

namespace mcwatch {

class DrainMover;

// What a move is for: a drain empties its server (copies capped at the
// window, every key moved); a membership move takes from a live server the
// keys whose server changed, with all their time left, and deletes a copy
// the key's new server has superseded.
enum class MovePurpose { drain, membership };

struct DrainMoveProgress {
    state::DrainMove phase = state::DrainMove::listing;
    uint64_t listed = 0;   // keys metadump listed
    uint64_t moved = 0;    // stored at their destination and deleted from the draining server
    uint64_t skipped = 0;  // vanished, changed, already at the destination, or no destination
    uint64_t kept = 0;     // membership: its server did not change, so it stays
    uint32_t rate = 0;     // drain_rate, keys per second
    int64_t started_unix_ms = 0;
    int64_t ended_unix_ms = 0;  // 0 while listing or moving
    std::string why;            // stopped or failed: the reason

    bool running() const { return state::drain_move_running(uint32_t(phase)); }
    uint64_t remaining() const { return phase == state::DrainMove::done ? 0 : listed - moved - skipped - kept; }
};

// What the state file says of the move of a server (`mover` null when this
// daemon ran none since it started): the mover's progress; without one, what
// a predecessor published, a move it was running taken as stopped (no
// daemon resumes a move). A failed move's reason goes in `last_error` when
// the probes left none there.
void publish_drain_move(const DrainMover* mover, state::ServerDynamic& view);

class DrainMover {
public:
    // Starts moving the keys of `config.servers[source]`. `config` is the
    // daemon's: its server list and routing place keys as clients do, its
    // state file says where they send them now. `rate`: keys a second, 0 for
    // drain_rate (membership movers share it).
    static std::unique_ptr<DrainMover> start(const Config& config, size_t source,
                                             MovePurpose purpose = MovePurpose::drain, uint32_t rate = 0);
    ~DrainMover();  // stops the move and waits for its thread (a poll slice at most)
    DrainMover(const DrainMover&) = delete;
    DrainMover& operator=(const DrainMover&) = delete;

    // Ends the move soon (within a poll slice) and says why; a move already
    // ended keeps its outcome.
    void stop(const std::string& why);
    DrainMoveProgress progress() const;
    const std::string& server() const { return server_; }
    // True once, the first time it is asked after the move ended: the daemon
    // then publishes the outcome without waiting for its next round.
    bool take_end();
    // Waits for the thread to end (after stop(): a poll slice at most).
    void wait() {
        if (thread_.joinable()) thread_.join();
    }

    MovePurpose purpose() const { return purpose_; }

private:
    DrainMover(const Config& config, size_t source, MovePurpose purpose, uint32_t rate);
    void run();
    void finish(state::DrainMove phase, std::string why);
    Result<> move_all();
    // The log's event for `what` (start, listed, end): drain_move_* for a
    // drain, membership_move_source_* for one source of a membership move.
    std::string event(const char* what) const {
        return fmt::format("{}_{}", purpose_ == MovePurpose::drain ? "drain_move" : "membership_move_source", what);
    }

    const Config config_;
    const size_t source_;
    const std::string server_;
    const MovePurpose purpose_;
    const uint32_t rate_;  // keys a second
    std::atomic<bool> stop_requested_{false};
    std::atomic<uint32_t> phase_{uint32_t(state::DrainMove::listing)};
    std::atomic<bool> end_taken_{false};
    std::atomic<uint64_t> listed_{0}, moved_{0}, skipped_{0}, kept_{0};
    std::atomic<int64_t> started_unix_ms_{0}, ended_unix_ms_{0};
    mutable std::mutex why_mutex_;  // never held across I/O
    std::string why_;
    std::mutex pace_mutex_;  // the pacing sleep, woken by stop()
    std::condition_variable pace_;
    std::thread thread_;
};

}  // namespace mcwatch
