#include <doctest/doctest.h>

#include "common/result.hpp"

using mcwatch::failure;
using mcwatch::Result;

namespace {

Result<int> parse_port(int value) {
    if (value < 1 || value > 65535) return failure("port out of range");
    return value;
}

Result<> check(bool good) {
    if (!good) return failure("not good");
    return {};
}

}  // namespace

TEST_CASE("a Result holds the value, or the operator's sentence") {
    const auto good = parse_port(11211);
    REQUIRE(good);
    CHECK(*good == 11211);
    const auto bad = parse_port(0);
    REQUIRE_FALSE(bad);
    CHECK(bad.error().message == "port out of range");
    CHECK(check(true));
    CHECK(check(false).error().message == "not good");
}
