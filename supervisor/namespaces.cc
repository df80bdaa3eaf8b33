// The warden is created with a single clone3() so that it is PID 1 of its
// namespace from its first instruction and the outer never leaves the host
// namespaces. CLONE_PIDFD hands the outer a pidfd with no pid-reuse race.

#include "supervisor/namespaces.h"

#include <linux/sched.h>
#include <sched.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdint>

#include "common/error.h"

namespace vmwarden::supervisor {

ClonedProcess clone_into_namespaces(bool private_network) {
  // The cgroup namespace costs next to nothing and hides the host's cgroup
  // paths from /proc/self/cgroup inside the sandbox.
  uint64_t flags = CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWCGROUP | CLONE_PIDFD;
  if (private_network) flags |= CLONE_NEWNET;
  int pidfd = -1;
  clone_args args{};
  args.flags = flags;
  args.pidfd = reinterpret_cast<uintptr_t>(&pidfd);
  args.exit_signal = SIGCHLD;
  long pid = ::syscall(SYS_clone3, &args, sizeof args);
  check(pid, "clone3", "(new PID, mount, IPC, UTS, cgroup and network namespaces)");
  ClonedProcess result;
  result.pid = static_cast<pid_t>(pid);
  if (pid != 0) result.pidfd = UniqueFd(pidfd);
  return result;
}

}  // namespace vmwarden::supervisor
