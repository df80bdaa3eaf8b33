// One service as the warden runs it: started with clone + exec, with its fds,
// mounts and confinement set up in the child, and tracked until reaped.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

#include "common/unique_fd.h"
#include "supervisor/mounts.h"
#include "supervisor/sandbox.h"

namespace vmwarden::supervisor {

class Service final : public RunningService {
 public:
  // `warden_fds`: what the warden made for it (the sockets bound for
  // spec.listen_sockets, the pipes of spec.captures), mapped after spec.fds.
  // `mounts`: see service_mounts().
  Service(const ServiceSpec& spec, const std::vector<FdMapping>& warden_fds, ServiceMounts mounts);

  const ServiceSpec& spec() const override { return spec_; }
  pid_t pid() const override { return pid_; }
  bool running() const override { return pid_ > 0 && !wait_status_; }
  bool stop_requested() const override;
  // Runs at each stop_requested(), which readiness waits call between
  // probes: the warden pumps the services' output pipes there, so that a
  // service writing more than a pipe holds before it is ready does not
  // block for good.
  void set_between_probes(std::function<void()> hook) { between_probes_ = std::move(hook); }

  // Starts the child, which maps the fds (closing every other one), enters a
  // mount namespace of its own (if it has one), applies the confinement and
  // execs argv. Returns
  // once exec succeeded; throws with the child's own error message (which
  // step, which path) if it did not. Either way the child is left to be
  // reaped by the caller.
  void start() {
    launch(/*share_memory=*/true);
    await_exec();
  }

  // start() in two halves, so that several children of one stage confine
  // themselves at once: launch(false) forks a copy of the warden that goes
  // its own way at once; launch(true) shares the warden's memory (no page
  // table copy) and returns only once the child has exec'd or failed.
  // await_exec() then reports the outcome as start() does.
  void launch(bool share_memory);
  void await_exec();

  // Records the child's wait status once reaped.
  void exited(int wait_status) { wait_status_ = wait_status; }
  std::optional<int> wait_status() const { return wait_status_; }
  // Set once its readiness wait (ServiceSpec::wait_ready) has succeeded.
  void mark_ready() { ready_ = true; }
  bool ready() const { return ready_; }

 private:
  const ServiceSpec& spec_;
  ServiceMounts mounts_;
  std::vector<FdMapping> fds_;  // spec.fds, then the warden's
  std::vector<std::string> env_;  // spec.environment made, at launch
  std::function<void()> between_probes_;
  UniqueFd exec_status_;        // read end of the child's CLOEXEC error pipe
  pid_t pid_ = 0;
  std::optional<int> wait_status_;
  bool ready_ = false;
};

// The sandbox exit status for a wait status: the exit code, or 128+N for a
// death by signal N.
int exit_status_of(int wait_status);

// "exited with status 3" / "was killed by SIGKILL".
std::string describe_wait_status(int wait_status);

}  // namespace vmwarden::supervisor
