#include "common/process.h"

#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <poll.h>
#include <signal.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <exception>

#include <fmt/core.h>

#include "common/error.h"
#include "common/printable.h"
#include "common/write_all.h"

namespace vmwarden {
namespace {

int milliseconds_until(Deadline deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
  if (left.count() <= 0) return 0;
  // Round up so that a poll does not return a millisecond early and spin.
  return static_cast<int>(std::min<long long>(left.count() + 1, 60'000));
}

// A child's last word before it exits: nowhere else to say that it failed.
void write_all_best_effort(int fd, std::string_view text) { (void)write_all(fd, text); }

// Whether the calling process holds `capability` in its effective set
// (capget directly: common/ does without libcap).
bool capability_effective(int capability) {
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct sets[_LINUX_CAPABILITY_U32S_3]{};
  check(static_cast<int>(::syscall(SYS_capget, &header, sets)), "capget");
  return (sets[capability / 32].effective & (1u << (capability % 32))) != 0;
}

// run_program_unprivileged()'s child, before exec; throws on any failure.
void drop_privileges() {
  const pid_t parent = ::getppid();
  // 1. The bounding set first: dropping from it needs CAP_SETPCAP, which the
  //    uid switch takes away. A caller without CAP_SETPCAP cannot shrink it,
  //    and need not: with every set empty and no_new_privs, an exec cannot
  //    raise a capability from it.
  if (capability_effective(CAP_SETPCAP)) {
    for (int capability = 0;; ++capability) {
      int held = ::prctl(PR_CAPBSET_READ, capability, 0, 0, 0);
      if (held < 0 && errno == EINVAL) break;  // past the kernel's last capability
      check(held, "prctl(PR_CAPBSET_READ)", std::to_string(capability));
      if (held == 1)
        check(::prctl(PR_CAPBSET_DROP, capability, 0, 0, 0), "prctl(PR_CAPBSET_DROP)", std::to_string(capability));
    }
  }
  // 2. Identity: supplementary groups, then gid, then uid (after the uid
  //    switch CAP_SETGID is gone).
  if (::geteuid() == 0) {
    check(::setgroups(0, nullptr), "setgroups");
    check(::setresgid(kNogroupGid, kNogroupGid, kNogroupGid), "setresgid", std::to_string(kNogroupGid));
    check(::setresuid(kNobodyUid, kNobodyUid, kNobodyUid), "setresuid", std::to_string(kNobodyUid));
  }
  // 3. Every capability set empty. Leaving uid 0 has already emptied the
  //    permitted, effective and ambient sets; capset also covers the
  //    inheritable set and a caller that was not root.
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct none[_LINUX_CAPABILITY_U32S_3]{};
  check(static_cast<int>(::syscall(SYS_capset, &header, none)), "capset");
  // 4. Nothing an exec finds (set-user-ID bit, file capabilities) can grant
  //    privileges again.
  check(::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(PR_SET_NO_NEW_PRIVS)");
  // 5. The credential change cleared run_program()'s parent-death signal:
  //    set again, and the parent checked, as it may have died in between.
  check(::prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0), "prctl(PR_SET_PDEATHSIG)");
  if (::getppid() != parent)
    throw SystemError(ESRCH, fmt::format("parent {} exited while the program was being made unprivileged", parent));
}

}  // namespace

PidFd::PidFd(pid_t pid) : pid_(pid) {
  int fd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  if (fd < 0) {
    if (errno == ESRCH) return;  // already reaped
    throw_errno("pidfd_open", fmt::format("pid {}", pid));
  }
  fd_.reset(fd);
}

bool PidFd::exited() const { return wait_exited(std::chrono::steady_clock::now()); }

bool PidFd::wait_exited(Deadline deadline) const {
  if (!fd_) return true;
  for (;;) {
    pollfd pfd{fd_.get(), POLLIN, 0};
    // ppoll: waits shorter than a millisecond are meant (readiness probes).
    auto left = std::chrono::duration_cast<std::chrono::nanoseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() < 0) left = std::chrono::nanoseconds(0);
    timespec timeout{static_cast<time_t>(left.count() / 1'000'000'000), static_cast<long>(left.count() % 1'000'000'000)};
    int rc = ::ppoll(&pfd, 1, &timeout, nullptr);
    if (rc < 0 && errno == EINTR) continue;
    check(rc, "poll pidfd", fmt::format("pid {}", pid_));
    if (rc > 0) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
  }
}

void PidFd::send_signal(int signal) const {
  if (!fd_) return;
  if (::syscall(SYS_pidfd_send_signal, fd_.get(), signal, nullptr, 0) < 0 && errno != ESRCH)
    throw_errno(fmt::format("pidfd_send_signal {}", signal), fmt::format("pid {}", pid_));
}

std::string ProgramResult::describe() const {
  std::string status;
  if (timed_out)
    status = "timed out";
  else if (signal != 0)
    status = fmt::format("killed by signal {}", signal);
  else
    status = fmt::format("exit {}", exit_code);
  std::string_view first = output;
  first = first.substr(0, first.find('\n'));
  if (!first.empty()) status += fmt::format(": {}", first);
  return status;
}

Pipe make_pipe() {
  int ends[2];
  check(::pipe2(ends, O_CLOEXEC), "pipe2");
  return {UniqueFd(ends[0]), UniqueFd(ends[1])};
}

ProgramResult run_program(const std::vector<std::string>& argv, const std::vector<std::string>& env,
                          Deadline deadline, const std::function<void()>& in_child, ChildNamespaces namespaces) {
  if (argv.empty() || argv[0].empty() || argv[0][0] != '/')
    throw UsageError(fmt::format("run_program needs an absolute program path, got \"{}\"",
                                 argv.empty() ? "" : argv[0]));
  auto [out_read, out_write] = make_pipe();

  // Everything the child needs is prepared before fork: it only calls
  // async-signal-safe functions besides `in_child`.
  std::vector<std::string> args_copy = argv, env_copy = env;
  std::vector<char*> args, envp;
  for (auto& arg : args_copy) args.push_back(arg.data());
  args.push_back(nullptr);
  for (auto& entry : env_copy) envp.push_back(entry.data());
  envp.push_back(nullptr);

  pid_t parent = ::getpid();
  const bool own_namespaces = namespaces == ChildNamespaces::own_pid_and_network;
  // A PID namespace's first process sees no parent (getppid() is 0 there):
  // whether the caller died before PR_SET_PDEATHSIG took hold is read from
  // a pidfd of it instead.
  std::optional<PidFd> parent_fd;
  if (own_namespaces) parent_fd.emplace(parent);
  // clone() without CLONE_VM is fork() with namespaces.
  pid_t pid = own_namespaces ? static_cast<pid_t>(::syscall(SYS_clone, SIGCHLD | CLONE_NEWPID | CLONE_NEWNET,
                                                            nullptr, nullptr, nullptr, 0))
                             : ::fork();
  if (pid < 0) throw_errno(own_namespaces ? "clone (new PID and network namespaces)" : "fork", argv[0]);
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (own_namespaces ? parent_fd->exited() : ::getppid() != parent) ::_exit(127);
    // A step that fails before exec is told on the output pipe, which the
    // caller shows: an exit status of 127 alone names no cause.
    // (The descriptor by value: clang 14 cannot capture a structured binding.)
    auto fail = [&argv, output = out_write.get()](std::string_view operation) {
      write_all_best_effort(output, fmt::format("{}: {}: {}\n", argv[0], operation, std::strerror(errno)));
      ::_exit(127);
    };
    int null_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (null_fd < 0) fail("open /dev/null");
    if (::dup2(null_fd, 0) < 0 || ::dup2(out_write.get(), 1) < 0 || ::dup2(out_write.get(), 2) < 0) fail("dup2");
    // The program gets stdin, stdout and stderr and nothing else of the
    // caller's: no descriptor it inherited without close-on-exec (an s6
    // notification fd would let it report readiness), and no blocked signal
    // (the warden blocks the ones it reads from a signalfd).
    sigset_t none;
    sigemptyset(&none);
    if (::close_range(3, ~0U, CLOSE_RANGE_CLOEXEC) < 0) fail("close_range");
    if (::sigprocmask(SIG_SETMASK, &none, nullptr) < 0) fail("sigprocmask");
    if (in_child) {
      try {
        in_child();
      } catch (const std::exception& e) {
        write_all_best_effort(2, fmt::format("{}: {}\n", argv[0], e.what()));
        ::_exit(127);
      }
    }
    ::execve(args[0], args.data(), envp.data());
    write_all_best_effort(2, fmt::format("exec {}: {}\n", argv[0], std::strerror(errno)));
    ::_exit(127);
  }
  out_write.reset();
  PidFd child(pid);

