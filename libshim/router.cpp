#include "libshim/router.hpp"

#include <pthread.h>
#include <signal.h>

#include <cstring>

#include "libshim/clock.hpp"
#include "libshim/seqlock.hpp"
#include "libshim/slot_matching.hpp"
#include "libshim/slot_status.hpp"

namespace mcwatch::route {

namespace {

// A torn read of the file (the daemon inside its write, or killed there) is
// retried this much later rather than on every call.
constexpr uint64_t kTornRetryNs = 10'000'000;
// While a background resolution runs, the router looks for its answer this
// often (from whichever client call comes first).
constexpr uint64_t kLookupPollNs = 100'000'000;

// The same server for libmemcached's placement: its ketama points are named
// by host and port as given, so "localhost" is not "127.0.0.1" here.
bool same_server(const ServerAddress& a, const ServerAddress& b) noexcept {
    return a.is_unix == b.is_unix && a.port == b.port && a.host == b.host;
}

bool parse_address(const char* text, size_t capacity, uint32_t weight, ServerAddress& out) {
    std::string error;
    return ServerAddress::parse(std::string_view(text, strnlen(text, capacity)), weight, out, error);
}

}  // namespace

Router::Router(Topology topology, std::shared_ptr<StateSource> source, NameResolution resolution)
    : topology_(std::move(topology)), view_(topology_.view()), source_(std::move(source)), resolution_(resolution),
      names_(server_names(topology_, resolution == NameResolution::now)), slot_of_(topology_.size(), -1),
      scratch_(topology_.size(), 0) {
    for (StatusCopy& copy : copies_) {
        copy.status.reset(new std::atomic<uint8_t>[topology_.size()]);
        write_status_copy(copy, false, topology_.size());
    }
    if (source_) refresh(coarse_monotonic_ns());
}

void Router::write_status_copy(StatusCopy& copy, bool usable, uint32_t allowed) noexcept {
    for (uint32_t i = 0; i < topology_.size(); ++i)
        copy.status[i].store(usable ? scratch_[i] : 0, std::memory_order_relaxed);
    copy.allowed_count.store(allowed, std::memory_order_relaxed);
    copy.usable.store(usable, std::memory_order_relaxed);
    copy.join.store(usable ? join_plan_ : nullptr, std::memory_order_relaxed);
}

const Router::JoinPlan* Router::join_plan_for(const StateSource::Mapped& mapped, uint64_t now) {
    const state::Header& header = mapped.map.header();
    if (header.previous_count == 0 || header.membership_changed_unix_ms <= 0) return nullptr;
    const int64_t left_ms =
        header.membership_changed_unix_ms + int64_t(header.recently_down_window_s) * 1000 - unix_ms();
    if (left_ms <= 0 || header.slot_count != topology_.size() || join_plans_.size() >= kMaxJoinPlans) return nullptr;
    if (header.previous_distribution > uint32_t(state::Distribution::ketama_weighted) ||
        header.previous_hash >= state::kHashCount)
        return nullptr;
    const state::Slot* slots = mapped.map.slots();
    for (uint32_t i = 0; i < topology_.size(); ++i) {
        ServerAddress current;
        if (!parse_address(slots[i].address, sizeof slots[i].address, slots[i].weight, current) ||
            !same_server(current, topology_.server(i)))
            return nullptr;  // not the file's list: the handle's own, placed its own way
    }
    const state::PreviousServer* listed = state::previous_servers(slots, header.slot_count);
    std::vector<ServerAddress> previous(header.previous_count);
    for (uint32_t j = 0; j < header.previous_count; ++j)
        if (!parse_address(listed[j].address, sizeof listed[j].address, listed[j].weight, previous[j])) return nullptr;
    auto plan = std::make_unique<JoinPlan>();
    plan->previous_status.assign(previous.size(), 0);
    for (uint32_t j = 0; j < header.previous_count; ++j)
        if (listed[j].flags & state::kPreviousAvoided)
            plan->previous_status[j] = kStatusAvoid;
        else
            ++plan->previous_allowed;
    plan->to_current.assign(previous.size(), -1);
    for (size_t j = 0; j < previous.size(); ++j)
        for (uint32_t i = 0; i < topology_.size(); ++i)
            if (same_server(previous[j], topology_.server(i))) plan->to_current[j] = int32_t(i);
    std::string error;
    if (!Topology::build(std::move(previous), state::Distribution(header.previous_distribution),
                         state::Hash(header.previous_hash), plan->previous, error))
        return nullptr;
    plan->until_ns = now + uint64_t(left_ms) * 1'000'000;
    join_plans_.push_back(std::move(plan));
    return join_plans_.back().get();
}

void Router::refresh(uint64_t now) noexcept {
    std::unique_lock<std::mutex> lock(refresh_mutex_, std::try_to_lock);
    if (!lock.owns_lock()) return;  // another thread refreshes; the old snapshot stands
    const uint64_t epoch = source_->epoch();
    const StateSource::Pin mapped = source_->pin();
    const bool usable = source_->usable() && mapped;
    uint32_t allowed = topology_.size();
    const uint32_t count = topology_.size();
    bool lookup_pending = false;
    if (usable) {
        if (merge_lookup()) map_serial_ = 0;  // new numeric forms: match again
        if (mapped->serial != map_serial_) {
            try {
                slot_of_ = match_slots(names_, mapped->map.header(), mapped->map.slots());
                map_serial_ = mapped->serial;
                join_plan_ = join_plan_for(*mapped, now);
            } catch (...) {
                retry_later(epoch, now);
                return;
            }
            if (resolution_ == NameResolution::background && !lookup_) start_lookup();
        }
        lookup_pending = lookup_ && !lookup_merged_;
        if (!read_status(mapped->map.header(), mapped->map.slots(), slot_of_.data(), count, scratch_.data())) {
            retry_later(epoch, now);
            return;
        }
        allowed = 0;
        for (uint32_t i = 0; i < count; ++i)
            if (!(scratch_[i] & kStatusAvoid)) ++allowed;
    }
    // Publish through the latch: readers move to copy 1 while copy 0 is
    // written, then back to copy 0 while copy 1 is.
    const uint64_t start = latch_.load(std::memory_order_relaxed);  // even: both copies equal
    latch_.store(start + 1, std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_release);
    write_status_copy(copies_[0], usable, allowed);
    latch_.store(start + 2, std::memory_order_release);
    std::atomic_thread_fence(std::memory_order_release);
    write_status_copy(copies_[1], usable, allowed);
    seen_epoch_.store(epoch, std::memory_order_relaxed);
    retry_at_ns_.store(lookup_pending ? now + kLookupPollNs : UINT64_MAX, std::memory_order_relaxed);
}

// The servers whose name matched no slot by name get their numeric forms
// from a thread of their own: getaddrinfo may take seconds per name (a slow
// or silent resolver), and the caller is a client's operation. One thread,
// once per router (a server list, process-wide), names one after another;
// nothing waits for it. Under refresh_mutex_.
void Router::start_lookup() noexcept {
    try {
        auto lookup = std::make_shared<Lookup>();
        for (uint32_t i = 0; i < topology_.size(); ++i)
            if (slot_of_[i] < 0 && topology_.server(i).is_name()) {
                lookup->servers.push_back(i);
                lookup->specs.push_back(topology_.server(i));
            }
        lookup_ = lookup;
        if (lookup->servers.empty()) {
            lookup_merged_ = true;
            return;
        }
        auto* owned = new std::shared_ptr<Lookup>(std::move(lookup));
        auto run = [](void* argument) -> void* {
            std::unique_ptr<std::shared_ptr<Lookup>> held(static_cast<std::shared_ptr<Lookup>*>(argument));
            Lookup& work = **held;
            try {
                for (const ServerAddress& spec : work.specs) work.numeric.push_back(spec.resolve());
            } catch (...) {
                work.numeric.clear();  // out of memory: no forms, the servers stay unpublished
            }
            work.done.store(true, std::memory_order_release);
            return nullptr;
        };
        // The program's signals are not this thread's business.
        sigset_t all, saved;
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &saved);
        pthread_attr_t attributes;
        pthread_attr_init(&attributes);
        pthread_attr_setdetachstate(&attributes, PTHREAD_CREATE_DETACHED);
        pthread_t thread;
        const int failed = pthread_create(&thread, &attributes, run, owned);
        pthread_attr_destroy(&attributes);
        pthread_sigmask(SIG_SETMASK, &saved, nullptr);
        if (failed) {
            delete owned;
            lookup_merged_ = true;  // no thread: those servers stay unpublished
        }
    } catch (...) {
        lookup_merged_ = true;
    }
}

