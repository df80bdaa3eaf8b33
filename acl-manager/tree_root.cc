#include "acl-manager/tree_root.h"

#include <fcntl.h>
#include <linux/openat2.h>
#include <linux/types.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <string_view>

#include <fmt/core.h>

#include "common/error.h"
#include "common/log.h"
#include "common/mountinfo.h"

namespace vmwarden::acl::detail {
namespace {

// FS_IOC_GETFSUUID (Linux 6.8), not in every libc's headers yet.
struct FsUuid {
  __u8 len;
  __u8 uuid[16];
};
constexpr unsigned long kGetFsUuid = _IOR(0x15, 0, FsUuid);

// Local filesystems whose id tells one filesystem from another for as long
// as it exists, and whose handles name a directory until it is removed.
// Network filesystems (whose ids are the server's, and whose mounts can
// hang) and FUSE (whose daemon decides what a handle opens) are not among
// them: their trees are known by their path alone.
constexpr std::array<std::string_view, 8> kHandledTypes = {"ext2", "ext3", "ext4",  "xfs",
                                                           "btrfs", "f2fs", "tmpfs", "bcachefs"};

// struct file_handle with room for the largest handle the kernel gives out.
struct HandleBuffer {
  alignas(file_handle) unsigned char storage[sizeof(file_handle) + MAX_HANDLE_SZ] = {};
  file_handle* get() { return reinterpret_cast<file_handle*>(storage); }
};

std::string hex_of(const unsigned char* bytes, std::size_t size) {
  std::string hex;
  for (std::size_t i = 0; i < size; ++i) hex += fmt::format("{:02x}", bytes[i]);
  return hex;
}

// The filesystem's UUID where it has one that is not all zeros, else its
// statfs f_fsid if that is not zero, else empty (no identity to go by).
std::string identity_of(int fd) {
  FsUuid uuid{};
  if (::ioctl(fd, kGetFsUuid, &uuid) == 0 && uuid.len > 0 && uuid.len <= sizeof uuid.uuid &&
      std::any_of(uuid.uuid, uuid.uuid + uuid.len, [](__u8 byte) { return byte != 0; })) {
    return "uuid:" + hex_of(uuid.uuid, uuid.len);
  }
  struct statfs st;
  if (::fstatfs(fd, &st) != 0) return {};
  unsigned char fsid[sizeof st.f_fsid];
  std::memcpy(fsid, &st.f_fsid, sizeof fsid);
  if (std::all_of(fsid, fsid + sizeof fsid, [](unsigned char byte) { return byte == 0; })) return {};
  return "fsid:" + hex_of(fsid, sizeof fsid);
}

std::string current_boot() {
  UniqueFd fd(::open("/proc/sys/kernel/random/boot_id", O_RDONLY | O_CLOEXEC));
  if (!fd) throw_errno("open", "/proc/sys/kernel/random/boot_id");
  char text[64];
  ssize_t length = ::read(fd.get(), text, sizeof text);
  if (length <= 0) throw_errno("read", "/proc/sys/kernel/random/boot_id");
  std::string boot(text, static_cast<std::size_t>(length));
  while (!boot.empty() && boot.back() == '\n') boot.pop_back();
  return boot;
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

}  // namespace

std::optional<RecordedRoot> record_root(int dir_fd, const std::filesystem::path& tree) {
  struct stat st;
  check(::fstat(dir_fd, &st), "fstat", tree.string());
  HandleBuffer buffer;
  file_handle* handle = buffer.get();
  handle->handle_bytes = MAX_HANDLE_SZ;
  int mount_id = 0;
  if (::name_to_handle_at(dir_fd, "", handle, &mount_id, AT_EMPTY_PATH) != 0) {
    if (errno != EOPNOTSUPP) {
      log::warning("{}: no file handle ({}): its grant record knows it by its path alone", tree.string(),
                   std::strerror(errno));
    }
    return std::nullopt;
  }
  RecordedRoot root;
  root.fs_type = filesystem_type_of_mount(read_mountinfo(), mount_id);
  if (std::find(kHandledTypes.begin(), kHandledTypes.end(), root.fs_type) == kHandledTypes.end()) return std::nullopt;
  root.fs_id = identity_of(dir_fd);
  if (root.fs_id.empty()) return std::nullopt;
  if (root.fs_type == "tmpfs") root.boot = current_boot();
  root.device = st.st_dev;
  root.inode = st.st_ino;
  root.handle_type = handle->handle_type;
  root.handle.assign(reinterpret_cast<const char*>(handle->f_handle), handle->handle_bytes);
  return root;
}

ReopenedRoot reopen_root(const RecordedRoot& root, const std::filesystem::path& tree) {
  ReopenedRoot reopened;
  if (root.handle.empty() || root.handle.size() > MAX_HANDLE_SZ || root.fs_id.empty()) return reopened;
  // A tmpfs lives no longer than the boot it was mounted in.
  if (!root.boot.empty() && root.boot != current_boot()) {
    reopened.state = ReopenedRoot::State::gone;
    return reopened;
  }
  HandleBuffer buffer;
  file_handle* handle = buffer.get();
  handle->handle_bytes = static_cast<unsigned>(root.handle.size());
  handle->handle_type = root.handle_type;
  std::memcpy(handle->f_handle, root.handle.data(), root.handle.size());

  for (const std::string& mount_point : mount_points_of_type(read_mountinfo(), root.fs_type)) {
    UniqueFd mount = open_directory(mount_point);
    // Only the recorded filesystem decodes its handle: another one could
    // take the same bytes for one of its own directories, or call a stale
    // handle what is only foreign to it.
    if (!mount || identity_of(mount.get()) != root.fs_id) continue;
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
    // A handle names one inode of its filesystem; checked all the same, as
    // the walk is about to act on what it opened. Anything else is left
    // alone, and the directory's fate stays unknown.
    if (!S_ISDIR(st.st_mode) || st.st_ino != root.inode) continue;
    char where[4096];
    ssize_t length = ::readlink(fmt::format("/proc/self/fd/{}", dir.get()).c_str(), where, sizeof where - 1);
    reopened.where = length > 0 ? std::string(where, static_cast<std::size_t>(length))
                                : fmt::format("inode {} of the filesystem mounted on {}", root.inode, mount_point);
    reopened.state = ReopenedRoot::State::found;
    reopened.dir = std::move(dir);
    return reopened;
  }
  return reopened;
}

}  // namespace vmwarden::acl::detail
