// Starting a service. The child reports a failure between clone and exec
// through a CLOEXEC pipe: exec closes it (EOF = success), anything else is
// the error message, so the warden can name the step that failed instead of
// seeing only an exit code.

#include "supervisor/service.h"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "common/error.h"
#include "common/exit_status.h"
#include "common/process.h"
#include "common/unique_fd.h"
#include "common/write_all.h"
#include "supervisor/mounts.h"
#include "supervisor/warden.h"

namespace vmwarden::supervisor {
namespace {

// Exit code of a child that failed before exec (the warden reports the
// error it read from the pipe, not this number).
constexpr int kChildSetupFailed = 127;

// Everything the child needs, prepared by the parent, so that the child,
// which may share the warden's memory (see Service::launch), does as little
// as it can on its way to exec.
struct ChildPlan {
  const ServiceSpec* spec;
  const std::vector<FdMapping>* fds;
  const ServiceMounts* mounts;
  int error_pipe;
  std::vector<char*> argv, envp;
  std::vector<int> sources;  // scratch: each mapping's parent_fd, copied out of the way
  std::vector<int> targets;  // sorted child fds, 0-2 always among them
  std::vector<int> nulled;   // standard fds no mapping names: /dev/null
  int floor;                 // above every target
};

// Puts each parent_fd at its child_fd, /dev/null on each standard fd that
// no mapping names, and marks every other descriptor close-on-exec, so the
// service receives exactly these. A closed standard fd would be taken by the
// service's first open(), and stray reads and writes would then hit that
// file. The error pipe is moved above the targets first so that no dup2 can
// replace it.
void map_fds(ChildPlan& plan) {
  const std::vector<FdMapping>& fds = *plan.fds;
  plan.error_pipe = check(::fcntl(plan.error_pipe, F_DUPFD_CLOEXEC, plan.floor), "fcntl F_DUPFD_CLOEXEC",
                          "(exec status pipe)");
  // Copy every source above all targets first: a source may be another
  // mapping's target.
  int floor = plan.error_pipe + 1;
  for (size_t i = 0; i < fds.size(); ++i) {
    plan.sources[i] = ::fcntl(fds[i].parent_fd, F_DUPFD_CLOEXEC, floor);
    if (plan.sources[i] < 0) throw_errno("fcntl F_DUPFD_CLOEXEC", "fd " + std::to_string(fds[i].parent_fd));
  }
  for (size_t i = 0; i < fds.size(); ++i) {
    if (::dup2(plan.sources[i], fds[i].child_fd) < 0) throw_errno("dup2", "fd " + std::to_string(fds[i].child_fd));
  }
  for (int standard : plan.nulled) {
    int null = check(::open("/dev/null", O_RDWR | O_CLOEXEC), "open", "/dev/null");
    if (null != standard) {
      check(::dup2(null, standard), "dup2", "/dev/null");
      ::close(null);
    } else {
      check(::fcntl(null, F_SETFD, 0), "fcntl F_SETFD", "/dev/null");
    }
  }
  unsigned next = 0;
  for (int target : plan.targets) {
    if (static_cast<unsigned>(target) > next) {
      check(::close_range(next, static_cast<unsigned>(target) - 1, CLOSE_RANGE_CLOEXEC), "close_range");
    }
    next = static_cast<unsigned>(target) + 1;
  }
  check(::close_range(next, ~0U, CLOSE_RANGE_CLOEXEC), "close_range");
}

void reset_signals() {
  // Handlers first, then the mask: the warden blocks the signals it reads
  // through its signalfd, and a blocked mask survives exec, so the service
  // would never see SIGTERM.
  for (int sig : {SIGTERM, SIGINT, SIGHUP, SIGCHLD, SIGUSR1}) ::signal(sig, SIG_DFL);
  sigset_t none;
  sigemptyset(&none);
  check(::sigprocmask(SIG_SETMASK, &none, nullptr), "sigprocmask");
}

int run_child(void* arg) {
  ChildPlan& plan = *static_cast<ChildPlan*>(arg);
  const ServiceSpec& spec = *plan.spec;
  try {
    reset_signals();
    check(::setsid(), "setsid");
    map_fds(plan);
    // The pty's slave, at its place now: a session leader without a
    // controlling terminal takes it (no one else's, so no capability used).
    if (!spec.terminal_fds.empty())
      check(::ioctl(spec.terminal_fds.front(), TIOCSCTTY, 0), "ioctl TIOCSCTTY",
            "fd " + std::to_string(spec.terminal_fds.front()));
    if (plan.mounts->own_namespace) setup_service_mounts(*plan.mounts);
    check(::chdir(spec.cwd.c_str()), "chdir", spec.cwd.native());
    apply_confinement(spec.confinement);
    ::execve(plan.argv[0], plan.argv.data(), plan.envp.data());
    throw_errno("execve", spec.argv[0]);
  } catch (const std::exception& e) {
    (void)write_all(plan.error_pipe, e.what());  // the parent sees the exit either way
  } catch (...) {
    (void)write_all(plan.error_pipe, "unknown error");
  }
  ::_exit(kChildSetupFailed);
}

// The child's stack. A child sharing the warden's memory runs on it while
// the warden is suspended; a copy-on-write child runs on its own copy.
alignas(64) char g_child_stack[256 * 1024];

}  // namespace

Service::Service(const ServiceSpec& spec, const std::vector<FdMapping>& warden_fds, ServiceMounts mounts)
    : spec_(spec), mounts_(std::move(mounts)), fds_(spec.fds) {
  fds_.insert(fds_.end(), warden_fds.begin(), warden_fds.end());
}

void Service::launch(bool share_memory) {
  if (spec_.argv.empty()) throw PermanentError("service " + spec_.name + " has no argv");
  auto [read_end, write_end] = make_pipe();

  ChildPlan plan;
  plan.spec = &spec_;
  plan.fds = &fds_;
  plan.mounts = &mounts_;
  plan.error_pipe = write_end.get();
  for (const std::string& arg : spec_.argv) plan.argv.push_back(const_cast<char*>(arg.c_str()));
  plan.argv.push_back(nullptr);
  env_ = spec_.environment.build(environ);
  for (const std::string& entry : env_) plan.envp.push_back(const_cast<char*>(entry.c_str()));
  plan.envp.push_back(nullptr);
  plan.sources.resize(fds_.size());
  int highest_target = 2;
  for (const FdMapping& mapping : fds_) {
    plan.targets.push_back(mapping.child_fd);
    highest_target = std::max(highest_target, mapping.child_fd);
  }
  for (int standard = 0; standard <= 2; ++standard) {
    if (std::find(plan.targets.begin(), plan.targets.end(), standard) != plan.targets.end()) continue;
    plan.nulled.push_back(standard);
    plan.targets.push_back(standard);
  }
  std::sort(plan.targets.begin(), plan.targets.end());
  plan.floor = highest_target + 1;

  // Shared: posix_spawn-style, CLONE_VM|CLONE_VFORK shares the warden's
  // memory until the child execs, so there is no page-table copy and no
  // copy-on-write fault in either process (on a virtual machine these
  // dominate the start time). The warden is suspended meanwhile. The child's
  // confinement does allocate (the Landlock rules, libcap's state) on the
  // shared heap: safe only because the warden is single-threaded, so no
  // other thread can hold the allocator's lock or see the heap change, and
  // it must stay so. What the child leaves allocated is not freed (a few
  // hundred bytes per start).
  // Not shared: a copy-on-write child (on its copy of the same stack), which
  // confines itself while the warden starts the next one.
  int flags = share_memory ? CLONE_VM | CLONE_VFORK | SIGCHLD : SIGCHLD;
  pid_t pid = ::clone(run_child, g_child_stack + sizeof g_child_stack, flags, &plan);
  if (pid < 0) throw_errno("clone", spec_.name);
  pid_ = pid;
  exec_status_ = std::move(read_end);
}

void Service::await_exec() {
  std::string error;
  char buffer[512];
  while (true) {
    ssize_t n = ::read(exec_status_.get(), buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    error.append(buffer, static_cast<size_t>(n));
  }
  exec_status_.reset();
  if (!error.empty()) throw PermanentError("cannot start " + spec_.name + ": " + error);
}

// Services run only under the warden, which blocks the stop signals and
// reads them from a signalfd: pending means not yet taken in.
bool Service::stop_requested() const {
  if (between_probes_) between_probes_();
  return stop_signal_pending();
}

int exit_status_of(int wait_status) {
  if (WIFSIGNALED(wait_status)) return exit_status::kSignalBase + WTERMSIG(wait_status);
  return WEXITSTATUS(wait_status);
}

std::string describe_wait_status(int wait_status) {
  if (WIFSIGNALED(wait_status)) {
    const char* name = ::sigabbrev_np(WTERMSIG(wait_status));
    return std::string("was killed by SIG") + (name != nullptr ? name : std::to_string(WTERMSIG(wait_status)));
  }
  return "exited with status " + std::to_string(WEXITSTATUS(wait_status));
}

}  // namespace vmwarden::supervisor
