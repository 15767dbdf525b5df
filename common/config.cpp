#include "common/config.hpp"

#include <arpa/inet.h>
#include <grp.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>
#include <ini.h>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <sstream>

#include "common/duration.hpp"
#include "libshim/hashes.hpp"
#include "libshim/routing_names.hpp"

namespace mcwatch {

namespace {

// inih reads through this function so that we know the line each handler call
// comes from (Debian's libinih is built without INI_HANDLER_LINENO).
struct LineReader {
    const std::string* text = nullptr;
    size_t pos = 0;
    int line = 0;
    bool too_long = false;
};

// `value  # comment`: Debian's libinih takes only `;` after a value as a
// comment (INI_INLINE_COMMENT_PREFIXES is fixed when it is built), yet `#`
// is what most /etc files use. As for `;`, the `#` must follow a space or a
// tab, so that a value may still hold one.
void strip_hash_comment(char* line) {
    for (char* c = line; *c; ++c)
        if (*c == '#' && c > line && (c[-1] == ' ' || c[-1] == '\t')) {
            *c = '\0';
            return;
        }
}

char* read_line(char* buffer, int size, void* stream) {
    auto* reader = static_cast<LineReader*>(stream);
    const std::string& text = *reader->text;
    if (reader->pos >= text.size()) return nullptr;
    size_t end = text.find('\n', reader->pos);
    end = end == std::string::npos ? text.size() : end + 1;
    const size_t length = end - reader->pos;
    ++reader->line;
    // inih would split a longer line and parse its tail as another line.
    if (length >= size_t(size)) {
        reader->too_long = true;
        return nullptr;
    }
    std::memcpy(buffer, text.data() + reader->pos, length);
    buffer[length] = '\0';
    reader->pos = end;
    strip_hash_comment(buffer);
    return buffer;
}

std::optional<uint32_t> parse_count(std::string_view text, uint32_t min, uint32_t max) {
    uint32_t value = 0;
    const auto [rest, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc() || rest != text.data() + text.size() || value < min || value > max) return std::nullopt;
    return value;
}

std::optional<bool> parse_bool(std::string_view text) {
    static const std::set<std::string_view> yes = {"yes", "true", "on", "1"};
    static const std::set<std::string_view> no = {"no", "false", "off", "0"};
    if (yes.count(text)) return true;
    if (no.count(text)) return false;
    return std::nullopt;
}

std::string hash_names_list() {
    std::string names;
    for (uint32_t i = 0; i < state::kHashCount; ++i)
        if (route::hash_available(state::Hash(i)))
            names += fmt::format("{}{}", names.empty() ? "" : ", ", hash_name(state::Hash(i)));
    return names;
}

// A fleet's name and a host's id are parts of etcd keys: no '/', nothing a
// shell or a log line would mangle.
bool valid_fleet_id(std::string_view text) {
    if (text.empty() || text.size() > 64) return false;
    return std::all_of(text.begin(), text.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
               c == '.';
    });
}

constexpr Millis kMaxStateFileMillis = std::chrono::hours(24 * 49);

class Parser;

// How one key's value is read into the Config: the key's name is passed for
// messages, which the Parser prefixes with file:line.
using ValueParser = std::function<Result<>(Parser&, std::string_view key, const char* value)>;

// One key of mcwatchd.conf(5). This table is the list of keys: the INI
// handler dispatches through it, and `mcwatchd --list-config-keys` prints it
// for the documentation test and the fuzz dictionary.
struct ConfigKey {
    std::string_view section;
    std::string_view name;
    ValueParser parse;
    std::string_view documentation;
    bool repeatable = false;  // `server` lines; any other key may be set once
};

// What an unknown key in each section is told.
struct ConfigSection {
    std::string_view name;
    std::string_view unknown_key_hint;  // appended to "unknown key 'x' in [section]"
};
constexpr ConfigSection kSections[] = {
    {"mcwatchd", ""},
    {"routing", ""},
    {"fleet", ""},
    {"servers", " (expected `server = host:port`)"},
};

class Parser {
public:
    Parser(Config& config, std::string name) : config_(config), name_(std::move(name)) {}

