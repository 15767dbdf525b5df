#include "libshim/state_reader.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <climits>
#include <cstring>

#include "libshim/fd_mapping.hpp"
#include "libshim/unique_fd.hpp"

namespace mcwatch::state {

namespace bip = boost::interprocess;

const char* map_status_name(MapStatus status) noexcept {
    switch (status) {
    case MapStatus::ok: return "ok";
    case MapStatus::missing: return "missing";
    case MapStatus::not_regular_file: return "not a regular file";
    case MapStatus::unsafe_owner: return "unsafe owner or mode";
    case MapStatus::too_small: return "truncated";
    case MapStatus::bad_magic: return "not a state file";
    case MapStatus::bad_version: return "unknown format version";
    case MapStatus::bad_layout: return "inconsistent layout";
    case MapStatus::bad_digest: return "corrupt";
    case MapStatus::io_error: return "unreadable";
    }
    return "invalid";
}

namespace {

MapStatus fail(MapStatus status, char* why, size_t why_size, const char* path, const char* fmt,
               unsigned long long a = 0, unsigned long long b = 0) noexcept {
    if (why && why_size) {
        char detail[160];
        std::snprintf(detail, sizeof detail, fmt, a, b);
        std::snprintf(why, why_size, "state file %s: %s", path, detail);
    }
    return status;
}

// The directory part of `path` ("." without one, "/" for a file in the root)
// in `out`; false if it does not fit. No allocation: readers run inside the
// client program, and this one is noexcept.
bool parent_of(const char* path, char* out, size_t size) noexcept {
    const char* slash = std::strrchr(path, '/');
    const char* text = !slash ? "." : slash == path ? "/" : path;
    const size_t length = !slash || slash == path ? 1 : size_t(slash - path);
    if (length >= size) return false;
    std::memcpy(out, text, length);
    out[length] = '\0';
    return true;
}

// Only the daemon may write the file or its directory: true if trusted,
// else false with why not in `why`. The directory must belong to root, to
// this reader or to the file's owner, writable by nobody else (a sticky one
// like /tmp aside, where others cannot replace the file). A file of a user
// who is neither root nor this reader is trusted only in that user's own
// directory placed by root (a parent of root's that nobody else can write,
// as /run for /run/mcwatchd): anyone can make a directory of their own in
// /tmp and plant a file there.
bool owner_is_trusted(const struct stat& file, const char* path, char* why, size_t why_size) noexcept {
    if (file.st_mode & (S_IWGRP | S_IWOTH)) {
        std::snprintf(why, why_size, "owned by uid %u with mode %04o: only the daemon may write it",
                      unsigned(file.st_uid), unsigned(file.st_mode & 07777));
        return false;
    }
    const uid_t me = geteuid();
    char directory[PATH_MAX];
    if (!parent_of(path, directory, sizeof directory)) {
        std::snprintf(why, why_size, "its directory's name is longer than %d bytes", PATH_MAX - 1);
        return false;
    }
    struct stat dir {};
    if (::stat(directory, &dir) != 0) {
        std::snprintf(why, why_size, "cannot stat its directory %.150s", directory);
        return false;
    }
    const bool others_write = dir.st_mode & (S_IWGRP | S_IWOTH);
    if ((dir.st_uid != 0 && dir.st_uid != me && dir.st_uid != file.st_uid) ||
        (others_write && !(dir.st_mode & S_ISVTX))) {
        std::snprintf(why, why_size,
                      "its directory %.100s belongs to uid %u with mode %04o: only root or the daemon's user "
                      "may own and write it",
                      directory, unsigned(dir.st_uid), unsigned(dir.st_mode & 07777));
        return false;
    }
    if (file.st_uid == 0 || file.st_uid == me) return true;
    char above[PATH_MAX];
    struct stat parent {};
    if (dir.st_uid == file.st_uid && !others_write &&
        parent_of(std::strcmp(directory, ".") == 0 ? ".." : directory, above, sizeof above) &&
        ::stat(above, &parent) == 0 && parent.st_uid == 0 && !(parent.st_mode & (S_IWGRP | S_IWOTH)))
        return true;
    std::snprintf(why, why_size,
                  "owned by uid %u, in a directory root did not give that user: only root or the daemon's "
                  "user may write it",
                  unsigned(file.st_uid));
    return false;
}

}  // namespace

MapStatus StateMap::open(const char* path, char* why, size_t why_size) noexcept {
    close();
    // O_NONBLOCK: opening a FIFO planted at the path must not wait for a writer.
    // Closed on every return path; the mapping outlives it.
    const UniqueFd file(::open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK));
    if (!file) {
        const int err = errno;
        if (err == ENOENT) return fail(MapStatus::missing, why, why_size, path, "does not exist");
        if (err == ELOOP) return fail(MapStatus::not_regular_file, why, why_size, path, "is a symbolic link (refused)");
        if (why && why_size) std::snprintf(why, why_size, "state file %s: %s", path, strerror(err));
        return MapStatus::io_error;
    }
    struct stat st {};
    if (fstat(file.get(), &st) != 0) return fail(MapStatus::io_error, why, why_size, path, "cannot stat");
    if (!S_ISREG(st.st_mode)) return fail(MapStatus::not_regular_file, why, why_size, path, "is not a regular file");
    if (char untrusted[200]; !owner_is_trusted(st, path, untrusted, sizeof untrusted)) {
        if (why && why_size) std::snprintf(why, why_size, "state file %s: %s", path, untrusted);
        return MapStatus::unsafe_owner;
    }
    const auto size = static_cast<unsigned long long>(st.st_size);
    if (size < sizeof(Header))
        return fail(MapStatus::too_small, why, why_size, path, "%llu bytes, shorter than its %llu-byte header", size,
                    sizeof(Header));

