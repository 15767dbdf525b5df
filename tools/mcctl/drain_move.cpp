#include "tools/mcctl/drain_move.hpp"

#include <fmt/format.h>

#include <cmath>

#include "tools/mcctl/json.hpp"
#include "tools/mcctl/status.hpp"

namespace mcwatch {

using state::DrainMove;

std::string with_thousands(uint64_t value) {
    const std::string digits = fmt::format("{}", value);
    std::string out;
    for (size_t i = 0; i < digits.size(); ++i) {
        if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
        out += digits[i];
    }
    return out;
}

namespace {

// The figures from the file's counts, with the rate and time left.
DrainMoveFigures figures(uint32_t state, uint64_t moved, uint64_t skipped, uint64_t remaining, int64_t started_unix_ms,
                         int64_t now_unix_ms) {
    DrainMoveFigures move;
    move.state = DrainMove(state);
    if (move.state == DrainMove::none) return move;
    move.moved = moved;
    move.skipped = skipped;
    move.remaining = remaining;
    move.started_unix_ms = started_unix_ms;
    const bool running = state::drain_move_running(uint32_t(move.state));
    const int64_t elapsed_ms = now_unix_ms - move.started_unix_ms;
    const uint64_t handled = move.moved + move.skipped;
    if (running && move.started_unix_ms > 0 && elapsed_ms > 0 && handled > 0) {
        move.rate_per_s = double(handled) * 1000.0 / double(elapsed_ms);
        // While listing, nobody knows how many keys are still to be listed.
        if (move.state == DrainMove::moving) move.eta_s = double(move.remaining) / *move.rate_per_s;
    }
    if (move.state == DrainMove::done) move.eta_s = 0;
    return move;
}

}  // namespace

DrainMoveFigures drain_move_figures(const state::ServerDynamic& s, int64_t now_unix_ms) {
    return figures(s.drain_move, s.drain_moved, s.drain_skipped, s.drain_remaining, s.drain_move_started_unix_ms,
                   now_unix_ms);
}

DrainMoveFigures drain_move_figures(const state::MembershipMove& m, int64_t now_unix_ms) {
    DrainMoveFigures move = figures(m.state, m.moved, m.skipped, m.remaining, m.started_unix_ms, now_unix_ms);
    move.sources = m.sources;
    move.ended_unix_ms = m.ended_unix_ms;
    return move;
}

namespace {

std::string rate_text(double rate) {
    return rate < 10 ? fmt::format("{:.1f}/s", rate) : fmt::format("{}/s", with_thousands(uint64_t(std::lround(rate))));
}

std::string json_number(const std::optional<double>& value) { return value ? fmt::format("{:.1f}", *value) : "null"; }

}  // namespace

std::string drain_move_line(const DrainMoveFigures& move) {
    const std::string counts =
        fmt::format("{} moved, {} skipped", with_thousands(move.moved), with_thousands(move.skipped));
    switch (move.state) {
    case DrainMove::none: return "";
    case DrainMove::listing:
        return fmt::format("moving keys: listing them ({} so far)", with_thousands(move.remaining));
    case DrainMove::moving: {
        std::string line = fmt::format("moving keys: {}, {} left", counts, with_thousands(move.remaining));
        if (move.rate_per_s) line += ", " + rate_text(*move.rate_per_s);
        if (move.eta_s) line += fmt::format(", about {} left", human_duration(std::llround(*move.eta_s * 1000)));
        return line;
    }
    case DrainMove::done: return fmt::format("keys moved: done, {}", counts);
    case DrainMove::failed:
        return fmt::format("keys moved: failed, {}, {} left", counts, with_thousands(move.remaining));
    case DrainMove::stopped:
        return fmt::format("keys moved: stopped, {}, {} left", counts, with_thousands(move.remaining));
    }
    return "";
}

std::string drain_move_json(const DrainMoveFigures& move) {
    return fmt::format(
        "{{\"state\": {}, \"moved\": {}, \"skipped\": {}, \"remaining\": {}, \"rate_per_s\": {}, \"eta_s\": {}, "
        "\"started\": {}}}",
        json::quote(state::drain_move_name(uint32_t(move.state))), move.moved, move.skipped, move.remaining,
        json_number(move.rate_per_s), json_number(move.eta_s), json::time_or_null(move.started_unix_ms));
}

std::string membership_move_json(const DrainMoveFigures& move) {
    std::string out = drain_move_json(move);
    out.pop_back();  // its closing brace
    return out +
           fmt::format(", \"sources\": {}, \"ended\": {}}}", move.sources, json::time_or_null(move.ended_unix_ms));
}

}  // namespace mcwatch