    Config& config() { return config_; }

    int handle(const char* section, const char* key, const char* value);

    // Checks that need the whole file.
    void finish() {
        if (!error_.empty()) return;
        if (config_.servers.empty()) {
            error_ = fmt::format("{}: no servers configured: add `server = host:port` lines under [servers]", name_);
            return;
        }
        if (config_.control_socket.empty()) {
            // Beside the state file by default: a daemon with its own state
            // file never fights another one for the socket.
            config_.control_socket = control_socket_beside(config_.state_file);
            if (config_.control_socket.size() >= 108) {
                at_line(key_lines_["state_file"],
                        fmt::format("control_socket would be {}, longer than a unix socket path may be (107): "
                                    "set control_socket",
                                    config_.control_socket));
                return;
            }
        }
        if (!finish_fleet()) return;
        if (config_.min_live_servers > config_.servers.size()) {
            at_line(key_lines_["min_live_servers"],
                    fmt::format("min_live_servers = {} is more than the {} servers configured: "
                                "no server could ever be drained",
                                config_.min_live_servers, config_.servers.size()));
            return;
        }
        if (config_.control_socket == config_.state_file)
            at_line(key_lines_["control_socket"], "control_socket and state_file must differ");
        else if (config_.probe_timeout >= config_.probe_interval)
            at_line(key_lines_["probe_timeout"],
                    fmt::format("probe_timeout ({}) must be shorter than probe_interval ({})",
                                format_duration(config_.probe_timeout), format_duration(config_.probe_interval)));
        else if (config_.stale_after <= config_.probe_interval)
            at_line(key_lines_["stale_after"],
                    fmt::format("stale_after ({}) must be longer than probe_interval ({})",
                                format_duration(config_.stale_after), format_duration(config_.probe_interval)));
    }

    void set_line(int line) { line_ = line; }
    // inih reports the first line it rejected, which is either one our
    // handler refused (error already set) or an earlier syntax error.
    void fail_syntax(int line) {
        if (!error_.empty() && error_line_ <= line) return;
        error_.clear();
        at_line(line, "syntax error: expected `[section]`, `key = value` or a comment");
    }
    void fail_too_long(int line, int max) {
        if (error_.empty()) at_line(line, fmt::format("line longer than {} characters", max - 2));
    }
    const std::string& error() const { return error_; }

