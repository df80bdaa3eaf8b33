#include "vm-launcher/guest_report.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <sstream>
#include <string>

#include "common/error.h"
#include "common/log.h"
#include "common/unique_fd.h"
#include "common/write_all.h"
#include "vm-launcher/guest_manifest.h"
#include "vm-launcher/names.h"

namespace vmwarden::vm {

namespace {

// At most `limit` bytes of the guest-written file `name` (relative to
// `dir_fd`), read as untrusted: a regular file reached without following a
// symlink; O_NONBLOCK, so that a FIFO put in its place opens at once (and is
// then refused as not regular) instead of waiting for a writer forever.
// Empty when there is no such file.
std::optional<std::string> read_guest_file(int dir_fd, const char* name, std::size_t limit) {
  UniqueFd file(::openat(dir_fd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC));
  struct stat st {};
  if (!file || ::fstat(file.get(), &st) != 0 || !S_ISREG(st.st_mode)) return std::nullopt;
  std::string text(limit, '\0');
  ssize_t length = ::read(file.get(), text.data(), text.size());
  if (length < 0) return std::nullopt;
  text.resize(static_cast<std::size_t>(length));
  return text;
}

}  // namespace

std::optional<int> read_reported_exit_status(const std::filesystem::path& report_dir) {
  // The directory itself is the host's (inside the root-owned run
  // directory); only what is in it can be the guest's.
  UniqueFd dir(::open(report_dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!dir) return std::nullopt;
  // Longer than any first line it accepts, so that the number is seen to
  // end (at a newline, or at the end of a file shorter than what was read)
  // rather than where the read stopped: "0000000013\n" is 13, not 0.
  constexpr std::size_t kLimit = 16;
  std::string name(guest::kExitStatusFile);
  std::optional<std::string> text = read_guest_file(dir.get(), name.c_str(), kLimit);
  if (!text || text->empty()) return std::nullopt;
  const char* begin = text->data();
  const char* end = begin + text->size();
  int status = -1;
  auto [rest, error] = std::from_chars(begin, end, status);
  if (error != std::errc() || rest == begin || status < 0 || status > 255) return std::nullopt;
  bool line_ends = rest != end ? *rest == '\n' : text->size() < kLimit;
  if (!line_ends) return std::nullopt;
  return status;
}

namespace {

// The relay's process: copies new bytes of `name` in `dir_fd` to `to`
// every 50 ms, and once more after `stop` reads EOF; never returns. Exits
// 1 when it could not write it all: the error is said here, but for a
// reader that went away on purpose (`vmwarden run ... | head -1`).
[[noreturn]] void relay_output(int dir_fd, const char* name, int to, int stop) {
  UniqueFd file;
  off_t offset = 0;
  char buffer[65536];
  bool last = false;
  while (!last) {
    pollfd cue{stop, POLLIN, 0};
    last = ::poll(&cue, 1, 50) != 0;
    if (!file) {
      UniqueFd opened(::openat(dir_fd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC));
      struct stat st {};
      if (opened && ::fstat(opened.get(), &st) == 0 && S_ISREG(st.st_mode)) file = std::move(opened);
    }
    bool was_under = static_cast<std::size_t>(offset) < guest::kOutputLimit;
    while (file && static_cast<std::size_t>(offset) < guest::kOutputLimit) {
      std::size_t wanted = std::min(sizeof buffer, guest::kOutputLimit - static_cast<std::size_t>(offset));
      ssize_t n = ::pread(file.get(), buffer, wanted, offset);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      offset += n;
      if (!write_all(to, std::string_view(buffer, static_cast<std::size_t>(n)))) {
        if (errno != EPIPE)
          log::error("write standard output: {}; the rest of the program's output is dropped", std::strerror(errno));
        ::_exit(1);
      }
    }
    // Said once, as the output stops: the agent's count of what it dropped
    // is on the guest's console, which the caller does not see.
    if (was_under && static_cast<std::size_t>(offset) >= guest::kOutputLimit)
      log::warning("the program's output reached {} MiB, the most relayed: the rest is dropped",
                   guest::kOutputLimit >> 20);
  }
  ::_exit(0);
}

}  // namespace

OutputRelay::OutputRelay(const std::filesystem::path& report_dir, int to) {
  UniqueFd dir(::open(report_dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!dir) throw_errno("open", report_dir.string());
  int ends[2];
  check(::pipe2(ends, O_CLOEXEC), "pipe2", "(output relay)");
  UniqueFd cue(ends[0]), stop(ends[1]);
  const pid_t parent = ::getpid();
  pid_t pid = ::fork();
  check(pid, "fork", "(output relay)");
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(1);
    stop.reset();
    std::string name(guest::kOutputFile);
    relay_output(dir.get(), name.c_str(), to, cue.get());
  }
  pid_ = pid;
  stop_ = stop.release();
}

bool OutputRelay::finish() {
  if (pid_ < 0) return relayed_;
  ::close(stop_);
  int status = 0;
  while (::waitpid(pid_, &status, 0) < 0) {
    if (errno != EINTR) {
      status = -1;
      break;
    }
  }
  relayed_ = status == 0;
  pid_ = -1;
  return relayed_;
}

std::map<std::string, std::string> read_key_values(const std::filesystem::path& file) {
  std::map<std::string, std::string> values;
  std::optional<std::string> text = read_guest_file(AT_FDCWD, file.c_str(), 64 * 1024);
  if (!text) return values;
  std::istringstream in(*text);
  for (std::string line; std::getline(in, line);) {
    std::size_t equals = line.find('=');
    if (equals != std::string::npos) values[printable(line.substr(0, equals))] = printable(line.substr(equals + 1));
  }
  return values;
}

}  // namespace vmwarden::vm
