#include "acl-manager/tree_root.h"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <fmt/core.h>

#include "common/error.h"
#include "common/mountinfo.h"

namespace vmwarden::acl::detail {
namespace {

// struct file_handle with room for the largest handle the kernel gives out.
struct HandleBuffer {
  alignas(file_handle) unsigned char storage[sizeof(file_handle) + MAX_HANDLE_SZ] = {};
  file_handle* get() { return reinterpret_cast<file_handle*>(storage); }
};

// A mount point from mountinfo, opened only if no symlink is on the way
// (mountinfo shows resolved paths; one there now was put there since).
UniqueFd open_mount_point(const std::string& mount_point) {
  open_how how{};
  how.flags = O_RDONLY | O_DIRECTORY | O_CLOEXEC;
  how.resolve = RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
  long fd = syscall(SYS_openat2, AT_FDCWD, mount_point.c_str(), &how, sizeof how);
  return UniqueFd(fd < 0 ? -1 : static_cast<int>(fd));
}

}  // namespace

std::optional<RecordedRoot> record_root(int dir_fd, const std::filesystem::path& tree) {
  struct stat st;
  check(::fstat(dir_fd, &st), "fstat", tree.string());
  HandleBuffer buffer;
  file_handle* handle = buffer.get();
  handle->handle_bytes = MAX_HANDLE_SZ;
  int mount_id = 0;
  if (::name_to_handle_at(dir_fd, "", handle, &mount_id, AT_EMPTY_PATH) != 0) {
    if (errno == EOPNOTSUPP) return std::nullopt;
    throw_errno("name_to_handle_at", tree.string());
  }
  RecordedRoot root;
  root.device = st.st_dev;
  root.inode = st.st_ino;
  root.handle_type = handle->handle_type;
  root.handle.assign(reinterpret_cast<const char*>(handle->f_handle), handle->handle_bytes);
  return root;
}

ReopenedRoot reopen_root(const RecordedRoot& root) {
  if (root.handle.empty() || root.handle.size() > MAX_HANDLE_SZ) return {};
  HandleBuffer buffer;
  file_handle* handle = buffer.get();
  handle->handle_bytes = static_cast<unsigned>(root.handle.size());
  handle->handle_type = root.handle_type;
  std::memcpy(handle->f_handle, root.handle.data(), root.handle.size());

  for (const std::string& mount_point : mount_points_of_device(read_mountinfo(), root.device)) {
    UniqueFd mount = open_mount_point(mount_point);
    struct stat st;
    // Another mount may cover this one: only a directory of the recorded
    // filesystem can decode its handle.
    if (!mount || ::fstat(mount.get(), &st) != 0 || st.st_dev != root.device) continue;
    UniqueFd dir(::open_by_handle_at(mount.get(), handle, O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!dir) {
      if (errno == ESTALE || errno == ENOENT || errno == ENOTDIR) return {};
      throw_errno("open_by_handle_at", fmt::format("the directory recorded as inode {} on {}", root.inode, mount_point));
    }
    check(::fstat(dir.get(), &st), "fstat", mount_point);
    // A handle names one inode of one filesystem; checked all the same, as
    // the walk is about to act on what it opened.
    if (!S_ISDIR(st.st_mode) || st.st_dev != root.device || st.st_ino != root.inode) return {};
    ReopenedRoot reopened;
    char where[4096];
    ssize_t length = ::readlink(fmt::format("/proc/self/fd/{}", dir.get()).c_str(), where, sizeof where - 1);
    reopened.where = length > 0 ? std::string(where, static_cast<std::size_t>(length))
                                : fmt::format("inode {} on {}", root.inode, mount_point);
    reopened.dir = std::move(dir);
    return reopened;
  }
  return {};
}

}  // namespace vmwarden::acl::detail
