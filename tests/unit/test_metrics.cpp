// The metrics endpoint's two pure parts: the Prometheus text it renders and
// the HTTP requests it answers.
#include <doctest/doctest.h>

#include <cstdlib>
#include <set>
#include <sstream>
#include <string>

#include "daemon/http_request.hpp"
#include "daemon/metrics.hpp"

using namespace mcwatch;

namespace {

ProbeResult good(uint64_t items) {
    ProbeResult r;
    r.ok = true;
    r.rtt = std::chrono::microseconds(800);
    r.stats.pid = 7;
    r.stats.uptime_s = 60;
    r.stats.curr_items = items;
    r.stats.curr_connections = 3;
    r.stats.get_hits = 10;
    r.stats.get_misses = 4;
    r.stats.evictions = 0;
    return r;
}

bool name_char(char c, bool first) {
    return c == '_' || c == ':' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (!first && c >= '0' && c <= '9');
}

// `name{label="value",...} number` or `name number`, as the text format
// says (std::regex would do, but GCC 12 warns inside it under ASan).
// Returns the metric name, "" if the line is not a sample.
std::string sample_name(const std::string& line) {
    size_t i = 0;
    while (i < line.size() && name_char(line[i], i == 0)) ++i;
    const std::string name = line.substr(0, i);
    if (name.empty()) return "";
    if (i < line.size() && line[i] == '{') {
        ++i;
        while (i < line.size() && line[i] != '}') {
            const size_t start = i;
            while (i < line.size() && name_char(line[i], i == start)) ++i;
            if (i == start || line.compare(i, 2, "=\"") != 0) return "";
            for (i += 2; i < line.size() && line[i] != '"'; ++i)
                if (line[i] == '\\' && ++i < line.size() && line[i] != '\\' && line[i] != '"' && line[i] != 'n')
                    return "";
            if (i++ >= line.size()) return "";
            if (i < line.size() && line[i] == ',') ++i;
        }
        if (i++ >= line.size()) return "";
    }
    if (i >= line.size() || line[i] != ' ') return "";
    const std::string value = line.substr(i + 1);
    if (value.empty() || value.find(' ') != std::string::npos) return "";
    if (value != "+Inf" && value != "-Inf" && value != "NaN") {
        char* end = nullptr;
        std::strtod(value.c_str(), &end);
        if (*end != '\0') return "";
    }
    return name;
}

}  // namespace

