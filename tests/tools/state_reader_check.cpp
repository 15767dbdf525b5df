// A reader process for the stress tests: maps the state file the way
// libmcshim and mcctl do (StateMap, read-only, no lock), copies it with the
// seqlock as fast as it can, checks every copy, and follows the file when
// the writer replaces it.
//
//   state_reader_check STATE_FILE --mode counter|daemon [--reads N] [--seconds S]
//
// counter: the invariant of state_writer_drive (every field of every slot
//          derived from one update number, the slot count in every slot), and
//          update numbers that never go back, even across the files of one
//          writer.
// daemon:  what any file of the real mcwatchd satisfies: states 0..3, the
//          slot count of the header, NUL-terminated strings.
//
// Prints, line by line as it happens, "mapped pid=P slots=N inode=I" for each
// file it maps and "unusable: WHY" when the path holds nothing it can map.
// Stops after N consistent copies, S seconds (a safety bound), or SIGTERM,
// then prints one summary line of key=value counts. Exit status: 0, or 1 if
// any copy broke the invariant, 3 if the time bound ran out before N reads.
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "libshim/clock.hpp"
#include "libshim/seqlock.hpp"
#include "libshim/state_reader.hpp"

using namespace mcwatch;
using namespace mcwatch::state;

namespace {

volatile std::sig_atomic_t stop = 0;
void on_signal(int) { stop = 1; }

enum class Mode { counter, daemon };

struct Counts {
    uint64_t reads = 0;       // consistent copies checked
    uint64_t torn = 0;        // consistent copies that broke the invariant
    uint64_t retries = 0;     // copies the seqlock refused (a write was under way)
    uint64_t stuck = 0;       // calls with no consistent copy after every retry
    uint64_t backwards = 0;   // counter mode: an update number older than one seen before
    uint64_t remaps = 0;      // files mapped after the first
    uint64_t unusable = 0;    // attempts to map that failed
    uint64_t distinct = 0;    // counter mode: update numbers seen
    uint64_t naive = 0;       // copies made without the seqlock, for comparison
    uint64_t naive_torn = 0;  // of which broke the invariant: what the seqlock prevents
};

// The invariant of state_writer_drive; returns the update number, or
// UINT64_MAX if the copy mixes updates.
uint64_t counter_of(const ServerDynamic* servers, uint32_t count) {
    if (count == 0) return 0;
    const uint64_t n = servers[0].rtt_us;
    char text[64];
    for (uint32_t i = 0; i < count; ++i) {
        const ServerDynamic& s = servers[i];
        if (s.rtt_us != n || s.uptime_s != 2 * n || s.restarts != n || s.pid != (n ^ 0x5a5a) || s.get_hits != n + i ||
            s.probes_ok != 3 * n + i || s.curr_items != count || s.state != n % 4 || s.flags != n % 2)
            return UINT64_MAX;
        std::snprintf(text, sizeof text, "v%llu", (unsigned long long)n);
        if (std::strcmp(text, s.version) != 0) return UINT64_MAX;
        std::snprintf(text, sizeof text, "e%llu/%u", (unsigned long long)n, i);
        if (std::strcmp(text, s.last_error) != 0) return UINT64_MAX;
    }
    return n;
}

bool daemon_file_ok(const ServerDynamic* servers, uint32_t count) {
    for (uint32_t i = 0; i < count; ++i) {
        if (servers[i].state > 3) return false;
        if (std::strlen(servers[i].version) >= sizeof servers[i].version) return false;
        if (std::strlen(servers[i].last_error) >= sizeof servers[i].last_error) return false;
    }
    return true;
}

class Reader {
public:
    Reader(std::string path, Mode mode) : path_(std::move(path)), mode_(mode) {}

    // Maps the file at the path if there is none mapped yet or it was
    // replaced. The previous mapping stays until a new one succeeds.
    void follow(bool force_stat) {
        const bool superseded = map_ && map_->header().superseded.load(std::memory_order_acquire);
        if (map_ && !superseded && !force_stat) return;
        if (map_ && !map_->replaced(path_.c_str())) return;
        auto fresh = std::make_unique<StateMap>();
        char why[256] = "";
        if (fresh->open(path_.c_str(), why, sizeof why) != MapStatus::ok) {
            ++counts.unusable;
            if (last_problem_ != why) {
                std::printf("unusable: %s\n", why);
                std::fflush(stdout);
                last_problem_ = why;
            }
            return;
        }
        last_problem_.clear();
        if (map_) ++counts.remaps;
        // Update numbers go on across the files of one writer, and start
        // again with another.
        if (map_ && map_->header().daemon_pid != fresh->header().daemon_pid) last_n_ = 0;
        map_ = std::move(fresh);
        copy_.assign(map_->slot_count(), ServerDynamic{});
        struct stat st {};
        ::stat(path_.c_str(), &st);
        std::printf("mapped pid=%u slots=%u inode=%llu\n", map_->header().daemon_pid, map_->slot_count(),
                    (unsigned long long)st.st_ino);
        std::fflush(stdout);
    }

