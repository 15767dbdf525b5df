// The state file as a contract between processes: layout, writer and reader.
#include <doctest/doctest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <fstream>
#include <thread>

#include "libshim/clock.hpp"
#include "common/config.hpp"
#include "scratch_dir.hpp"
#include "libshim/seqlock.hpp"
#include "libshim/state_reader.hpp"
#include "daemon/state_writer.hpp"

using namespace mcwatch;
using namespace mcwatch::state;

namespace {

Config config_with(int servers, const std::string& state_file) {
    std::string text = "[mcwatchd]\nstate_file = " + state_file + "\n[servers]\n";
    for (int i = 0; i < servers; ++i) text += "server = 127.0.0.1:" + std::to_string(20000 + i) + "\n";
    auto result = parse_config(text, "t.conf");
    REQUIRE_MESSAGE(result.has_value(), (result ? "" : result.error().message));
    return *result;
}

std::vector<ServerDynamic> servers_in(ServerState s, size_t count) {
    std::vector<ServerDynamic> out(count);
    for (auto& v : out) v.state = uint32_t(s);
    return out;
}

}  // namespace

TEST_CASE("state file: layout is pinned") {
    // The static_asserts in state_format.hpp pin every offset at compile time;
    // this restates the sizes a reader of another build relies on.
    CHECK(sizeof(Header) == 320);
    CHECK(sizeof(Slot) == 640);
    CHECK(kHeaderStaticSize == 128);
    CHECK(kSlotStaticSize == 256);
    CHECK(file_size_for(3) == 320 + 3 * 640);
    CHECK(kFormatVersion == 3);
    CHECK(std::atomic<uint64_t>::is_always_lock_free);
}

TEST_CASE("state file: published by the writer, read back by the reader") {
    test::ScratchDir dir;
    const std::string path = dir.file("run/state");
    const Config config = config_with(3, path);
    StateWriter writer;
    REQUIRE(writer.lock(path));
    auto servers = servers_in(ServerState::live, 3);
    servers[1].state = uint32_t(ServerState::dead);
    std::strcpy(servers[1].last_error, "connection refused");
    REQUIRE(writer.publish(config, {"127.0.0.1:20000", "", ""}, servers));

    struct stat st {};
    REQUIRE(stat(path.c_str(), &st) == 0);
    CHECK((st.st_mode & 07777) == 0644);
    REQUIRE(stat(dir.file("run").c_str(), &st) == 0);
    CHECK((st.st_mode & S_IWOTH) == 0);

    StateMap map;
    char why[256] = {};
    REQUIRE_MESSAGE(map.open(path.c_str(), why, sizeof why) == MapStatus::ok, why);
    CHECK(map.slot_count() == 3);
    CHECK(std::string(map.slots()[0].address) == "127.0.0.1:20000");
    CHECK(std::string(map.slots()[0].resolved) == "127.0.0.1:20000");
    CHECK(map.header().daemon_pid == uint32_t(getpid()));
    CHECK(heartbeat_fresh(map.header(), unix_ms()));
    std::vector<ServerDynamic> read(3);
    uint64_t generation = 0;
    REQUIRE(read_consistent(map.header(), map.slots(), 3, read.data(), &generation));
    CHECK(read[1].state == uint32_t(ServerState::dead));
    CHECK(std::string(read[1].last_error) == "connection refused");

    servers[1].state = uint32_t(ServerState::live);
    writer.update(servers, true);
    uint64_t after = 0;
    REQUIRE(read_consistent(map.header(), map.slots(), 3, read.data(), &after));
    CHECK(after == generation + 1);
    CHECK(read[1].state == uint32_t(ServerState::live));
    writer.update(servers, false);
    REQUIRE(read_consistent(map.header(), map.slots(), 3, read.data(), &after));
    CHECK(after == generation + 1);
}

