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
        const Mapped* mapped = current_.load(std::memory_order_relaxed);
        bool changed = false;
        const bool superseded = mapped && mapped->map.header().superseded.load(std::memory_order_acquire);
        // Two files mapped and the older one's grace not over: no third yet.
        const bool ring_full = leaving_map_ && now < leaving_since_ns_ + kRetireGraceNs;
        if (!mapped || (!ring_full && (superseded || now >= next_stat_ns_))) {
            next_stat_ns_ = now + kCheckIntervalNs;
            if (!mapped || mapped->map.replaced(path_.c_str())) {
                auto fresh = std::make_unique<Mapped>();
                char why[256] = "";
                if (fresh->map.open(path_.c_str(), why, sizeof why) == state::MapStatus::ok) {
                    fresh->serial = ++serials_;
                    adopt(std::move(fresh), now);
                    mapped = current_.load(std::memory_order_relaxed);
                    changed = true;
                } else {
                    problem_ = why;
                }
            }
        }
        bool usable = false;
        uint64_t generation = 0;
        uint64_t next_check = now + kCheckIntervalNs;
        // A replaced file waiting for room: look again when there is some.
        if (ring_full && superseded && leaving_since_ns_ + kRetireGraceNs < next_check)
            next_check = leaving_since_ns_ + kRetireGraceNs;
        // Still on a superseded file (no room yet, or its successor unreadable):
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

void StateSource::adopt(std::unique_ptr<Mapped> fresh, uint64_t now) noexcept {
    leaving_map_.reset();  // unmapped: nobody has loaded it for the grace period
    current_.store(fresh.get(), std::memory_order_release);
    leaving_map_ = std::move(current_map_);
    leaving_since_ns_ = now;
    current_map_ = std::move(fresh);
    if (on_new_mapping_) on_new_mapping_();
}

}  // namespace mcwatch::route
