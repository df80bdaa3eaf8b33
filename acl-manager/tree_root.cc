#include "acl-manager/tree_root.h"

#include <fcntl.h>
#include <linux/magic.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <fmt/core.h>

#include "common/error.h"
#include "common/log.h"
#include "common/mountinfo.h"

namespace vmwarden::acl::detail {
namespace {

// struct file_handle with room for the largest handle the kernel gives out.
struct HandleBuffer {
  alignas(file_handle) unsigned char storage[sizeof(file_handle) + MAX_HANDLE_SZ] = {};
  file_handle* get() { return reinterpret_cast<file_handle*>(storage); }
};

struct FsIdentity {
  std::uint64_t type = 0;
  std::uint64_t id = 0;
};

std::optional<FsIdentity> identity_of(int fd) {
  struct statfs st;
  if (::fstatfs(fd, &st) != 0) return std::nullopt;
  std::uint64_t id = 0;
  std::memcpy(&id, &st.f_fsid, sizeof id);
  return FsIdentity{static_cast<std::uint64_t>(st.f_type), id};
}

// A directory opened only if no symlink is on the way (mountinfo shows
// resolved paths; one there now was put there since).
UniqueFd open_directory(const std::filesystem::path& path) {
  open_how how{};
  how.flags = O_RDONLY | O_DIRECTORY | O_CLOEXEC;
  how.resolve = RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
  long fd = syscall(SYS_openat2, AT_FDCWD, path.c_str(), &how, sizeof how);
  return UniqueFd(fd < 0 ? -1 : static_cast<int>(fd));
}

// Where a handle may be decoded: the mounts of the recorded device
// (mountinfo's order, see mount_points_of_device), then the directories
// above the tree, nearest first (the device number of a filesystem can
// change across reboots; btrfs reports a subvolume's own in stat).
std::vector<std::filesystem::path> candidate_mounts(const RecordedRoot& root, const std::filesystem::path& tree) {
  std::vector<std::filesystem::path> candidates;
  for (const std::string& mount_point : mount_points_of_device(read_mountinfo(), root.device))
    candidates.emplace_back(mount_point);
  for (std::filesystem::path dir = tree.parent_path(); !dir.empty(); dir = dir.parent_path()) {
    candidates.push_back(dir);
    if (dir == dir.root_path()) break;
  }
  return candidates;
}

}  // namespace

std::optional<RecordedRoot> record_root(int dir_fd, const std::filesystem::path& tree) {
  struct stat st;
  check(::fstat(dir_fd, &st), "fstat", tree.string());
  std::optional<FsIdentity> fs = identity_of(dir_fd);
  if (!fs) throw_errno("statfs", tree.string());
  if (fs->type == FUSE_SUPER_MAGIC) return std::nullopt;
  HandleBuffer buffer;
  file_handle* handle = buffer.get();
  handle->handle_bytes = MAX_HANDLE_SZ;
  int mount_id = 0;
  if (::name_to_handle_at(dir_fd, "", handle, &mount_id, AT_EMPTY_PATH) != 0) {
    if (errno != EOPNOTSUPP) {
      log::warning("{}: no file handle ({}): its grant record names it by its path alone", tree.string(),
                   std::strerror(errno));
    }
    return std::nullopt;
  }
  RecordedRoot root;
  root.device = st.st_dev;
  root.inode = st.st_ino;
  root.fs_type = fs->type;
  root.fs_id = fs->id;
  root.handle_type = handle->handle_type;
  root.handle.assign(reinterpret_cast<const char*>(handle->f_handle), handle->handle_bytes);
  return root;
}

ReopenedRoot reopen_root(const RecordedRoot& root, const std::filesystem::path& tree) {
  ReopenedRoot reopened;
  if (root.handle.empty() || root.handle.size() > MAX_HANDLE_SZ) return reopened;
  HandleBuffer buffer;
  file_handle* handle = buffer.get();
  handle->handle_bytes = static_cast<unsigned>(root.handle.size());
  handle->handle_type = root.handle_type;
  std::memcpy(handle->f_handle, root.handle.data(), root.handle.size());

  for (const std::filesystem::path& candidate : candidate_mounts(root, tree)) {
    UniqueFd mount = open_directory(candidate);
    if (!mount) continue;
    // Only the recorded filesystem decodes its handle: another one could
    // take the same bytes for one of its own directories.
    std::optional<FsIdentity> fs = identity_of(mount.get());
    if (!fs || fs->type != root.fs_type || fs->id != root.fs_id) continue;
    UniqueFd dir(::open_by_handle_at(mount.get(), handle, O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!dir) {
      if (errno == ESTALE) {
        reopened.state = ReopenedRoot::State::gone;
        return reopened;
      }
      throw_errno("open_by_handle_at", fmt::format("the directory granted as {} (inode {})", tree.string(), root.inode));
    }
    struct stat st;
    check(::fstat(dir.get(), &st), "fstat", tree.string());
    // The handle names one inode of this filesystem; checked all the same,
    // as the walk is about to act on what it opened. (The device number may
    // differ after a reboot where the filesystem has an id to go by.)
    bool same = S_ISDIR(st.st_mode) && st.st_ino == root.inode && (st.st_dev == root.device || root.fs_id != 0);
    if (!same) {
      reopened.state = ReopenedRoot::State::gone;
      return reopened;
    }
    char where[4096];
    ssize_t length = ::readlink(fmt::format("/proc/self/fd/{}", dir.get()).c_str(), where, sizeof where - 1);
    reopened.where = length > 0 ? std::string(where, static_cast<std::size_t>(length))
                                : fmt::format("inode {} of the filesystem of {}", root.inode, candidate.string());
    reopened.state = ReopenedRoot::State::found;
    reopened.dir = std::move(dir);
    return reopened;
  }
  return reopened;
}

}  // namespace vmwarden::acl::detail