TEST_CASE("state file: the membership move's figures are written with the servers, never as routing") {
    test::ScratchDir dir;
    const std::string path = dir.file("state");
    StateWriter writer;
    REQUIRE(writer.lock(path));
    const auto servers = servers_in(ServerState::live, 2);
    REQUIRE(writer.publish(config_with(2, path), {}, servers));
    StateMap map;
    char why[256] = {};
    REQUIRE_MESSAGE(map.open(path.c_str(), why, sizeof why) == MapStatus::ok, why);
    std::vector<ServerDynamic> read(2);
    uint64_t before = 0, after = 0;
    MembershipMove move;
    REQUIRE(read_consistent(map.header(), map.slots(), 2, read.data(), &before, kReadTries, nullptr, &move));
    CHECK(move.state == uint32_t(DrainMove::none));

    writer.set_membership_move({uint32_t(DrainMove::moving), 3, 10, 2, 30, 1'700'000'000'000, 0});
    writer.write_servers(servers, false);
    REQUIRE(read_consistent(map.header(), map.slots(), 2, read.data(), &after, kReadTries, nullptr, &move));
    CHECK(after == before);
    CHECK((move.state == uint32_t(DrainMove::moving) && move.sources == 3 && move.moved == 10 && move.skipped == 2 &&
           move.remaining == 30 && move.started_unix_ms == 1'700'000'000'000 && move.ended_unix_ms == 0));

    // A new file (a reload) carries them.
    REQUIRE(writer.publish(config_with(3, path), {}, servers_in(ServerState::live, 3)));
    StateMap again;
    REQUIRE(again.open(path.c_str(), why, sizeof why) == MapStatus::ok);
    std::vector<ServerDynamic> three(3);
    REQUIRE(read_consistent(again.header(), again.slots(), 3, three.data(), nullptr, kReadTries, nullptr, &move));
    CHECK(move.moved == 10);
}

TEST_CASE("state file: a second writer is refused and told the holder's pid") {
    test::ScratchDir dir;
    const std::string path = dir.file("state");
    StateWriter first, second;
    REQUIRE(first.lock(path));
    const Result<> refused = second.lock(path);
    REQUIRE_FALSE(refused);
    const std::string why = refused.error().message;
    CHECK(why == "another mcwatchd (pid " + std::to_string(getpid()) + ") already publishes " + path + ": its lock " +
                     path + ".lock is held");
}

TEST_CASE("state file: republishing supersedes the old file, which stays mapped and intact") {
    test::ScratchDir dir;
    const std::string path = dir.file("state");
    StateWriter writer;
    REQUIRE(writer.lock(path));
    REQUIRE(writer.publish(config_with(2, path), {}, servers_in(ServerState::live, 2)));
    StateMap old_map;
    char why[256] = {};
    REQUIRE(old_map.open(path.c_str(), why, sizeof why) == MapStatus::ok);
    CHECK_FALSE(old_map.replaced(path.c_str()));

    REQUIRE(writer.publish(config_with(5, path), {}, servers_in(ServerState::dead, 5)));
    CHECK(old_map.header().superseded.load() == 1);
    CHECK(old_map.replaced(path.c_str()));
    CHECK(old_map.slot_count() == 2);  // still readable: never truncated
    CHECK(std::string(old_map.slots()[1].address) == "127.0.0.1:20001");

    StateMap new_map;
    REQUIRE(new_map.open(path.c_str(), why, sizeof why) == MapStatus::ok);
    CHECK(new_map.slot_count() == 5);
    CHECK_FALSE(new_map.replaced(path.c_str()));
}

TEST_CASE("state file: a restarted writer supersedes its predecessor's file") {
    test::ScratchDir dir;
    const std::string path = dir.file("state");
    StateMap reader;
    char why[256] = {};
    {
        StateWriter crashed;
        REQUIRE(crashed.lock(path));
        REQUIRE(crashed.publish(config_with(1, path), {}, servers_in(ServerState::live, 1)));
        REQUIRE(reader.open(path.c_str(), why, sizeof why) == MapStatus::ok);
    }
    StateWriter restarted;
    REQUIRE(restarted.lock(path));
    REQUIRE(restarted.publish(config_with(1, path), {}, servers_in(ServerState::live, 1)));
    CHECK(reader.header().superseded.load() == 1);
}

TEST_CASE("state file: the reader refuses what it cannot trust and says why") {
    test::ScratchDir dir;
    char why[256] = {};
    StateMap map;
    const std::string path = dir.file("state");

    CHECK(map.open(path.c_str(), why, sizeof why) == MapStatus::missing);
    CHECK(std::string(why) == "state file " + path + ": does not exist");

    std::ofstream(path) << "tiny";
    chmod(path.c_str(), 0644);
    CHECK(map.open(path.c_str(), why, sizeof why) == MapStatus::too_small);

    std::ofstream(path) << std::string(4096, 'x');
    CHECK(map.open(path.c_str(), why, sizeof why) == MapStatus::bad_magic);

    const std::string link = dir.file("link");
    REQUIRE(symlink(path.c_str(), link.c_str()) == 0);
    CHECK(map.open(link.c_str(), why, sizeof why) == MapStatus::not_regular_file);
    CHECK(std::string(why) == "state file " + link + ": is a symbolic link (refused)");

    chmod(path.c_str(), 0666);
    CHECK(map.open(path.c_str(), why, sizeof why) == MapStatus::unsafe_owner);
    CHECK(!map.is_open());
}

