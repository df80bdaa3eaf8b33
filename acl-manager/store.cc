#include "acl-manager/store.h"

#include "acl-manager/state_dirs.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <random>
#include <stdexcept>

#include <fmt/core.h>

#include "common/error.h"
#include "common/printable.h"
#include "common/write_all.h"

namespace vmwarden::acl::detail {
namespace {

constexpr std::string_view kTemporaryPrefix = ".tmp-";

void write_all(int fd, std::string_view content, const std::filesystem::path& path) {
  if (!vmwarden::write_all(fd, content)) throw_errno("write", path.string());
}

}  // namespace

void fsync_dir(const std::filesystem::path& dir) {
  UniqueFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd) throw_errno("open", dir.string());
  check(::fsync(fd.get()), "fsync", dir.string());
}

void make_directories(const std::filesystem::path& path, mode_t mode) {
  if (path.empty() || path == path.root_path()) return;
  struct stat st;
  if (::stat(path.c_str(), &st) == 0) {
    if (!S_ISDIR(st.st_mode)) throw_system_error(ENOTDIR, "mkdir", path.string());
    return;
  }
  make_directories(path.parent_path(), mode);
  if (::mkdir(path.c_str(), mode) < 0 && errno != EEXIST) throw_errno("mkdir", path.string());
}

bool is_temporary(std::string_view name) { return name.starts_with(kTemporaryPrefix); }

void write_atomically(const std::filesystem::path& dir, std::string_view name, std::string_view content,
                      bool durable) {
  thread_local std::mt19937_64 random{std::random_device{}()};
  std::string temporary = fmt::format("{}{}-{:x}", kTemporaryPrefix, ::getpid(), random());
  std::filesystem::path temporary_path = dir / temporary;
  UniqueFd fd(::open(temporary_path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
  if (!fd) throw_errno("create", temporary_path.string());
  try {
    write_all(fd.get(), content, temporary_path);
    if (durable) check(::fsync(fd.get()), "fsync", temporary_path.string());
    fd.reset();
    std::filesystem::path final_path = dir / std::string(name);
    check(::rename(temporary_path.c_str(), final_path.c_str()), "rename", final_path.string());
  } catch (...) {
    ::unlink(temporary_path.c_str());
    throw;
  }
  if (durable) fsync_dir(dir);
}

void create_exclusively(const std::filesystem::path& dir, std::string_view name, std::string_view content,
                        bool durable) {
  std::filesystem::path path = dir / std::string(name);
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644));
  if (!fd) throw_errno("create", path.string());
  write_all(fd.get(), content, path);
  if (durable) {
    check(::fsync(fd.get()), "fsync", path.string());
    fd.reset();
    fsync_dir(dir);
  }
}

bool move_exclusively(const std::filesystem::path& from_dir, std::string_view from_name,
                      const std::filesystem::path& to_dir, std::string_view to_name, bool durable) {
  std::filesystem::path from = from_dir / std::string(from_name), to = to_dir / std::string(to_name);
  if (::renameat2(AT_FDCWD, from.c_str(), AT_FDCWD, to.c_str(), RENAME_NOREPLACE) < 0) {
    if (errno == ENOENT && ::access(from.c_str(), F_OK) != 0 && errno == ENOENT) return false;
    throw_errno("rename " + from.string() + " to", to.string());
  }
  if (durable) {
    fsync_dir(to_dir);
    fsync_dir(from_dir);
  }
  return true;
}

void remove_durably(const std::filesystem::path& dir, std::string_view name, bool durable) {
  std::filesystem::path path = dir / std::string(name);
  if (::unlink(path.c_str()) < 0) {
    if (errno == ENOENT) return;
    throw_errno("unlink", path.string());
  }
  if (durable) fsync_dir(dir);
}

std::optional<std::string> read_small_file(const std::filesystem::path& path, std::string_view holding, bool follow,
                                           struct stat* info) {
  // O_NONBLOCK: a FIFO put in a record's place must not hang the reader
  // (the open of a FIFO waits for a writer), perhaps under a lock;
  // O_NOFOLLOW: a symlink there is refused, never read through. Said as
  // what is there and what belongs there: "Too many levels of symbolic
  // links" names neither.
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY | (follow ? 0 : O_NOFOLLOW)));
  struct stat st {};
  if (!fd) {
    if (errno == ENOENT) return std::nullopt;
    if (errno != ELOOP || follow) throw_errno("open", path.string());
    check(::lstat(path.c_str(), &st), "lstat", path.string());
  } else {
    check(::fstat(fd.get(), &st), "fstat", path.string());
  }
  require_regular_file(st, path, holding);
  if (info != nullptr) *info = st;
  constexpr std::size_t kLimit = 1u << 20;
  std::string content;
  char buffer[4096];
  for (;;) {
    ssize_t n = ::read(fd.get(), buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    check(n, "read", path.string());
    if (n == 0) break;
    content.append(buffer, static_cast<std::size_t>(n));
    if (content.size() > kLimit) {
      throw std::runtime_error(fmt::format("{}: larger than {} KiB; expected {}", printable(path.string()),
                                           kLimit / 1024, expected_file(holding)));
    }
  }
  return content;
}

std::vector<std::string> list_names(const std::filesystem::path& dir) {
  std::vector<std::string> names;
  std::error_code error;
  std::filesystem::directory_iterator it(dir, error);
  if (error) {
    if (error == std::errc::no_such_file_or_directory) return names;
    throw_system_error(error.value(), "opendir", dir.string());
  }
  for (const auto& entry : it) names.push_back(entry.path().filename().string());
  return names;
}

UniqueFd lock_file(const std::filesystem::path& path, bool wait) {
  UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644));
  if (!fd) throw_errno("open", path.string());
  for (;;) {
    if (::flock(fd.get(), LOCK_EX | (wait ? 0 : LOCK_NB)) == 0) return fd;
    if (errno == EINTR) continue;
    if (!wait && errno == EWOULDBLOCK) return UniqueFd();
    throw_errno("flock", path.string());
  }
}

}  // namespace vmwarden::acl::detail
