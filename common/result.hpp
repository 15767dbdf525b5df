// The error convention of common/, daemon/ and tools/ (ARCHITECTURE.md, "Errors"):
// an operation that can fail returns Result<T>, the value or an Error whose
// message is the sentence an operator reads (naming the file:line, the server
// and what it answered). tl::expected is std::expected for C++20 (Debian's
// libexpected-dev), as in ccache. The shim's hot path does not use it: it
// allocates, and the C boundary keeps its allocation-free codes.
#pragma once

#include <tl/expected.hpp>

#include <string>
#include <utility>

namespace mcwatch {

struct Error {
    std::string message;
};

template <class T = void>
using Result = tl::expected<T, Error>;

// `return failure(fmt::format(...));` from a function returning any Result.
inline tl::unexpected<Error> failure(std::string message) { return tl::unexpected<Error>(Error{std::move(message)}); }

}  // namespace mcwatch
