// `mcctl watch`: the changes it lists between two refreshes, and lines cut
// to the terminal's width without breaking a colour escape.
#include <doctest/doctest.h>

#include "scratch_dir.hpp"
#include "libshim/seqlock.hpp"
#include "state_fixture.hpp"
#include "tools/mcctl/watch.hpp"

using namespace mcwatch;
using state::ServerState;

namespace {

std::vector<std::string> look(const std::string& path, std::vector<std::pair<std::string, WatchedServer>>& seen,
                              bool first = false) {
    Snapshot snapshot;
    const auto loaded = load_snapshot(path, snapshot);
    REQUIRE_MESSAGE(loaded.has_value(), (loaded ? "" : loaded.error().message));
    return watch_changes(snapshot, seen, first);
}

}  // namespace

TEST_CASE("watch: state changes, overrides and restarts become one line each") {
    test::ScratchDir dir;
    const std::string path = dir.file("state");
    test::StateFixture file(path, {{"10.0.0.1:11211", "", 1}, {"10.0.0.2:11211", "", 1}});
    std::vector<std::pair<std::string, WatchedServer>> seen;
    CHECK(look(path, seen, true).empty());
    CHECK(look(path, seen).empty());

    file.slots()[1].transitions.store(1);
    state::pack_words("connection refused", file.slots()[1].error_words, state::kErrorWords);
    file.set_state(1, ServerState::dead);
    CHECK(look(path, seen) == std::vector<std::string>{"10.0.0.2:11211 live -> dead: connection refused"});

    file.slots()[0].transitions.store(1);
    file.set_state(0, ServerState::draining, state::kFlagOperatorOverride | state::kFlagOperatorDrain);
    CHECK(look(path, seen) == std::vector<std::string>{"10.0.0.1:11211 live -> draining (operator drain)"});

    file.slots()[1].transitions.store(4);  // dead -> live -> dead -> live between two refreshes
    file.slots()[1].restarts.store(1);
    file.slots()[1].pid.store(99);
    file.set_state(1, ServerState::live, state::kFlagRecentlyDown);
    CHECK(look(path, seen) ==
          std::vector<std::string>{"10.0.0.2:11211 dead -> live (3 transitions since the last refresh)",
                                   "10.0.0.2:11211 memcached restarted (pid 0 -> 99)"});
    file.set_state(1, ServerState::live, 0);
    CHECK(look(path, seen) == std::vector<std::string>{"10.0.0.2:11211 recently-down window over"});
}

TEST_CASE("watch: lines fit the terminal, colour escapes kept whole and closed") {
    CHECK(fit_to_width("abcdef", 4) == "abcd");
    CHECK(fit_to_width("abc", 10) == "abc");
    CHECK(fit_to_width("ab\x1b[32mlive\x1b[0m x", 4) == "ab\x1b[32mli\x1b[0m");
    CHECK(fit_to_width("ab\x1b[32mlive\x1b[0m x", 20) == "ab\x1b[32mlive\x1b[0m x");
    CHECK(fit_to_width("", 0).empty());
}