// True if a finished lookup's forms were just added to names_. Under
// refresh_mutex_.
bool Router::merge_lookup() noexcept {
    if (!lookup_ || lookup_merged_ || !lookup_->done.load(std::memory_order_acquire)) return false;
    lookup_merged_ = true;
    try {
        for (size_t n = 0; n < lookup_->numeric.size() && n < lookup_->servers.size(); ++n)
            for (std::string& form : lookup_->numeric[n]) names_[lookup_->servers[n]].push_back(std::move(form));
    } catch (...) {
        return false;
    }
    return true;
}

// Keeps the current snapshot and looks again in kTornRetryNs, not at every
// call (a daemon killed inside its write leaves the sequence odd until the
// heartbeat goes stale).
void Router::retry_later(uint64_t epoch, uint64_t now) noexcept {
    seen_epoch_.store(epoch, std::memory_order_relaxed);
    retry_at_ns_.store(now + kTornRetryNs, std::memory_order_relaxed);
}

Decision Router::native_only(const PlacementView& view, const char* key, size_t length) noexcept {
    Decision d;
    d.native = d.target = int32_t(place_key(view, key, length).server);
    d.flags = kRouteStale;
    return d;
}

Decision Router::route_with(const PlacementView& view, const char* key, size_t length) noexcept {
    if (!source_ || view.server_count != topology_.size()) return native_only(view, key, length);
    const uint64_t now = coarse_monotonic_ns();
    const uint64_t epoch = source_->poll(now);
    if (epoch != seen_epoch_.load(std::memory_order_relaxed) || now >= retry_at_ns_.load(std::memory_order_relaxed))
        refresh(now);
    // A retry needs the writer to move the latch during this very read; 64
    // in a row would take 32 publications, each a generation change.
    for (unsigned attempt = 0; attempt < state::kReadTries; ++attempt) {
        const uint64_t before = latch_.load(std::memory_order_acquire);
        const StatusCopy& copy = copies_[before & 1];
        Decision d;
        if (!copy.usable.load(std::memory_order_relaxed)) {
            d = native_only(view, key, length);
        } else {
            const uint32_t count = topology_.size();
            auto status = [&copy, count](uint32_t i) -> uint8_t {
                // A handle's continuum could name a server past the list.
                return i < count ? copy.status[i].load(std::memory_order_relaxed) : 0;
            };
            d = decide(view, key, length, status, copy.allowed_count.load(std::memory_order_relaxed));
            if (d.flags == 0) look_before_join(copy, key, length, now, d);
            if ((d.flags & (kRouteSubstitute | kRouteRecentlyDown)) && replicas_or_default(source_.get()) > 1) {
                fall_back_from_recent_substitute(view, key, length, status, d);
                note_draining_copy(view, key, length, status, d);
            }
        }
        std::atomic_thread_fence(std::memory_order_acquire);
        if (latch_.load(std::memory_order_relaxed) == before) return d;
    }
    return native_only(view, key, length);
}