    int server_key(const std::string& key, const char* value) {
        if (key != "server")
            return fail(fmt::format("unknown key '{}' in [servers] (expected `server = host:port`)", key));
        if (config_.servers.size() >= state::kMaxServers)
            return fail(fmt::format("more than {} servers", state::kMaxServers));
        std::istringstream words(value);
        std::string address, option;
        words >> address;
        ServerAddress server;
        if (std::string why; !ServerAddress::parse_strict(address, server, why)) return fail(why);
        server.line = line_;
        while (words >> option) {
            if (option.find('=') == std::string::npos)
                return fail(
                    fmt::format("server {}: '{}' is not an option: write one server per `server =` line "
                                "(options are weight=N)",
                                address, option));
            if (option.rfind("weight=", 0) != 0)
                return fail(fmt::format("server {}: unknown option '{}' (expected weight=N)", address, option));
            const auto weight = parse_count(std::string_view(option).substr(7), 1, 1'000'000);
            if (!weight)
                return fail(
                    fmt::format("server {}: bad weight '{}': expected 1 to 1000000", address, option.substr(7)));
            server.weight = *weight;
        }
        if (const auto [it, inserted] = lines_by_text_.emplace(server.text, line_); !inserted)
            return fail(fmt::format("duplicate server {} (first on line {})", server.text, it->second));
        // Two entries, one memcached: probed twice, and its keys counted on
        // two points of the ring. Names are not looked up here.
        const std::string numeric = server.numeric();
        if (!numeric.empty()) {
            const auto [it, inserted] = entries_by_numeric_.emplace(numeric, config_.servers.size());
            if (!inserted) {
                const ServerAddress& other = config_.servers[it->second];
                return fail(fmt::format("server {} is {}, the same server as {} on line {}", server.text, numeric,
                                        other.text, other.line));
            }
        }
        config_.servers.push_back(std::move(server));
        return 1;
    }

private:
    // [fleet]'s keys need its etcd endpoints; the host defaults to the hostname.
    bool finish_fleet() {
        FleetConfig& fleet = config_.fleet;
        if (fleet.etcd.empty()) {
            for (const auto& [key, line] : key_lines_)
                if (key.rfind("fleet.", 0) == 0) {
                    at_line(line, fmt::format("{} is set but [fleet] has no etcd = http://host:port: "
                                              "the fleet view needs etcd",
                                              key));
                    return false;
                }
            return true;
        }
        if (fleet.host.empty()) {
            char name[256] = "";
            if (::gethostname(name, sizeof name - 1) != 0 || !valid_fleet_id(name)) {
                at_line(key_lines_["fleet.etcd"],
                        fmt::format("[fleet] host is not set and the hostname '{}' cannot name a host in etcd: "
                                    "set host =",
                                    name));
                return false;
            }
            fleet.host = name;
        }
        if (fleet.fallback_after < fleet.lease) {
            at_line(key_lines_["fleet.fallback_after"],
                    fmt::format("fallback_after ({}) must be at least the lease ({})",
                                format_duration(fleet.fallback_after), format_duration(fleet.lease)));
            return false;
        }
        return true;
    }

    int fail(const std::string& message) {
        at_line(line_, message);
        return 0;
    }
    void at_line(int line, const std::string& message) {
        // Keep the first error: later ones are often consequences of it.
        if (!error_.empty()) return;
        error_line_ = line;
        error_ = line > 0 ? fmt::format("{}:{}: {}", name_, line, message) : fmt::format("{}: {}", name_, message);
    }

    bool first_time(const std::string& qualified) {
        auto [it, inserted] = key_lines_.emplace(qualified, line_);
        if (!inserted) fail(fmt::format("duplicate key '{}' (first set on line {})", qualified, it->second));
        return inserted;
    }

