#include "common/config.hpp"

#include <arpa/inet.h>
#include <grp.h>
#include <netdb.h>
#include <pwd.h>
#include <sys/stat.h>

#include <fmt/format.h>
#include <ini.h>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <fstream>
#include <map>
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

bool valid_hostname(std::string_view host) {
    if (host.empty() || host.size() > 253) return false;
    return std::all_of(host.begin(), host.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
               c == '_';
    });
}

std::string hash_names_list() {
    std::string names;
    for (uint32_t i = 0; i < state::kHashCount; ++i)
        if (route::hash_available(state::Hash(i)))
            names += fmt::format("{}{}", names.empty() ? "" : ", ", hash_name(state::Hash(i)));
    return names;
}

constexpr Millis kMaxStateFileMillis = std::chrono::hours(24 * 49);

class Parser {
public:
    Parser(Config& config, std::string name) : config_(config), name_(std::move(name)) {}

    int handle(const char* section, const char* key, const char* value) {
        if (!error_.empty()) return 0;
        const std::string_view s(section);
        if (s == "mcwatchd") return daemon_key(key, value);
        if (s == "routing") return routing_key(key, value);
        if (s == "servers") return server_key(key, value);
        return fail(fmt::format("unknown section [{}] (expected [mcwatchd], [routing], [servers])", s));
    }

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
            const size_t slash = config_.state_file.rfind('/');
            config_.control_socket = config_.state_file.substr(0, slash) + "/control";
            if (config_.control_socket.size() >= 108) {
                at_line(key_lines_["state_file"],
                        fmt::format("control_socket would be {}, longer than a unix socket path may be (107): "
                                    "set control_socket",
                                    config_.control_socket));
                return;
            }
        }
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

