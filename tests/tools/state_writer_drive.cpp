// A writer for the reader stress tests: mcwatchd's own StateWriter, driven as
// fast as it goes with facts that carry an invariant. Update n writes, in
// every slot i of a file of `count` slots:
//
//   rtt_us = n, uptime_s = 2n, restarts = n, pid = n ^ 0x5a5a, get_hits = n + i,
//   probes_ok = 3n + i, curr_items = count, state = n % 4, flags = n % 2,
//   version = "v<n>", last_error = "e<n>/<i>"
//
// so that a copy mixing two updates, or slots of two files, breaks a relation
// (state_reader_check checks them). With --republish-every K, every K updates
// a new file is published with the next slot count of --counts, its first
// contents those of the update in progress: readers must move to it.
//
//   state_writer_drive STATE_FILE [--servers N] [--republish-every K]
//                      [--counts 3,8,1] [--pause-us U] [--seconds S]
//
// --pause-us sleeps between updates (sanitizer builds, where a copy is so slow
// that a writer at full speed would leave readers almost no consistent one).
// Runs until SIGTERM or SIGINT (or S seconds, a safety bound), then prints
// "updates=U republishes=R" and exits 0.
#include <csignal>
#include <cstdio>
#include <ctime>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "libshim/clock.hpp"
#include "common/config.hpp"
#include "daemon/state_writer.hpp"

using namespace mcwatch;

namespace {

volatile std::sig_atomic_t stop = 0;

void on_signal(int) { stop = 1; }

Config config_for(const std::string& path, uint32_t count) {
    std::string text = "[mcwatchd]\nstate_file = " + path + "\nstale_after = 1h\n[servers]\n";
    for (uint32_t i = 0; i < count; ++i) text += "server = 127.0.0.1:" + std::to_string(20000 + i) + "\n";
    auto result = parse_config(text, "state_writer_drive");
    if (!result) {
        std::fprintf(stderr, "state_writer_drive: %s\n", result.error().message.c_str());
        std::exit(2);
    }
    return *result;
}

void fill(std::vector<state::ServerDynamic>& servers, uint64_t n) {
    const auto count = uint64_t(servers.size());
    for (uint64_t i = 0; i < count; ++i) {
        state::ServerDynamic& s = servers[i];
        s.rtt_us = n;
        s.uptime_s = 2 * n;
        s.restarts = n;
        s.pid = n ^ 0x5a5a;
        s.get_hits = n + i;
        s.probes_ok = 3 * n + i;
        s.curr_items = count;
        s.state = uint32_t(n % 4);
        s.flags = uint32_t(n % 2);
        std::snprintf(s.version, sizeof s.version, "v%llu", (unsigned long long)n);
        std::snprintf(s.last_error, sizeof s.last_error, "e%llu/%llu", (unsigned long long)n, (unsigned long long)i);
    }
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 2) {
        std::fprintf(stderr,
                     "usage: state_writer_drive STATE_FILE [--servers N] [--republish-every K] "
                     "[--counts 3,8,1] [--seconds S]\n");
        return 2;
    }
    const std::string path = argv[1];
    uint32_t servers = 8;
    uint64_t republish_every = 0;
    std::vector<uint32_t> counts;
    double seconds = 600;
    long pause_us = 0;
    for (int i = 2; i + 1 < argc; i += 2) {
        const std::string option = argv[i];
        const char* value = argv[i + 1];
        if (option == "--servers")
            servers = uint32_t(std::strtoul(value, nullptr, 10));
        else if (option == "--republish-every")
            republish_every = std::strtoull(value, nullptr, 10);
        else if (option == "--seconds")
            seconds = std::strtod(value, nullptr);
        else if (option == "--pause-us")
            pause_us = std::strtol(value, nullptr, 10);
        else if (option == "--counts") {
            for (const char* p = value; *p;) {
                counts.push_back(uint32_t(std::strtoul(p, const_cast<char**>(&p), 10)));
                if (*p == ',') ++p;
            }
        } else {
            std::fprintf(stderr, "state_writer_drive: unknown option %s\n", option.c_str());
            return 2;
        }
    }
    if (counts.empty()) counts.push_back(servers);
    std::signal(SIGTERM, on_signal);
    std::signal(SIGINT, on_signal);

    StateWriter writer;
    if (mcwatch::Result<> locked = writer.lock(path); !locked) {
        std::fprintf(stderr, "state_writer_drive: %s\n", locked.error().message.c_str());
        return 1;
    }
    size_t next_count = 0;
    std::vector<state::ServerDynamic> facts(counts[next_count++ % counts.size()]);
    uint64_t n = 0;
    fill(facts, n);
    if (mcwatch::Result<> published = writer.publish(config_for(path, uint32_t(facts.size())), {}, facts); !published) {
        std::fprintf(stderr, "state_writer_drive: %s\n", published.error().message.c_str());
        return 1;
    }
    std::printf("published slots=%zu\n", facts.size());
    std::fflush(stdout);

    const uint64_t deadline = monotonic_ns() + uint64_t(seconds * 1e9);
    uint64_t republishes = 0;
    while (!stop) {
        ++n;
        if (republish_every && n % republish_every == 0) {
            facts.assign(counts[next_count++ % counts.size()], state::ServerDynamic{});
            fill(facts, n);
            if (mcwatch::Result<> published = writer.publish(config_for(path, uint32_t(facts.size())), {}, facts);
                !published) {
                std::fprintf(stderr, "state_writer_drive: %s\n", published.error().message.c_str());
                return 1;
            }
            ++republishes;
        } else {
            fill(facts, n);
            writer.update(facts, n % 2 == 0);
        }
        if (pause_us > 0) {
            const timespec pause{0, pause_us * 1000};
            nanosleep(&pause, nullptr);
        }
        if ((n & 1023) == 0 && monotonic_ns() > deadline) break;
    }
    std::printf("updates=%llu republishes=%llu\n", (unsigned long long)n, (unsigned long long)republishes);
    return 0;
}
