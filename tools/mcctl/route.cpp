#include "tools/mcctl/route.hpp"

#include <fmt/format.h>

#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "common/config.hpp"
#include "libshim/defaults.hpp"
#include "tools/mcctl/json.hpp"
#include "common/rfc3339.hpp"
#include "libshim/router.hpp"
#include "libshim/routing_names.hpp"
#include "libshim/seqlock.hpp"
#include "tools/mcctl/snapshot.hpp"

namespace mcwatch {

namespace {

constexpr const char* kRouteUsage = "usage: mcctl [-s STATE_FILE] [-c CONFIG] route [--json] KEY... (- reads stdin)\n";

struct RouteSetup {
    std::string state_path;
    std::unique_ptr<route::Router> router;
    // The routing assumed, and where it was read: an operator checks it
    // against the clients' own settings before trusting an answer.
    state::Distribution distribution = state::Distribution::ketama;
    state::Hash hash = state::Hash::md5;
    bool from_config = false;
    std::string routing_path;  // the config file or the state file
};

// Why memcached would refuse `key` (its text protocol: 1 to 250 bytes, no
// space or control character), or "" when it is a key.
std::string key_problem(const std::string& key) {
    if (key.empty()) return "empty";
    if (key.size() > 250) return fmt::format("{} bytes, longer than memcached's 250", key.size());
    for (size_t i = 0; i < key.size(); ++i) {
        const auto byte = static_cast<unsigned char>(key[i]);
        if (byte == ' ') return fmt::format("holds a space at byte {}", i + 1);
        if (byte < 0x20 || byte == 0x7f) return fmt::format("holds control character 0x{:02x} at byte {}", byte, i + 1);
    }
    return "";
}

// A key as it can be shown on one line of a terminal: control bytes
// escaped, a long one cut.
std::string printable_key(const std::string& key) {
    std::string out;
    for (size_t i = 0; i < key.size() && i < 64; ++i) {
        const auto byte = static_cast<unsigned char>(key[i]);
        if (byte < 0x20 || byte == 0x7f || byte == '\\')
            out += fmt::format("\\x{:02x}", byte);
        else
            out += key[i];
    }
    if (key.size() > 64) out += "...";
    return out;
}

// The server list: from -c, else from the state file's static part.
bool build_router(const char* state_path, const char* config_path, RouteSetup& setup, std::string& error) {
    std::vector<ServerAddress> servers;
    state::Distribution distribution;
    state::Hash hash;
    if (config_path) {
        const auto loaded = load_config(config_path);
        if (!loaded) {
            error = loaded.error().message;
            return false;
        }
        const Config& config = *loaded;
        setup.state_path = state_path ? state_path : config.state_file;
        servers = config.servers;
        distribution = config.distribution;
        hash = config.hash;
        setup.from_config = true;
        setup.routing_path = config.path;
    } else {
        setup.state_path = state_path ? state_path : state_path_from_environment();
        state::StateMap map;
        char why[256] = "";
        if (map.open(setup.state_path.c_str(), why, sizeof why) != state::MapStatus::ok) {
            error = fmt::format("{}; give the server list with -c CONFIG", why);
            return false;
        }
        const state::Header& header = map.header();
        for (uint32_t i = 0; i < header.slot_count; ++i) {
            const state::Slot& slot = map.slots()[i];
            ServerAddress server;
            if (!ServerAddress::parse(std::string_view(slot.address, strnlen(slot.address, state::kAddressSize)),
                                      slot.weight, server, error)) {
                error = fmt::format("state file {}: server {}: {}", setup.state_path, i + 1, error);
                return false;
            }
            servers.push_back(std::move(server));
        }
        distribution = state::Distribution(header.distribution);
        hash = state::Hash(header.hash);
        setup.routing_path = setup.state_path;
    }
    setup.distribution = distribution;
    setup.hash = hash;
    route::Topology topology;
    if (!route::Topology::build(std::move(servers), distribution, hash, topology, error)) return false;
    setup.router =
        std::make_unique<route::Router>(std::move(topology), std::make_shared<route::StateSource>(setup.state_path));
    return true;
}

// What the state file says about server i, for the explanation.
struct ServerFacts {
    std::string state;  // "" when the file does not list the server
    int64_t recently_down_until_unix_ms = 0;
    // The end of the latest membership change's window (the file's, so the
    // same for every server); 0 without one.
    int64_t previous_until_unix_ms = 0;
};

std::vector<ServerFacts> server_facts(route::Router& router) {
    const uint32_t count = router.topology().size();
    std::vector<ServerFacts> facts(count);
    const route::StateSource::Pin mapped = router.source()->pin();
    if (!mapped) return facts;
    const state::Header& header = mapped->map.header();
    if (header.previous_count > 0 && header.membership_changed_unix_ms > 0)
        for (ServerFacts& f : facts)
            f.previous_until_unix_ms =
                header.membership_changed_unix_ms + int64_t(header.recently_down_window_s) * 1000;
    std::vector<state::ServerDynamic> dynamic(header.slot_count);
    if (!state::read_consistent(header, mapped->map.slots(), header.slot_count, dynamic.data(), nullptr)) return facts;
    for (uint32_t i = 0; i < count; ++i) {
        const int32_t slot = router.slot_of(i);
        if (slot < 0) continue;
        facts[i].state = state::state_name(dynamic[slot].state);
        facts[i].recently_down_until_unix_ms = dynamic[slot].recently_down_until_unix_ms;
    }
    return facts;
}

const char* reason_code(const route::Decision& d) {
    if (d.flags & route::kRouteAllDead) return "all_dead";
    if (d.flags & route::kRouteStale) return "stale";
    if (d.flags & route::kRouteDraining) return "draining";
    if (d.flags & route::kRouteSubstitute) return "substitute";
    if (d.flags & route::kRouteRecentlyDown) return "recently_down";
    if (d.flags & route::kRouteJoined) return "joined";
    return "live";
}

class Printer {
public:
    Printer(route::Router& router, const RouteSetup& setup, std::vector<ServerFacts> facts, bool as_json,
            std::FILE* out)
        : router_(router), facts_(std::move(facts)), as_json_(as_json), out_(out) {
        const char* distribution = distribution_name(setup.distribution);
        const char* hash = hash_name(setup.hash);
        const char* from = setup.from_config ? "config" : "state_file";
        routing_json_ =
            fmt::format("{{\"distribution\": {}, \"hash\": {}, \"from\": {}, \"path\": {}}}", json::quote(distribution),
                        json::quote(hash), json::quote(from), json::quote(setup.routing_path));
        if (!as_json_)
            fmt::print(out_, "routing: distribution {}, hash {} (from {} {})\n", distribution, hash,
                       setup.from_config ? "-c" : "state file", setup.routing_path);
    }