  ProgramResult result;
  bool output_open = true;
  while (output_open) {
    int timeout = milliseconds_until(deadline);
    if (timeout == 0) break;
    pollfd pfd{out_read.get(), POLLIN, 0};
    int rc = ::poll(&pfd, 1, timeout);
    if (rc < 0 && errno == EINTR) continue;
    check(rc, "poll", argv[0]);
    if (rc == 0) continue;
    char buffer[4096];
    ssize_t n = ::read(out_read.get(), buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      output_open = false;
    } else if (result.output.size() < 64 * 1024) {
      result.output.append(buffer, static_cast<size_t>(n));
    }
  }
  if (!child.wait_exited(deadline)) {
    child.send_signal(SIGKILL);
    result.timed_out = true;
  }
  siginfo_t info{};
  int rc;
  do rc = ::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED);
  while (rc < 0 && errno == EINTR);
  if (rc < 0) {
    if (errno != ECHILD) throw_errno("waitid", argv[0]);
    return result;  // reaped by someone else: status lost
  }
  if (info.si_code == CLD_EXITED)
    result.exit_code = info.si_status;
  else
    result.signal = info.si_status;
  return result;
}

std::optional<std::string> script_interpreter_problem(const std::filesystem::path& program) {
  UniqueFd file(::open(program.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC));
  char head[256];
  ssize_t length = file ? ::read(file.get(), head, sizeof head) : -1;
  if (length <= 2 || head[0] != '#' || head[1] != '!') return std::nullopt;
  std::string_view line(head + 2, static_cast<std::size_t>(length) - 2);
  line = line.substr(0, line.find('\n'));
  std::size_t begin = line.find_first_not_of(" \t");
  if (begin == std::string_view::npos) return std::nullopt;
  std::string interpreter(line.substr(begin, line.find_first_of(" \t", begin) - begin));
  if (::access(interpreter.c_str(), X_OK) == 0) return std::nullopt;
  return fmt::format("its interpreter {} (its #! line) {}", printable(interpreter),
                     errno == ENOENT ? "does not exist" : "cannot be executed");
}

ProgramResult run_program_unprivileged(const std::vector<std::string>& argv, const std::vector<std::string>& env,
                                       Deadline deadline, const std::function<void()>& in_child,
                                       ChildNamespaces namespaces) {
  return run_program(
      argv, env, deadline,
      [&in_child] {
        drop_privileges();
        if (in_child) in_child();
      },
      namespaces);
}

void block_stop_signals() {
  sigset_t stop;
  sigemptyset(&stop);
  for (int sig : {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGALRM, SIGUSR1, SIGUSR2, SIGABRT}) sigaddset(&stop, sig);
  check(::sigprocmask(SIG_BLOCK, &stop, nullptr), "sigprocmask");
}

}  // namespace vmwarden
