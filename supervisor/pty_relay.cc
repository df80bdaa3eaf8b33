// The pty relay. It runs on a thread of the outer, started only after the
// warden's clone (a clone3 without fork's bookkeeping, safe only from a
// single-threaded process) and joined before run_sandbox() returns. Its
// poll loop never blocks on the service: the master is non-blocking (our own
// open file), and each direction has a buffer that is only refilled once
// written, so a service that stops reading its input cannot stall its
// output. The caller's terminal is written blocking, after POLLOUT: its
// open file is shared with the caller's shell, whose flags are not ours to
// change.

#include "supervisor/pty_relay.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <cstring>

#include "common/error.h"
#include "common/log.h"

namespace vmwarden::supervisor {
namespace {

using Clock = std::chrono::steady_clock;

constexpr const char* kTerminal = "the caller's terminal";
constexpr const char* kMaster = "the pty's master";

// Once the sandbox has ended, how long the last output may take in all, and
// how long the master may stay silent: every holder of the slave is gone by
// then, so the master reads EIO at once after the last byte; the limits
// only bound an exit path where the warden still runs. (They bound the
// waiting for output, not a write to a caller's terminal that has stopped
// reading: that blocks past them, as vmwarden's own log writes would.)
constexpr std::chrono::milliseconds kDrainLimit{2'000};
constexpr std::chrono::milliseconds kDrainQuiet{100};

bool retry_later(int error) { return error == EINTR || error == EAGAIN; }

// Bytes read from one side, not yet all written to the other.
class Buffer {
 public:
  bool empty() const { return begin_ == end_; }
  void clear() { begin_ = end_ = 0; }
  // One read into the empty buffer: what read() returned.
  ssize_t fill(int fd) {
    ssize_t n = ::read(fd, bytes_.data(), bytes_.size());
    begin_ = 0;
    end_ = n > 0 ? static_cast<std::size_t>(n) : 0;
    return n;
  }
  ssize_t flush(int fd) {
    ssize_t n = ::write(fd, bytes_.data() + begin_, end_ - begin_);
    if (n > 0) begin_ += static_cast<std::size_t>(n);
    return n;
  }

 private:
  std::array<char, 4096> bytes_{};
  std::size_t begin_ = 0, end_ = 0;
};

class RelayLoop {
 public:
  RelayLoop(int terminal, bool read_terminal, int master, int stop)
      : terminal_(terminal), read_terminal_(read_terminal), master_(master), stop_(stop) {}

  // Until finish() asks, then the last output.
  void run();

 private:
  void pass_window_size();
  void on_terminal(short revents);
  void on_master(short revents);
  bool read_master();
  void write_terminal();
  void drain();

  int terminal_;
  bool read_terminal_;  // until EOF or hangup
  bool terminal_open_ = true;
  int master_;
  bool master_open_ = true;  // until EIO: every holder of the slave is gone
  int stop_;
  Buffer input_, output_;
};

void RelayLoop::run() {
  sigset_t winch;
  sigemptyset(&winch);
  sigaddset(&winch, SIGWINCH);
  UniqueFd resized(check(::signalfd(-1, &winch, SFD_CLOEXEC | SFD_NONBLOCK), "signalfd", "SIGWINCH"));
  while (true) {
    short terminal_events = 0, master_events = 0;
    if (terminal_open_ && read_terminal_ && input_.empty()) terminal_events |= POLLIN;
    if (terminal_open_ && !output_.empty()) terminal_events |= POLLOUT;
    if (master_open_ && output_.empty()) master_events |= POLLIN;
    if (master_open_ && !input_.empty()) master_events |= POLLOUT;
    // A negative fd is skipped: a side with nothing to do cannot wake the
    // loop with POLLHUP over and over.
    pollfd fds[4] = {{stop_, POLLIN, 0},
                     {resized.get(), POLLIN, 0},
                     {terminal_events != 0 ? terminal_ : -1, terminal_events, 0},
                     {master_events != 0 ? master_ : -1, master_events, 0}};
    if (::poll(fds, 4, -1) < 0) {
      if (errno == EINTR) continue;
      throw_errno("poll", "(terminal relay)");
    }
    if (fds[0].revents != 0) return drain();
    if (fds[1].revents != 0) {
      signalfd_siginfo info;
      while (::read(resized.get(), &info, sizeof info) == sizeof info) {
      }
      pass_window_size();
    }
    if (fds[2].revents != 0) on_terminal(fds[2].revents);
    if (fds[3].revents != 0) on_master(fds[3].revents);
  }
}

// The kernel then sends SIGWINCH to the pty's foreground process group.
void RelayLoop::pass_window_size() {
  winsize size{};
  if (::ioctl(terminal_, TIOCGWINSZ, &size) < 0) {
    if (errno == EIO) return;  // hung up: no size to pass on
    throw_errno("ioctl TIOCGWINSZ", kTerminal);
  }
  if (master_open_) check(::ioctl(master_, TIOCSWINSZ, &size), "ioctl TIOCSWINSZ", kMaster);
}

void RelayLoop::on_terminal(short revents) {
  if (read_terminal_ && input_.empty() && (revents & (POLLIN | POLLHUP | POLLERR)) != 0) {
    ssize_t n = input_.fill(terminal_);
    // EIO: the terminal hung up (the caller's session is gone).
    if (n == 0 || (n < 0 && errno == EIO)) read_terminal_ = false;
    else if (n < 0 && !retry_later(errno)) throw_errno("read", kTerminal);
    if (!master_open_) input_.clear();
  }
  if (!output_.empty() && (revents & (POLLOUT | POLLHUP | POLLERR)) != 0) write_terminal();
}

void RelayLoop::write_terminal() {
  if (output_.flush(terminal_) >= 0 || retry_later(errno)) return;
  // EBADF: a terminal the caller opened read-only (its stdin, the only one
  // on the terminal): nothing can be shown there.
  if (errno != EIO && errno != EBADF) throw_errno("write", kTerminal);
  // Hung up: what the service writes from now on is read and dropped, so
  // that it never blocks on a full pty.
  terminal_open_ = false;
  read_terminal_ = false;
  output_.clear();
}

void RelayLoop::on_master(short revents) {
  if (output_.empty() && (revents & (POLLIN | POLLHUP | POLLERR)) != 0) read_master();
  if (!input_.empty() && (revents & (POLLOUT | POLLHUP | POLLERR)) != 0) {
    if (input_.flush(master_) < 0 && !retry_later(errno)) {
      if (errno != EIO) throw_errno("write", kMaster);
      master_open_ = false;
      input_.clear();
    }
  }
}

// False once nothing more can come.
bool RelayLoop::read_master() {
  ssize_t n = output_.fill(master_);
  if (n == 0 || (n < 0 && errno == EIO)) {
    master_open_ = false;
    return false;
  }
  if (n < 0 && !retry_later(errno)) throw_errno("read", kMaster);
  if (!terminal_open_) output_.clear();
  return true;
}

// What the service wrote before it ended reaches the caller's terminal;
// its unread input is dropped.
void RelayLoop::drain() {
  Clock::time_point deadline = Clock::now() + kDrainLimit;
  while (terminal_open_ && Clock::now() < deadline) {
    if (!output_.empty()) {
      pollfd entry{terminal_, POLLOUT, 0};
      int left = static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count());
      if (::poll(&entry, 1, std::max(left, 0)) > 0) write_terminal();
      continue;
    }
    if (!master_open_) return;
    pollfd entry{master_, POLLIN, 0};
    int ready = ::poll(&entry, 1, static_cast<int>(kDrainQuiet.count()));
    if (ready < 0 && errno != EINTR) throw_errno("poll", kMaster);
    if (ready == 0 || (ready > 0 && !read_master())) return;
  }
}

}  // namespace

int caller_terminal(const SandboxSpec& spec) {
  for (const ServiceSpec& service : spec.services) {
    if (service.terminal_fds.empty()) continue;
    // An output descriptor first: a terminal on stdin alone may have been
    // opened read-only.
    for (int wanted : {1, 2, 0}) {
      if (std::find(service.terminal_fds.begin(), service.terminal_fds.end(), wanted) == service.terminal_fds.end())
        continue;
      for (const FdMapping& mapping : service.fds)
        if (mapping.child_fd == wanted) return mapping.parent_fd;
    }
  }
  return -1;
}

bool relays_input(const SandboxSpec& spec) {
  for (const ServiceSpec& service : spec.services) {
    auto on_terminal = [&](int fd) {
      return std::find(service.terminal_fds.begin(), service.terminal_fds.end(), fd) != service.terminal_fds.end();
    };
    if (on_terminal(0) && on_terminal(1)) return true;
  }
  return false;
}

SandboxSpec with_pty_slave(const SandboxSpec& spec, int slave) {
  SandboxSpec given = spec;
  for (ServiceSpec& service : given.services) {
    for (FdMapping& mapping : service.fds) {
      const std::vector<int>& terminal = service.terminal_fds;
      if (std::find(terminal.begin(), terminal.end(), mapping.child_fd) != terminal.end()) mapping.parent_fd = slave;
    }
  }
  return given;
}

PtyRelay::PtyRelay(int terminal, bool with_input) : terminal_(terminal) {
  int flags = check(::fcntl(terminal, F_GETFL), "fcntl F_GETFL", kTerminal);
  // The caller's keys are the command's only when its stdin and stdout are
  // the terminal (`with_input`) and vmwarden runs in the terminal's
  // foreground (start() checks): a producer in a pipeline (`vmwarden exec
  // ... | less`, its stdin and stderr on the terminal) or a background job
  // must not take the keys, or set modes the foreground program then gets
  // back at the end. Otherwise, and for a terminal opened write-only (rare),
  // only output is relayed: the modes stay, and Ctrl-C goes on stopping
  // vmwarden as a whole.
  terminal_readable_ = with_input && (flags & O_ACCMODE) != O_WRONLY;
  master_ = UniqueFd(check(::posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC), "posix_openpt", "/dev/ptmx"));
  check(::grantpt(master_.get()), "grantpt", kMaster);
  check(::unlockpt(master_.get()), "unlockpt", kMaster);
  // The master's own peer, rather than a name under /dev/pts looked up again.
  slave_ = UniqueFd(check(::ioctl(master_.get(), TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC), "ioctl TIOCGPTPEER",
                          kMaster));
  termios modes{};
  check(::tcgetattr(terminal, &modes), "tcgetattr", kTerminal);
  check(::tcsetattr(slave_.get(), TCSANOW, &modes), "tcsetattr", "the pty's slave");
  winsize size{};
  check(::ioctl(terminal, TIOCGWINSZ, &size), "ioctl TIOCGWINSZ", kTerminal);
  check(::ioctl(master_.get(), TIOCSWINSZ, &size), "ioctl TIOCSWINSZ", kMaster);
  int master_flags = check(::fcntl(master_.get(), F_GETFL), "fcntl F_GETFL", kMaster);
  check(::fcntl(master_.get(), F_SETFL, master_flags | O_NONBLOCK), "fcntl F_SETFL", kMaster);
  stop_ = UniqueFd(check(::eventfd(0, EFD_CLOEXEC), "eventfd", "(terminal relay)"));
}

