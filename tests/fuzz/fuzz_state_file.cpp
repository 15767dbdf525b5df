// The state file as readers meet it: arbitrary bytes at the state path, read
// by the validator (StateMap::open) and by everything that trusts a file it
// accepted: the seqlock copy, mcctl status (table and JSON), dump and route,
// and the C API. Nothing may crash, hang or misbehave, whatever the file says.
//
// Input: one mode byte, then the file's bytes.
//   bit 0 clear: the bytes are the file, as they are. Random bytes almost never
//          pass the validator; this explores its refusals.
//   bit 0 set:   the bytes are made into a file the validator accepts (magic,
//          version, sizes, slot count from the length, static digest), so
//          that everything behind it meets arbitrary addresses, weights,
//          routing settings, states and facts.
//   bit 1:       (with bit 0) the heartbeat is now: the file is fresh, and
//          routing reads its states instead of falling back to native.
#include <dlfcn.h>
#include <fcntl.h>
#include <netdb.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include "libshim/clock.hpp"
#include "fuzz_check.hpp"
#include "mcshim.h"
#include "tools/mcctl/route.hpp"
#include "libshim/seqlock.hpp"
#include "libshim/state_format.hpp"
#include "libshim/state_reader.hpp"
#include "tools/mcctl/snapshot.hpp"
#include "tools/mcctl/status.hpp"
#include "tools/mcctl/watch.hpp"
#include "tests/lib/valid_utf8.hpp"

using namespace mcwatch;
using mcwatch::test::valid_utf8;
using namespace mcwatch::state;

// Server names in a fuzzed file must not become DNS queries: every lookup is
// made numeric-only (names then simply do not resolve, as with no network).
extern "C" int getaddrinfo(const char* node, const char* service, const struct addrinfo* hints, struct addrinfo** res) {
    using Real = int (*)(const char*, const char*, const struct addrinfo*, struct addrinfo**);
    static const Real real = reinterpret_cast<Real>(dlsym(RTLD_NEXT, "getaddrinfo"));
    struct addrinfo numeric {};
    if (hints) numeric = *hints;
    numeric.ai_flags |= AI_NUMERICHOST;
    return real(node, service, &numeric, res);
}

