#include "acl-manager/tree_root.h"

#include <fcntl.h>
#include <linux/magic.h>
#include <linux/openat2.h>
#include <linux/types.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <cerrno>
#include <cstring>
#include <string_view>

#include <fmt/core.h>

#include "acl-manager/store.h"
#include "common/error.h"
#include "common/log.h"
#include "common/mountinfo.h"
#include "common/printable.h"

namespace vmwarden::acl::detail {
namespace {

// FS_IOC_GETFSUUID (Linux 6.9), not in every libc's headers yet.
struct FsUuid {
  __u8 len;
  __u8 uuid[16];
};
constexpr unsigned long kGetFsUuid = _IOR(0x15, 0, FsUuid);

// Local filesystems whose id tells one filesystem from another for as long
// as it exists, and whose handles name a directory until it is removed.
// ext2/3/4 and tmpfs derive statfs's f_fsid from their UUID (tmpfs: a new
// random one at each mount); xfs, f2fs, btrfs and bcachefs do not (xfs and
// f2fs use the device number), so those need FS_IOC_GETFSUUID (Linux 6.9).
// Network filesystems (whose ids are the server's, and whose mounts can
// hang) and FUSE (whose daemon decides what a handle opens) are not among
// them: their trees are known by their path alone.
struct HandledType {
  std::string_view name;  // as recorded; ext2 and ext3 are recorded as ext4 (one driver, one magic)
  std::uint64_t magic;    // statfs f_type
  bool fsid_is_uuid;
};
constexpr std::array<HandledType, 6> kHandledTypes = {{{"ext4", EXT4_SUPER_MAGIC, true},
                                                       {"tmpfs", TMPFS_MAGIC, true},
                                                       {"xfs", XFS_SUPER_MAGIC, false},
                                                       {"btrfs", BTRFS_SUPER_MAGIC, false},
                                                       {"f2fs", F2FS_SUPER_MAGIC, false},
                                                       {"bcachefs", 0xca451a4e, false}}};

const HandledType* handled_type(std::string_view name) {
  for (const HandledType& type : kHandledTypes) {
    if (type.name == name) return &type;
  }
  return nullptr;
}

// The names a filesystem of type `name` may be mounted under (one driver
// mounts ext2, ext3 and ext4).
std::vector<std::string_view> type_family(std::string_view name) {
  if (name == "ext4") return {"ext4", "ext3", "ext2"};
  return {name};
}

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

// The filesystem's id: for a type whose f_fsid comes from its UUID,
// "fsid:HEX" (stable across kernels, which only lately report the UUID
// itself); for the others "uuid:HEX" from FS_IOC_GETFSUUID. Empty where
// there is none (not all zeros) to go by.
std::string identity_of(int fd, const HandledType& type) {
  if (!type.fsid_is_uuid) {
    FsUuid uuid{};
    if (::ioctl(fd, kGetFsUuid, &uuid) != 0 || uuid.len == 0 || uuid.len > sizeof uuid.uuid ||
        std::all_of(uuid.uuid, uuid.uuid + uuid.len, [](__u8 byte) { return byte == 0; })) {
      return {};
    }
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
  std::optional<std::string> boot = read_small_file("/proc/sys/kernel/random/boot_id");
  if (!boot) throw_errno("read", "/proc/sys/kernel/random/boot_id");
  while (!boot->empty() && boot->back() == '\n') boot->pop_back();
  return *boot;
}

// The id of the mount `fd` is on, as mountinfo lists it (fdinfo's mnt_id).
int mount_id_of(int fd) {
  std::optional<std::string> info = read_small_file(fmt::format("/proc/self/fdinfo/{}", fd));
  if (!info) return -1;
  std::string_view content = *info;
  std::size_t at = content.find("mnt_id:");
  if (at == std::string_view::npos) return -1;
  at += 7;
  while (at < content.size() && (content[at] == ' ' || content[at] == '\t')) ++at;
  int id = -1;
  std::from_chars(content.data() + at, content.data() + content.size(), id);
  return id;
}

}  // namespace

UniqueFd open_directory_without_symlinks(const std::filesystem::path& path) {
  open_how how{};
  how.flags = O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC;
  how.resolve = RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
  long fd = syscall(SYS_openat2, AT_FDCWD, path.c_str(), &how, sizeof how);
  return UniqueFd(fd < 0 ? -1 : static_cast<int>(fd));
}

std::optional<RecordedRoot> record_root(int dir_fd, const std::filesystem::path& tree) {
  struct statfs fs;
  check(::fstatfs(dir_fd, &fs), "statfs", printable(tree.native()));
  const HandledType* type = nullptr;
  for (const HandledType& candidate : kHandledTypes) {
    if (candidate.magic == static_cast<std::uint64_t>(fs.f_type)) type = &candidate;
  }
  if (type == nullptr) return std::nullopt;
  struct stat st;
  check(::fstat(dir_fd, &st), "fstat", printable(tree.native()));
  HandleBuffer buffer;
  file_handle* handle = buffer.get();
  handle->handle_bytes = MAX_HANDLE_SZ;
  int mount_id = 0;
  if (::name_to_handle_at(dir_fd, "", handle, &mount_id, AT_EMPTY_PATH) != 0) {
    if (errno != EOPNOTSUPP) {
      log::warning("{}: no file handle ({}): its grant record knows it by its path alone", printable(tree.native()),
                   std::strerror(errno));
    }
    return std::nullopt;
  }
  RecordedRoot root;
  root.fs_type = std::string(type->name);
  root.fs_id = identity_of(dir_fd, *type);
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
  const HandledType* type = handled_type(root.fs_type);
  if (type == nullptr || root.handle.empty() || root.handle.size() > MAX_HANDLE_SZ || root.fs_id.empty()) {
    reopened.state = ReopenedRoot::State::unknown;
    reopened.why = "its record does not say how to look for it";
    return reopened;
  }
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

  // Each listed mount of the family either decodes the handle, or is
  // another filesystem (opened by its path, not covered, with another id),
  // or leaves the directory's fate unknown.
  std::string unknown;
  std::string mountinfo = read_mountinfo();
  for (std::string_view name : type_family(root.fs_type)) {
    for (const MountPoint& mount_point : mount_points_of_type(mountinfo, name)) {
      // A mount that cannot be reached by its path (covered by another, or
      // not openable) is told apart by its device number alone: the
      // recorded one may be the filesystem's. Another one is not a tmpfs's
      // (a live tmpfs keeps its device number, and this is its boot), but
      // may be a disk filesystem's whose number changed since its grant.
      auto unreachable = [&](std::string_view why) {
        if (mount_point.device == root.device || root.boot.empty())
          unknown = fmt::format("the mount on {} {}", printable(mount_point.path), why);
      };
      UniqueFd mount = open_directory_without_symlinks(mount_point.path);
      if (!mount) {
        unreachable("cannot be opened");
        continue;
      }
      if (mount_id_of(mount.get()) != mount_point.id) {
        unreachable("is covered by another mount");
        continue;
      }
      // Only the recorded filesystem decodes its handle: another one could
      // take the same bytes for one of its own directories, or call a stale
      // handle what is only foreign to it.
      std::string id = identity_of(mount.get(), *type);
      if (id.empty()) {
        unknown = fmt::format("the filesystem on {} gives no id to tell it by", printable(mount_point.path));
        continue;
      }
      if (id != root.fs_id) continue;
      if (mount_point.idmapped) {
        unknown = fmt::format("its filesystem is mounted on {} idmapped, which is not used",
                              printable(mount_point.path));
        continue;
      }
      UniqueFd dir(::open_by_handle_at(mount.get(), handle, O_RDONLY | O_DIRECTORY | O_CLOEXEC));
      if (!dir) {
        if (errno == ESTALE) {
          reopened.state = ReopenedRoot::State::gone;
          return reopened;
        }
        throw_errno("open_by_handle_at",
                    fmt::format("the directory granted as {} (inode {})", printable(tree.native()), root.inode));
      }
      struct stat st;
      check(::fstat(dir.get(), &st), "fstat", printable(tree.native()));
      // A handle names one inode of its filesystem; checked all the same, as
      // the walk is about to act on what it opened.
      if (!S_ISDIR(st.st_mode) || st.st_ino != root.inode) {
        reopened.state = ReopenedRoot::State::unknown;
        reopened.why = fmt::format("its handle opened something else (inode {}) on {}", st.st_ino,
                                   printable(mount_point.path));
        return reopened;
      }
      char where[4096];
      ssize_t length = ::readlink(fmt::format("/proc/self/fd/{}", dir.get()).c_str(), where, sizeof where - 1);
      reopened.where = length > 0 ? printable(std::string_view(where, static_cast<std::size_t>(length)))
                                  : fmt::format("inode {} of the filesystem mounted on {}", root.inode,
                                                printable(mount_point.path));
      reopened.state = ReopenedRoot::State::found;
      reopened.dir = std::move(dir);
      return reopened;
    }
  }
  if (!unknown.empty()) {
    reopened.state = ReopenedRoot::State::unknown;
    reopened.why = unknown;
  } else {
    reopened.why = "no mount of its filesystem is listed in this mount namespace";
  }
  return reopened;
}

}  // namespace vmwarden::acl::detail