    Config& config_;
    std::string name_;
    int line_ = 0;
    std::string error_;
    int error_line_ = 0;
    std::map<std::string, int> key_lines_;              // key -> line it was set on
    std::map<std::string, int> lines_by_text_;          // server address as written -> its line
    std::map<std::string, size_t> entries_by_numeric_;  // numeric address -> index in servers
};

// The value parsers of the table, by kind.

// A duration key's value, within [min, max].
Result<Millis> duration_within(std::string_view key, const char* value, Millis min, Millis max) {
    const auto parsed = parse_duration(value);
    if (!parsed) return failure(fmt::format("{}: {}", key, parsed.error().message));
    if (*parsed < min)
        return failure(fmt::format("{} = {} is too short (minimum {})", key, value, format_duration(min)));
    if (*parsed > max)
        return failure(fmt::format("{} = {} is too long (maximum {})", key, value, format_duration(max)));
    return *parsed;
}

ValueParser duration_value(Millis Config::*field, Millis min, Millis max = Millis::max()) {
    return [=](Parser& parser, std::string_view key, const char* value) -> Result<> {
        const Result<Millis> parsed = duration_within(key, value, min, max);
        if (!parsed) return tl::unexpected(parsed.error());
        parser.config().*field = *parsed;
        return {};
    };
}

ValueParser count_value(uint32_t Config::*field, uint32_t min, uint32_t max) {
    return [=](Parser& parser, std::string_view key, const char* value) -> Result<> {
        const auto parsed = parse_count(value, min, max);
        if (!parsed)
            return failure(fmt::format("{} = '{}': expected a whole number from {} to {}", key, value, min, max));
        parser.config().*field = *parsed;
        return {};
    };
}

// `expected` names the spelling the documentation uses ("yes or no", "on or off");
// parse_bool takes either.
ValueParser bool_value(bool Config::*field, const char* expected) {
    return [=](Parser& parser, std::string_view key, const char* value) -> Result<> {
        const auto parsed = parse_bool(value);
        if (!parsed) return failure(fmt::format("{} = '{}': expected {}", key, value, expected));
        parser.config().*field = *parsed;
        return {};
    };
}

ValueParser path_value(std::string Config::*field) {
    return [=](Parser& parser, std::string_view key, const char* value) -> Result<> {
        if (value[0] != '/') return failure(fmt::format("{} = '{}': expected an absolute path", key, value));
        if (std::strlen(value) >= 108)  // sun_path, and plenty for the state file
            return failure(fmt::format("{}: path longer than 107 characters", key));
        parser.config().*field = value;
        return {};
    };
}

Result<> metrics_listen_value(Parser& parser, std::string_view, const char* value) {
    Config& config = parser.config();
    if (value[0] == '\0' || std::string_view(value) == "off") return {};
    auto listen = parse_listen_address(value);
    if (!listen) return failure(fmt::format("metrics_listen = '{}': {}", value, listen.error().message));
    config.metrics_host = std::move(listen->host);
    config.metrics_port = listen->port;
    config.metrics_listen = value;
    return {};
}

Result<> user_value(Parser& parser, std::string_view, const char* value) {
    // Looked up now so that `mcwatchd -t` catches a typo.
    const passwd* entry = ::getpwnam(value);
    if (!entry) return failure(fmt::format("user = '{}': no such user", value));
    Config& config = parser.config();
    config.user = value;
    config.user_uid = entry->pw_uid;
    config.user_gid = entry->pw_gid;
    return {};
}

Result<> admin_group_value(Parser& parser, std::string_view, const char* value) {
    const group* entry = ::getgrnam(value);
    if (!entry) return failure(fmt::format("admin_group = '{}': no such group", value));
    parser.config().admin_group = value;
    parser.config().admin_gid = entry->gr_gid;
    return {};
}

Result<> distribution_value(Parser& parser, std::string_view, const char* value) {
    Config& config = parser.config();
    // PHP's Memcached::DISTRIBUTION_CONSISTENT and pylibmc's word for ketama.
    if (std::string_view(value) == "consistent") {
        config.distribution = state::Distribution::ketama;
        return {};
    }
    if (!distribution_from_name(value, config.distribution))
        return failure(
            fmt::format("distribution = '{}': expected ketama (or consistent), ketama_weighted or modula", value));
    return {};
}

Result<> hash_value(Parser& parser, std::string_view, const char* value) {
    Config& config = parser.config();
    if (!hash_from_name(value, config.hash))
        return failure(fmt::format("hash = '{}': unknown hash (expected one of {})", value, hash_names_list()));
    if (!route::hash_available(config.hash))
        return failure(fmt::format("hash = '{}': not built into this libhashkit, so no client can use it", value));
    return {};
}

// `etcd = http://host:port[, http://host:port ...]`
Result<> fleet_etcd_value(Parser& parser, std::string_view, const char* value) {
    std::vector<std::string> endpoints;
    std::string_view rest(value);
    for (bool more = true; more;) {
        const size_t comma = rest.find(',');
        std::string_view item = rest.substr(0, comma);
        more = comma != std::string_view::npos;
        rest = more ? rest.substr(comma + 1) : std::string_view();
        while (!item.empty() && (item.front() == ' ' || item.front() == '\t')) item.remove_prefix(1);
        while (!item.empty() && (item.back() == ' ' || item.back() == '\t')) item.remove_suffix(1);
        if (item.empty()) return failure(fmt::format("etcd = '{}': an empty endpoint in the list", value));
        const std::string_view scheme = "http://";
        if (item.rfind(scheme, 0) != 0)
            return failure(
                fmt::format("etcd = '{}': endpoint '{}' must start with http:// (the v3 JSON gateway; "
                            "https is not supported yet)",
                            value, item));
        std::string_view hostport = item.substr(scheme.size());
        if (!hostport.empty() && hostport.back() == '/') hostport.remove_suffix(1);
        const size_t colon = hostport.rfind(':');
        if (colon == std::string_view::npos || colon == 0 || hostport.find('/') != std::string_view::npos ||
            !parse_count(hostport.substr(colon + 1), 1, 65535))
            return failure(fmt::format("etcd = '{}': endpoint '{}' is not http://host:port", value, item));
        endpoints.emplace_back(std::string(scheme) + std::string(hostport));
    }
    parser.config().fleet.etcd = std::move(endpoints);
    return {};
}

ValueParser fleet_id_value(std::string FleetConfig::*field) {
    return [=](Parser& parser, std::string_view key, const char* value) -> Result<> {
        if (!valid_fleet_id(value))
            return failure(fmt::format("{} = '{}': expected 1 to 64 letters, digits, '-', '_' or '.'", key, value));
        parser.config().fleet.*field = value;
        return {};
    };
}

ValueParser fleet_duration_value(Millis FleetConfig::*field, Millis min, Millis max) {
    return [=](Parser& parser, std::string_view key, const char* value) -> Result<> {
        const Result<Millis> parsed = duration_within(key, value, min, max);
        if (!parsed) return tl::unexpected(parsed.error());
        parser.config().fleet.*field = *parsed;
        return {};
    };
}

Result<> fleet_verdict_value(Parser& parser, std::string_view, const char* value) {
    for (FleetRule rule : {FleetRule::majority, FleetRule::any, FleetRule::all})
        if (std::string_view(value) == fleet_rule_name(rule)) {
            parser.config().fleet.verdict = rule;
            return {};
        }
    return failure(fmt::format("verdict = '{}': expected majority, any or all", value));
}

// The `server` line's own parsing is Parser::server_key's, which sets the
// error itself.
Result<> server_value(Parser& parser, std::string_view, const char* value) {
    parser.server_key("server", value);
    return {};
}

const std::vector<ConfigKey>& config_key_table() {
    // The state file keeps probe_interval and stale_after as uint32
    // milliseconds: 49 days at most.
    static const std::vector<ConfigKey> table = {
        {"mcwatchd", "state_file", path_value(&Config::state_file), "absolute path of the state file"},
        {"mcwatchd", "control_socket", path_value(&Config::control_socket),
         "absolute path of mcctl's unix socket (default: control beside the state file)"},
        {"mcwatchd", "probe_interval", duration_value(&Config::probe_interval, Millis(10), kMaxStateFileMillis),
         "time from the start of one probe round to the start of the next"},
        {"mcwatchd", "probe_timeout", duration_value(&Config::probe_timeout, Millis(1)),
         "deadline of a probe, shorter than probe_interval"},
        {"mcwatchd", "stats_interval", duration_value(&Config::stats_interval, Millis(10)),
         "how often each server is asked for stats (version in the rounds between)"},
        {"mcwatchd", "fail_after", count_value(&Config::fail_after, 1, 1000),
         "consecutive failed probes that make a server dead"},
        {"mcwatchd", "recover_after", count_value(&Config::recover_after, 1, 1000),
         "consecutive good probes that make a dead server live"},
        {"mcwatchd", "min_live_servers", count_value(&Config::min_live_servers, 0, state::kMaxServers),
         "the fewest live servers mcctl drain and down may leave"},
        {"mcwatchd", "recently_down_window", duration_value(&Config::recently_down_window, Millis(0)),
         "how long a returned server stays recently down"},
        // Sent to memcached as a relative expiration, which it reads as an
        // absolute unix time past 30 days.
        {"mcwatchd", "writeback_ttl", duration_value(&Config::writeback_ttl, Millis(1000), std::chrono::hours(24 * 30)),
         "expiration of values copied back to a recently down server"},
        {"mcwatchd", "stale_after", duration_value(&Config::stale_after, Millis(100), kMaxStateFileMillis),
         "clients ignore a state file whose heartbeat is older than this"},
        {"mcwatchd", "metrics_listen", metrics_listen_value, "address:port of the Prometheus endpoint, or off"},
        {"mcwatchd", "user", user_value, "the user to run as when started as root"},
        {"mcwatchd", "admin_group", admin_group_value, "a group whose members may use the control socket"},
        {"mcwatchd", "flush_on_rejoin", bool_value(&Config::flush_on_rejoin, "yes or no"),
         "flush_all a dead server before publishing it live again"},
        {"mcwatchd", "drain_move", bool_value(&Config::drain_move, "on or off"),
         "on: mcctl drain moves every key, as drain --move does"},
        {"mcwatchd", "drain_rate", count_value(&Config::drain_rate, 1, 1000000),
         "keys per second a drain --move moves at most"},
        {"mcwatchd", "hint_socket", bool_value(&Config::hint_socket, "on or off"),
         "on: clients' hints arrive on the socket hints beside the state file"},
        {"routing", "distribution", distribution_value, "ketama (or consistent), ketama_weighted or modula"},
        {"routing", "hash", hash_value, "the key hash the clients use"},
        {"routing", "replicas", count_value(&Config::replicas, 1, 8),
         "copies of each key, on the first live servers of its order (1: no copies)"},
        // Sent to memcached as a relative expiration, as writeback_ttl.
        {"routing", "replica_max_ttl", duration_value(&Config::replica_max_ttl, Millis(0), std::chrono::hours(24 * 30)),
         "upper bound on every copy's expiration, 0 for none"},
        {"routing", "managed_list", bool_value(&Config::managed_list, "on or off"),
         "on: preloaded clients use mcwatchd's server list instead of their own"},
        {"fleet", "etcd", fleet_etcd_value, "etcd's client URLs, http://host:port[, ...]: turns the fleet view on"},
        {"fleet", "name", fleet_id_value(&FleetConfig::name), "the fleet's name, its key prefix in etcd"},
        {"fleet", "host", fleet_id_value(&FleetConfig::host), "this host's id in the fleet (default: the hostname)"},
        // etcd's leases are whole seconds.
        {"fleet", "lease", fleet_duration_value(&FleetConfig::lease, std::chrono::seconds(2), std::chrono::hours(1)),
         "how long a silent host's observations still count"},
        {"fleet", "verdict", fleet_verdict_value,
         "majority, any or all: of the hosts reporting, how many must see a server dead"},
        {"fleet", "fallback_after",
         fleet_duration_value(&FleetConfig::fallback_after, std::chrono::seconds(2), std::chrono::hours(24)),
         "how long etcd may be unreachable before local observations decide again"},
        {"servers", "server", server_value, "host:port, [ipv6]:port or unix:/path, then weight=N", true},
    };
    return table;
}

int Parser::handle(const char* section_name, const char* key, const char* value) {
    if (!error_.empty()) return 0;
    const std::string_view s(section_name);
    const ConfigSection* section = nullptr;
    for (const ConfigSection& candidate : kSections)
        if (candidate.name == s) section = &candidate;
    if (!section) {
        std::string expected;
        for (const ConfigSection& known : kSections)
            expected += fmt::format("{}[{}]", expected.empty() ? "" : ", ", known.name);
        return fail(fmt::format("unknown section [{}] (expected {})", s, expected));
    }
    const ConfigKey* entry = nullptr;
    for (const ConfigKey& candidate : config_key_table())
        if (candidate.section == s && candidate.name == key) entry = &candidate;
    if (!entry) return fail(fmt::format("unknown key '{}' in [{}]{}", key, s, section->unknown_key_hint));
    // [mcwatchd]'s keys are known by their bare names (finish() looks them up).
    const std::string qualified = s == "mcwatchd" ? std::string(key) : fmt::format("{}.{}", s, key);
    if (!entry->repeatable && !first_time(qualified)) return 0;
    if (const Result<> parsed = entry->parse(*this, entry->name, value); !parsed) return fail(parsed.error().message);
    return error_.empty() ? 1 : 0;
}

int handler(void* user, const char* section, const char* key, const char* value) {
    return static_cast<Parser*>(user)->handle(section, key, value);
}

struct HandlerContext {
    Parser* parser;
    LineReader* reader;
};

int handler_with_line(void* user, const char* section, const char* key, const char* value) {
    auto* context = static_cast<HandlerContext*>(user);
    context->parser->set_line(context->reader->line);
    return handler(context->parser, section, key, value);
}

}  // namespace

