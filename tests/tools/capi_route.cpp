// A client of the C API (libshim/include/mcshim.h) for the integration
// tests: it routes keys the way a linked client would and prints what it got,
// one line per key, so that a test can assert on what a client sees.
//
//   capi_route [--state PATH] --servers A,B,C [--distribution D] [--hash H] KEY...
//   capi_route [--state PATH] --servers A,B,C --loop SECONDS
//   capi_route [--state PATH] --servers A,B,C --watch KEY SECONDS
//
// Without --state, mcshim_open(NULL): $MCSHIM_STATE (read with secure_getenv)
// or /run/mcwatchd/state. For each key:
//   key=K rc=R native=I target=J fallback=F flags=stale,substitute,... usable=0|1 problem="..."
// --loop routes a fixed set of keys over and over until SIGTERM or SECONDS,
// printing "usable=0|1 problem=..." on each change, then one summary line:
//   routes=N ok=N all_dead=N errors=N stale=N substitute=N
// --watch routes one key every 5 ms, as a long-lived client does, and prints
// "target=J flags=F" each time the answer changes.
// Exit status 0, or 1 if any call returned an error other than ALL_DEAD.
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <string>
#include <vector>

#include "mcshim.h"

namespace {

volatile std::sig_atomic_t stop = 0;
void on_signal(int) { stop = 1; }

std::vector<std::string> split(const std::string& text) {
    std::vector<std::string> parts;
    size_t start = 0;
    while (start <= text.size()) {
        const size_t comma = text.find(',', start);
        const size_t end = comma == std::string::npos ? text.size() : comma;
        if (end > start) parts.push_back(text.substr(start, end - start));
        if (comma == std::string::npos) break;
        start = comma + 1;
    }
    return parts;
}

std::string flag_names(uint32_t flags) {
    std::string names;
    const std::pair<uint32_t, const char*> known[] = {
        {MCSHIM_ROUTE_SUBSTITUTE, "substitute"}, {MCSHIM_ROUTE_RECENTLY_DOWN, "recently_down"},
        {MCSHIM_ROUTE_ALL_DEAD, "all_dead"},     {MCSHIM_ROUTE_STALE, "stale"},
        {MCSHIM_ROUTE_DRAINING, "draining"},
    };
    for (const auto& [bit, name] : known)
        if (flags & bit) names += std::string(names.empty() ? "" : ",") + name;
    return names.empty() ? "-" : names;
}

double now_s() {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return double(ts.tv_sec) + double(ts.tv_nsec) / 1e9;
}

}  // namespace

int main(int argc, char** argv) {
    const char* state = nullptr;
    std::vector<std::string> servers;
    int distribution = MCSHIM_KETAMA;
    int hash = MCSHIM_HASH_MD5;
    double loop_seconds = -1;
    double watch_seconds = -1;
    std::string watch_key;
    std::vector<std::string> keys;
    for (int i = 1; i < argc; ++i) {
        const std::string arg = argv[i];
        const bool has_value = i + 1 < argc;
        if (arg == "--state" && has_value)
            state = argv[++i];
        else if (arg == "--servers" && has_value)
            servers = split(argv[++i]);
        else if (arg == "--distribution" && has_value)
            distribution = mcshim_distribution_from_name(argv[++i]);
        else if (arg == "--hash" && has_value)
            hash = mcshim_hash_from_name(argv[++i]);
        else if (arg == "--loop" && has_value)
            loop_seconds = std::strtod(argv[++i], nullptr);
        else if (arg == "--watch" && i + 2 < argc) {
            watch_key = argv[++i];
            watch_seconds = std::strtod(argv[++i], nullptr);
        } else
            keys.push_back(arg);
    }
    if (servers.empty()) {
        std::fprintf(stderr,
                     "usage: capi_route [--state PATH] --servers A,B [--distribution D] [--hash H] "
                     "(KEY... | --loop SECONDS)\n");
        return 2;
    }
    mcshim_t* shim = mcshim_open(state);
    if (!shim) return 2;
    std::vector<const char*> addresses;
    for (const std::string& s : servers) addresses.push_back(s.c_str());
    const int declared = mcshim_set_servers(shim, addresses.data(), nullptr, addresses.size(), distribution, hash);
    if (declared != MCSHIM_OK) {
        std::fprintf(stderr, "capi_route: %s: %s\n", mcshim_strerror(declared), mcshim_last_error(shim));
        return 2;
    }

    std::signal(SIGTERM, on_signal);
    std::signal(SIGINT, on_signal);
    if (watch_seconds >= 0) {
        std::string last;
        int errors = 0;
        const double deadline = now_s() + watch_seconds;
        while (!stop && now_s() < deadline) {
            mcshim_route_t r{};
            const int rc = mcshim_route(shim, watch_key.data(), watch_key.size(), &r);
            if (rc != MCSHIM_OK && rc != MCSHIM_E_ALL_DEAD) ++errors;
            const std::string now = "target=" + std::to_string(r.target) + " flags=" + flag_names(r.flags);
            if (now != last) {
                std::printf("%s\n", now.c_str());
                std::fflush(stdout);
                last = now;
            }
            timespec pause{0, 5'000'000};
            nanosleep(&pause, nullptr);
        }
        mcshim_close(shim);
        return errors ? 1 : 0;
    }

    if (loop_seconds < 0) {
        for (const std::string& key : keys) {
            mcshim_route_t r{};
            const int rc = mcshim_route(shim, key.data(), key.size(), &r);
            const int usable = mcshim_state_usable(shim);
            std::printf("key=%s rc=%d native=%d target=%d fallback=%d flags=%s usable=%d problem=\"%s\"\n", key.c_str(),
                        rc, r.native, r.target, r.fallback, flag_names(r.flags).c_str(), usable,
                        mcshim_last_error(shim));
        }
        mcshim_close(shim);
        return 0;
    }

    const char* const loop_keys[] = {"foo", "bar", "user:42", "session/9f3a", "mcwatch", "k1", "k2", "k3"};
    uint64_t routes = 0, ok = 0, all_dead = 0, errors = 0, stale = 0, substitute = 0;
    int last_usable = -1;
    const double deadline = now_s() + loop_seconds;
    while (!stop && now_s() < deadline) {
        for (const char* key : loop_keys) {
            mcshim_route_t r{};
            const int rc = mcshim_route(shim, key, std::strlen(key), &r);
            ++routes;
            if (rc == MCSHIM_OK)
                ++ok;
            else if (rc == MCSHIM_E_ALL_DEAD)
                ++all_dead;
            else
                ++errors;
            if (r.flags & MCSHIM_ROUTE_STALE) ++stale;
            if (r.flags & MCSHIM_ROUTE_SUBSTITUTE) ++substitute;
        }
        const int usable = mcshim_state_usable(shim);
        if (usable != last_usable) {
            std::printf("usable=%d problem=\"%s\"\n", usable, mcshim_last_error(shim));
            std::fflush(stdout);
            last_usable = usable;
        }
    }
    std::printf("routes=%llu ok=%llu all_dead=%llu errors=%llu stale=%llu substitute=%llu\n",
                (unsigned long long)routes, (unsigned long long)ok, (unsigned long long)all_dead,
                (unsigned long long)errors, (unsigned long long)stale, (unsigned long long)substitute);
    mcshim_close(shim);
    return errors ? 1 : 0;
}
