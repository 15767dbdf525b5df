// Boost.Interprocess maps any object that offers get_mapping_handle(), but its
// file_mapping only opens by path. This wrapper lets it map a descriptor we
// opened ourselves (O_NOFOLLOW, openat in a checked directory).
#pragma once

#include <boost/interprocess/mapped_region.hpp>

namespace mcwatch::state {

class FdMappable {
public:
    explicit FdMappable(int fd) noexcept : fd_(fd) {}
    boost::interprocess::mapping_handle_t get_mapping_handle() const noexcept {
        return boost::interprocess::ipcdetail::mapping_handle_from_file_handle(fd_);
    }

private:
    int fd_;
};

}  // namespace mcwatch::state
