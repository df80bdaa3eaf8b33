#include "acl-manager/nodev_view.h"

#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <optional>

#include "acl-manager/store.h"
#include "common/mountinfo.h"

namespace vmwarden::acl::detail {
namespace {

std::atomic<bool> forced_off{false};

}  // namespace

void force_no_nodev_view(bool on) { forced_off.store(on, std::memory_order_relaxed); }

NodevView open_nodev_view(int dir_fd) {
  if (forced_off.load(std::memory_order_relaxed)) return {};

  // Where the directory is, as mountinfo names mount points: both are
  // printed relative to this process's root.
  char link[32];
  std::snprintf(link, sizeof link, "/proc/self/fd/%d", dir_fd);
  char target[4097];
  ssize_t length = ::readlink(link, target, sizeof target - 1);
  if (length <= 0 || length >= static_cast<ssize_t>(sizeof target - 1) || target[0] != '/') return {};
  std::string_view path(target, static_cast<std::size_t>(length));
  if (path.ends_with(" (deleted)")) return {};
  std::optional<std::string> mountinfo;
  try {
    mountinfo = read_small_file("/proc/self/mountinfo");
  } catch (const std::exception&) {
    return {};
  }
  if (!mountinfo || has_unbindable_mount_at_or_below(*mountinfo, path)) return {};

  NodevView view;
  view.tree = UniqueFd(::open_tree(dir_fd, "", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE | AT_EMPTY_PATH));
  if (!view.tree) return {};
  mount_attr attr{};
  attr.attr_set = MOUNT_ATTR_NODEV;
  if (::mount_setattr(view.tree.get(), "", AT_EMPTY_PATH | AT_RECURSIVE, &attr, sizeof attr) != 0) return {};
  view.dir = UniqueFd(::openat(view.tree.get(), ".", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!view.dir) return {};

  // The same directory, and the kernel agrees that devices cannot be opened
  // through it: anything else and the walk does without the view.
  struct stat original, seen;
  struct statvfs fs;
  if (::fstat(dir_fd, &original) != 0 || ::fstat(view.dir.get(), &seen) != 0 || original.st_dev != seen.st_dev ||
      original.st_ino != seen.st_ino || ::fstatvfs(view.dir.get(), &fs) != 0 || !(fs.f_flag & ST_NODEV)) {
    return {};
  }
  return view;
}

}  // namespace vmwarden::acl::detail
