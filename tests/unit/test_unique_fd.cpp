// The one descriptor owner: closes once, on every path, and moves.
#include <doctest/doctest.h>

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <utility>

#include "libshim/unique_fd.hpp"

using mcwatch::UniqueFd;

namespace {

bool is_open(int fd) { return ::fcntl(fd, F_GETFD) != -1 || errno != EBADF; }

}  // namespace

TEST_CASE("unique fd: closes what it holds when it goes, and nothing twice") {
    int raw = -1;
    {
        const UniqueFd fd(::open("/dev/null", O_RDONLY | O_CLOEXEC));
        REQUIRE(fd);
        raw = fd.get();
        CHECK(is_open(raw));
    }
    CHECK_FALSE(is_open(raw));
    const UniqueFd failed(-1);  // what a failed open returned
    CHECK_FALSE(failed);
    CHECK(failed.get() == -1);
}

TEST_CASE("unique fd: a move hands the descriptor over, release gives it up unclosed") {
    UniqueFd first(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    const int raw = first.get();
    UniqueFd second(std::move(first));
    CHECK_FALSE(first);
    CHECK(second.get() == raw);
    UniqueFd third;
    third = std::move(second);
    CHECK(third.get() == raw);
    CHECK(is_open(raw));
    const int kept = third.release();
    CHECK_FALSE(third);
    CHECK(is_open(kept));
    third.reset(kept);
    third.reset();
    CHECK_FALSE(is_open(kept));
}