private:
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

    int duration_key(const char* key, const char* value, Millis& out, Millis min, Millis max = Millis::max()) {
        std::string why;
        const auto parsed = parse_duration(value, why);
        if (!parsed) return fail(fmt::format("{}: {}", key, why));
        if (*parsed < min)
            return fail(fmt::format("{} = {} is too short (minimum {})", key, value, format_duration(min)));
        if (*parsed > max)
            return fail(fmt::format("{} = {} is too long (maximum {})", key, value, format_duration(max)));
        out = *parsed;
        return 1;
    }

    int count_key(const char* key, const char* value, uint32_t& out, uint32_t min, uint32_t max) {
        const auto parsed = parse_count(value, min, max);
        if (!parsed) return fail(fmt::format("{} = '{}': expected a whole number from {} to {}", key, value, min, max));
        out = *parsed;
        return 1;
    }

    int path_key(const char* key, const char* value, std::string& out) {
        if (value[0] != '/') return fail(fmt::format("{} = '{}': expected an absolute path", key, value));
        if (std::strlen(value) >= 108)  // sun_path, and plenty for the state file
            return fail(fmt::format("{}: path longer than 107 characters", key));
        out = value;
        return 1;
    }

    int daemon_key(const std::string& key, const char* value) {
        if (!first_time(key)) return 0;
        const char* k = key.c_str();
        if (key == "state_file") return path_key(k, value, config_.state_file);
        if (key == "control_socket") return path_key(k, value, config_.control_socket);
        // The state file keeps these two as uint32 milliseconds: 49 days at most.
        if (key == "probe_interval")
            return duration_key(k, value, config_.probe_interval, Millis(10), kMaxStateFileMillis);
        if (key == "probe_timeout") return duration_key(k, value, config_.probe_timeout, Millis(1));
        if (key == "fail_after") return count_key(k, value, config_.fail_after, 1, 1000);
        if (key == "recover_after") return count_key(k, value, config_.recover_after, 1, 1000);
        if (key == "min_live_servers") return count_key(k, value, config_.min_live_servers, 0, state::kMaxServers);
        if (key == "recently_down_window") return duration_key(k, value, config_.recently_down_window, Millis(0));
        // Sent to memcached as a relative expiration, which it reads as an
        // absolute unix time past 30 days.
        if (key == "writeback_ttl")
            return duration_key(k, value, config_.writeback_ttl, Millis(1000), std::chrono::hours(24 * 30));
        if (key == "stale_after") return duration_key(k, value, config_.stale_after, Millis(100), kMaxStateFileMillis);
        if (key == "metrics_listen") {
            if (value[0] == '\0' || std::string_view(value) == "off") return 1;
            const std::string why = parse_listen_address(value, config_.metrics_host, config_.metrics_port);
            if (!why.empty()) return fail(fmt::format("metrics_listen = '{}': {}", value, why));
            config_.metrics_listen = value;
            return 1;
        }
        if (key == "user") {
            // Looked up now so that `mcwatchd -t` catches a typo.
            const passwd* entry = ::getpwnam(value);
            if (!entry) return fail(fmt::format("user = '{}': no such user", value));
            config_.user = value;
            config_.user_uid = entry->pw_uid;
            config_.user_gid = entry->pw_gid;
            return 1;
        }
        if (key == "admin_group") {
            const group* entry = ::getgrnam(value);
            if (!entry) return fail(fmt::format("admin_group = '{}': no such group", value));
            config_.admin_group = value;
            config_.admin_gid = entry->gr_gid;
            return 1;
        }
        if (key == "flush_on_rejoin") {
            const auto parsed = parse_bool(value);
            if (!parsed) return fail(fmt::format("flush_on_rejoin = '{}': expected yes or no", value));
            config_.flush_on_rejoin = *parsed;
            return 1;
        }
        if (key == "drain_move") {
            const auto parsed = parse_bool(value);
            if (!parsed) return fail(fmt::format("drain_move = '{}': expected on or off", value));
            config_.drain_move = *parsed;
            return 1;
        }
        if (key == "drain_rate") return count_key(k, value, config_.drain_rate, 1, 1000000);
        return fail(fmt::format("unknown key '{}' in [mcwatchd]", key));
    }

    int routing_key(const std::string& key, const char* value) {
        if (!first_time("routing." + key)) return 0;
        if (key == "distribution") {
            // PHP's Memcached::DISTRIBUTION_CONSISTENT and pylibmc's word for ketama.
            if (std::string_view(value) == "consistent") {
                config_.distribution = state::Distribution::ketama;
                return 1;
            }
            if (!distribution_from_name(value, config_.distribution))
                return fail(fmt::format(
                    "distribution = '{}': expected ketama (or consistent), ketama_weighted or modula", value));
            return 1;
        }
        if (key == "hash") {
            if (!hash_from_name(value, config_.hash))
                return fail(fmt::format("hash = '{}': unknown hash (expected one of {})", value, hash_names_list()));
            if (!route::hash_available(config_.hash))
                return fail(fmt::format("hash = '{}': not built into this libhashkit, so no client can use it", value));
            return 1;
        }
        return fail(fmt::format("unknown key '{}' in [routing]", key));
    }

    int server_key(const std::string& key, const char* value) {
        if (key != "server")
            return fail(fmt::format("unknown key '{}' in [servers] (expected `server = host:port`)", key));
        if (config_.servers.size() >= state::kMaxServers)
            return fail(fmt::format("more than {} servers", state::kMaxServers));
        std::istringstream words(value);
        std::string address, option;
        words >> address;
        ServerAddress server;
        server.line = line_;
        const std::string why = parse_server_address(address, server);
        if (!why.empty()) return fail(why);
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
        const std::string numeric = numeric_server_address(server);
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

    Config& config_;
    std::string name_;
    int line_ = 0;
    std::string error_;
    int error_line_ = 0;
    std::map<std::string, int> key_lines_;              // key -> line it was set on
    std::map<std::string, int> lines_by_text_;          // server address as written -> its line
    std::map<std::string, size_t> entries_by_numeric_;  // numeric address -> index in servers
};

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

