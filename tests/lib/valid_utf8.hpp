// Whether text is well-formed UTF-8 (what a JSON parser insists on): shared
// by the fuzz target of the state file and the unit test pinning what it found.
#pragma once

#include <cstddef>
#include <string>

namespace mcwatch::test {

inline bool valid_utf8(const std::string& text) {
    for (size_t i = 0; i < text.size();) {
        const auto c = static_cast<unsigned char>(text[i]);
        size_t extra;
        if (c < 0x80)
            extra = 0;
        else if ((c >> 5) == 0x6)
            extra = 1;
        else if ((c >> 4) == 0xe)
            extra = 2;
        else if ((c >> 3) == 0x1e)
            extra = 3;
        else
            return false;
        if (i + extra >= text.size()) return false;
        for (size_t k = 1; k <= extra; ++k)
            if ((static_cast<unsigned char>(text[i + k]) >> 6) != 0x2) return false;
        i += extra + 1;
    }
    return true;
}

}  // namespace mcwatch::test
