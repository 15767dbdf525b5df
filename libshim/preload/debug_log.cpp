#include "libshim/preload/debug_log.hpp"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "libshim/defaults.hpp"

namespace mcwatch::shim {

namespace {

// -1 unknown, 0 off, 1 on.
std::atomic<int> debug_state{-1};

}  // namespace

bool debug_enabled() noexcept {
    int state = debug_state.load(std::memory_order_relaxed);
    if (state < 0) {
        state = debug_from_environment() ? 1 : 0;
        debug_state.store(state, std::memory_order_relaxed);
    }
    return state == 1;
}

void debug_line(const char* format, ...) noexcept {
    char line[512] = "mcshim: ";
    va_list args;
    va_start(args, format);
    int n = vsnprintf(line + 8, sizeof line - 9, format, args);
    va_end(args);
    size_t length = 8 + (n < 0 ? 0 : std::min<size_t>(size_t(n), sizeof line - 10));
    line[length++] = '\n';
    ssize_t ignored = write(STDERR_FILENO, line, length);
    (void)ignored;
}

}  // namespace mcwatch::shim
