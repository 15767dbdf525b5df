#include "common/errno_text.hpp"

#include <cstring>

namespace mcwatch {

std::string errno_text(int err) {
    char buffer[256];
    // GNU strerror_r: returns the message, in `buffer` or a static string.
    return ::strerror_r(err, buffer, sizeof buffer);
}

}  // namespace mcwatch