    bip::mapped_region region;
    try {
        bip::mapped_region mapped(FdMappable(file.get()), bip::read_only, 0, st.st_size);
        region.swap(mapped);
    } catch (const std::exception& e) {
        if (why && why_size) std::snprintf(why, why_size, "state file %s: mmap: %s", path, e.what());
        return MapStatus::io_error;
    }
    const auto* header = static_cast<const Header*>(region.get_address());
    if (std::memcmp(header->magic, kMagic, sizeof kMagic) != 0)
        return fail(MapStatus::bad_magic, why, why_size, path, "bad magic: not an mcwatch state file");
    if (header->format_version != kFormatVersion)
        return fail(MapStatus::bad_version, why, why_size, path, "format version %llu, this reader knows version %llu",
                    header->format_version, kFormatVersion);
    if (header->header_size != sizeof(Header) || header->slot_size != sizeof(Slot))
        return fail(MapStatus::bad_layout, why, why_size, path,
                    "header size %llu and slot size %llu differ from this reader's 256 and 640", header->header_size,
                    header->slot_size);
    if (header->slot_count > kMaxServers)
        return fail(MapStatus::bad_layout, why, why_size, path, "%llu servers, more than %llu", header->slot_count,
                    kMaxServers);
    if (header->previous_count > kMaxServers)
        return fail(MapStatus::bad_layout, why, why_size, path, "%llu previous servers, more than %llu",
                    header->previous_count, kMaxServers);
    if (header->file_size != file_size_for(header->slot_count, header->previous_count))
        return fail(MapStatus::bad_layout, why, why_size, path,
                    "header says %llu bytes where its server counts make %llu", header->file_size,
                    file_size_for(header->slot_count, header->previous_count));
    if (size < header->file_size)
        return fail(MapStatus::too_small, why, why_size, path, "%llu bytes, header says %llu", size, header->file_size);
    const auto* slots = reinterpret_cast<const Slot*>(header + 1);
    if (compute_static_digest(*header, slots, header->slot_count) != header->static_digest)
        return fail(MapStatus::bad_digest, why, why_size, path, "static digest mismatch: corrupt or not fully written");

    region_.swap(region);
    header_ = header;
    slots_ = slots;
    device_ = st.st_dev;
    inode_ = st.st_ino;
    return MapStatus::ok;
}

void StateMap::close() noexcept {
    bip::mapped_region empty;
    region_.swap(empty);
    header_ = nullptr;
    slots_ = nullptr;
}

bool StateMap::replaced(const char* path) const noexcept {
    if (!header_) return true;
    if (header_->superseded.load(std::memory_order_acquire)) return true;
    struct stat st {};
    if (::lstat(path, &st) != 0) return false;  // gone: keep what we have, it goes stale
    return st.st_dev != device_ || st.st_ino != inode_;
}

uint64_t heartbeat_age_ms(const Header& header, int64_t now_unix_ms) noexcept {
    const int64_t beat = header.heartbeat_unix_ms.load(std::memory_order_acquire);
    return now_unix_ms >= beat ? uint64_t(now_unix_ms - beat) : uint64_t(beat - now_unix_ms);
}

bool heartbeat_fresh(const Header& header, int64_t now_unix_ms) noexcept {
    return header.heartbeat_unix_ms.load(std::memory_order_acquire) > 0 &&
           heartbeat_age_ms(header, now_unix_ms) <= header.stale_after_ms;
}

bool HeartbeatWatch::fresh(const Header& header, uint64_t now_ns, int64_t now_unix_ms) noexcept {
    const uint64_t token = header.heartbeat_mono_ns.load(std::memory_order_acquire);
    if (!seen_) {
        seen_ = true;
        token_ = token;
        if (token != 0 && heartbeat_fresh(header, now_unix_ms)) {
            // Dated by the wall clock, within stale_after: at most that long ago.
            const int64_t beat = header.heartbeat_unix_ms.load(std::memory_order_relaxed);
            const uint64_t ago_ns = now_unix_ms > beat ? uint64_t(now_unix_ms - beat) * 1000000u : 0;
            changed_ = true;
            changed_at_ns_ = now_ns > ago_ns ? now_ns - ago_ns : 0;
        }
    } else if (token != token_) {
        token_ = token;
        changed_ = true;
        changed_at_ns_ = now_ns;
    }
    return changed_ && now_ns - changed_at_ns_ <= uint64_t(header.stale_after_ms) * 1000000u;
}

}  // namespace mcwatch::state