TEST_CASE("state file: corrupt fields behind a valid magic are refused") {
    test::ScratchDir dir;
    const std::string path = dir.file("state");
    {
        StateWriter writer;
        REQUIRE(writer.lock(path));
        REQUIRE(writer.publish(config_with(2, path), {}, servers_in(ServerState::live, 2)));
    }
    std::string image;
    {
        std::ifstream in(path, std::ios::binary);
        image.assign(std::istreambuf_iterator<char>(in), {});
    }
    auto check_patched = [&](size_t offset, uint32_t value, MapStatus expected) {
        std::string copy = image;
        std::memcpy(copy.data() + offset, &value, sizeof value);
        const std::string patched = dir.file("patched");
        std::ofstream(patched, std::ios::binary) << copy;
        chmod(patched.c_str(), 0644);
        StateMap map;
        char why[256] = {};
        CHECK_MESSAGE(map.open(patched.c_str(), why, sizeof why) == expected, why);
    };
    check_patched(offsetof(Header, format_version), 99, MapStatus::bad_version);
    check_patched(offsetof(Header, slot_size), 512, MapStatus::bad_layout);
    check_patched(offsetof(Header, slot_count), 3, MapStatus::bad_layout);
    check_patched(offsetof(Header, slot_count), 1'000'000, MapStatus::bad_layout);
    check_patched(offsetof(Header, probe_interval_ms), 1, MapStatus::bad_digest);
    check_patched(sizeof(Header) + offsetof(Slot, weight), 7, MapStatus::bad_digest);
}

TEST_CASE("seqlock: readers never see a torn table while a writer rewrites it") {
    // Every field of every slot is derived from one counter per write; a copy
    // mixing two writes breaks the relation.
    test::ScratchDir dir;
    const std::string path = dir.file("state");
    constexpr size_t kServers = 8;
    StateWriter writer;
    REQUIRE(writer.lock(path));
    REQUIRE(writer.publish(config_with(kServers, path), {}, servers_in(ServerState::live, kServers)));
    StateMap map;
    char why[256] = {};
    REQUIRE(map.open(path.c_str(), why, sizeof why) == MapStatus::ok);

    std::atomic<bool> done{false};
    std::thread writing([&] {
        std::vector<ServerDynamic> servers(kServers);
        for (uint64_t n = 1; n <= 200'000; ++n) {
            for (size_t i = 0; i < kServers; ++i) {
                servers[i].state = uint32_t(n % 3);
                servers[i].rtt_us = n;
                servers[i].uptime_s = n * 2;
                servers[i].get_hits = n + i;
                servers[i].restarts = n;
                std::snprintf(servers[i].version, sizeof servers[i].version, "v%llu", (unsigned long long)n);
            }
            writer.update(servers, n % 2 == 0);
        }
        done = true;
    });
    uint64_t reads = 0, torn = 0;
    std::vector<ServerDynamic> copy(kServers);
    auto reading = [&](uint64_t& my_reads, uint64_t& my_torn) {
        while (!done) {
            if (!read_consistent(map.header(), map.slots(), kServers, copy.data(), nullptr)) continue;
            const uint64_t n = copy[0].rtt_us;
            if (n == 0) continue;  // the published image, before the first write
            ++my_reads;
            for (size_t i = 0; i < kServers; ++i) {
                const auto& s = copy[i];
                const std::string version = "v" + std::to_string(n);
                if (s.rtt_us != n || s.uptime_s != 2 * n || s.get_hits != n + i || s.restarts != n ||
                    s.state != uint32_t(n % 3) || version != s.version)
                    ++my_torn;
            }
        }
    };
    reading(reads, torn);
    writing.join();
    MESSAGE("consistent reads checked: " << reads);
    CHECK(reads > 0);
    CHECK(torn == 0);
}
