// The metrics endpoint's request-head parser (daemon/http_request.cpp) on
// arbitrary bytes from the network: where a head ends, and the status to
// answer. Only GET or HEAD of /metrics gets a 200; every answer carries a
// printable reason phrase.
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz_check.hpp"
#include "daemon/http_request.hpp"

using namespace mcwatch;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string_view received(reinterpret_cast<const char*>(data), size);
    const size_t end = http_head_end(received);
    FUZZ_CHECK(end <= received.size());
    if (end != 0) {
        const std::string_view head = received.substr(0, end);
        FUZZ_CHECK(head.ends_with("\n\n") || head.ends_with("\n\r\n"));
    }
    const HttpAnswer answer = route_http_request(end ? received.substr(0, end) : received);
    FUZZ_CHECK(answer.status == 200 || answer.status == 400 || answer.status == 404 || answer.status == 405 ||
               answer.status == 431 || answer.status == 505);
    FUZZ_CHECK(!answer.reason.empty());
    for (const char c : answer.reason) FUZZ_CHECK(c >= 0x20 && c < 0x7f);
    if (answer.status == 200) {
        FUZZ_CHECK(received.starts_with("GET /metrics") || received.starts_with("HEAD /metrics"));
        FUZZ_CHECK(answer.head_only == received.starts_with("HEAD "));
    } else {
        FUZZ_CHECK(!answer.head_only);
    }
    return 0;
}
