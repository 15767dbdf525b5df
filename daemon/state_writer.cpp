#include "daemon/state_writer.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "common/errno_text.hpp"
#include "libshim/clock.hpp"
#include "libshim/fd_mapping.hpp"
#include "libshim/seqlock.hpp"
#include "libshim/state_reader.hpp"
#include "libshim/unique_fd.hpp"

namespace mcwatch {

namespace bip = boost::interprocess;
using namespace state;

namespace {

// Copies `text` into a fixed field, always NUL-terminated.
template <size_t N>
void copy_field(char (&field)[N], const std::string& text) {
    std::strncpy(field, text.c_str(), N - 1);
    field[N - 1] = '\0';
}

// The pid holding a flock on the file (/proc/locks), 0 if none is listed.
pid_t flock_holder(const struct stat& file) {
    std::FILE* locks = std::fopen("/proc/locks", "re");
    if (!locks) return 0;
    pid_t holder = 0;
    char line[256];
    while (holder == 0 && std::fgets(line, sizeof line, locks)) {
        // "1: FLOCK  ADVISORY  WRITE 1234 00:2e:5678 0 EOF"; "1: -> FLOCK ..." waits.
        char kind[16], mode[16], access[16];
        long pid = 0;
        unsigned major_number = 0, minor_number = 0;
        unsigned long long inode = 0;
        if (std::sscanf(line, "%*d: %15s %15s %15s %ld %x:%x:%llu", kind, mode, access, &pid, &major_number,
                        &minor_number, &inode) == 7 &&
            std::strcmp(kind, "FLOCK") == 0 && inode == file.st_ino && major_number == major(file.st_dev) &&
            minor_number == minor(file.st_dev))
            holder = pid_t(pid);
    }
    std::fclose(locks);
    return holder;
}

// Why the lock is held, naming what really holds it: the mcwatchd whose
// pid the file names, or another process (any user could once hold a 0644
// lock file from a read-only descriptor).
std::string held_lock_message(int lock_fd, const struct stat& lock_stat, const std::string& state_file) {
    char text[32] = {};
    const ssize_t n = ::pread(lock_fd, text, sizeof text - 1, 0);
    const long named = n > 0 ? std::strtol(text, nullptr, 10) : 0;
    const pid_t holder = flock_holder(lock_stat);
    if (holder > 0 && holder == named)
        return fmt::format("another mcwatchd (pid {}) already publishes {}: its lock {}.lock is held", holder,
                           state_file, state_file);
    if (holder <= 0)
        return fmt::format(
            "lock {}.lock is held by a process this one cannot see (the file names pid {}): "
            "another mcwatchd in another pid namespace, or a process that opened the lock file",
            state_file, named > 0 ? fmt::format("{}", named) : "none");
    std::string command = "?";
    if (std::FILE* comm = std::fopen(fmt::format("/proc/{}/comm", holder).c_str(), "re")) {
        char name[64] = {};
        if (std::fgets(name, sizeof name, comm)) command.assign(name, strcspn(name, "\n"));
        std::fclose(comm);
    }
    struct stat proc {};
    const std::string uid =
        ::stat(fmt::format("/proc/{}", holder).c_str(), &proc) == 0 ? fmt::format("{}", proc.st_uid) : "?";
    return fmt::format(
        "lock {}.lock is held by pid {} ({}, uid {}), not by an mcwatchd publishing {}: "
        "stop that process",
        state_file, holder, command, uid, state_file);
}

}  // namespace

StateWriter::~StateWriter() {
    if (directory_fd_ >= 0) ::close(directory_fd_);
    if (lock_fd_ >= 0) ::close(lock_fd_);  // releases the flock
}

Result<> StateWriter::lock(const std::string& state_file, const RunAs& owner) {
    path_ = state_file;
    const size_t slash = state_file.rfind('/');
    const std::string directory = slash == 0 ? "/" : state_file.substr(0, slash);
    base_name_ = state_file.substr(slash + 1);
    if (base_name_.empty()) return failure(fmt::format("state_file {} names a directory", state_file));
    if (Result<> ready = prepare_runtime_directory(directory, owner); !ready) return ready;

    directory_fd_ = ::open(directory.c_str(), O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (directory_fd_ < 0) return failure(fmt::format("cannot open directory {}: {}", directory, errno_text()));
    const std::string lock_name = base_name_ + ".lock";
    // 0600: flock works on a read-only descriptor, so a lock file others
    // can open is one any user could hold to keep the daemon from starting.
    lock_fd_ = ::openat(directory_fd_, lock_name.c_str(), O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (lock_fd_ < 0) return failure(fmt::format("cannot open lock file {}.lock: {}", state_file, errno_text()));
    struct stat lock_stat {};
    if (::fstat(lock_fd_, &lock_stat) != 0 || !S_ISREG(lock_stat.st_mode))
        return failure(fmt::format("lock file {}.lock is not a regular file", state_file));
    // One left by an older mcwatchd may be 0644.
    if ((lock_stat.st_mode & 07777) != 0600 && ::fchmod(lock_fd_, 0600) != 0)
        return failure(fmt::format("cannot chmod lock file {}.lock to 0600: {}", state_file, errno_text()));
    // Whoever starts the daemon next, as root or as its user, can open it.
    if (owner.uid != geteuid() && ::fchown(lock_fd_, owner.uid, owner.gid) != 0)
        return failure(fmt::format("cannot give lock file {}.lock to {}: {}", state_file, owner.name, errno_text()));
    if (::flock(lock_fd_, LOCK_EX | LOCK_NB) != 0) {
        const int err = errno;
        if (err != EWOULDBLOCK) return failure(fmt::format("cannot lock {}.lock: {}", state_file, errno_text(err)));
        return failure(held_lock_message(lock_fd_, lock_stat, state_file));
    }
    const std::string pid = fmt::format("{}\n", getpid());
    if (::ftruncate(lock_fd_, 0) != 0 || ::pwrite(lock_fd_, pid.data(), pid.size(), 0) != ssize_t(pid.size()))
        return failure(fmt::format("cannot write pid into {}.lock: {}", state_file, errno_text()));
    return {};
}

Result<std::optional<PublishedFile>> StateWriter::read_predecessor() {
    StateMap map;
    char reason[256] = "";
    const MapStatus status = map.open(path_.c_str(), reason, sizeof reason);
    if (status == MapStatus::missing) return std::nullopt;
    if (status != MapStatus::ok) return failure(reason);
    const Header& header = map.header();
    PublishedFile file;
    file.servers.resize(header.slot_count);
    // The lock is ours, so nobody writes this file any more; a predecessor
    // killed inside its seqlock section left seq odd for ever, and then the
    // slots as they are (each field whole) are the best there is.
    if (!read_consistent(header, map.slots(), header.slot_count, file.servers.data(), &file.generation, kReadTries,
                         nullptr, &file.membership_move)) {
        for (uint32_t i = 0; i < header.slot_count; ++i) load_dynamic(map.slots()[i], file.servers[i]);
        load_membership_move(header, file.membership_move);
    }
    file.generation = header.generation.load(std::memory_order_relaxed);
    file.heartbeat_unix_ms = header.heartbeat_unix_ms.load(std::memory_order_relaxed);
    for (uint32_t i = 0; i < header.slot_count; ++i) {
        const Slot& slot = map.slots()[i];
        file.addresses.emplace_back(slot.address, strnlen(slot.address, kAddressSize));
        file.resolved.emplace_back(slot.resolved, strnlen(slot.resolved, kResolvedSize));
        file.weights.push_back(slot.weight);
    }
    file.distribution = Distribution(header.distribution);
    file.hash = Hash(header.hash);
    // The reader checked that the file holds previous_count entries.
    const PreviousServer* previous = previous_servers(map.slots(), header.slot_count);
    for (uint32_t i = 0; i < header.previous_count; ++i)
        file.membership.previous.servers.push_back(
            {std::string(previous[i].address, strnlen(previous[i].address, kAddressSize)),
             std::string(previous[i].resolved, strnlen(previous[i].resolved, kResolvedSize)), previous[i].weight,
             (previous[i].flags & kPreviousAvoided) != 0});
    file.membership.previous.distribution = Distribution(header.previous_distribution);
    file.membership.previous.hash = Hash(header.previous_hash);
    file.membership.changed_unix_ms = header.membership_changed_unix_ms;
    generation_floor_ = std::max(generation_floor_, file.generation);
    return file;
}

ServerList PublishedFile::server_list() const {
    ServerList list{{}, distribution, hash};
    for (size_t i = 0; i < addresses.size(); ++i)
        list.servers.push_back(
            {addresses[i], i < resolved.size() ? resolved[i] : std::string(), i < weights.size() ? weights[i] : 1});
    mark_avoided(list, servers);
    return list;
}

Result<> StateWriter::publish(const Config& config, const std::vector<std::string>& resolved,
                              const std::vector<ServerDynamic>& servers, const MembershipChange& membership) {
    const auto count = uint32_t(config.servers.size());
    const auto previous_count = uint32_t(std::min<size_t>(membership.previous.servers.size(), kMaxServers));
    const uint64_t size = file_size_for(count, previous_count);
    const std::string temp_name = fmt::format(".{}.new.{}", base_name_, getpid());

    // A leftover from a crashed predecessor with our pid is ours to replace.
    ::unlinkat(directory_fd_, temp_name.c_str(), 0);
    const UniqueFd file(
        ::openat(directory_fd_, temp_name.c_str(), O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644));
    if (!file) return failure(fmt::format("cannot create {}: {}", temp_name, errno_text()));
    // The umask may have narrowed 0644; readers of other users need to read it.
    if (::fchmod(file.get(), 0644) != 0) return failure(fmt::format("cannot chmod {}: {}", temp_name, errno_text()));
    // Reserve every page now: on a full tmpfs a write into a sparse mapping
    // would be a SIGBUS in the daemon, not an error.
    if (int err = ::posix_fallocate(file.get(), 0, off_t(size)); err != 0) {
        ::unlinkat(directory_fd_, temp_name.c_str(), 0);
        return failure(fmt::format("cannot allocate {} bytes for the state file: {}", size, errno_text(err)));
    }
    bip::mapped_region region;
    try {
        bip::mapped_region mapped(state::FdMappable(file.get()), bip::read_write, 0, size);
        region.swap(mapped);
    } catch (const std::exception& e) {
        ::unlinkat(directory_fd_, temp_name.c_str(), 0);
        return failure(fmt::format("cannot map the new state file: {}", e.what()));
    }

    auto* header = static_cast<Header*>(region.get_address());
    auto* slots = reinterpret_cast<Slot*>(header + 1);
    write_layout(*header, count, previous_count);
    header->distribution = uint32_t(config.distribution);
    header->hash = uint32_t(config.hash);
    header->daemon_pid = uint32_t(getpid());
    header->probe_interval_ms = uint32_t(config.probe_interval.count());
    header->stale_after_ms = uint32_t(config.stale_after.count());
    header->recently_down_window_s = uint32_t(config.recently_down_window.count() / 1000);
    header->writeback_ttl_s = uint32_t(config.writeback_ttl.count() / 1000);
    header->flags =
        (config.flush_on_rejoin ? kHeaderFlushOnRejoin : 0) | (config.managed_list ? kHeaderManagedList : 0);
    header->replicas = config.replicas;
    header->replica_max_ttl_s = uint32_t(config.replica_max_ttl.count() / 1000);
    header->created_unix_ms = unix_ms();
    for (uint32_t i = 0; i < count; ++i) {
        copy_field(slots[i].address, config.servers[i].text);
        copy_field(slots[i].resolved, i < resolved.size() ? resolved[i] : std::string());
        slots[i].weight = config.servers[i].weight;
        slots[i].index = i;
        store_dynamic(slots[i], servers[i]);
    }
    store_fleet(*header, fleet_);
    store_membership_move(*header, membership_move_);
    if (previous_count > 0) {
        auto* previous = reinterpret_cast<PreviousServer*>(slots + count);
        for (uint32_t i = 0; i < previous_count; ++i) {
            copy_field(previous[i].address, membership.previous.servers[i].address);
            copy_field(previous[i].resolved, membership.previous.servers[i].resolved);
            previous[i].weight = membership.previous.servers[i].weight;
            previous[i].flags = membership.previous.servers[i].avoided ? kPreviousAvoided : 0;
        }
        header->previous_distribution = uint32_t(membership.previous.distribution);
        header->previous_hash = uint32_t(membership.previous.hash);
        header->membership_changed_unix_ms = membership.changed_unix_ms;
    }
    seal_digests(*header, slots, count);
    header->heartbeat_unix_ms.store(unix_ms(), std::memory_order_relaxed);
    header->heartbeat_mono_ns.store(monotonic_ns(), std::memory_order_release);

    // The file being replaced: ours if we published before, else whatever a
    // predecessor left. Mark it only if it is really an mcwatch file we own.
    bip::mapped_region previous;
    if (header_) {
        previous.swap(region_);
    } else if (const UniqueFd old(::openat(directory_fd_, base_name_.c_str(), O_RDWR | O_NOFOLLOW | O_CLOEXEC)); old) {
        struct stat st {};
        if (::fstat(old.get(), &st) == 0 && S_ISREG(st.st_mode) && st.st_uid == geteuid() &&
            uint64_t(st.st_size) >= sizeof(Header)) {
            try {
                bip::mapped_region mapped(state::FdMappable(old.get()), bip::read_write, 0, sizeof(Header));
                const auto* old_header = static_cast<const Header*>(mapped.get_address());
                if (std::memcmp(old_header->magic, kMagic, sizeof kMagic) == 0 &&
                    old_header->format_version == kFormatVersion)
                    previous.swap(mapped);
            } catch (const std::exception&) {
                // Not mappable: readers notice the new inode instead.
            }
        }
    }

    uint64_t generation = generation_floor_;
    if (const auto* replaced = static_cast<const Header*>(previous.get_address()))
        generation = std::max(generation, replaced->generation.load(std::memory_order_relaxed));
    header->generation.store(generation + 1, std::memory_order_release);

    if (::renameat(directory_fd_, temp_name.c_str(), directory_fd_, base_name_.c_str()) != 0) {
        const std::string why = fmt::format("cannot rename {} to {}: {}", temp_name, path_, errno_text());
        ::unlinkat(directory_fd_, temp_name.c_str(), 0);
        if (header_) region_.swap(previous);  // keep publishing into the old file
        return failure(why);
    }
    if (previous.get_address())
        static_cast<Header*>(previous.get_address())->superseded.store(1, std::memory_order_release);
    generation_floor_ = generation + 1;
    region_.swap(region);
    header_ = header;
    slots_ = slots;
    return {};
}

void StateWriter::write_servers(const std::vector<ServerDynamic>& servers, bool routing_changed) {
    if (!header_) return;
    SeqlockWriteGuard guard(*header_);
    for (uint32_t i = 0; i < header_->slot_count && i < servers.size(); ++i) store_dynamic(slots_[i], servers[i]);
    store_fleet(*header_, fleet_);
    store_membership_move(*header_, membership_move_);
    if (routing_changed) header_->generation.fetch_add(1, std::memory_order_relaxed);
}

int64_t StateWriter::heartbeat_unix_ms() const {
    return header_ ? header_->heartbeat_unix_ms.load(std::memory_order_relaxed) : 0;
}

uint64_t StateWriter::generation() const { return header_ ? header_->generation.load(std::memory_order_relaxed) : 0; }

uint64_t StateWriter::rounds() const { return header_ ? header_->rounds.load(std::memory_order_relaxed) : 0; }

void StateWriter::update(const std::vector<ServerDynamic>& servers, bool routing_changed) {
    if (!header_) return;
    write_servers(servers, routing_changed);
    header_->rounds.fetch_add(1, std::memory_order_relaxed);
    header_->heartbeat_unix_ms.store(unix_ms(), std::memory_order_relaxed);
    header_->heartbeat_mono_ns.store(monotonic_ns(), std::memory_order_release);
}

}  // namespace mcwatch