// A key on its live native server whose server before the membership
// change was another one that may still take keys: a miss looks there.
// "Before" is where the previous list sent the key, a server out then
// avoided as it was: a drained server's keys are where drain --move put them.
void Router::look_before_join(const StatusCopy& copy, const char* key, size_t length, uint64_t now,
                              Decision& d) noexcept {
    const JoinPlan* plan = copy.join.load(std::memory_order_relaxed);
    if (!plan || now >= plan->until_ns) return;
    const std::vector<uint8_t>& previous_status = plan->previous_status;
    const Decision was = decide(
        plan->previous.view(), key, length,
        [&previous_status](uint32_t i) -> uint8_t { return i < previous_status.size() ? previous_status[i] : 0; },
        plan->previous_allowed);
    if (was.target < 0) return;
    const uint32_t before = uint32_t(was.target);
    const int32_t there = before < plan->to_current.size() ? plan->to_current[before] : -1;
    if (there < 0 || there == d.target || uint32_t(there) >= topology_.size() ||
        (copy.status[there].load(std::memory_order_relaxed) & kStatusNoStandIn))
        return;
    d.flags = kRouteJoined;
    d.fallback = there;
}

Decision Router::route_without(const PlacementView& view, const char* key, size_t length, uint32_t failed) noexcept {
    Decision d = route_with(view, key, length);  // refreshes the snapshot if due
    if (d.flags & (kRouteStale | kRouteAllDead)) return d;
    for (unsigned attempt = 0; attempt < state::kReadTries; ++attempt) {
        const uint64_t before = latch_.load(std::memory_order_acquire);
        const StatusCopy& copy = copies_[before & 1];
        if (!copy.usable.load(std::memory_order_relaxed)) return native_only(view, key, length);
        const uint32_t count = topology_.size();
        const uint8_t failed_status = failed < count ? copy.status[failed].load(std::memory_order_relaxed) : 0;
        if (failed >= count || (failed_status & kStatusUnpublished)) return d;
        const uint32_t allowed = copy.allowed_count.load(std::memory_order_relaxed);
        d = decide(
            view, key, length,
            [&copy, count, failed](uint32_t i) -> uint8_t {
                if (i == failed) return kStatusAvoid;
                return i < count ? copy.status[i].load(std::memory_order_relaxed) : 0;
            },
            (failed_status & kStatusAvoid) ? allowed : allowed - 1);
        std::atomic_thread_fence(std::memory_order_acquire);
        if (latch_.load(std::memory_order_relaxed) == before) return d;
    }
    return native_only(view, key, length);
}

