#include "libshim/state_source.hpp"

#include <cstdio>

#include "libshim/clock.hpp"

namespace mcwatch::route {

StateSource::StateSource(std::string path, bool debug) : path_(std::move(path)), debug_(debug) { refresh(true); }

std::string StateSource::problem() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return problem_;
}

void StateSource::refresh(bool wait) noexcept {
    std::unique_lock<std::mutex> lock(mutex_, std::defer_lock);
    if (wait)
        lock.lock();
    else if (!lock.try_lock())
        return;  // another thread is checking; the current view stands meanwhile
    try {
        const uint64_t now = monotonic_ns();
        // A mapping left by every reader goes now, whatever else happens.
        reclaim();
        const Mapped* mapped = current_.load(std::memory_order_relaxed);
        bool changed = false;
        bool held = false;  // a newer file waits: every other mapping is held by a reader
        const bool superseded = mapped && mapped->map.header().superseded.load(std::memory_order_acquire);
        if (!mapped || superseded || now >= next_stat_ns_) {
            if (!mapped || mapped->map.replaced(path_.c_str())) {
                char why[256] = "";
                Mapped* spare = this->spare();
                if (!spare) {
                    held = true;  // stat again at the retry
                } else if (spare->map.open(path_.c_str(), why, sizeof why) == state::MapStatus::ok) {
                    next_stat_ns_ = now + kCheckIntervalNs;
                    spare->serial = ++serials_;
                    spare->heartbeat = state::HeartbeatWatch();
                    adopt(spare);
                    mapped = spare;
                    changed = true;
                    reclaim();  // the one just left, unless a reader is inside it
                } else {
                    next_stat_ns_ = now + kCheckIntervalNs;
                    problem_ = why;
                }
            } else {
                next_stat_ns_ = now + kCheckIntervalNs;
            }
        }
        bool usable = false;
        uint64_t generation = 0;
        uint64_t next_check = now + kCheckIntervalNs;
        // A replaced file waiting for a mapping a stalled reader holds: look
        // again soon (the reader is normally done in microseconds).
        if (held) next_check = now + kHeldRetryNs;
        // Still on a superseded file (no free mapping yet, or its successor unreadable):
        // the schedule above looks again, not every poll.
        superseded_waiting_.store(
            mapped && mapped->map.header().superseded.load(std::memory_order_relaxed) ? mapped : nullptr,
            std::memory_order_relaxed);
        if (mapped) {
            const state::Header& header = mapped->map.header();
            generation = header.generation.load(std::memory_order_acquire);
            // Only refreshers touch the watch, under mutex_.
            state::HeartbeatWatch& heartbeat = const_cast<Mapped*>(mapped)->heartbeat;
            usable = heartbeat.fresh(header, now, unix_ms());
            if (usable) {
                problem_.clear();
                // Look again the moment the heartbeat would go stale.
                const uint64_t stale_at = heartbeat.stale_at_ns(header);
                if (stale_at < next_check) next_check = stale_at;
            } else if (problem_.empty() || changed) {
                char why[256];
                const uint64_t silent = heartbeat.silent_ms(now);
                if (silent == UINT64_MAX)
                    std::snprintf(why, sizeof why,
                                  "state file %s: heartbeat %llu ms away from this clock, stale after %u ms",
                                  path_.c_str(), (unsigned long long)state::heartbeat_age_ms(header, unix_ms()),
                                  header.stale_after_ms);
                else
                    std::snprintf(why, sizeof why, "state file %s: heartbeat unchanged for %llu ms, stale after %u ms",
                                  path_.c_str(), (unsigned long long)silent, header.stale_after_ms);
                problem_ = why;
            }
        }
        if (changed || usable != usable_.load(std::memory_order_relaxed) ||
            generation != generation_seen_.load(std::memory_order_relaxed)) {
            generation_seen_.store(generation, std::memory_order_relaxed);
            usable_.store(usable, std::memory_order_relaxed);
            epoch_.fetch_add(1, std::memory_order_release);
        }
        next_check_ns_.store(next_check, std::memory_order_relaxed);
        if (debug_ && usable == said_unusable_) {
            if (usable)
                std::fprintf(stderr, "mcshim: state file %s usable again\n", path_.c_str());
            else
                std::fprintf(stderr, "mcshim: %s: placing keys natively\n", problem_.c_str());
            said_unusable_ = !usable;
        }
    } catch (...) {
        // Out of memory while mapping: keep the current view, retry later.
        next_check_ns_.store(monotonic_ns() + kCheckIntervalNs, std::memory_order_relaxed);
    }
}

void StateSource::reclaim() noexcept {
    const Mapped* current = current_.load(std::memory_order_relaxed);
    for (std::unique_ptr<Mapped>& slot : mappings_)
        // seq_cst, against pin()'s count-then-check: a reader counted after
        // this load sees current_ moved on and leaves without reading.
        if (slot && slot.get() != current && slot->map.is_open() && slot->readers.load(std::memory_order_seq_cst) == 0)
            slot->map.close();
}

StateSource::Mapped* StateSource::spare() noexcept {
    const Mapped* current = current_.load(std::memory_order_relaxed);
    for (std::unique_ptr<Mapped>& slot : mappings_) {
        // Made once, kept for the source's life: a reader may still count
        // itself in and out of any mapping it once saw as current.
        if (!slot) {
            try {
                slot = std::make_unique<Mapped>();
            } catch (...) {
                return nullptr;  // out of memory: the current view stands, retried later
            }
        }
        if (slot && slot.get() != current && !slot->map.is_open()) return slot.get();
    }
    return nullptr;
}

void StateSource::adopt(Mapped* fresh) noexcept {
    current_.store(fresh, std::memory_order_seq_cst);
    if (on_new_mapping_) on_new_mapping_();
}

}  // namespace mcwatch::route