std::string parse_server_address(const std::string& text, ServerAddress& out) {
    if (text.empty()) return "server: missing address";
    if (text.size() >= state::kAddressSize)
        return fmt::format("server address longer than {} characters", state::kAddressSize - 1);
    out.text = text;
    if (text.rfind("unix:", 0) == 0) {
        out.is_unix = true;
        out.path = text.substr(5);
        if (out.path.empty() || out.path[0] != '/')
            return fmt::format("server {}: unix socket path must be absolute", text);
        if (out.path.size() >= 108) return fmt::format("server {}: unix socket path too long", text);
        return "";
    }
    if (text.find(',') != std::string::npos)
        return fmt::format("server {}: write one server per `server =` line, not a comma-separated list", text);
    std::string host, port;
    if (text[0] == '[') {
        const size_t close = text.find(']');
        if (close == std::string::npos || close + 1 >= text.size() || text[close + 1] != ':')
            return fmt::format("server {}: expected [ipv6]:port", text);
        host = text.substr(1, close - 1);
        port = text.substr(close + 2);
        if (host.empty() || host.find_first_not_of("0123456789abcdefABCDEF:.") != std::string::npos)
            return fmt::format("server {}: bad IPv6 address", text);
    } else {
        const size_t colon = text.rfind(':');
        if (colon == std::string::npos) return fmt::format("server {}: missing port (expected host:port)", text);
        host = text.substr(0, colon);
        port = text.substr(colon + 1);
        if (host.find(':') != std::string::npos) {
            // twemproxy's and libmemcached's --servers "host:port:weight".
            const size_t first = host.find(':');
            const std::string name = host.substr(0, first), middle = host.substr(first + 1);
            if (valid_hostname(name) && parse_count(middle, 1, 65535) && parse_count(port, 0, UINT32_MAX))
                return fmt::format(
                    "server {}: the weight is written `weight={}` after the address: "
                    "server = {}:{} weight={}",
                    text, port, name, middle, port);
            return fmt::format("server {}: write IPv6 addresses as [addr]:port", text);
        }
        if (!valid_hostname(host)) return fmt::format("server {}: bad host name '{}'", text, host);
    }
    const auto number = parse_count(port, 1, 65535);
    if (!number) return fmt::format("server {}: port '{}' out of range (1-65535)", text, port);
    out.host = host;
    out.port = uint16_t(*number);
    return "";
}

std::string parse_listen_address(const std::string& text, std::string& host, uint16_t& port) {
    std::string address, port_text;
    if (!text.empty() && text[0] == '[') {
        const size_t close = text.find(']');
        if (close == std::string::npos || close + 1 >= text.size() || text[close + 1] != ':')
            return "expected host:port or [ipv6]:port";
        address = text.substr(1, close - 1);
        port_text = text.substr(close + 2);
        in6_addr ignored{};
        if (inet_pton(AF_INET6, address.c_str(), &ignored) != 1) return "bad IPv6 address";
    } else {
        const size_t colon = text.rfind(':');
        if (colon == std::string::npos) return "expected host:port (for example 127.0.0.1:9150)";
        address = text.substr(0, colon);
        port_text = text.substr(colon + 1);
        if (address == "localhost") address = "127.0.0.1";
        in_addr ignored{};
        if (inet_pton(AF_INET, address.c_str(), &ignored) != 1)
            return "expected a numeric address (no name lookups at start-up)";
    }
    const auto number = parse_count(port_text, 1, 65535);
    if (!number) return fmt::format("port '{}' out of range (1-65535)", port_text);
    host = address;
    port = uint16_t(*number);
    return "";
}

std::string numeric_server_address(const ServerAddress& server) {
    if (server.is_unix) return server.text;
    const std::string host = server.host == "localhost" ? "127.0.0.1" : server.host;
    addrinfo hints{};
    hints.ai_flags = AI_NUMERICHOST;
    addrinfo* found = nullptr;
    if (getaddrinfo(host.c_str(), nullptr, &hints, &found) != 0) return "";
    char text[INET6_ADDRSTRLEN] = {};
    const bool v6 = found->ai_family == AF_INET6;
    const void* raw = v6 ? static_cast<const void*>(&reinterpret_cast<sockaddr_in6*>(found->ai_addr)->sin6_addr)
                         : static_cast<const void*>(&reinterpret_cast<sockaddr_in*>(found->ai_addr)->sin_addr);
    inet_ntop(found->ai_family, raw, text, sizeof text);
    freeaddrinfo(found);
    return v6 ? fmt::format("[{}]:{}", text, server.port) : fmt::format("{}:{}", text, server.port);
}

ConfigResult parse_config(const std::string& text, const std::string& name) {
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
        return {std::nullopt, fmt::format("{}: cannot parse (out of memory)", name)};
    parser.finish();
    if (!parser.error().empty()) return {std::nullopt, parser.error()};
    return {std::move(config), ""};
}

ConfigResult load_config(const std::string& path) {
    struct stat info {};
    if (::stat(path.c_str(), &info) == 0 && S_ISDIR(info.st_mode))
        return {std::nullopt, fmt::format("{}: is a directory, not a configuration file", path)};
    std::ifstream in(path, std::ios::binary);
    if (!in) return {std::nullopt, fmt::format("{}: cannot open: {}", path, std::strerror(errno))};
    std::ostringstream text;
    text << in.rdbuf();
    if (in.bad()) return {std::nullopt, fmt::format("{}: read error: {}", path, std::strerror(errno))};
    return parse_config(text.str(), path);
}

}  // namespace mcwatch
