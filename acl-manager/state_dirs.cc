#include "acl-manager/state_dirs.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <mutex>
#include <set>
#include <stdexcept>

#include <fmt/core.h>

#include "common/error.h"
#include "common/file_kind.h"
#include "common/log.h"
#include "common/printable.h"
#include "common/unique_fd.h"

namespace vmwarden::acl::detail {

bool check_state_directory(const std::filesystem::path& dir, Link link) {
  struct stat st {};
  if ((link == Link::follow ? ::stat(dir.c_str(), &st) : ::lstat(dir.c_str(), &st)) != 0) {
    if (errno == ENOENT) return false;
    throw_errno(link == Link::follow ? "stat" : "lstat", dir.string());
  }
  std::string where = printable(dir.string());
  if (!S_ISDIR(st.st_mode)) {
    throw std::runtime_error(fmt::format("{} is {}, expected a directory{}: vmwarden keeps root's records there",
                                         where, file_kind(st.st_mode),
                                         link == Link::refuse ? " (vmwarden creates it, never a symlink)" : ""));
  }
  // Root's own, or the caller's: the same for root, and an unprivileged
  // caller (a dry run, a test) can only ever reach its own files.
  bool owner_ok = st.st_uid == 0 || st.st_uid == ::geteuid();
  if (!owner_ok || (st.st_mode & (S_IWGRP | S_IWOTH)) != 0) {
    throw std::runtime_error(fmt::format(
        "{} is owned by uid {} with mode {:04o}: whoever else can write it can forge the records vmwarden "
        "keeps there; it must be owned by root and writable by root alone (chown root {} && chmod go-w {})",
        where, st.st_uid, st.st_mode & 07777, where, where));
  }
  return true;
}

void make_state_directory(const std::filesystem::path& dir, mode_t mode, Link link) {
  if (link == Link::follow && !dir.empty() && dir != dir.root_path() && dir.has_parent_path()) {
    struct stat st {};
    if (::stat(dir.parent_path().c_str(), &st) != 0) make_state_directory(dir.parent_path(), 0755, Link::follow);
  }
  // mkdir never follows a symlink in dir's last component: EEXIST, and the
  // check below finds the link.
  if (::mkdir(dir.c_str(), mode) != 0 && errno != EEXIST) throw_errno("mkdir", dir.string());
  check_state_directory(dir, link);
}

std::string expected_file(std::string_view holding) {
  return holding.empty() ? std::string("a regular file") : fmt::format("a regular file holding {}", holding);
}

void require_regular_file(const struct stat& st, const std::filesystem::path& path, std::string_view holding) {
  if (!S_ISREG(st.st_mode)) {
    throw std::runtime_error(fmt::format("{}: {}; expected {}", printable(path.string()), file_kind(st.st_mode),
                                         expected_file(holding)));
  }
}

void require_regular_file(int fd, const std::filesystem::path& path, std::string_view holding) {
  struct stat st {};
  check(::fstat(fd, &st), "fstat", path.string());
  require_regular_file(st, path, holding);
}

void require_short_names(const std::filesystem::path& path, std::string_view what) {
  for (const std::filesystem::path& component : path) {
    std::string name = component.string();
    if (name.size() > NAME_MAX) {
      throw UsageError(fmt::format("{} {}: the name \"{}...\" is {} bytes long; a file name has at most {}", what,
                                   printable(path.string()), printable(name.substr(0, 32)), name.size(), NAME_MAX));
    }
  }
}

void warn_once(const std::string& message) {
  static std::mutex mutex;
  static std::set<std::string> warned;
  std::lock_guard<std::mutex> guard(mutex);
  if (warned.insert(message).second) log::warning("{}", message);
}

}  // namespace vmwarden::acl::detail
