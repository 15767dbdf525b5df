// `mcctl route`, as an operator reads it (mcctl's objects but its main are
// linked into the unit tests).
#include <doctest/doctest.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "libshim/clock.hpp"
#include "tools/mcctl/route.hpp"
#include "scratch_dir.hpp"
#include "state_fixture.hpp"


using namespace mcwatch;

namespace {

struct Run {
    int status = -1;
    std::string out, err;
};

Run run_route(const std::string& state, const char* config, std::vector<std::string> args,
              const std::string& input = "") {
    std::vector<char*> argv;
    for (std::string& arg : args) argv.push_back(arg.data());
    char* out_buffer = nullptr;
    char* err_buffer = nullptr;
    size_t out_size = 0, err_size = 0;
    std::FILE* out = open_memstream(&out_buffer, &out_size);
    std::FILE* err = open_memstream(&err_buffer, &err_size);
    std::string input_copy = input.empty() ? std::string(" ") : input;
    std::FILE* in = fmemopen(input_copy.data(), input.size(), "r");
    Run run;
    run.status =
        mcctl_route(state.empty() ? nullptr : state.c_str(), config, int(argv.size()), argv.data(), in, out, err);
    std::fclose(in);
    std::fclose(out);
    std::fclose(err);
    run.out.assign(out_buffer, out_size);
    run.err.assign(err_buffer, err_size);
    std::free(out_buffer);
    std::free(err_buffer);
    return run;
}

}  // namespace

TEST_CASE("router: mcctl route explains where keys go") {
    test::ScratchDir dir;
    const std::string path = dir.file("state");
    // Golden placement (libmemcached 1.1.4, ketama, md5, 10.0.0.1..3:11211):
    // foo -> 1, bar -> 2, user:42 -> 2, mcwatch -> 1.
    test::StateFixture file(path, {{"10.0.0.1:11211", "10.0.0.1:11211", 1},
                                   {"10.0.0.2:11211", "10.0.0.2:11211", 1},
                                   {"10.0.0.3:11211", "10.0.0.3:11211", 1}});

    const std::string routing = "routing: distribution ketama, hash md5 (from state file " + path + ")\n";
    Run run = run_route(path, nullptr, {"foo"});
    CHECK(run.status == 0);
    CHECK(run.out == routing + "foo: native 10.0.0.2:11211, now 10.0.0.2:11211 (live)\n");

    file.set_state(1, state::ServerState::dead);
    run = run_route(path, nullptr, {"--json", "foo"});
    CHECK(run.status == 0);
    CHECK(run.out.find("{\"key\": \"foo\", \"native\": \"10.0.0.2:11211\", \"target\": \"10.0.0.") == 0);
    CHECK(run.out.find("\"fallback\": null, \"reason\": \"substitute\", \"native_state\": \"dead\"") !=
          std::string::npos);

    file.set_state(1, state::ServerState::live, state::kFlagRecentlyDown, 1700000000000);
    run = run_route(path, nullptr, {"-"}, "foo\nbar\r\n\n");
    CHECK(run.status == 0);
    CHECK(run.out.find(routing + "foo: native 10.0.0.2:11211, now 10.0.0.2:11211 (recently down: fallback 10.0.0.") ==
          0);
    CHECK(run.out.find(" until 2023-11-14T22:13:20.000Z)\nbar: native 10.0.0.3:11211") != std::string::npos);

    file.set_states(std::vector<std::pair<state::ServerState, uint32_t>>(3, {state::ServerState::dead, 0}));
    run = run_route(path, nullptr, {"foo"});
    CHECK(run.status == 1);
    CHECK(run.out == routing + "foo: no server: all servers dead\n");

    file.set_heartbeat(monotonic_ns() - 60'000'000'000ull);
    run = run_route(path, nullptr, {"foo"});
    CHECK(run.status == 0);
    CHECK(run.out == routing + "foo: native 10.0.0.2:11211, now 10.0.0.2:11211 (state stale: native)\n");
    CHECK(run.err.find("heartbeat") != std::string::npos);

    run = run_route(dir.file("absent"), nullptr, {"foo"});
    CHECK(run.status == 2);
    CHECK(run.err.find("give the server list with -c CONFIG") != std::string::npos);
    CHECK(run_route(path, nullptr, {}).status == 64);
    CHECK(run_route(path, nullptr, {"--bogus", "k"}).status == 64);
}

TEST_CASE("router: mcctl route says which keys memcached would refuse, and exits 1") {
    test::ScratchDir dir;
    const std::string path = dir.file("state");
    test::StateFixture file(path, {{"10.0.0.1:11211", "10.0.0.1:11211", 1}, {"10.0.0.2:11211", "10.0.0.2:11211", 1}});
    const std::string routing = "routing: distribution ketama, hash md5 (from state file " + path + ")\n";
    CHECK(run_route(path, nullptr, {std::string(250, 'k')}).status == 0);
    Run run = run_route(path, nullptr, {"", std::string(251, 'k'), "a key", "tab\there", "bell\x07", "del\x7f", "foo"});
    CHECK(run.status == 1);
    CHECK(run.out == routing + ": invalid key: empty\n" + std::string(64, 'k') +
                         "...: invalid key: 251 bytes, longer than memcached's 250\n"
                         "a key: invalid key: holds a space at byte 2\n"
                         "tab\\x09here: invalid key: holds control character 0x09 at byte 4\n"
                         "bell\\x07: invalid key: holds control character 0x07 at byte 5\n"
                         "del\\x7f: invalid key: holds control character 0x7f at byte 4\n"
                         "foo: native 10.0.0.2:11211, now 10.0.0.2:11211 (live)\n");
    run = run_route(path, nullptr, {"--json", "a b"});
    CHECK(run.status == 1);
    CHECK(run.out ==
          "{\"key\": \"a b\", \"invalid\": \"holds a space at byte 2\", \"routing\": {\"distribution\": "
          "\"ketama\", \"hash\": \"md5\", \"from\": \"state_file\", \"path\": \"" +
              path + "\"}}\n");
    // Bytes above 0x7f are bytes like any other to memcached.
    CHECK(run_route(path, nullptr, {"caf\xc3\xa9"}).status == 0);
}