    bool print(const std::string& key) {
        if (const std::string problem = key_problem(key); !problem.empty()) {
            if (as_json_)
                fmt::print(out_, "{{\"key\": {}, \"invalid\": {}, \"routing\": {}}}\n", json::quote(key),
                           json::quote(problem), routing_json_);
            else
                fmt::print(out_, "{}: invalid key: {}\n", printable_key(key), problem);
            return false;
        }
        const route::Decision d = router_.route(key.data(), key.size());
        int32_t copies[route::kMaxCopies];
        const uint32_t wanted = replicas_or_default(router_.source());
        const uint32_t count = router_.copies_with(router_.topology().view(), key.data(), key.size(), wanted, copies);
        copies_.assign(copies, copies + count);
        if (as_json_)
            print_json(key, d);
        else
            print_text(key, d);
        return !(d.flags & route::kRouteAllDead);
    }

private:
    std::string address(int32_t i) const { return i < 0 ? "-" : router_.topology().server(uint32_t(i)).text; }
    std::string json_address(int32_t i) const { return i < 0 ? "null" : json::quote(address(i)); }
    // When the fallback stops counting: the recently-down window's end, or
    // the membership change's.
    std::string until(const route::Decision& d) const {
        if (d.native < 0) return "";
        const ServerFacts& native = facts_[uint32_t(d.native)];
        const int64_t ms =
            (d.flags & route::kRouteJoined) ? native.previous_until_unix_ms : native.recently_down_until_unix_ms;
        return ms > 0 ? rfc3339_utc(ms) : "";
    }

    std::string why(const route::Decision& d) const {
        if (d.flags & route::kRouteAllDead) return "all servers dead";
        if (d.flags & route::kRouteStale) return "state stale: native";
        if (d.flags & route::kRouteSubstitute)
            return fmt::format("substitute for {} {}", d.flags & route::kRouteDraining ? "draining" : "dead",
                               address(d.native));
        if (d.flags & route::kRouteRecentlyDown) {
            const std::string when = until(d);
            if (d.fallback < 0) return "recently down: no fallback (no other live server)";
            return fmt::format("recently down: fallback {}{}", address(d.fallback),
                               when.empty() ? "" : " until " + when);
        }
        if (d.flags & route::kRouteJoined) {
            const std::string when = until(d);
            return fmt::format("placement changed with the server list: fallback {}{}", address(d.fallback),
                               when.empty() ? "" : " until " + when);
        }
        return "live";
    }