uint32_t Router::copies_with(const PlacementView& view, const char* key, size_t length, uint32_t n,
                             int32_t* out) noexcept {
    if (n == 0) return 0;
    const Decision d = route_with(view, key, length);  // refreshes the snapshot if due
    if (d.flags & kRouteStale) {
        out[0] = d.native;
        return 1;
    }
    for (unsigned attempt = 0; attempt < state::kReadTries; ++attempt) {
        const uint64_t before = latch_.load(std::memory_order_acquire);
        const StatusCopy& copy = copies_[before & 1];
        if (!copy.usable.load(std::memory_order_relaxed)) break;
        const uint32_t count = topology_.size();
        const uint32_t found = copies(
            view, key, length,
            [&copy, count](uint32_t i) -> uint8_t {
                return i < count ? copy.status[i].load(std::memory_order_relaxed) : 0;
            },
            n, out);
        std::atomic_thread_fence(std::memory_order_acquire);
        if (latch_.load(std::memory_order_relaxed) == before) return found;
    }
    out[0] = int32_t(place_key(view, key, length).server);
    return 1;
}

// Checks the file now and matches the servers to the current mapping's
// slots; returns with refresh_mutex_ held (in `lock`), false without a mapping.
bool Router::match_current(std::unique_lock<std::mutex>& lock) {
    source_->check_now();
    refresh(coarse_monotonic_ns());
    lock = std::unique_lock<std::mutex>(refresh_mutex_);
    const StateSource::Pin mapped = source_->pin();
    if (!mapped) return false;
    // A finished lookup is merged by refresh(), with the snapshot it changes.
    if (mapped->serial != map_serial_) {
        slot_of_ = match_slots(names_, mapped->map.header(), mapped->map.slots());
        map_serial_ = mapped->serial;
    }
    return true;
}

int32_t Router::slot_of(uint32_t server) noexcept {
    if (!source_ || server >= topology_.size()) return -1;
    try {
        std::unique_lock<std::mutex> lock;
        return match_current(lock) ? slot_of_[server] : -1;
    } catch (...) {
        return -1;
    }
}

std::vector<uint32_t> Router::unpublished() {
    std::vector<uint32_t> out;
    std::unique_lock<std::mutex> lock;
    if (!source_ || !match_current(lock)) return out;
    for (uint32_t i = 0; i < topology_.size(); ++i)
        if (slot_of_[i] < 0) out.push_back(i);
    return out;
}

}  // namespace mcwatch::route
