// The outer process: what s6 (or the shell) started, staying in the host
// namespaces. It proves its parent when run under s6, ties its life to that
// parent, creates the runtime dir, clones the warden, forwards stop signals
// to it and finally reports its status and removes the runtime dir.
//
// Death handling:
//   - the parent dies: PR_SET_PDEATHSIG kills the outer with SIGKILL;
//   - the outer dies: the warden sees it (pidfd, PDEATHSIG), stops the
//     services within a fraction of a second and removes the runtime dir;
//   - the warden dies: the kernel kills everything in its PID namespace; the
//     outer removes the runtime dir and exits 128+N.

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "common/error.h"
#include "common/exit_status.h"
#include "common/log.h"
#include "common/process.h"
#include "common/unique_fd.h"
#include "supervisor/memory.h"
#include "supervisor/namespaces.h"
#include "supervisor/process_title.h"
#include "supervisor/pty_relay.h"
#include "supervisor/runtime_dir.h"
#include "supervisor/sandbox.h"
#include "supervisor/warden.h"

namespace vmwarden::supervisor {
namespace {

pid_t remembered_parent = 0;  // see remember_parent()

void validate(const SandboxSpec& spec) {
  int mains = 0;
  for (const ServiceSpec& service : spec.services) {
    if (service.main) ++mains;
    if (service.argv.empty() || !service.argv[0].starts_with('/')) {
      throw PermanentError("service " + service.name + ": argv[0] must be an absolute path");
    }
  }
  if (mains != 1) throw PermanentError(fmt::format("sandbox {} has {} main services; it needs exactly one", spec.name, mains));
  for (const ServiceSpec& service : spec.services) {
    for (const FdMapping& mapping : service.fds) {
      if (::fcntl(mapping.parent_fd, F_GETFD) < 0) {
        throw PermanentError(fmt::format("service {}: fd {} (to become its fd {}) is not open", service.name,
                                         mapping.parent_fd, mapping.child_fd));
      }
    }
  }
  // The names the warden makes in the runtime dir: a capture's file and the
  // one it rotates to must be no other's.
  std::vector<std::filesystem::path> made;
  auto make = [&](const std::string& service, const std::filesystem::path& path) {
    if (std::find(made.begin(), made.end(), path) != made.end())
      throw PermanentError(fmt::format("service {}: {} is already made by the warden for another purpose",
                                       service, path.string()));
    made.push_back(path);
  };
  for (const ServiceSpec& service : spec.services) {
    for (const ListenSocket& socket : service.listen_sockets) {
      if (socket.path.parent_path() != spec.runtime_dir)
        throw PermanentError(fmt::format("service {}: socket {} must be directly in the runtime dir {}",
                                         service.name, socket.path.string(), spec.runtime_dir.string()));
      make(service.name, socket.path);
    }
    std::vector<int> child_fds;
    for (const FdMapping& mapping : service.fds) child_fds.push_back(mapping.child_fd);
    for (const ListenSocket& socket : service.listen_sockets) child_fds.push_back(socket.child_fd);
    for (const OutputCapture& capture : service.captures) {
      std::string where = capture.to_log ? "the log" : "the capture file " + capture.file.string();
      if (capture.child_fd < 0 ||
          std::find(child_fds.begin(), child_fds.end(), capture.child_fd) != child_fds.end())
        throw PermanentError(
            fmt::format("service {}: fd {} for {} is negative or taken", service.name, capture.child_fd, where));
      child_fds.push_back(capture.child_fd);
      if (capture.to_log) {
        if (!capture.file.empty() || capture.max_bytes != 0)
          throw PermanentError(fmt::format("service {}: fd {} goes to the log, not to a file", service.name,
                                           capture.child_fd));
        continue;
      }
      std::string name = capture.file.filename().native();
      if (capture.file.parent_path() != spec.runtime_dir || name.empty() || name == "." || name == "..")
        throw PermanentError(fmt::format("service {}: the capture file {} must be directly in the runtime dir {}",
                                         service.name, capture.file.string(), spec.runtime_dir.string()));
      if (capture.max_bytes == 0)
        throw PermanentError(fmt::format("service {}: the capture file {} has a size limit of 0 bytes",
                                         service.name, capture.file.string()));
      make(service.name, capture.file);
      make(service.name, capture.file.native() + ".1");
    }
  }
  int with_terminal = 0;
  for (const ServiceSpec& service : spec.services) {
    if (service.terminal_fds.empty()) continue;
    if (++with_terminal > 1) throw PermanentError("only one service may have a terminal: one pty is relayed");
    for (int fd : service.terminal_fds) {
      auto mapping = std::find_if(service.fds.begin(), service.fds.end(),
                                  [fd](const FdMapping& m) { return m.child_fd == fd; });
      if (fd < 0 || fd > 2 || std::count(service.terminal_fds.begin(), service.terminal_fds.end(), fd) != 1 ||
          mapping == service.fds.end() || !::isatty(mapping->parent_fd))
        throw PermanentError(fmt::format("service {}: its terminal fd {} must be one of 0, 1 and 2, once, mapped "
                                         "from a terminal",
                                         service.name, fd));
    }
  }
  if (spec.notify_fd && ::fcntl(*spec.notify_fd, F_GETFD) < 0) {
    throw PermanentError(fmt::format("the readiness notification fd {} is not open", *spec.notify_fd));
  }
}

// Raw syscalls: bookworm's <sys/pidfd.h> lacks extern "C" and cannot be
// linked from C++.
int pidfd_open(pid_t pid) { return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)); }
int pidfd_send_signal(int pidfd, int sig) { return static_cast<int>(::syscall(SYS_pidfd_send_signal, pidfd, sig, nullptr, 0)); }

