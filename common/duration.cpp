#include "common/duration.hpp"

#include <fmt/format.h>

#include <charconv>
#include <cstdint>

namespace mcwatch {

namespace {

struct Unit {
    std::string_view suffix;
    int64_t millis;
};
// Longest suffix first so that "ms" is not read as "m" followed by junk.
constexpr Unit kUnits[] = {{"ms", 1}, {"s", 1000}, {"m", 60'000}, {"h", 3'600'000}, {"d", 86'400'000}};
// Above this a duration is a typo, and past it int64 milliseconds could overflow.
constexpr int64_t kMaxMillis = int64_t{366} * 86'400'000;

}  // namespace

Result<std::chrono::milliseconds> parse_duration(std::string_view text) {
    int64_t number = 0;
    const char* begin = text.data();
    const char* end = text.data() + text.size();
    const auto [rest, ec] = std::from_chars(begin, end, number);
    if (ec != std::errc() || rest == begin || number < 0) {
        return failure(fmt::format("bad duration '{}': expected a number and a unit (ms, s, m, h, d)", text));
    }
    // A decimal fraction ("1.5s", "0.25"), as watch(1) and sleep(1) take.
    const char* cursor = rest;
    int64_t fraction = 0, fraction_scale = 1;
    if (cursor < end && *cursor == '.') {
        ++cursor;
        const char* digits = cursor;
        while (cursor < end && *cursor >= '0' && *cursor <= '9' && cursor - digits < 9) {
            fraction = fraction * 10 + (*cursor - '0');
            fraction_scale *= 10;
            ++cursor;
        }
        if (cursor == digits || (cursor < end && *cursor >= '0' && *cursor <= '9')) {
            return failure(fmt::format("bad duration '{}': expected digits after the point (at most 9)", text));
        }
    }
    const std::string_view suffix(cursor, end - cursor);
    int64_t scale = 0;
    if (suffix.empty()) scale = 1000;
    for (const Unit& unit : kUnits)
        if (suffix == unit.suffix) scale = unit.millis;
    if (scale == 0) {
        return failure(fmt::format("bad duration '{}': unknown unit '{}' (use ms, s, m, h or d)", text, suffix));
    }
    if (number > kMaxMillis / scale) {
        return failure(fmt::format("bad duration '{}': longer than a year", text));
    }
    // fraction < fraction_scale <= 1e9 and scale <= 86.4e6: no overflow.
    const __int128 fraction_ms = __int128(fraction) * scale;
    if (fraction_ms % fraction_scale != 0) {
        return failure(fmt::format("bad duration '{}': finer than a millisecond", text));
    }
    const int64_t millis = number * scale + int64_t(fraction_ms / fraction_scale);
    if (millis > kMaxMillis) {
        return failure(fmt::format("bad duration '{}': longer than a year", text));
    }
    return std::chrono::milliseconds(millis);
}

std::string format_duration(std::chrono::milliseconds duration) {
    const int64_t ms = duration.count();
    for (auto it = std::rbegin(kUnits); it != std::rend(kUnits); ++it)
        if (ms != 0 && ms % it->millis == 0) return fmt::format("{}{}", ms / it->millis, it->suffix);
    return fmt::format("{}ms", ms);
}

}  // namespace mcwatch
