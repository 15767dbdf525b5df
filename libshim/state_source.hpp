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
// How many state files a client may hold mapped at once: the current one,
// the one it is leaving, and one more per reader stalled inside an older one
// (a thread preempted mid-read). A mapping is unmapped only once no reader
// is inside it; when every spare is still held, a newer file waits.
inline constexpr unsigned kMaxMappings = 4;
// How soon a newer file that found no free mapping is looked at again.
inline constexpr uint64_t kHeldRetryNs = 10'000'000;

class StateSource {
public:
    struct Mapped {
        state::StateMap map;
        uint64_t serial = 0;              // distinct per mapping, never 0
        state::HeartbeatWatch heartbeat;  // refreshers only, under their mutex
        // Readers inside the mapping (Pin); it is unmapped only at 0.
        mutable std::atomic<uint32_t> readers{0};
    };

    // A reader's hold on the current mapping: while it lives the mapping
    // stays mapped, however long the thread is descheduled. Empty when
    // there is no mapping. Take one per call, never keep it.
    class Pin {
    public:
        Pin() noexcept = default;
        Pin(Pin&& other) noexcept : mapped_(other.mapped_) { other.mapped_ = nullptr; }
        Pin(const Pin&) = delete;
        Pin& operator=(const Pin&) = delete;
        ~Pin() {
            if (mapped_) mapped_->readers.fetch_sub(1, std::memory_order_release);
        }
        const Mapped* get() const noexcept { return mapped_; }
        const Mapped* operator->() const noexcept { return mapped_; }
        const Mapped& operator*() const noexcept { return *mapped_; }
        explicit operator bool() const noexcept { return mapped_ != nullptr; }

    private:
        friend class StateSource;
        explicit Pin(const Mapped* mapped) noexcept : mapped_(mapped) {}
        const Mapped* mapped_ = nullptr;
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
        bool due = now_coarse_ns >= next_check_ns_.load(std::memory_order_relaxed);
        if (!due) {
            const Pin mapped = pin();
            // A superseded file is left at once (the daemon flags it right after
            // the rename): a new server list reaches every operation that starts
            // after the rename, not a second later.
            due = mapped && (mapped->map.header().generation.load(std::memory_order_relaxed) !=
                                 generation_seen_.load(std::memory_order_relaxed) ||
                             (mapped->map.header().superseded.load(std::memory_order_relaxed) &&
                              mapped.get() != superseded_waiting_.load(std::memory_order_relaxed)));
        }
        if (due) refresh(false);
        return epoch_.load(std::memory_order_acquire);
    }

    // Holds the current mapping, if any, for the caller's reads. The pin is
    // taken and then checked against current_ again: a mapping that stopped
    // being current in between is let go untouched, so the refresher that
    // replaced it and then sees no reader may unmap it.
    Pin pin() const noexcept {
        for (unsigned attempt = 0; attempt < kMaxMappings; ++attempt) {
            const Mapped* mapped = current_.load(std::memory_order_seq_cst);
            if (!mapped) return Pin();
            mapped->readers.fetch_add(1, std::memory_order_seq_cst);
            if (current_.load(std::memory_order_seq_cst) == mapped) return Pin(mapped);
            mapped->readers.fetch_sub(1, std::memory_order_release);
        }
        return Pin();  // replaced under us again and again: no view for this call
    }
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
    // Unmaps every mapping that is neither current nor held by a reader.
    void reclaim() noexcept;
    // One free to map into (closed, not current), made if need be; null
    // when readers hold all the others (or memory is short).
    Mapped* spare() noexcept;
    // Makes `fresh` (mapped, from spare()) the current one.
    void adopt(Mapped* fresh) noexcept;

    // The mappings, made on demand and never freed before the source: a
    // reader that loaded a pointer to one may still touch its count.
    std::unique_ptr<Mapped> mappings_[kMaxMappings];
    uint64_t next_stat_ns_ = 0;
    uint64_t serials_ = 0;
    std::string problem_;
    bool said_unusable_ = false;

    void (*on_new_mapping_)() noexcept = nullptr;
    std::atomic<const Mapped*> current_{nullptr};
    // A superseded mapping that could not be left yet (every other mapping
    // held by a reader): poll stops asking for it until the retry.
    std::atomic<const Mapped*> superseded_waiting_{nullptr};
    std::atomic<uint64_t> next_check_ns_{0};
    std::atomic<uint64_t> generation_seen_{0};
    std::atomic<uint64_t> epoch_{1};
    std::atomic<bool> usable_{false};
};

}  // namespace mcwatch::route