const char* signal_name(int sig) {
  const char* name = ::sigabbrev_np(sig);
  return name != nullptr ? name : "?";
}

}  // namespace

// s6-supervise holds an fcntl write lock on supervise/lock in the service
// directory, which is the cwd of `run`. If `run` exec'd straight into us,
// our parent is the lock holder; anything else (a fork in between, a copy
// started by hand) would leave processes s6 does not know about.
void verify_s6_parent() {
  std::string cwd = std::filesystem::current_path().string();
  UniqueFd lock(::open("supervise/lock", O_RDONLY | O_CLOEXEC));
  if (!lock) {
    throw PermanentError(fmt::format("--s6: cannot open supervise/lock in {}: {}; vmwarden must be started by "
                                     "s6-supervise, from the service directory's run script",
                                     cwd, std::strerror(errno)));
  }
  struct flock query {};
  query.l_type = F_WRLCK;
  query.l_whence = SEEK_SET;
  check(::fcntl(lock.get(), F_GETLK, &query), "fcntl F_GETLK", cwd + "/supervise/lock");
  pid_t parent = ::getppid();
  if (query.l_type == F_UNLCK) {
    throw PermanentError(fmt::format("--s6: nobody holds {}/supervise/lock: no s6-supervise is running for this "
                                     "service directory",
                                     cwd));
  }
  if (query.l_pid != parent) {
    throw PermanentError(fmt::format("--s6: the parent process (pid {}) is not the s6-supervise holding "
                                     "{}/supervise/lock (pid {}); the run script must exec vmwarden directly",
                                     parent, cwd, query.l_pid));
  }
}

std::optional<int> read_s6_notification_fd() {
  UniqueFd file(::open("notification-fd", O_RDONLY | O_CLOEXEC));
  if (!file) {
    if (errno == ENOENT) return std::nullopt;
    throw_errno("open", "notification-fd");
  }
  char text[16] = {};
  ssize_t n = check(::read(file.get(), text, sizeof text - 1), "read", "notification-fd");
  int fd = -1;
  auto [end, error] = std::from_chars(text, text + n, fd);
  bool only_space = std::all_of(end, static_cast<const char*>(text + n), [](char c) { return c == '\n' || c == ' '; });
  if (error != std::errc() || !only_space || fd < 3) {
    std::string shown(text, static_cast<std::size_t>(n));
    while (!shown.empty() && (shown.back() == '\n' || shown.back() == ' ')) shown.pop_back();
    throw PermanentError(fmt::format("{}/notification-fd holds \"{}\"; it must hold a descriptor number of 3 or "
                                     "more, e.g. 3",
                                     std::filesystem::current_path().string(), shown));
  }
  return fd;
}

void verify_s6_timeout_kill(std::chrono::milliseconds shutdown_timeout) {
  UniqueFd file(::open("timeout-kill", O_RDONLY | O_CLOEXEC));
  if (!file) {
    if (errno == ENOENT) return;  // s6-supervise never SIGKILLs then
    throw_errno("open", "timeout-kill");
  }
  char text[32] = {};
  ssize_t n = check(::read(file.get(), text, sizeof text - 1), "read", "timeout-kill");
  std::uint64_t ms = 0;
  auto [end, error] = std::from_chars(text, text + n, ms);
  // 0 (or no number, which s6-supervise reads as 0): never SIGKILLed.
  if (error != std::errc() || ms == 0) return;
  auto needed = std::chrono::duration_cast<std::chrono::milliseconds>(shutdown_timeout + kS6KillMargin);
  if (ms < static_cast<std::uint64_t>(needed.count()))
    throw PermanentError(fmt::format(
        "{}/timeout-kill holds {} ms: s6-supervise would SIGKILL vmwarden before its shutdown timeout ({} ms) "
        "and the {} s after it that stopping the services and revoking the grants take; it must hold {} or more "
        "(run `vmwarden s6 service` again after changing shutdown_timeout_s)",
        std::filesystem::current_path().string(), ms, shutdown_timeout.count(), kS6KillMargin.count(),
        needed.count()));
}

void remember_parent() { remembered_parent = ::getppid(); }

