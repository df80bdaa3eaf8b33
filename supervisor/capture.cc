// The warden's end of a captured descriptor. The file lies in the runtime
// dir, which belongs to the service's uid: it is reached only through the
// directory's descriptor (opened by the outer on the host's mount, so that
// a read-only view of the warden's namespace does not stop it), by a fixed
// name, created with O_EXCL | O_NOFOLLOW, so that nothing the service puts
// there (a symlink, a hard link) leads the warden's writes elsewhere.

#include "supervisor/capture.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "common/error.h"
#include "common/log.h"
#include "common/printable.h"
#include "common/process.h"

namespace vmwarden::supervisor {
namespace {

// One pipe's worth by default: a read empties it in one call. The warden is
// single-threaded, so one buffer serves every capture.
char g_buffer[64 * 1024];

// A line longer than this is logged in pieces: the log's lines stay short,
// and the warden holds no more than this of a service's output.
constexpr std::size_t kMaxLoggedLine = 4096;

// What a service may have logged: at most this many bytes a second after a
// burst of this many. The warden writes the log itself, from its one loop:
// a service writing without pause must not keep it writing (to a slow
// reader, blocked) while its shutdown deadline passes. Beyond it lines are
// dropped, and counted in the next line logged.
constexpr double kLogBytesPerSecond = 64 * 1024;
constexpr double kLogBurstBytes = 256 * 1024;

}  // namespace

Capture::Capture(const OutputCapture& spec, std::string service, int runtime_dir_fd, uid_t uid, gid_t gid)
    : spec_(spec),
      service_(std::move(service)),
      dir_(runtime_dir_fd),
      uid_(uid),
      gid_(gid),
      name_(spec.file.filename().native()),
      rotated_name_(name_ + ".1"),
      log_budget_(kLogBurstBytes),
      budget_time_(std::chrono::steady_clock::now()) {
  Pipe pipe = make_pipe();
  // Only the warden's end: the service's stays blocking, so that a writer
  // the warden does not keep up with waits instead of losing output.
  check(::fcntl(pipe.read_end.get(), F_SETFL, O_NONBLOCK), "fcntl O_NONBLOCK", "(output pipe of " + service_ + ")");
  // A pipe is its creator's, mode 0600: the service could not open it again
  // through /proc/self/fd/N (cloud-hypervisor does, given that path) as
  // another uid.
  check(::fchown(pipe.write_end.get(), uid, gid), "chown", "(output pipe of " + service_ + ")");
  read_end_ = std::move(pipe.read_end);
  write_end_ = std::move(pipe.write_end);
  if (!spec_.to_log) start_file(/*replace=*/true);
}

void Capture::report_dropped() {
  if (dropped_bytes_ == 0) return;
  log::warning("{} fd {}: {} bytes of its output dropped (more than {} KiB a second)", service_, spec_.child_fd,
               dropped_bytes_, static_cast<int>(kLogBytesPerSecond / 1024));
  dropped_bytes_ = 0;
  last_drop_report_ = std::chrono::steady_clock::now();
}

void Capture::log_line(std::string_view line) {
  auto now = std::chrono::steady_clock::now();
  std::chrono::duration<double> since = now - budget_time_;
  log_budget_ = std::min(kLogBurstBytes, log_budget_ + since.count() * kLogBytesPerSecond);
  budget_time_ = now;
  // The count of what was dropped at most once a second: the report must
  // not become a flood of its own.
  if (dropped_bytes_ != 0 && now - last_drop_report_ >= std::chrono::seconds(1)) report_dropped();
  // Charged what it costs the log, not what the service wrote: an empty
  // line is a prefix of its own, a control byte four bytes escaped.
  std::string text = fmt::format("{} fd {}: {}", service_, spec_.child_fd, printable(line));
  double cost = static_cast<double>(log::prefix().size() + 2 + text.size() + 1);  // "PREFIX: TEXT\n"
  if (cost > log_budget_) {
    dropped_bytes_ += line.size() + 1;
    return;
  }
  log_budget_ -= cost;
  log::info("{}", text);
}

void Capture::log_lines(const char* data, std::size_t size) {
  for (std::string_view rest(data, size); !rest.empty();) {
    std::size_t newline = rest.find('\n');
    std::string_view piece = rest.substr(0, newline);
    rest = newline == std::string_view::npos ? std::string_view() : rest.substr(newline + 1);
    partial_line_.append(piece);
    // Longer than the limit, not as long: a line of exactly the limit is
    // logged whole at its newline, with no empty piece after it.
    while (partial_line_.size() > kMaxLoggedLine) {
      log_line(std::string_view(partial_line_).substr(0, kMaxLoggedLine));
      partial_line_.erase(0, kMaxLoggedLine);
    }
    if (newline != std::string_view::npos) {
      log_line(partial_line_);
      partial_line_.clear();
    }
  }
}

void Capture::start_file(bool replace) {
  std::string path = spec_.file.native();
  if (replace && ::unlinkat(dir_, name_.c_str(), 0) < 0 && errno != ENOENT) throw_errno("unlink", path);
  UniqueFd file(::openat(dir_, name_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (!file) throw_errno("create", path);
  check(::fchown(file.get(), uid_, gid_), "chown", path);
  // The mode above went through the umask; state it exactly.
  check(::fchmod(file.get(), 0600), "chmod", path);
  file_ = std::move(file);
  in_file_ = 0;
}

void Capture::give_up(const std::string& problem) {
  // The reason only: what the service wrote never reaches the log.
  log::warning("{}; the rest of {}'s output to fd {} is dropped", problem, service_, spec_.child_fd);
  dropping_ = true;
  file_.reset();
}

void Capture::store(const char* data, std::size_t size) {
  if (spec_.to_log) {
    log_lines(data, size);
    return;
  }
  while (size > 0 && !dropping_) {
    if (in_file_ >= spec_.max_bytes) {
      // The old file goes to NAME.1 (replacing the one before); the service's
      // uid can rename and remove there too, so a file missing is no error.
      if (::renameat(dir_, name_.c_str(), dir_, rotated_name_.c_str()) < 0 && errno != ENOENT) {
        give_up(fmt::format("cannot rename {} to {}: {}", spec_.file.native(), rotated_name_, std::strerror(errno)));
        return;
      }
      try {
        start_file(/*replace=*/false);
      } catch (const std::exception& e) {
        give_up(e.what());
        return;
      }
    }
    std::size_t chunk = static_cast<std::size_t>(std::min<std::uint64_t>(size, spec_.max_bytes - in_file_));
    ssize_t n = ::write(file_.get(), data, chunk);
    if (n < 0) {
      if (errno == EINTR) continue;
      give_up(fmt::format("cannot write {}: {}", spec_.file.native(), std::strerror(errno)));
      return;
    }
    data += n;
    size -= static_cast<std::size_t>(n);
    in_file_ += static_cast<std::uint64_t>(n);
  }
}

bool Capture::read_once() {
  if (!read_end_) return false;
  ssize_t n = ::read(read_end_.get(), g_buffer, sizeof g_buffer);
  if (n > 0) {
    // Dropping, it is still read: a writer must not wait on a full pipe.
    if (!dropping_) store(g_buffer, static_cast<std::size_t>(n));
    return true;
  }
  if (n < 0 && errno == EINTR) return true;
  if (n < 0 && errno == EAGAIN) return false;
  if (n < 0) log::warning("cannot read {}'s output to fd {}: {}", service_, spec_.child_fd, std::strerror(errno));
  // End of stream (every writer gone), or a pipe that cannot be read.
  read_end_.reset();
  file_.reset();
  if (!partial_line_.empty()) log_line(partial_line_);
  partial_line_.clear();
  report_dropped();
  return false;
}

void Capture::pump() { read_once(); }

void Capture::drain() {
  // Were ours still open (a service that never started), the pipe could
  // never end.
  write_end_.reset();
  while (read_once()) {
  }
}

}  // namespace vmwarden::supervisor
