#include "supervisor/runtime_dir.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <system_error>

#include "common/error.h"
#include "common/log.h"

namespace vmwarden::supervisor {
namespace {

// Empties the directory open as `dir` depth-first. Entries are unlinked
// relative to their parent's descriptor and directories opened with
// O_NOFOLLOW, so a symlink planted inside is removed, never followed. Reads
// entries with getdents64 into a stack buffer: this runs on the exit path,
// where every heap page touched is a fault (see tests/bench/exec_bench.cc).
void remove_contents(const UniqueFd& dir, const std::string& where) {
  alignas(8) char buffer[4096];
  while (true) {
    ssize_t n = ::getdents64(dir.get(), buffer, sizeof buffer);
    if (n < 0) throw_errno("getdents64", where);
    if (n == 0) break;
    for (ssize_t offset = 0; offset < n;) {
      const auto* entry = reinterpret_cast<const dirent64*>(buffer + offset);
      offset += entry->d_reclen;
      std::string_view name = entry->d_name;
      if (name == "." || name == "..") continue;
      bool is_dir = entry->d_type == DT_DIR;
      if (entry->d_type == DT_UNKNOWN) {
        struct stat st {};
        check(::fstatat(dir.get(), entry->d_name, &st, AT_SYMLINK_NOFOLLOW), "fstatat", where + "/" + entry->d_name);
        is_dir = S_ISDIR(st.st_mode);
      }
      if (is_dir) {
        std::string child = where + "/" + entry->d_name;
        UniqueFd sub(::openat(dir.get(), entry->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
        if (!sub) throw_errno("open", child);
        remove_contents(sub, child);
        check(::unlinkat(dir.get(), entry->d_name, AT_REMOVEDIR), "rmdir", child);
      } else if (::unlinkat(dir.get(), entry->d_name, 0) < 0) {
        throw_errno("unlink", where + "/" + entry->d_name);
      }
    }
  }
}

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

  // Creation is serialised on the parent so that two instances starting at
  // once cannot both take the directory for a stale one.
  check(::flock(parent.get(), LOCK_EX), "flock", parent_path.string());
  struct Unlock {
    int fd;
    ~Unlock() { ::flock(fd, LOCK_UN); }
  } unlock{parent.get()};

  if (::mkdirat(parent.get(), name.c_str(), 0700) < 0) {
    if (errno != EEXIST) throw_errno("mkdir", where);
    UniqueFd old(::openat(parent.get(), name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!old) throw_errno("open existing runtime directory", where);
    if (::flock(old.get(), LOCK_EX | LOCK_NB) < 0) {
      if (errno == EWOULDBLOCK) {
        // Not permanent: the holder is often the instance s6 is replacing,
        // still stopping; a retry once it is gone succeeds.
        throw std::runtime_error("runtime directory " + where +
                                 " is in use by a running instance; stop it first or choose another name");
      }
      throw_errno("flock", where);
    }
    log::warning("removing the stale runtime directory {} left by an instance that did not clean up", where);
    remove_tree(parent.get(), name, where);
    check(::mkdirat(parent.get(), name.c_str(), 0700), "mkdir", where);
  }
  UniqueFd dir(::openat(parent.get(), name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!dir) throw_errno("open", where);
  RuntimeDir result(path, std::move(parent), name, std::move(dir));
  check(::flock(result.dir_.get(), LOCK_EX | LOCK_NB), "flock", where);
  // mkdir's mode went through the umask; state the mode exactly.
  check(::fchown(result.dir_.get(), uid, gid), "chown", where);
  check(::fchmod(result.dir_.get(), 0700), "chmod", where);
  return result;
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