int run_sandbox(const SandboxSpec& spec) {
  log::set_prefix(fmt::format("vmwarden[{}]", spec.name));
  // The parent at the process's start (or at entry); PR_SET_PDEATHSIG never
  // fires for a parent that is already gone, hence the re-check after it.
  // The outer changes no credentials, so nothing clears it later.
  pid_t parent = remembered_parent > 0 ? remembered_parent : ::getppid();
  check(::prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0), "prctl", "PR_SET_PDEATHSIG");
  if (spec.require_s6_parent) {
    verify_s6_parent();
    verify_s6_timeout_kill(spec.shutdown_timeout);
  }
  if (::getppid() != parent) throw std::runtime_error("the parent process exited while vmwarden was starting");

  validate(spec);
  for (const ServiceSpec& service : spec.services) {
    for (const std::string& warning : check_confinement(service.confinement)) {
      log::warning("{}: {}", service.name, warning);
    }
  }

  // Blocked from here on, in the outer and (inherited) in the warden until
  // its signalfd is ready, so that no stop request or death notice is lost.
  int terminal = caller_terminal(spec);
  block_stop_signals();  // for good, the signals that mean nothing here
  sigset_t blocked = warden_signals();
  // Read by the pty relay's signalfd, on its thread: SIGWINCH is ignored by
  // default, and would be lost unless blocked in every thread.
  if (terminal >= 0) sigaddset(&blocked, SIGWINCH);
  check(::sigprocmask(SIG_BLOCK, &blocked, nullptr), "sigprocmask");
  sigset_t forwarded;
  sigemptyset(&forwarded);
  for (int sig : {SIGTERM, SIGINT, SIGHUP}) sigaddset(&forwarded, sig);
  UniqueFd signal_fd(check(::signalfd(-1, &forwarded, SFD_CLOEXEC | SFD_NONBLOCK), "signalfd"));

  // Opened here, in the host's namespaces, before anything of the sandbox
  // exists; the warden runs `sandbox`, which maps the slave instead of the
  // caller's terminal.
  std::optional<PtyRelay> relay;
  SandboxSpec relayed;
  if (terminal >= 0) {
    relay.emplace(terminal, relays_input(spec));
    relayed = with_pty_slave(spec, relay->slave());
  }
  const SandboxSpec& sandbox = relay ? relayed : spec;

  RuntimeDir runtime_dir = RuntimeDir::create(spec.runtime_dir, spec.runtime_dir_uid, spec.runtime_dir_gid);
  // Taken before the clone so that the warden can tell even an outer that
  // died before the warden's first instruction.
  UniqueFd self_pidfd(check(pidfd_open(::getpid()), "pidfd_open", "(self)"));

  ClonedProcess warden = clone_into_namespaces(spec.private_network);
  if (warden.pid == 0) {
    signal_fd.reset();
    if (relay) relay->close_master();
    run_warden(sandbox, self_pidfd.get(), runtime_dir);
  }
  if (relay) {
    try {
      relay->start();
    } catch (const std::exception& e) {
      // Nobody would read what the command writes to its pty: it would
      // block. The sandbox is stopped instead, and ends as it would.
      log::error("cannot relay the terminal: {}; stopping the sandbox", e.what());
      pidfd_send_signal(warden.pidfd.get(), SIGKILL);
    }
  }

  self_pidfd.reset();
  // The warden writes the readiness newline; our copy would keep the
  // reader from ever seeing EOF if the warden dies first.
  if (spec.notify_fd) ::close(*spec.notify_fd);
  set_process_title("vmwarden", fmt::format("vmwarden[{}]", spec.name));
  log::debug("warden started (pid {})", warden.pid);

  siginfo_t info{};
  bool trimmed = false;
  while (true) {
    pollfd fds[2] = {{signal_fd.get(), POLLIN, 0}, {warden.pidfd.get(), POLLIN, 0}};
    int ready = ::poll(fds, 2, trimmed ? -1 : static_cast<int>(kIdleBeforeTrim.count()));
    if (ready < 0) {
      if (errno == EINTR) continue;
      throw_errno("poll");
    }
    if (ready == 0) {
      release_startup_memory();
      trimmed = true;
      continue;
    }
    if (fds[0].revents != 0) {
      signalfd_siginfo received;
      while (::read(signal_fd.get(), &received, sizeof received) == sizeof received) {
        int sig = static_cast<int>(received.ssi_signo);
        log::info("forwarding SIG{} to the warden", signal_name(sig));
        if (pidfd_send_signal(warden.pidfd.get(), sig) < 0 && errno != ESRCH) {
          log::error("cannot forward SIG{} to the warden: {}", signal_name(sig), std::strerror(errno));
        }
      }
    }
    if (fds[1].revents != 0) {
      if (::waitid(P_PIDFD, static_cast<id_t>(warden.pidfd.get()), &info, WEXITED) == 0) break;
      if (errno != EINTR) throw_errno("waitid", "(warden)");
    }
  }

  if (relay) relay->finish();
  if (spec.after_services) spec.after_services();
  runtime_dir.remove();
  if (info.si_code == CLD_EXITED) return info.si_status;
  log::error("the warden was killed by SIG{}; every process of the sandbox died with it", signal_name(info.si_status));
  return exit_status::kSignalBase + info.si_status;
}

}  // namespace vmwarden::supervisor
