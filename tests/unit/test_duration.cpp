#include <doctest/doctest.h>

#include "common/duration.hpp"

#include <optional>

using mcwatch::format_duration;
using mcwatch::parse_duration;

namespace {

// parse_duration's value, or nullopt and its error in `why`: the form these
// assertions were first written against.
std::optional<std::chrono::milliseconds> parse(std::string_view text, std::string& why) {
    const auto parsed = parse_duration(text);
    if (!parsed) {
        why = parsed.error().message;
        return std::nullopt;
    }
    return *parsed;
}

}  // namespace

TEST_CASE("duration: units and bare seconds") {
    std::string why;
    CHECK(parse("500ms", why)->count() == 500);
    CHECK(parse("5s", why)->count() == 5000);
    CHECK(parse("5", why)->count() == 5000);
    CHECK(parse("10m", why)->count() == 600'000);
    CHECK(parse("1h", why)->count() == 3'600'000);
    CHECK(parse("2d", why)->count() == 172'800'000);
    CHECK(parse("0s", why)->count() == 0);
}

TEST_CASE("duration: decimal fractions down to a millisecond (mcctl watch -n 1.5s)") {
    std::string why;
    CHECK(parse("1.5s", why)->count() == 1500);
    CHECK(parse("0.5", why)->count() == 500);
    CHECK(parse("0.25m", why)->count() == 15'000);
    CHECK(parse("1.000s", why)->count() == 1000);
    CHECK(parse("2.5ms", why) == std::nullopt);
    CHECK(why == "bad duration '2.5ms': finer than a millisecond");
    CHECK(parse("1.s", why) == std::nullopt);
    CHECK(why == "bad duration '1.s': expected digits after the point (at most 9)");
    CHECK(parse("0.0000000001s", why) == std::nullopt);
    CHECK(parse("366.5d", why) == std::nullopt);
    CHECK(why == "bad duration '366.5d': longer than a year");
}

TEST_CASE("duration: bad input says what is wrong") {
    std::string why;
    CHECK_FALSE(parse("", why));
    CHECK(why == "bad duration '': expected a number and a unit (ms, s, m, h, d)");
    CHECK_FALSE(parse("-1s", why));
    CHECK_FALSE(parse("1,5s", why));
    CHECK(why == "bad duration '1,5s': unknown unit ',5s' (use ms, s, m, h or d)");
    CHECK_FALSE(parse("10 m", why));
    CHECK_FALSE(parse("3w", why));
    CHECK_FALSE(parse("400d", why));
    CHECK(why == "bad duration '400d': longer than a year");
    CHECK_FALSE(parse("99999999999999999999ms", why));
}

TEST_CASE("duration: formatting picks the largest exact unit") {
    CHECK(format_duration(std::chrono::milliseconds(1500)) == "1500ms");
    CHECK(format_duration(std::chrono::milliseconds(2000)) == "2s");
    CHECK(format_duration(std::chrono::milliseconds(3'600'000)) == "1h");
    CHECK(format_duration(std::chrono::milliseconds(0)) == "0ms");
}