    void print_text(const std::string& key, const route::Decision& d) {
        if (d.flags & route::kRouteAllDead) {
            fmt::print(out_, "{}: no server: all servers dead\n", key);
            return;
        }
        // With replicas: every copy, in order (the first is where the key goes now).
        std::string copies;
        if (copies_.size() > 1)
            for (size_t i = 0; i < copies_.size(); ++i) copies += (i ? " " : ", copies ") + address(copies_[i]);
        fmt::print(out_, "{}: native {}, now {} ({}){}\n", key, address(d.native), address(d.target), why(d), copies);
    }

    void print_json(const std::string& key, const route::Decision& d) {
        const bool recent = d.flags & (route::kRouteRecentlyDown | route::kRouteJoined);
        const std::string when = recent ? until(d) : "";
        fmt::print(out_,
                   "{{\"key\": {}, \"native\": {}, \"target\": {}, \"fallback\": {}, \"reason\": {}, "
                   "\"native_state\": {}, \"fallback_until\": {}, \"explanation\": {}, \"copies\": [{}], "
                   "\"routing\": {}}}\n",
                   json::quote(key), json_address(d.native), json_address(d.target),
                   recent ? json_address(d.fallback) : "null", json::quote(reason_code(d)),
                   d.native >= 0 && !facts_[uint32_t(d.native)].state.empty()
                       ? json::quote(facts_[uint32_t(d.native)].state)
                       : "null",
                   when.empty() ? "null" : json::quote(when), json::quote(why(d)), json_copies(), routing_json_);
    }

    std::string json_copies() const {
        std::string out;
        for (size_t i = 0; i < copies_.size(); ++i) out += (i ? ", " : "") + json_address(copies_[i]);
        return out;
    }

    route::Router& router_;
    std::vector<int32_t> copies_;  // the key being printed
    std::string routing_json_;
    const std::vector<ServerFacts> facts_;
    const bool as_json_;
    std::FILE* out_;
};

}  // namespace

int mcctl_route(const char* state_path, const char* config_path, int argc, char** argv) {
    return mcctl_route(state_path, config_path, argc, argv, stdin, stdout, stderr);
}

int mcctl_route(const char* state_path, const char* config_path, int argc, char** argv, std::FILE* in, std::FILE* out,
                std::FILE* err) {
    bool as_json = false;
    bool from_stdin = false;
    std::vector<std::string> keys;
    bool options_done = false;
    for (int i = 0; i < argc; ++i) {
        const std::string arg = argv[i];
        if (!options_done && arg == "--json") {
            as_json = true;
        } else if (!options_done && arg == "--") {
            options_done = true;
        } else if (!options_done && arg == "-") {
            from_stdin = true;
        } else if (!options_done && arg.size() > 1 && arg[0] == '-') {
            fmt::print(err, "mcctl: route: unknown option '{}'\n{}", arg, kRouteUsage);
            return kExitUsage;
        } else {
            keys.push_back(arg);
        }
    }
    if (keys.empty() && !from_stdin) {
        fmt::print(err, "mcctl: route: no key given\n{}", kRouteUsage);
        return kExitUsage;
    }

    RouteSetup setup;
    std::string error;
    try {
        if (!build_router(state_path, config_path, setup, error)) {
            fmt::print(err, "mcctl: route: {}\n", error);
            return kExitUnusable;
        }
    } catch (const std::exception& e) {
        fmt::print(err, "mcctl: route: {}\n", e.what());
        return kExitUnusable;
    }
    route::Router& router = *setup.router;
    if (!router.source()->usable())
        fmt::print(err, "mcctl: route: {}: keys are placed natively\n", router.source()->problem());
    Printer printer(router, setup, server_facts(router), as_json, out);

    bool all_routed = true;
    for (const std::string& key : keys) all_routed &= printer.print(key);
    if (from_stdin) {
        char* line = nullptr;
        size_t capacity = 0;
        ssize_t length;
        while ((length = getline(&line, &capacity, in)) >= 0) {
            while (length > 0 && (line[length - 1] == '\n' || line[length - 1] == '\r')) --length;
            // A blank line separates keys; an empty key is written as "" on the command line.
            if (length == 0) continue;
            all_routed &= printer.print(std::string(line, size_t(length)));
        }
        std::free(line);
    }
    std::fflush(out);
    return all_routed ? 0 : 1;
}

}  // namespace mcwatch
