// A state file written by hand for router tests: the layout of
// state_format.hpp filled directly (no daemon, no StateWriter), mapped
// read-write so that a test can flip states the way mcwatchd does, under the
// seqlock and with a generation bump.
#pragma once

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "libshim/clock.hpp"
#include "libshim/seqlock.hpp"
#include "libshim/state_format.hpp"

namespace mcwatch::test {

struct FixtureServer {
    std::string address;   // as configured
    std::string resolved;  // numeric, "" if unknown
    uint32_t weight = 1;
};

struct FixtureOptions {
    state::Distribution distribution = state::Distribution::ketama;
    state::Hash hash = state::Hash::md5;
    uint32_t stale_after_ms = 5000;
    uint32_t recently_down_window_s = 3600;
    uint32_t writeback_ttl_s = 600;
    uint32_t header_flags = 0;  // kHeader* bits
    // The list before a membership change (Header::previous_*), if any.
    std::vector<FixtureServer> previous;
    std::vector<uint32_t> previous_flags;  // PreviousServer::flags, per entry (0 where absent)
    state::Distribution previous_distribution = state::Distribution::ketama;
    state::Hash previous_hash = state::Hash::md5;
    int64_t membership_changed_unix_ms = 0;
    uint32_t replicas = 1;
};

class StateFixture {
public:
    // Writes the file aside and renames it over `path`, as the daemon does;
    // every server starts live, the heartbeat is now.
    StateFixture(const std::string& path, const std::vector<FixtureServer>& servers, const FixtureOptions& options = {})
        : path_(path), count_(uint32_t(servers.size())) {
        const uint32_t previous_count = uint32_t(options.previous.size());
        size_ = size_t(state::file_size_for(count_, previous_count));
        const std::string aside = path + ".new";
        ::unlink(aside.c_str());
        const int fd = ::open(aside.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (fd < 0) throw std::runtime_error("cannot create " + aside);
        if (::ftruncate(fd, off_t(size_)) != 0) throw std::runtime_error("ftruncate " + aside);
        void* memory = ::mmap(nullptr, size_, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        ::close(fd);
        if (memory == MAP_FAILED) throw std::runtime_error("mmap " + aside);
        memory_ = memory;
        header_ = static_cast<state::Header*>(memory);
        slots_ = reinterpret_cast<state::Slot*>(header_ + 1);

        state::Header& h = *header_;
        state::write_layout(h, count_, previous_count);
        h.flags = options.header_flags;
        h.previous_distribution = uint32_t(options.previous_distribution);
        h.previous_hash = uint32_t(options.previous_hash);
        h.membership_changed_unix_ms = options.membership_changed_unix_ms;
        h.distribution = uint32_t(options.distribution);
        h.hash = uint32_t(options.hash);
        h.daemon_pid = uint32_t(::getpid());
        h.probe_interval_ms = 500;
        h.stale_after_ms = options.stale_after_ms;
        h.recently_down_window_s = options.recently_down_window_s;
        h.writeback_ttl_s = options.writeback_ttl_s;
        h.replicas = options.replicas;
        h.created_unix_ms = unix_ms();
        for (uint32_t i = 0; i < count_; ++i) {
            state::Slot& slot = slots_[i];
            std::snprintf(slot.address, sizeof slot.address, "%s", servers[i].address.c_str());
            std::snprintf(slot.resolved, sizeof slot.resolved, "%s", servers[i].resolved.c_str());
            slot.weight = servers[i].weight;
            slot.index = i;
            slot.state.store(uint32_t(state::ServerState::live), std::memory_order_relaxed);
        }
        state::PreviousServer* previous = const_cast<state::PreviousServer*>(state::previous_servers(slots_, count_));
        for (uint32_t i = 0; i < previous_count; ++i) {
            std::snprintf(previous[i].address, sizeof previous[i].address, "%s", options.previous[i].address.c_str());
            std::snprintf(previous[i].resolved, sizeof previous[i].resolved, "%s",
                          options.previous[i].resolved.c_str());
            previous[i].weight = options.previous[i].weight;
            previous[i].flags = i < options.previous_flags.size() ? options.previous_flags[i] : 0;
        }
        state::seal_digests(h, slots_, count_);
        h.generation.store(1, std::memory_order_relaxed);
        beat();
        if (::rename(aside.c_str(), path.c_str()) != 0) throw std::runtime_error("rename " + aside);
    }
    ~StateFixture() {
        if (memory_) ::munmap(memory_, size_);
    }
    StateFixture(const StateFixture&) = delete;
    StateFixture& operator=(const StateFixture&) = delete;

    // One server's routing facts, changed as the daemon would.
    void set_state(uint32_t slot, state::ServerState s, uint32_t flags = 0, int64_t recently_down_until_unix_ms = 0) {
        std::vector<std::pair<state::ServerState, uint32_t>> all = states();
        all[slot] = {s, flags};
        set_states(all, recently_down_until_unix_ms, slot);
    }

    // Every server at once, in one seqlock section.
    void set_states(const std::vector<std::pair<state::ServerState, uint32_t>>& all,
                    int64_t recently_down_until_unix_ms = 0, uint32_t until_slot = UINT32_MAX) {
        {
            state::SeqlockWriteGuard guard(*header_);
            for (uint32_t i = 0; i < count_ && i < all.size(); ++i) {
                slots_[i].state.store(uint32_t(all[i].first), std::memory_order_relaxed);
                slots_[i].flags.store(all[i].second, std::memory_order_relaxed);
                if (i == until_slot)
                    slots_[i].recently_down_until_unix_ms.store(recently_down_until_unix_ms, std::memory_order_relaxed);
            }
            header_->generation.fetch_add(1, std::memory_order_relaxed);
        }
        beat();
    }

    std::vector<std::pair<state::ServerState, uint32_t>> states() const {
        std::vector<std::pair<state::ServerState, uint32_t>> out;
        for (uint32_t i = 0; i < count_; ++i)
            out.emplace_back(state::ServerState(slots_[i].state.load(std::memory_order_relaxed)),
                             slots_[i].flags.load(std::memory_order_relaxed));
        return out;
    }

    void beat() { set_heartbeat(monotonic_ns()); }
    // A heartbeat written at `monotonic` (this process's clock): the wall
    // time is set to match.
    void set_heartbeat(uint64_t monotonic) {
        const int64_t ago_ms = (int64_t(monotonic_ns()) - int64_t(monotonic)) / 1000000;
        set_heartbeat(monotonic, unix_ms() - ago_ms);
    }
    // A daemon whose monotonic clock is not ours (another time namespace,
    // another boot): any token, and its wall time.
    void set_heartbeat(uint64_t token, int64_t unix_time_ms) {
        header_->heartbeat_unix_ms.store(unix_time_ms, std::memory_order_relaxed);
        header_->heartbeat_mono_ns.store(token, std::memory_order_release);
    }
    void supersede() { header_->superseded.store(1, std::memory_order_release); }

    state::Header& header() { return *header_; }
    state::Slot* slots() { return slots_; }
    const std::string& path() const { return path_; }

private:
    std::string path_;
    uint32_t count_;
    size_t size_ = 0;
    void* memory_ = nullptr;
    state::Header* header_ = nullptr;
    state::Slot* slots_ = nullptr;
};

}  // namespace mcwatch::test
