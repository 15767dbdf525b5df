// The preload layer's one list of libmemcached functions against the version
// script that decides what leaves libmcshim.so: a function interposed in one
// and not exported by the other would silently not be interposed (or would
// leak a symbol of ours into every program).
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>

#include "libshim/preload/real.hpp"

namespace {

std::string read_text(const std::filesystem::path& path) {
    std::ifstream in(path);
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
}

std::string without_comments(std::string text) {
    for (size_t open = text.find("/*"); open != std::string::npos; open = text.find("/*", open)) {
        const size_t close = text.find("*/", open);
        text.erase(open, close == std::string::npos ? std::string::npos : close + 2 - open);
    }
    return text;
}

// The names under `global:` of the version node `node`.
std::set<std::string> exported_by(const std::string& map, const std::string& node) {
    const std::string text = without_comments(map);
    const size_t begin = text.find(node + " {");
    REQUIRE(begin != std::string::npos);
    const size_t global = text.find("global:", begin);
    const size_t local = text.find("local:", begin);
    const size_t end = text.find("};", begin);
    REQUIRE(global < end);
    std::set<std::string> names;
    std::stringstream list(text.substr(global + 7, std::min(local, end) - global - 7));
    std::string name;
    while (std::getline(list, name, ';')) {
        name.erase(0, name.find_first_not_of(" \n\t"));
        name.erase(name.find_last_not_of(" \n\t") + 1);
        if (!name.empty()) names.insert(name);
    }
    return names;
}

}  // namespace

TEST_CASE("preload: libmcshim.map exports exactly the interposed functions and the C API") {
    const auto map = std::filesystem::path(__FILE__).parent_path() / ".." / ".." / "libshim" / "libmcshim.map";
    const std::string text = read_text(map);
    REQUIRE_MESSAGE(!text.empty(), map.string());

    std::set<std::string> interposed{"mcshim_*"};
#define INTERPOSED_NAME(member, symbol, kind) \
    if (std::string(#kind) == "interposed") interposed.insert(#symbol);
    MCSHIM_REAL_FUNCTIONS(INTERPOSED_NAME)
#undef INTERPOSED_NAME
#define KEY_ONLY_NAME(symbol) interposed.insert(#symbol);
    MCSHIM_KEY_ONLY_WRAPPERS(KEY_ONLY_NAME)
#undef KEY_ONLY_NAME

    const std::set<std::string> exported = exported_by(text, "MCSHIM_1");
    for (const std::string& name : interposed) CHECK_MESSAGE(exported.count(name) == 1, name, " is not in ", map);
    for (const std::string& name : exported)
        CHECK_MESSAGE(interposed.count(name) == 1, name, " is exported but not in real.hpp's lists");
}
