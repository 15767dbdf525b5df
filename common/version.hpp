#pragma once

namespace mcwatch {

inline constexpr const char* kVersion = "0.1.0";

}  // namespace mcwatch
