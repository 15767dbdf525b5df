// Membership changes' rules (daemon/membership.cpp) and the previous list's
// round trip through the state file.
#include <doctest/doctest.h>

#include <string>

#include "common/config.hpp"
#include "daemon/membership.hpp"
#include "daemon/state_writer.hpp"
#include "libshim/state_reader.hpp"
#include "scratch_dir.hpp"

using namespace mcwatch;
using namespace mcwatch::state;

namespace {

ServerList list_of(std::initializer_list<const char*> addresses) {
    ServerList list;
    for (const char* address : addresses) list.servers.push_back({address, "", 1});
    return list;
}

}  // namespace

TEST_CASE("membership: what moves keys is a change, a same list is not") {
    const ServerList two = list_of({"127.0.0.1:1", "127.0.0.1:2"});
    CHECK_FALSE(placement_changes(two, two));
    CHECK(placement_changes(two, list_of({"127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"})));
    CHECK(placement_changes(two, list_of({"127.0.0.1:2", "127.0.0.1:1"})));  // modula depends on the order
    ServerList reweighted = two;
    reweighted.servers[1].weight = 2;
    CHECK(placement_changes(two, reweighted));
    ServerList rehashed = two;
    rehashed.hash = Hash::crc;
    CHECK(placement_changes(two, rehashed));
}

TEST_CASE("membership: the previous list counts for the window after the change, not after") {
    const MembershipChange change{list_of({"127.0.0.1:1"}), 1'000'000};
    CHECK(membership_counts(change, Millis(60'000), 1'000'000));
    CHECK(membership_counts(change, Millis(60'000), 1'059'999));
    CHECK_FALSE(membership_counts(change, Millis(60'000), 1'060'000));
    CHECK_FALSE(membership_counts(MembershipChange{}, Millis(60'000), 1'000'000));
}

TEST_CASE("membership: a change in effect is named with its window's end; past it, nothing") {
    const MembershipChange change{list_of({"127.0.0.1:1", "127.0.0.1:2"}), 1'000'000};
    const ServerList now = list_of({"127.0.0.1:1", "127.0.0.1:3"});
    CHECK(change_in_effect(change, now, Millis(60'000), 1'059'999) ==
          "the membership change of 1970-01-01T00:16:40.000Z (added 127.0.0.1:3; removed 127.0.0.1:2) still counts "
          "until 1970-01-01T00:17:40.000Z (recently_down_window): a second change now would leave the keys it moved "
          "that no client has read and its move has not moved yet where no client looks; reload once its move is "
          "done (`mcctl status`) or after that");
    CHECK(change_in_effect(change, now, Millis(60'000), 1'060'000).empty());
    CHECK(change_in_effect(MembershipChange{}, now, Millis(60'000), 1'000'000).empty());
}

TEST_CASE("membership: a server spelled as its numeric form is not missing") {
    ServerList before = list_of({"localhost:11211", "127.0.0.1:2"});
    before.servers[0].resolved = "127.0.0.1:11211";
    CHECK(servers_missing_from(before, list_of({"127.0.0.1:11211"})) == std::vector<std::string>{"127.0.0.1:2"});
}

TEST_CASE("membership: only live or draining servers with items, not moved, are refused") {
    const auto live = uint32_t(ServerState::live);
    CHECK(undrained_removal({{"a:1", live, 0, false}}).empty());
    CHECK(undrained_removal({{"a:1", live, kUnknown, false}}).empty());
    CHECK(undrained_removal({{"a:1", uint32_t(ServerState::dead), 7, false}}).empty());
    CHECK(undrained_removal({{"a:1", uint32_t(ServerState::draining), 7, true}}).empty());
    CHECK(undrained_removal({{"a:1", live, 7, false}, {"b:2", uint32_t(ServerState::draining), 2, false}}) ==
          "the configuration removes a:1 (live, 7 items), b:2 (draining, 2 items), whose keys clients still read: "
          "move them first with `mcctl drain --move --wait a:1`, then remove the server and reload");
}

TEST_CASE("membership: the writer publishes the previous list and a predecessor reads it back") {
    test::ScratchDir dir;
    const std::string path = dir.file("state");
    auto config = parse_config("[mcwatchd]\nstate_file = " + path +
                                   "\n[routing]\ndistribution = ketama\n[servers]\nserver = 127.0.0.1:20001\n",
                               "t.conf");
    REQUIRE(config);
    MembershipChange change{list_of({"127.0.0.1:20000", "127.0.0.1:20002"}), 1'234'567};
    change.previous.distribution = Distribution::modula;
    change.previous.hash = Hash::crc;
    change.previous.servers[1].weight = 3;
    change.previous.servers[1].resolved = "127.0.0.1:20002";
    change.previous.servers[1].avoided = true;  // drained before the change: kPreviousAvoided
    {
        StateWriter writer;
        REQUIRE(writer.lock(path));
        REQUIRE(writer.publish(*config, {""}, std::vector<ServerDynamic>(1), change));
    }
    StateWriter next;
    REQUIRE(next.lock(path));
    const auto read = next.read_predecessor();
    REQUIRE(read);
    REQUIRE(read->has_value());
    const MembershipChange& back = (*read)->membership;
    CHECK(back.changed_unix_ms == 1'234'567);
    CHECK(back.previous.distribution == Distribution::modula);
    CHECK(back.previous.hash == Hash::crc);
    CHECK(back.previous.servers == change.previous.servers);
    CHECK((*read)->server_list().servers == list_of({"127.0.0.1:20001"}).servers);
}

TEST_CASE("membership: a list about to become the previous one marks its draining and dead servers") {
    ServerList list = list_of({"a:1", "b:2", "c:3", "d:4"});
    std::vector<ServerDynamic> published(4);
    published[0].state = uint32_t(ServerState::live);
    published[1].state = uint32_t(ServerState::draining);
    published[2].state = uint32_t(ServerState::dead);
    published[3].state = uint32_t(ServerState::unknown);
    mark_avoided(list, published);
    CHECK(!list.servers[0].avoided);
    CHECK(list.servers[1].avoided);
    CHECK(list.servers[2].avoided);
    CHECK(!list.servers[3].avoided);  // routed as live until its first probe
}
