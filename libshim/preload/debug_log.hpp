// "mcshim: ..." lines on stderr, only when MCSHIM_DEBUG is set: the shim
// writes nothing into the host program's output otherwise.
#pragma once

namespace mcwatch::shim {

// Read once, with secure_getenv (ignored in setuid programs).
bool debug_enabled() noexcept;

// One write per line, so that lines of concurrent threads never interleave.
void debug_line(const char* format, ...) noexcept __attribute__((format(printf, 1, 2)));

}  // namespace mcwatch::shim
