#include "daemon/privileges.hpp"

#include <grp.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>

#include <cerrno>

#include "common/errno_text.hpp"

namespace mcwatch {

RunAs current_user() { return {uint32_t(geteuid()), uint32_t(getegid()), fmt::format("uid {}", geteuid())}; }

RunAs run_as(const Config& config) {
    if (!config.user.empty()) return {config.user_uid, config.user_gid, config.user};
    return current_user();
}

Result<> check_can_switch(const Config& config) {
    if (config.user.empty() || geteuid() == 0 || geteuid() == config.user_uid) return {};
    return failure(
        fmt::format("user = {}: mcwatchd runs as uid {} and cannot switch to {} (uid {}); start it as root or as {}",
                    config.user, geteuid(), config.user, config.user_uid, config.user));
}

Result<> ensure_descriptor_limit(size_t servers) {
    // The control server takes up to 16 clients; the rest is headroom.
    const rlim_t needed = rlim_t(servers) + 64;
    struct rlimit limit {};
    if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) return failure(fmt::format("getrlimit: {}", errno_text()));
    if (limit.rlim_cur != RLIM_INFINITY && limit.rlim_cur >= needed) return {};
    if (limit.rlim_max != RLIM_INFINITY && limit.rlim_max < needed)
        return failure(
            fmt::format("{} servers need {} file descriptors, but the hard limit is {} "
                        "(raise it: ulimit -Hn, or LimitNOFILE= in the systemd unit)",
                        servers, needed, limit.rlim_max));
    limit.rlim_cur = needed;
    if (::setrlimit(RLIMIT_NOFILE, &limit) != 0)
        return failure(fmt::format("cannot raise the descriptor limit to {}: {}", needed, errno_text()));
    return {};
}

std::string parent_directory(const std::string& path) {
    const size_t slash = path.rfind('/');
    return slash == 0 || slash == std::string::npos ? "/" : path.substr(0, slash);
}

Result<> prepare_runtime_directory(const std::string& directory, const RunAs& owner) {
    bool created = false;
    for (size_t slash = directory.find('/', 1);; slash = directory.find('/', slash + 1)) {
        const std::string prefix = directory.substr(0, slash);
        if (::mkdir(prefix.c_str(), 0755) == 0) {
            created = slash == std::string::npos;
            // mkdir applies the umask: under 077 no other user could reach the
            // state file, and every client would silently place natively.
            if (::chmod(prefix.c_str(), 0755) != 0)
                return failure(fmt::format("cannot chmod directory {}: {}", prefix, errno_text()));
        } else if (errno != EEXIST) {
            return failure(fmt::format("cannot create directory {}: {}", prefix, errno_text()));
        }
        if (slash == std::string::npos) break;
    }
    // Only a directory we made ourselves is given away: never /tmp or /run.
    if (created && owner.uid != geteuid() && ::lchown(directory.c_str(), owner.uid, owner.gid) != 0)
        return failure(fmt::format("cannot give directory {} to {}: {}", directory, owner.name, errno_text()));
    struct stat st {};
    if (::lstat(directory.c_str(), &st) != 0)
        return failure(fmt::format("cannot stat directory {}: {}", directory, errno_text()));
    if (!S_ISDIR(st.st_mode))
        return failure(fmt::format("{} is not a directory (symbolic links are refused)", directory));
    if (st.st_mode & S_IWOTH)
        return failure(fmt::format("directory {} is writable by others (mode {:04o}): refusing to publish there",
                                   directory, st.st_mode & 07777));
    if (st.st_uid == owner.uid) return {};
    if (st.st_uid == 0 && owner.uid != 0)
        return failure(
            fmt::format("directory {} belongs to root, but mcwatchd runs as {}: give mcwatchd a directory of its "
                        "own (it creates a missing one) or chown it to {}",
                        directory, owner.name, owner.name));
    if (st.st_uid != 0)
        return failure(fmt::format("directory {} belongs to uid {}, not to {} (uid {})", directory, st.st_uid,
                                   owner.name, owner.uid));
    return {};
}

Result<> drop_privileges(const Config& config) {
    if (config.user.empty() || (geteuid() == config.user_uid && getuid() == config.user_uid)) return {};
    if (Result<> can = check_can_switch(config); !can) return can;
    if (::initgroups(config.user.c_str(), config.user_gid) != 0)
        return failure(fmt::format("user = {}: cannot set its groups: {}", config.user, errno_text()));
    if (::setresgid(config.user_gid, config.user_gid, config.user_gid) != 0)
        return failure(fmt::format("user = {}: cannot set gid {}: {}", config.user, config.user_gid, errno_text()));
    if (::setresuid(config.user_uid, config.user_uid, config.user_uid) != 0)
        return failure(fmt::format("user = {}: cannot set uid {}: {}", config.user, config.user_uid, errno_text()));
    // A switch that could be undone is no switch.
    if (config.user_uid != 0 && (::setuid(0) == 0 || ::seteuid(0) == 0))
        return failure(fmt::format("user = {}: root privileges could be regained after the switch", config.user));
    return {};
}

}  // namespace mcwatch