TEST_CASE("metrics: valid exposition text with the families an SRE graphs") {
    ServerHealth live({2, 3, 60'000, true});
    live.on_probe(good(12), 1000);
    ServerHealth never({2, 3, 60'000, true});  // no facts yet: its fact samples are left out
    MetricsInput input;
    input.servers = {{"127.0.0.1:11211", &live}, {"weird\"name\\:1", &never}};
    input.heartbeat_unix_ms = 1'700'000'000'123;
    input.generation = 5;
    input.rounds = 99;
    input.reloads_ok = 1;
    const std::string text = render_metrics(input);

    // Every line is a comment or `name{labels} value`, every family has HELP
    // and TYPE before its samples, and no family appears twice.
    std::set<std::string> typed;
    std::string current;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) {
        CAPTURE(line);
        REQUIRE(!line.empty());
        if (line[0] == '#') {
            std::istringstream words(line);
            std::string hash, kind, name, rest;
            words >> hash >> kind >> name >> rest;
            REQUIRE((kind == "HELP" || kind == "TYPE"));
            REQUIRE(!rest.empty());
            if (kind == "TYPE") {
                CHECK(typed.insert(name).second);
                current = name;
            }
            continue;
        }
        const std::string name = sample_name(line);
        REQUIRE(!name.empty());
        CHECK(name.rfind(current, 0) == 0);  // a sample of the family just typed
    }
    for (const char* family :
         {"mcwatch_server_up", "mcwatch_server_state", "mcwatch_probe_rtt_seconds", "mcwatch_server_transitions_total",
          "mcwatch_server_restarts_total", "mcwatch_flushes_total", "mcwatch_heartbeat_timestamp_seconds",
          "mcwatch_server_items", "mcwatch_server_get_hits_total", "mcwatch_server_get_misses_total",
          "mcwatch_server_evictions_total"})
        CHECK_MESSAGE(typed.count(family), family);

    CHECK(text.find("mcwatch_server_up{server=\"127.0.0.1:11211\"} 1\n") != std::string::npos);
    CHECK(text.find("mcwatch_server_state{server=\"127.0.0.1:11211\",state=\"live\"} 1\n") != std::string::npos);
    CHECK(text.find("mcwatch_server_state{server=\"127.0.0.1:11211\",state=\"dead\"} 0\n") != std::string::npos);
    CHECK(text.find("mcwatch_server_items{server=\"127.0.0.1:11211\"} 12\n") != std::string::npos);
    CHECK(text.find("mcwatch_server_transitions_total{server=\"127.0.0.1:11211\",to=\"live\"} 1\n") !=
          std::string::npos);
    CHECK(text.find("mcwatch_probe_rtt_seconds_bucket{server=\"127.0.0.1:11211\",le=\"0.0005\"} 0\n") !=
          std::string::npos);
    CHECK(text.find("mcwatch_probe_rtt_seconds_bucket{server=\"127.0.0.1:11211\",le=\"0.001\"} 1\n") !=
          std::string::npos);
    CHECK(text.find("mcwatch_probe_rtt_seconds_bucket{server=\"127.0.0.1:11211\",le=\"+Inf\"} 1\n") !=
          std::string::npos);
    CHECK(text.find("mcwatch_probe_rtt_seconds_count{server=\"127.0.0.1:11211\"} 1\n") != std::string::npos);
    CHECK(text.find("mcwatch_heartbeat_timestamp_seconds 1700000000.123\n") != std::string::npos);
    CHECK(text.find("mcwatch_server_up{server=\"weird\\\"name\\\\:1\"} 0\n") != std::string::npos);
    CHECK(text.find("mcwatch_server_items{server=\"weird") == std::string::npos);
    CHECK(text.back() == '\n');
}

TEST_CASE("metrics: error replies and a blocked rejoin are shown per server") {
    ServerHealth full({2, 3, 60'000, true});
    full.on_probe(good(12), 1000);
    ProbeResult at_limit;
    at_limit.answered_error = true;
    at_limit.error = "error reply: \"ERROR Too many open connections\"";
    full.on_probe(at_limit, 2000);
    MetricsInput input;
    input.servers = {{"127.0.0.1:11211", &full}};
    const std::string text = render_metrics(input);
    CHECK(text.find("mcwatch_server_probe_error_reply{server=\"127.0.0.1:11211\"} 1\n") != std::string::npos);
    CHECK(text.find("mcwatch_probes_total{server=\"127.0.0.1:11211\",result=\"error_reply\"} 1\n") !=
          std::string::npos);
    CHECK(text.find("mcwatch_server_rejoin_blocked{server=\"127.0.0.1:11211\"} 0\n") != std::string::npos);
    CHECK(text.find("mcwatch_server_up{server=\"127.0.0.1:11211\"} 1\n") != std::string::npos);
}

TEST_CASE("metrics: a drain's move shows moved, skipped, remaining and whether it runs, as the state file has them") {
    ServerHealth health({2, 3, 60'000, true});
    state::ServerDynamic published = health.view();
    published.drain_move = uint32_t(state::DrainMove::moving);
    published.drain_moved = 60;
    published.drain_skipped = 5;
    published.drain_remaining = 35;
    published.drain_move_started_unix_ms = 1'700'000'000'500;
    MetricsInput input;
    input.servers = {{"127.0.0.1:11211", &health, 0, &published}};
    const std::string text = render_metrics(input);
    CHECK(text.find("mcwatch_drain_move_keys_total{server=\"127.0.0.1:11211\",result=\"moved\"} 60\n") !=
          std::string::npos);
    CHECK(text.find("mcwatch_drain_move_keys_total{server=\"127.0.0.1:11211\",result=\"skipped\"} 5\n") !=
          std::string::npos);
    CHECK(text.find("mcwatch_drain_move_remaining{server=\"127.0.0.1:11211\"} 35\n") != std::string::npos);
    CHECK(text.find("mcwatch_drain_move_running{server=\"127.0.0.1:11211\"} 1\n") != std::string::npos);
    CHECK(text.find("mcwatch_drain_move_state{server=\"127.0.0.1:11211\",state=\"moving\"} 1\n") != std::string::npos);
    CHECK(text.find("mcwatch_drain_move_state{server=\"127.0.0.1:11211\",state=\"done\"} 0\n") != std::string::npos);
    CHECK(text.find("mcwatch_drain_move_start_timestamp_seconds{server=\"127.0.0.1:11211\"} 1700000000.500\n") !=
          std::string::npos);
    // A server never moved has no drain --move samples.
    published.drain_move = uint32_t(state::DrainMove::none);
    CHECK(render_metrics(input).find("mcwatch_drain_move_remaining{") == std::string::npos);
}

TEST_CASE("metrics: [fleet] says whether etcd answers, the fallback, and a server unreachable from this host") {
    ServerHealth health({2, 3, 60'000, true});
    state::ServerDynamic published = health.view();
    MetricsInput input;
    input.servers = {{"127.0.0.1:11211", &health, 0, &published}};
    // Without [fleet]: no fleet families at all.
    CHECK(render_metrics(input).find("mcwatch_fleet_") == std::string::npos);
    CHECK(render_metrics(input).find("mcwatch_server_unreachable_here") == std::string::npos);

    state::FleetStatus fleet;
    fleet.flags = state::kFleetConfigured | state::kFleetFallback;
    fleet.etcd_since_unix_ms = 1'700'000'000'000;
    fleet.last_answer_unix_ms = 1'700'000'000'000;
    input.fleet = fleet;
    input.now_unix_ms = 1'700'000'042'500;
    published.state = uint32_t(state::ServerState::live);
    published.flags = state::kFlagUnreachableHere;
    const std::string text = render_metrics(input);
    CHECK(text.find("mcwatch_fleet_etcd_up 0\n") != std::string::npos);
    CHECK(text.find("mcwatch_fleet_fallback 1\n") != std::string::npos);
    CHECK(text.find("\nmcwatch_fleet_last_answer_age_seconds 42.500\n") != std::string::npos);
    CHECK(text.find("mcwatch_fleet_etcd_change_timestamp_seconds 1700000000.000\n") != std::string::npos);
    CHECK(text.find("mcwatch_server_unreachable_here{server=\"127.0.0.1:11211\"} 1\n") != std::string::npos);
    // Before etcd's first answer there is no age to give.
    input.fleet->last_answer_unix_ms = 0;
    CHECK(render_metrics(input).find("\nmcwatch_fleet_last_answer_age_seconds ") == std::string::npos);
}

TEST_CASE("metrics: label values escaped as the format says") {
    CHECK(escape_label_value("a\"b\\c\nd") == "a\\\"b\\\\c\\nd");
    CHECK(escape_label_value("127.0.0.1:11211") == "127.0.0.1:11211");
}

TEST_CASE("http: the head ends at the first blank line") {
    CHECK(http_head_end("GET /metrics HTTP/1.0\r\n") == 0);
    CHECK(http_head_end("GET /metrics HTTP/1.0\r\n\r\n") == 25);
    CHECK(http_head_end("GET /metrics HTTP/1.0\n\n") == 23);
    CHECK(http_head_end("GET / HTTP/1.1\r\nHost: x\r\n\r\nbody") == 27);
}

TEST_CASE("http: GET and HEAD of /metrics, everything else refused with the right status") {
    CHECK(route_http_request("GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n").status == 200);
    CHECK(route_http_request("GET /metrics?name[]=x HTTP/1.0\r\n\r\n").status == 200);
    const HttpAnswer head = route_http_request("HEAD /metrics HTTP/1.0\r\n\r\n");
    CHECK(head.status == 200);
    CHECK(head.head_only);
    CHECK(route_http_request("GET / HTTP/1.0\r\n\r\n").status == 404);
    CHECK(route_http_request("GET /metrics/x HTTP/1.0\r\n\r\n").status == 404);
    CHECK(route_http_request("POST /metrics HTTP/1.0\r\n\r\n").status == 405);
    CHECK(route_http_request("GET /metrics HTTP/2.0\r\n\r\n").status == 505);
    CHECK(route_http_request("GET /metrics\r\n\r\n").status == 400);
    CHECK(route_http_request("GET  /metrics HTTP/1.0\r\n\r\n").status == 400);
    CHECK(route_http_request("GET /metrics HTTP/1.0 extra\r\n\r\n").status == 400);
    CHECK(route_http_request("GET /m\x01 HTTP/1.0\r\n\r\n").status == 400);
    CHECK(route_http_request("\r\n\r\n").status == 400);
    CHECK(route_http_request("GET /metrics HTTP/1.0\r\n" + std::string(kMaxHttpHeadBytes, 'x')).status == 431);
}
