// The reader's refusal of a state file others could have written runs
// inside the client program (the shim opens the file on a client's call):
// it must give its reason without allocating, so that a program out of
// memory still gets "unsafe owner", not an error of another kind or a
// terminate from a noexcept function.
#include <doctest/doctest.h>

#include <sys/stat.h>

#include <cstdlib>
#include <fstream>
#include <new>
#include <string>

#include "libshim/state_reader.hpp"
#include "scratch_dir.hpp"

namespace {

// While set on a thread, every operator new on it fails as under memory
// exhaustion.
thread_local bool allocation_fails = false;

struct FailingAllocations {
    FailingAllocations() { allocation_fails = true; }
    ~FailingAllocations() { allocation_fails = false; }
};

}  // namespace

void* operator new(std::size_t size) {
    if (allocation_fails) throw std::bad_alloc();
    if (void* memory = std::malloc(size ? size : 1)) return memory;
    throw std::bad_alloc();
}
void operator delete(void* memory) noexcept { std::free(memory); }
void operator delete(void* memory, std::size_t) noexcept { std::free(memory); }

TEST_CASE("state reader: refuses a file in a directory others can write even when out of memory") {
    mcwatch::test::ScratchDir dir;
    const std::string shared = dir.file("shared");
    REQUIRE(mkdir(shared.c_str(), 0700) == 0);
    REQUIRE(chmod(shared.c_str(), 0777) == 0);  // not sticky: anyone may replace the file
    const std::string path = shared + "/state";
    std::ofstream(path) << "not checked: refused before it is read";
    REQUIRE(chmod(path.c_str(), 0644) == 0);

    mcwatch::state::StateMap map;
    char why[256] = {};
    mcwatch::state::MapStatus status;
    {
        FailingAllocations out_of_memory;
        status = map.open(path.c_str(), why, sizeof why);
    }
    CHECK(status == mcwatch::state::MapStatus::unsafe_owner);
    CHECK_MESSAGE(std::string(why).find("only root or the daemon's user may own and write it") != std::string::npos,
                  why);
}
