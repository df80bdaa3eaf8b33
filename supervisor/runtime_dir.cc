#include "supervisor/runtime_dir.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <functional>
#include <string>
#include <system_error>
#include <vector>

#include "common/error.h"
#include "common/log.h"

namespace vmwarden::supervisor {
namespace {

// Put on every runtime directory when it is made. Only CAP_SYS_ADMIN sets or
// removes a trusted.* attribute, so neither the directory's owner (the VM's
// uid) nor anyone else without it can put it on a directory of their own:
// the sweep can then take a directory for vmwarden's whoever owns it (an
// `exec --uid NUMBER`'s is that user's, as a host daemon's may be).
constexpr const char* kRuntimeDirMark = "trusted.vmwarden.runtime-dir";

// Empties the directory open as `top` depth-first, without recursion and
// with at most three descriptors open however deep the tree goes: its owner
// (the VM's uid, the command) may nest directories as deep as it likes, and
// a stack frame or a descriptor per level would let it crash this exit path
// (before the grants are revoked) or make it fail for good. Entries are
// unlinked relative to their parent's descriptor and directories opened
// with O_NOFOLLOW, so a symlink planted inside is removed, never followed;
// the way back up is "..", which must be the directory the way down left.
// Listings go through a stack buffer: this runs on the exit path, where every
// heap page touched is a fault (see tests/bench/exec_bench.cc); only a
// subdirectory's name goes to the heap.
void remove_contents(const UniqueFd& top, const std::string& where) {
  struct Entered {
    std::string name;  // in its parent
    dev_t parent_dev;
    ino_t parent_ino;
  };
  std::vector<Entered> down;
  UniqueFd below;  // the directory being emptied, once below `top`
  auto current = [&] { return down.empty() ? top.get() : below.get(); };
  // Built only for an error's message: a deep tree would pay for it per level.
  auto path = [&] {
    std::string text = where;
    for (const Entered& entered : down) text.append("/").append(entered.name);
    return text;
  };
  alignas(8) char buffer[4096];
  for (;;) {
    ssize_t n = ::getdents64(current(), buffer, sizeof buffer);
    if (n < 0) throw_errno("getdents64", path());
    if (n == 0) {
      if (down.empty()) return;
      // Emptied: back up to its parent, and remove it there.
      UniqueFd parent(::openat(current(), "..", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      if (!parent) throw_errno("open", path() + "/..");
      struct stat st {};
      if (::fstat(parent.get(), &st) < 0) throw_errno("fstat", path() + "/..");
      Entered left = std::move(down.back());
      down.pop_back();
      if (st.st_dev != left.parent_dev || st.st_ino != left.parent_ino)
        throw SystemError(ESTALE, "moved while it was removed", path() + "/" + left.name);
      below = down.empty() ? UniqueFd() : std::move(parent);
      if (::unlinkat(current(), left.name.c_str(), AT_REMOVEDIR) < 0) throw_errno("rmdir", path() + "/" + left.name);
      // Its listing starts again: the position read so far is stale.
      if (::lseek(current(), 0, SEEK_SET) < 0) throw_errno("rewind", path());
      continue;
    }
    for (ssize_t offset = 0; offset < n;) {
      const auto* entry = reinterpret_cast<const dirent64*>(buffer + offset);
      offset += entry->d_reclen;
      std::string_view name = entry->d_name;
      if (name == "." || name == "..") continue;
      bool is_dir = entry->d_type == DT_DIR;
      if (entry->d_type == DT_UNKNOWN) {
        struct stat st {};
        if (::fstatat(current(), entry->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
          throw_errno("fstatat", path() + "/" + entry->d_name);
        is_dir = S_ISDIR(st.st_mode);
      }
      if (!is_dir) {
        if (::unlinkat(current(), entry->d_name, 0) < 0) throw_errno("unlink", path() + "/" + entry->d_name);
        continue;
      }
      UniqueFd sub(::openat(current(), entry->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      if (!sub) throw_errno("open", path() + "/" + entry->d_name);
      struct stat here {};
      if (::fstat(current(), &here) < 0) throw_errno("fstat", path());
      down.push_back({std::string(name), here.st_dev, here.st_ino});
      below = std::move(sub);
      break;  // into it; this directory is listed again on the way back
    }
  }
}

// The directory parent/name with its instance lock taken, or an empty
// descriptor if a running instance holds it (that instance removes it).
UniqueFd lock_if_abandoned(int parent, const char* name, const std::string& where) {
  UniqueFd dir(::openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!dir) throw_errno("open existing runtime directory", where);
  if (::flock(dir.get(), LOCK_EX | LOCK_NB) < 0) {
    if (errno == EWOULDBLOCK) return UniqueFd();
    throw_errno("flock", where);
  }
  return dir;
}

// Held on the directory that holds the runtime directories while one is
// made, or one left behind is removed: two instances starting at once cannot
// both take a directory for a stale one, and a directory just made, not yet
// locked by its instance, is never taken for one left behind.
struct CreationLock {
  int root;
  CreationLock(int root_fd, const std::string& where) : root(root_fd) {
    check(::flock(root, LOCK_EX), "flock", where);
  }
  CreationLock(const CreationLock&) = delete;
  CreationLock& operator=(const CreationLock&) = delete;
  ~CreationLock() { ::flock(root, LOCK_UN); }
};

// Removes parent/name recursively; true if it existed.
bool remove_tree(int parent, const std::string& name, const std::string& where) {
  UniqueFd dir(::openat(parent, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!dir) {
    if (errno == ENOENT) return false;
    throw_errno("open", where);
  }
  remove_contents(dir, where);
  if (::unlinkat(parent, name.c_str(), AT_REMOVEDIR) < 0 && errno != ENOENT) throw_errno("rmdir", where);
  return true;
}

}  // namespace

void list_directory(int dir, const std::string& where, const std::function<bool(std::string_view name)>& each) {
  UniqueFd listing(::openat(dir, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!listing) throw_errno("open", where);
  alignas(8) char buffer[4096];
  for (;;) {
    ssize_t n = ::getdents64(listing.get(), buffer, sizeof buffer);
    if (n < 0) throw_errno("getdents64", where);
    if (n == 0) return;
    for (ssize_t offset = 0; offset < n;) {
      const auto* entry = reinterpret_cast<const dirent64*>(buffer + offset);
      offset += entry->d_reclen;
      std::string_view name = entry->d_name;
      if (name != "." && name != ".." && !each(name)) return;
    }
  }
}

bool remove_directory_tree(const std::filesystem::path& path) {
  std::filesystem::path parent_path = path.parent_path();
  UniqueFd parent(::open(parent_path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!parent) {
    if (errno == ENOENT) return false;
    throw_errno("open", parent_path.string());
  }
  return remove_tree(parent.get(), path.filename().string(), path.string());
}

RuntimeDir RuntimeDir::create(const std::filesystem::path& path, uid_t uid, gid_t gid) {
  std::filesystem::path parent_path = path.parent_path();
  std::string name = path.filename().string();
  std::string where = path.string();
  if (name.empty() || name == "." || name == "..") throw UsageError("invalid runtime directory " + where);

  std::error_code error;
  std::filesystem::create_directories(parent_path, error);
  if (error) throw SystemError(error.value(), "create directory", parent_path.string());
  UniqueFd parent(::open(parent_path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!parent) throw_errno("open", parent_path.string());

  CreationLock creating(parent.get(), parent_path.string());
  if (::mkdirat(parent.get(), name.c_str(), 0700) < 0) {
    if (errno != EEXIST) throw_errno("mkdir", where);
    UniqueFd old = lock_if_abandoned(parent.get(), name.c_str(), where);
    if (!old) {
      // Not permanent: the holder is often the instance s6 is replacing,
      // still stopping; a retry once it is gone succeeds.
      throw std::runtime_error("runtime directory " + where +
                               " is in use by a running instance; stop it first or choose another name");
    }
    log::warning("removing the stale runtime directory {} left by an instance that did not clean up", where);
    remove_tree(parent.get(), name, where);
    check(::mkdirat(parent.get(), name.c_str(), 0700), "mkdir", where);
  }
  UniqueFd dir(::openat(parent.get(), name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!dir) throw_errno("open", where);
  RuntimeDir result(path, std::move(parent), name, std::move(dir));
  check(::flock(result.dir_.get(), LOCK_EX | LOCK_NB), "flock", where);
  // Where the filesystem keeps no trusted.* attributes, the sweep still
  // knows the directory by its owner if that is a UID of the range.
  if (::fsetxattr(result.dir_.get(), kRuntimeDirMark, "", 0, 0) < 0 && errno != EOPNOTSUPP)
    throw_errno("set the attribute " + std::string(kRuntimeDirMark) + " on", where);
  // mkdir's mode went through the umask; state the mode exactly.
  check(::fchown(result.dir_.get(), uid, gid), "chown", where);
  check(::fchmod(result.dir_.get(), 0700), "chmod", where);
  return result;
}

AbandonedDirs remove_unlocked_directories(
    const std::filesystem::path& root,
    const std::function<bool(std::string_view name, const struct stat& st)>& candidate, bool dry_run) {
  AbandonedDirs abandoned;
  UniqueFd parent(::open(root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!parent) {
    if (errno == ENOENT) return abandoned;
    throw_errno("open", root.string());
  }
  // A caller may hold a lock on `root` through a descriptor of its own.
  std::vector<std::string> names;
  list_directory(parent.get(), root.string(), [&names](std::string_view name) {
    if (!name.starts_with('.')) names.emplace_back(name);
    return true;
  });
  std::sort(names.begin(), names.end());
  for (const std::string& name : names) {
    std::filesystem::path path = root / name;
    try {
      struct stat st {};
      if (::fstatat(parent.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) < 0) {
        if (errno == ENOENT) continue;
        throw_errno("stat", path.string());
      }
      if (!S_ISDIR(st.st_mode) || !candidate(name, st)) continue;
      if (!lock_if_abandoned(parent.get(), name.c_str(), path.string())) continue;
      if (!dry_run) remove_tree(parent.get(), name, path.string());
      abandoned.removed.push_back(std::move(path));
    } catch (const std::exception& e) {
      abandoned.errors.emplace_back(e.what());
    }
  }
  return abandoned;
}

AbandonedDirs remove_abandoned_runtime_dirs(const std::filesystem::path& root,
                                            const std::function<bool(std::string_view)>& is_instance_name,
                                            const std::function<bool(uid_t)>& owner_is_managed, bool dry_run) {
  UniqueFd parent(::open(root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!parent) {
    if (errno == ENOENT) return {};
    throw_errno("open", root.string());
  }
  CreationLock creating(parent.get(), root.string());
  return remove_unlocked_directories(
      root,
      [&](std::string_view name, const struct stat& st) {
        if ((st.st_mode & 07777) != 0700 || !is_instance_name(name)) return false;
        if (owner_is_managed(st.st_uid)) return true;
        // By path: `root` is root's, and held under the creation lock, so
        // the entry lstat saw is the one read here (not followed if not).
        std::filesystem::path path = root / name;
        if (::lgetxattr(path.c_str(), kRuntimeDirMark, nullptr, 0) >= 0) return true;
        if (errno == ENODATA || errno == EOPNOTSUPP) return false;
        throw_errno("read the attribute " + std::string(kRuntimeDirMark) + " of", path.string());
      },
      dry_run);
}

void RuntimeDir::remove() noexcept {
  if (!parent_) return;
  try {
    remove_tree(parent_.get(), name_, path_.string());
  } catch (const std::exception& e) {
    log::error("cannot remove the runtime directory: {}", e.what());
  }
  dir_.reset();
  parent_.reset();
}

}  // namespace vmwarden::supervisor
