// The process's view of the state file for routing: which mapping is
// current, whether it is usable (valid and fresh), and an epoch that changes
// whenever anything routing reads from it may have changed. Checking it costs
// a few loads and a coarse clock read; the work (stat, remap, heartbeat
// check) happens at most once a second or when the generation moves.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

#include "libshim/state_reader.hpp"

namespace mcwatch::route {

// How often the file is looked at again (stat for replacement, heartbeat
// age, a missing or invalid file retried) without a generation change.
inline constexpr uint64_t kCheckIntervalNs = 1'000'000'000;
// How long a replaced mapping stays mapped after it stopped being current.
// Readers hold a mapping only for one call (microseconds); a newer file that
// arrives sooner waits (the current one is used meanwhile), so a client
// holds at most two mappings whatever the daemon does.
inline constexpr uint64_t kRetireGraceNs = 2'000'000'000;

class StateSource {
public:
    struct Mapped {
        state::StateMap map;
        uint64_t serial = 0;              // distinct per mapping, never 0
        state::HeartbeatWatch heartbeat;  // refreshers only, under their mutex
    };

    // Maps `path` if it can; a missing or invalid file is retried later.
    // With `debug`, says on stderr (prefixed "mcshim:") when the view
    // becomes unusable and usable again.
    explicit StateSource(std::string path, bool debug = false);
    StateSource(const StateSource&) = delete;
    StateSource& operator=(const StateSource&) = delete;

    // The hot-path check. Thread-safe; lock-free unless a check is due,
    // and then one thread checks while the others carry on.
    uint64_t poll(uint64_t now_coarse_ns) noexcept {
        const Mapped* mapped = current_.load(std::memory_order_acquire);
        // A superseded file is left at once (the daemon flags it right after
        // the rename): a new server list reaches every operation that starts
        // after the rename, not a second later.
        if (now_coarse_ns >= next_check_ns_.load(std::memory_order_relaxed) ||
            (mapped && (mapped->map.header().generation.load(std::memory_order_relaxed) !=
                            generation_seen_.load(std::memory_order_relaxed) ||
                        (mapped->map.header().superseded.load(std::memory_order_relaxed) &&
                         mapped != superseded_waiting_.load(std::memory_order_relaxed)))))
            refresh(false);
        return epoch_.load(std::memory_order_acquire);
    }

    // The current mapping, or null. Callers use it within one call and never
    // keep it: the source holds at most the current file and the one it is
    // leaving, and unmaps the one before only kRetireGraceNs after it stopped
    // being current (a reader that loaded it is long done by then).
    const Mapped* current() const noexcept { return current_.load(std::memory_order_acquire); }
    // Mapped, valid and with a fresh heartbeat as of the last check.
    bool usable() const noexcept { return usable_.load(std::memory_order_acquire); }
    uint64_t epoch() const noexcept { return epoch_.load(std::memory_order_acquire); }
    const std::string& path() const noexcept { return path_; }
    // Why the view is not usable ("" when it is): a sentence naming the file.
    std::string problem() const;
    // Checks now, whatever the schedule (tests, tools).
    void check_now() noexcept { refresh(true); }
    // Called (by the thread that maps it) each time a new mapping becomes
    // current; set once, before the source is shared.
    void on_new_mapping(void (*hook)() noexcept) noexcept { on_new_mapping_ = hook; }

private:
    void refresh(bool wait) noexcept;

    const std::string path_;
    const bool debug_;
    mutable std::mutex mutex_;  // refreshers only; readers never take it
    // Installs `fresh` as current; the one before the file being left goes
    // (callers check its grace is over).
    void adopt(std::unique_ptr<Mapped> fresh, uint64_t now) noexcept;

    std::unique_ptr<Mapped> current_map_;  // what current_ points to
    std::unique_ptr<Mapped> leaving_map_;  // the one before, still mapped for late readers
    uint64_t leaving_since_ns_ = 0;        // when it stopped being current
    uint64_t next_stat_ns_ = 0;
    uint64_t serials_ = 0;
    std::string problem_;
    bool said_unusable_ = false;

    void (*on_new_mapping_)() noexcept = nullptr;
    std::atomic<const Mapped*> current_{nullptr};
    // A superseded mapping that could not be left yet (two files mapped, the
    // older one's grace not over): poll stops asking for it until then.
    std::atomic<const Mapped*> superseded_waiting_{nullptr};
    std::atomic<uint64_t> next_check_ns_{0};
    std::atomic<uint64_t> generation_seen_{0};
    std::atomic<uint64_t> epoch_{1};
    std::atomic<bool> usable_{false};
};

}  // namespace mcwatch::route