    // One copy of the whole table, checked.
    void read_once() {
        if (!map_) return;
        const Header& header = map_->header();
        const uint32_t count = map_->slot_count();
        // Our own retry loop, one try at a time, to count the retries.
        bool copied = false;
        for (unsigned attempt = 0; attempt < kReadTries && !copied; ++attempt) {
            copied = read_consistent(header, map_->slots(), count, copy_.data(), nullptr, 1);
            if (!copied) ++counts.retries;
        }
        if (!copied) {
            ++counts.stuck;
            return;
        }
        ++counts.reads;
        if (mode_ == Mode::daemon) {
            if (!daemon_file_ok(copy_.data(), count)) ++counts.torn;
            return;
        }
        const uint64_t n = counter_of(copy_.data(), count);
        if (n == UINT64_MAX) {
            ++counts.torn;
            return;
        }
        if (n < last_n_) ++counts.backwards;
        if (n != last_n_) ++counts.distinct;
        last_n_ = n;
    }

    // Every so often, the same copy without the seqlock: how often a reader
    // that did not use it would have seen a torn table.
    void read_naively() {
        if (!map_ || mode_ != Mode::counter) return;
        const uint32_t count = map_->slot_count();
        for (uint32_t i = 0; i < count; ++i) load_dynamic(map_->slots()[i], copy_[i]);
        ++counts.naive;
        if (counter_of(copy_.data(), count) == UINT64_MAX) ++counts.naive_torn;
    }

    Counts counts;

private:
    const std::string path_;
    const Mode mode_;
    std::unique_ptr<StateMap> map_;
    std::vector<ServerDynamic> copy_;
    std::string last_problem_;
    uint64_t last_n_ = 0;
};

}  // namespace

int main(int argc, char** argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: state_reader_check STATE_FILE --mode counter|daemon [--reads N] [--seconds S]\n");
        return 2;
    }
    const std::string path = argv[1];
    Mode mode = Mode::counter;
    uint64_t wanted = UINT64_MAX;
    double seconds = 600;
    for (int i = 2; i + 1 < argc; i += 2) {
        const std::string option = argv[i];
        const std::string value = argv[i + 1];
        if (option == "--mode" && (value == "counter" || value == "daemon"))
            mode = value == "counter" ? Mode::counter : Mode::daemon;
        else if (option == "--reads")
            wanted = std::strtoull(value.c_str(), nullptr, 10);
        else if (option == "--seconds")
            seconds = std::strtod(value.c_str(), nullptr);
        else {
            std::fprintf(stderr, "state_reader_check: bad option %s %s\n", option.c_str(), value.c_str());
            return 2;
        }
    }
    struct sigaction action {};
    action.sa_handler = on_signal;
    sigaction(SIGTERM, &action, nullptr);
    sigaction(SIGINT, &action, nullptr);

    Reader reader(path, mode);
    const uint64_t deadline = monotonic_ns() + uint64_t(seconds * 1e9);
    uint64_t next_stat = 0;
    bool timed_out = false;
    for (uint64_t loop = 0; !stop && reader.counts.reads < wanted; ++loop) {
        // Like the shim: the superseded flag on every pass, a stat of the
        // path about every millisecond (the shim: every second).
        const uint64_t now = (loop & 63) == 0 ? monotonic_ns() : 0;
        if (now && now > deadline) {
            timed_out = true;
            break;
        }
        const bool stat_now = now && now >= next_stat;
        if (stat_now) next_stat = now + 1'000'000;
        reader.follow(stat_now);
        reader.read_once();
        if ((loop & 63) == 1) reader.read_naively();
        if (reader.counts.reads == 0 && (loop & 63) == 0) usleep(1000);  // nothing mapped yet
    }
    const Counts& c = reader.counts;
    std::printf(
        "reads=%llu torn=%llu retries=%llu stuck=%llu backwards=%llu remaps=%llu unusable=%llu "
        "distinct=%llu naive=%llu naive_torn=%llu\n",
        (unsigned long long)c.reads, (unsigned long long)c.torn, (unsigned long long)c.retries,
        (unsigned long long)c.stuck, (unsigned long long)c.backwards, (unsigned long long)c.remaps,
        (unsigned long long)c.unusable, (unsigned long long)c.distinct, (unsigned long long)c.naive,
        (unsigned long long)c.naive_torn);
    if (c.torn || c.backwards) return 1;
    return timed_out && wanted != UINT64_MAX ? 3 : 0;
}
