#include "daemon/http_request.hpp"

namespace mcwatch {

namespace {

HttpAnswer error(int status, std::string reason) { return {status, false, std::move(reason)}; }

}  // namespace

size_t http_head_end(std::string_view received) {
    for (size_t i = 0; i < received.size(); ++i) {
        if (received[i] != '\n') continue;
        if (i + 1 < received.size() && received[i + 1] == '\n') return i + 2;
        if (i + 2 < received.size() && received[i + 1] == '\r' && received[i + 2] == '\n') return i + 3;
    }
    return 0;
}

HttpAnswer route_http_request(std::string_view head) {
    if (head.size() > kMaxHttpHeadBytes) return error(431, "Request Header Fields Too Large");
    const size_t end = head.find('\n');
    std::string_view line = head.substr(0, end);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    for (const char c : line)
        if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) > 0x7e)
            return error(400, "Bad Request");
    const size_t first = line.find(' ');
    const size_t second = first == std::string_view::npos ? first : line.find(' ', first + 1);
    if (second == std::string_view::npos || line.find(' ', second + 1) != std::string_view::npos)
        return error(400, "Bad Request");
    const std::string_view method = line.substr(0, first);
    std::string_view target = line.substr(first + 1, second - first - 1);
    const std::string_view version = line.substr(second + 1);
    if (version.substr(0, 5) != "HTTP/" || version.size() != 8 || version[6] != '.') return error(400, "Bad Request");
    if (version[5] != '1') return error(505, "HTTP Version Not Supported");
    if (method != "GET" && method != "HEAD") return error(405, "Method Not Allowed");
    target = target.substr(0, target.find('?'));
    if (target != "/metrics") return error(404, "Not Found");
    return {200, method == "HEAD", "OK"};
}

}  // namespace mcwatch
