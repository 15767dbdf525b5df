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

TEST_CASE("watch: a drain's move starting and ending become one line each") {
    test::ScratchDir dir;
    const std::string path = dir.file("state");
    test::StateFixture file(path, {{"10.0.0.1:11211", "", 1}, {"10.0.0.2:11211", "", 1}});
    std::vector<std::pair<std::string, WatchedServer>> seen;
    CHECK(look(path, seen, true).empty());
    state::Slot& slot = file.slots()[0];
    const auto publish = [&](state::DrainMove move, uint64_t moved, uint64_t remaining) {
        slot.drain_move.store(uint32_t(move));
        slot.drain_moved.store(moved);
        slot.drain_skipped.store(move == state::DrainMove::listing ? 0 : 2);
        slot.drain_remaining.store(remaining);
        file.beat();
    };
    slot.drain_move_started_unix_ms.store(1'700'000'000'000);
    publish(state::DrainMove::listing, 0, 500);
    CHECK(look(path, seen) == std::vector<std::string>{"10.0.0.1:11211 drain --move started: moving every key"});
    publish(state::DrainMove::moving, 100, 398);
    CHECK(look(path, seen).empty());
    publish(state::DrainMove::done, 1498, 0);
    CHECK(look(path, seen) == std::vector<std::string>{"10.0.0.1:11211 keys moved: done, 1,498 moved, 2 skipped"});
    CHECK(look(path, seen).empty());
    // The next move, stopped before the refresh saw it run.
    slot.drain_move_started_unix_ms.store(1'700'000'100'000);
    publish(state::DrainMove::stopped, 3, 7);
    CHECK(look(path, seen) ==
          std::vector<std::string>{"10.0.0.1:11211 keys moved: stopped, 3 moved, 2 skipped, 7 left"});
}

TEST_CASE("watch: lines fit the terminal, colour escapes kept whole and closed") {
    CHECK(fit_to_width("abcdef", 4) == "abcd");
    CHECK(fit_to_width("abc", 10) == "abc");
    CHECK(fit_to_width("ab\x1b[32mlive\x1b[0m x", 4) == "ab\x1b[32mli\x1b[0m");
    CHECK(fit_to_width("ab\x1b[32mlive\x1b[0m x", 20) == "ab\x1b[32mlive\x1b[0m x");
    CHECK(fit_to_width("", 0).empty());
}