PtyRelay::~PtyRelay() {
  finish();
  restore_modes();
}

void PtyRelay::start() {
  slave_.reset();
  // Asked here, as late as can be: a background job (or one moved there
  // meanwhile) gets output only. Checked first, since a background
  // process's tcsetattr stops it with SIGTTOU.
  if (terminal_readable_ && ::tcgetpgrp(terminal_) == ::getpgrp()) {
    termios raw{};
    if (::tcgetattr(terminal_, &saved_modes_) == 0) {
      raw = saved_modes_;
      ::cfmakeraw(&raw);
      // TCSADRAIN, not TCSAFLUSH: what the caller typed ahead is the command's.
      raw_ = ::tcsetattr(terminal_, TCSADRAIN, &raw) == 0;
    }
    if (!raw_) log::warning("cannot set the caller's terminal to raw mode: the command gets none of its keys");
  }
  terminal_readable_ = raw_;
  thread_ = std::thread(&PtyRelay::relay, this);
}

void PtyRelay::finish() noexcept {
  if (!thread_.joinable()) return;
  std::uint64_t one = 1;
  if (::write(stop_.get(), &one, sizeof one) != sizeof one) {
    // Cannot happen to an eventfd far from its limit; joining would hang.
    log::error("cannot stop the terminal relay: write to its eventfd: {}", std::strerror(errno));
    ::abort();
  }
  thread_.join();
  // Before the revoke and the runtime directory's removal, which may take
  // a while: the caller's terminal is its own again once the output is.
  restore_modes();
}

void PtyRelay::relay() noexcept {
  try {
    RelayLoop(terminal_, terminal_readable_, master_.get(), stop_.get()).run();
  } catch (const std::exception& e) {
    // The caller's keys then reach vmwarden again: Ctrl-C stops the sandbox.
    log::error("the terminal relay stopped: {}", e.what());
    restore_modes();
  }
}

void PtyRelay::restore_modes() noexcept {
  if (!raw_) return;
  raw_ = false;
  if (::tcsetattr(terminal_, TCSADRAIN, &saved_modes_) < 0)
    log::error("cannot restore the modes of the caller's terminal: tcsetattr: {}", std::strerror(errno));
}

}  // namespace vmwarden::supervisor