namespace {

std::string g_dir;
std::string g_path;
int g_capture = -1;  // memfd that stands in for stdout

void remove_dir() {
    std::error_code ignored;
    std::filesystem::remove_all(g_dir, ignored);
}

void write_file(const void* data, size_t size) {
    const std::string aside = g_path + ".new";
    const int fd = ::open(aside.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    FUZZ_CHECK(fd >= 0);
    FUZZ_CHECK(::write(fd, data, size) == ssize_t(size));
    ::close(fd);
    FUZZ_CHECK(::rename(aside.c_str(), g_path.c_str()) == 0);
}

// Makes `bytes` a file the validator accepts. The buffer is 8-byte aligned
// for the atomics of Header and Slot.
std::vector<uint64_t> fix_up(const uint8_t* data, size_t size, bool fresh) {
    size_t count = size > sizeof(Header) ? (size - sizeof(Header)) / sizeof(Slot) : 0;
    if (count > 64) count = 64;  // enough to explore; kMaxServers is the validator's business
    const size_t length = file_size_for(uint32_t(count));
    std::vector<uint64_t> words((length + 7) / 8, 0);
    std::memcpy(words.data(), data, std::min(size, length));
    auto* header = reinterpret_cast<Header*>(words.data());
    auto* slots = reinterpret_cast<Slot*>(header + 1);
    write_layout(*header, uint32_t(count));
    // A sequence stuck odd is a daemon killed mid-write; mcctl then waits
    // 100 ms before giving up, too slow to fuzz. Unit tests cover it.
    header->seq.store(header->seq.load() & ~uint64_t{1});
    if (fresh) header->heartbeat_mono_ns.store(monotonic_ns());
    header->static_digest = compute_static_digest(*header, slots, uint32_t(count));
    return words;
}

// What the last command printed on stdout.
std::string take_stdout() {
    std::fflush(stdout);
    const off_t length = ::lseek(g_capture, 0, SEEK_END);
    std::string text(size_t(length), '\0');
    FUZZ_CHECK(::pread(g_capture, text.data(), text.size(), 0) == ssize_t(text.size()));
    FUZZ_CHECK(::ftruncate(g_capture, 0) == 0);
    ::lseek(g_capture, 0, SEEK_SET);
    return text;
}

void check_reader(bool accepted_expected) {
    StateMap map;
    char why[256] = "";
    const MapStatus status = map.open(g_path.c_str(), why, sizeof why);
    if (accepted_expected) FUZZ_CHECK(status == MapStatus::ok);
    if (status != MapStatus::ok) {
        FUZZ_CHECK(!map.is_open());
        FUZZ_CHECK(std::string(why).rfind("state file " + g_path + ": ", 0) == 0);
        FUZZ_CHECK(std::strcmp(map_status_name(status), "invalid") != 0);
        return;
    }
    const uint32_t count = map.slot_count();
    FUZZ_CHECK(count <= kMaxServers);
    std::vector<ServerDynamic> copy(count);
    uint64_t generation = 0;
    if (read_consistent(map.header(), map.slots(), count, copy.data(), &generation)) {
        for (const ServerDynamic& s : copy) {
            FUZZ_CHECK(std::strlen(s.version) < sizeof s.version);
            FUZZ_CHECK(std::strlen(s.last_error) < sizeof s.last_error);
        }
    }
    (void)heartbeat_fresh(map.header(), unix_ms());
    (void)map.replaced(g_path.c_str());
}

void check_mcctl(bool accepted) {
    const int table = mcctl_status(g_path, false);
    FUZZ_CHECK(table >= 0 && table <= 2);
    if (!accepted) FUZZ_CHECK(table == 2);
    take_stdout();

    // Not necessarily the same status as the table's: the file may have gone
    // stale in between.
    const int json = mcctl_status(g_path, true);
    FUZZ_CHECK(json >= 0 && json <= 2);
    if (!accepted) FUZZ_CHECK(json == 2);
    const std::string printed = take_stdout();
    if (accepted) {
        // One JSON object on one line, readable by any JSON parser.
        FUZZ_CHECK(printed.starts_with("{\"summary\": {") && printed.ends_with("]}\n"));
        FUZZ_CHECK(printed.find('\n') == printed.size() - 1);
        FUZZ_CHECK(valid_utf8(printed));
    }

    FUZZ_CHECK(mcctl_dump(g_path) == (accepted ? 0 : 2));
    take_stdout();

    // What `watch` draws: the table in colour, cut to a narrow terminal, and
    // the changes between two looks.
    Snapshot snapshot;
    const auto loaded = load_snapshot(g_path, snapshot);
    if (loaded) {
        const std::string table = status_table(snapshot, g_path, true);
        for (size_t start = 0; start < table.size();) {
            const size_t end = std::min(table.find('\n', start), table.size());
            (void)fit_to_width(table.substr(start, end - start), 40);
            start = end + 1;
        }
        std::vector<std::pair<std::string, WatchedServer>> seen;
        (void)watch_changes(snapshot, seen, true);
        const std::vector<std::string> changes = watch_changes(snapshot, seen, false);
        // Nothing changed in between: nothing to say, unless two slots share
        // an address (which no daemon writes: its config refuses duplicates).
        std::set<std::string> addresses;
        for (uint32_t i = 0; i < snapshot.servers.size(); ++i) addresses.insert(slot_address(snapshot, i));
        if (addresses.size() == snapshot.servers.size()) FUZZ_CHECK(changes.empty());
    } else {
        FUZZ_CHECK(!accepted || !loaded.error().message.empty());
    }

    std::FILE* null = std::fopen("/dev/null", "w");
    FUZZ_CHECK(null != nullptr);
    char key1[] = "user:42", key2[] = "", key3[] = "--json", key4[] = "x";
    char* keys[] = {key3, key1, key2, key4};
    const int routed = mcctl_route(g_path.c_str(), nullptr, 4, keys, nullptr, null, null);
    FUZZ_CHECK(routed >= 0 && routed <= 2);
    std::fclose(null);
}

void check_route_result(int rc, const mcshim_route_t& r, size_t count) {
    FUZZ_CHECK(rc == MCSHIM_OK || rc == MCSHIM_E_ALL_DEAD);
    if (rc == MCSHIM_E_ALL_DEAD) {
        FUZZ_CHECK(r.native == -1 && r.target == -1 && (r.flags & MCSHIM_ROUTE_ALL_DEAD));
        return;
    }
    FUZZ_CHECK(r.native >= 0 && size_t(r.native) < count);
    FUZZ_CHECK(r.target >= 0 && size_t(r.target) < count);
    FUZZ_CHECK(r.fallback >= -1 && (r.fallback < 0 || size_t(r.fallback) < count));
}

void check_capi() {
    static const char* const kKeys[] = {"foo", "user:42", "", "session/9f3a"};
    mcshim_t* shim = mcshim_open(g_path.c_str());
    FUZZ_CHECK(shim != nullptr);
    if (mcshim_use_state_servers(shim) == MCSHIM_OK) {
        const size_t count = mcshim_server_count(shim);
        for (const char* key : kKeys) {
            mcshim_route_t r{};
            check_route_result(mcshim_route(shim, key, std::strlen(key), &r), r, count);
        }
    }
    FUZZ_CHECK(mcshim_last_error(shim) != nullptr);
    (void)mcshim_clamp_expiration(shim, 0);
    (void)mcshim_clamp_expiration(shim, 86400 * 365);
    (void)mcshim_writeback_ttl(shim);
    (void)mcshim_state_usable(shim);

    // A client's own list, which the file may or may not describe.
    static const char* const kServers[] = {"127.0.0.1:11211", "127.0.0.1:11212", "localhost:11213"};
    if (mcshim_set_servers(shim, kServers, nullptr, 3, MCSHIM_KETAMA, MCSHIM_HASH_MD5) == MCSHIM_OK) {
        for (const char* key : kKeys) {
            mcshim_route_t r{};
            check_route_result(mcshim_route(shim, key, std::strlen(key), &r), r, 3);
        }
    }
    mcshim_close(shim);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    char pattern[] = "/dev/shm/mcwatch-fuzz-XXXXXX";
    char fallback[] = "/tmp/mcwatch-fuzz-XXXXXX";
    const char* dir = mkdtemp(pattern);
    if (!dir) dir = mkdtemp(fallback);
    if (!dir) std::abort();
    g_dir = dir;
    g_path = g_dir + "/state";
    std::atexit(remove_dir);
    // mcctl prints on stdout: keep it, to check what it says.
    g_capture = memfd_create("mcctl-stdout", MFD_CLOEXEC);
    if (g_capture < 0 || dup2(g_capture, STDOUT_FILENO) < 0) std::abort();
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size == 0) return 0;
    const uint8_t mode = data[0];
    ++data;
    --size;
    const bool fix = mode & 1;
    if (fix) {
        const std::vector<uint64_t> image = fix_up(data, size, mode & 2);
        write_file(image.data(), file_size_for(reinterpret_cast<const Header*>(image.data())->slot_count));
    } else {
        write_file(data, size);
    }
    check_reader(fix);
    StateMap probe;
    const bool accepted = probe.open(g_path.c_str(), nullptr, 0) == MapStatus::ok;
    probe.close();
    check_mcctl(accepted);
    check_capi();
    // The width cutter on raw bytes, escapes and all.
    const std::string raw(reinterpret_cast<const char*>(data), std::min<size_t>(size, 512));
    (void)fit_to_width(raw, mode % 100);
    return 0;
}