const char* fleet_rule_name(FleetRule rule) {
    switch (rule) {
    case FleetRule::majority: return "majority";
    case FleetRule::any: return "any";
    case FleetRule::all: return "all";
    }
    return "majority";
}

std::string control_socket_beside(const std::string& state_file) {
    const size_t slash = state_file.rfind('/');
    if (slash == std::string::npos) return kControlSocketName;
    return fmt::format("{}/{}", state_file.substr(0, slash), kControlSocketName);
}

std::vector<ConfigKeyDoc> config_keys() {
    std::vector<ConfigKeyDoc> keys;
    for (const ConfigKey& key : config_key_table()) keys.push_back({key.section, key.name, key.documentation});
    return keys;
}

Result<ListenAddress> parse_listen_address(const std::string& text) {
    std::string address, port_text;
    if (!text.empty() && text[0] == '[') {
        const size_t close = text.find(']');
        if (close == std::string::npos || close + 1 >= text.size() || text[close + 1] != ':')
            return failure("expected host:port or [ipv6]:port");
        address = text.substr(1, close - 1);
        port_text = text.substr(close + 2);
        in6_addr ignored{};
        if (inet_pton(AF_INET6, address.c_str(), &ignored) != 1) return failure("bad IPv6 address");
    } else {
        const size_t colon = text.rfind(':');
        if (colon == std::string::npos) return failure("expected host:port (for example 127.0.0.1:9150)");
        address = text.substr(0, colon);
        port_text = text.substr(colon + 1);
        if (address == "localhost") address = "127.0.0.1";
        in_addr ignored{};
        if (inet_pton(AF_INET, address.c_str(), &ignored) != 1)
            return failure("expected a numeric address (no name lookups at start-up)");
    }
    const auto number = parse_count(port_text, 1, 65535);
    if (!number) return failure(fmt::format("port '{}' out of range (1-65535)", port_text));
    return ListenAddress{address, uint16_t(*number)};
}

Result<Config> parse_config(const std::string& text, const std::string& name) {
    Config config;
    config.path = name;
    Parser parser(config, name);
    LineReader reader{&text};
    HandlerContext context{&parser, &reader};
    const int result = ini_parse_stream(read_line, &reader, handler_with_line, &context);
    if (reader.too_long)
        parser.fail_too_long(reader.line, INI_MAX_LINE);
    else if (result > 0)
        parser.fail_syntax(result);
    else if (result < 0)
        return failure(fmt::format("{}: cannot parse (out of memory)", name));
    parser.finish();
    if (!parser.error().empty()) return failure(parser.error());
    return config;
}

Result<Config> load_config(const std::string& path) {
    struct stat info {};
    if (::stat(path.c_str(), &info) == 0 && S_ISDIR(info.st_mode))
        return failure(fmt::format("{}: is a directory, not a configuration file", path));
    std::ifstream in(path, std::ios::binary);
    if (!in) return failure(fmt::format("{}: cannot open: {}", path, std::strerror(errno)));
    std::ostringstream text;
    text << in.rdbuf();
    if (in.bad()) return failure(fmt::format("{}: read error: {}", path, std::strerror(errno)));
    return parse_config(text.str(), path);
}

}  // namespace mcwatch
