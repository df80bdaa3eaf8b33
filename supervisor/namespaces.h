// Creating the warden's process: one clone3() into fresh namespaces.
#pragma once

#include <sys/types.h>

#include "common/unique_fd.h"

namespace vmwarden::supervisor {

struct ClonedProcess {
  pid_t pid = 0;     // 0 in the child
  UniqueFd pidfd;    // the child's pidfd, in the parent only
};

// Clones the calling process into new PID, mount, IPC, UTS and cgroup
// namespaces, plus a new (empty) network namespace when private_network is
// set. Returns in both processes, like fork(). The child is PID 1 of its PID
// namespace; its SIGCHLD goes to the caller.
//
// The child runs without glibc's fork bookkeeping (no atfork handlers, stale
// cached thread id): it must stay single-threaded and avoid raise()/abort().
ClonedProcess clone_into_namespaces(bool private_network);

// In the warden, PID 1 of the sandbox's PID namespace, with the sandbox's
// /proc mounted: vm.memfd_noexec = 2 for that namespace (inherited by any
// below it, never lowered there; 1 before Linux 6.6, where 2 also refuses
// the plain memfds VMMs make). A memfd is then made without execute
// permission and sealed so, and MFD_EXEC is refused: executing a program
// written to a memfd (execveat of the descriptor) would run what no
// Landlock execute rule names. False on a kernel without the setting
// (before Linux 6.3), where that way stays open.
bool forbid_executable_memfds();
// The value it writes on this kernel: 2, or 1 before Linux 6.6.
int memfd_noexec_value();

// kill(-1, sig) when the caller is PID 1 of its PID namespace, where that
// reaches every other process of the namespace and nothing outside it.
// From any other PID: -1 with errno EPERM, and nothing signalled.
int kill_rest_of_namespace(int sig);

// Moves the calling process (already running as uid:gid) into a new user
// namespace in which uid and gid appear as inside_uid and inside_gid and
// nothing else is mapped; setgroups is denied there. The process holds
// every capability in the new namespace until restrict_capabilities() trims
// them.
void enter_user_namespace(uid_t uid, gid_t gid, uid_t inside_uid, gid_t inside_gid);

}  // namespace vmwarden::supervisor
