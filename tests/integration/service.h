// A service started the way the warden starts one (fds mapped, confinement
// applied between fork and exec, environment replaced), for driving the
// backends' readiness and stop actions against real processes.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>

#include "supervisor/sandbox.h"
#include "tests/support/support.h"

namespace vmwarden::testing {

struct ServiceExit {
  int exit_code = -1;  // -1: killed by a signal
  int signal = 0;
};

class TestService : public supervisor::RunningService {
 public:
  // Starts spec.argv. `in_child` runs in the child before the confinement
  // (e.g. to set up a private mount namespace). With `confine` false the
  // confinement is not applied.
  explicit TestService(supervisor::ServiceSpec spec, bool confine = true,
                       std::function<void()> in_child = {});
  ~TestService() override;  // SIGKILLs and reaps what is still running
  TestService(const TestService&) = delete;
  TestService& operator=(const TestService&) = delete;

  const supervisor::ServiceSpec& spec() const override { return spec_; }
  pid_t pid() const override { return pid_; }
  bool running() const override { return !exit_.has_value(); }
  bool stop_requested() const override { return stop_requested_; }
  // As the warden's stop_requested() turns true when a SIGTERM arrives
  // (from another thread too).
  void request_stop() { stop_requested_ = true; }

  // Reaps the service if it exits by the deadline.
  std::optional<ServiceExit> wait_exit(std::chrono::steady_clock::time_point deadline);
  // What the service wrote to stdout and stderr so far.
  std::string output() const;
  std::chrono::steady_clock::time_point started() const { return started_; }

 private:
  supervisor::ServiceSpec spec_;
  TempDir log_dir_{"vmwarden-service-log"};
  pid_t pid_ = -1;
  std::optional<ServiceExit> exit_;
  std::atomic<bool> stop_requested_ = false;
  std::chrono::steady_clock::time_point started_;
};

// A readiness wait run against `service` with a 120 s deadline, for the
// tests that stop it early: what it threw ("" if it returned) and how long
// it took.
struct WaitOutcome {
  std::string error;
  std::chrono::steady_clock::duration took;
};
WaitOutcome run_wait(const std::function<void(const supervisor::RunningService&,
                                              std::chrono::steady_clock::time_point)>& wait_ready,
                     const supervisor::RunningService& service);

// The uid the services run as: unused on the machine, distinct per test run.
uid_t service_uid();

// A copy of the program at $VARIABLE in `dir` (mode 0755), reachable by
// every uid wherever the build tree is.
std::filesystem::path copy_program(const char* variable, const std::filesystem::path& dir);

}  // namespace vmwarden::testing
