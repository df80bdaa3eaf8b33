// Child processes watched through pidfds: waiting with a deadline never
// races a reused pid, and a process that another waiter has already reaped
// is reported as gone instead of being signalled by number.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "common/unique_fd.h"

namespace vmwarden {

using Deadline = std::chrono::steady_clock::time_point;

// A pidfd on a process (not necessarily our child). It becomes readable once
// the process has exited, zombie or reaped.
class PidFd {
 public:
  // Opens a pidfd for `pid`. A process that is already gone gives an empty
  // PidFd whose exited() is true.
  explicit PidFd(pid_t pid);

  pid_t pid() const { return pid_; }
  int fd() const { return fd_.get(); }  // -1 for a process already gone
  bool exited() const;
  // Waits until the process has exited or `deadline` passes; true if exited.
  bool wait_exited(Deadline deadline) const;
  // Sends `signal` unless the process has already exited.
  void send_signal(int signal) const;

 private:
  pid_t pid_;
  UniqueFd fd_;
};

// Both ends of a new pipe, close-on-exec; throws SystemError.
struct Pipe {
  UniqueFd read_end, write_end;
};
Pipe make_pipe();

// Blocks SIGTERM, SIGINT and SIGHUP in the calling thread: from a lease or a
// grant on, a stop request must not kill the process before it has revoked
// and released. supervisor::run_sandbox() reads them from a signalfd (one
// pending since included) and forwards them to the sandbox. Blocks for good
// SIGQUIT, SIGALRM, SIGUSR1, SIGUSR2 and SIGABRT too: s6-svc sends them
// (-q, -a, -1, -2, -b) and they mean nothing to vmwarden, but their default
// action would kill it and leave its grants (abort() still aborts). The
// warden inherits the mask; a service starts with none blocked.
void block_stop_signals();

struct ProgramResult {
  int exit_code = -1;      // the exit status, or -1 when killed by a signal or lost
  int signal = 0;          // the killing signal, if any
  bool timed_out = false;  // SIGKILLed at the deadline
  std::string output;      // stdout and stderr, interleaved

  bool success() const { return exit_code == 0; }
  // "exit 3", "killed by signal 9", "timed out" and the first output line.
  std::string describe() const;
};

// Where run_program()'s child runs: in the caller's namespaces, or as PID 1
// of a PID namespace of its own with an empty network namespace, so that
// whatever it starts dies with it (the kernel kills a PID namespace's
// processes when its first one exits) and nothing reaches the network
// (needs CAP_SYS_ADMIN).
enum class ChildNamespaces { caller, own_pid_and_network };

// Runs argv[0] (an absolute path, no PATH lookup) with `env` as its whole
// environment, stdin from /dev/null, until it exits or `deadline` passes (then
// it is SIGKILLed). `in_child` runs in the child between fork and exec (e.g.
// to apply a confinement); if it throws, the child reports the message and
// exits 127. The caller must be single-threaded, and must not reap the child
// by other means while this runs.
ProgramResult run_program(const std::vector<std::string>& argv, const std::vector<std::string>& env,
                          Deadline deadline, const std::function<void()>& in_child = {},
                          ChildNamespaces namespaces = ChildNamespaces::caller);

// For an executable file that is a script: why its #! interpreter cannot
// run ("its interpreter /x (its #! line) does not exist"), if it cannot.
// Its execve would fail with ENOENT, which reads as if the script itself
// were missing. Nothing for a binary, or a file that cannot be read.
std::optional<std::string> script_interpreter_problem(const std::filesystem::path& program);

// The identity of a program that needs no privilege: nobody and nogroup.
inline constexpr uid_t kNobodyUid = 65534;
inline constexpr gid_t kNogroupGid = 65534;

// run_program() for a program that needs no privilege (getent, a --help),
// which root should not run as itself: it may load code root did not choose
// (NSS modules, a wrapper script). Before `in_child` and the exec, the child
// drops every capability from the bounding set, becomes kNobodyUid and
// kNogroupGid without supplementary groups, clears every capability set
// (capset) and sets no_new_privs, so that no set-user-ID binary or file
// capability gives any back. A caller that is not root keeps its own ids
// (it cannot switch) and loses the rest alike.
ProgramResult run_program_unprivileged(const std::vector<std::string>& argv, const std::vector<std::string>& env,
                                       Deadline deadline, const std::function<void()>& in_child = {},
                                       ChildNamespaces namespaces = ChildNamespaces::caller);

}  // namespace vmwarden
