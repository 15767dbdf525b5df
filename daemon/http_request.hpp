// The one HTTP request the metrics endpoint understands, parsed as a pure
// function of the request head (fuzzable): `GET /metrics HTTP/1.x`.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace mcwatch {

// Longest request head read (request line and headers); more is refused.
inline constexpr size_t kMaxHttpHeadBytes = 8192;

struct HttpAnswer {
    int status = 0;          // 200, 400, 404, 405, 431, 505
    bool head_only = false;  // HEAD: headers without the body
    std::string reason;      // the status's phrase, and the body of an error
};

// Where the head ends in `received` (just past the blank line, "\r\n\r\n" or
// "\n\n"), or 0 if it has not ended yet.
size_t http_head_end(std::string_view received);

// What to answer to `head`: 200 for GET or HEAD of /metrics (a query string
// is ignored), else the error that fits.
HttpAnswer route_http_request(std::string_view head);

}  // namespace mcwatch
