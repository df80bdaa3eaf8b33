// The sibling attacks with both services started by the warden from one
// SandboxSpec, as `vmwarden run` starts virtiofsd and then the VMM: the
// target is stage 0 and the first process the warden forks (PID 2 in the
// sandbox), the attacker is stage 1 and the main service. Each confines
// itself in its child with apply_confinement() under its own Landlock domain
// and seccomp filter, as every service does. Each attack is shown refused
// with its errno (or killed by seccomp), then to succeed with the protection
// that stops it left out of the attacker's confinement, so that no test
// passes vacuously.
//
// run_sandbox() runs in a child of the test, which ends it and everything
// in it however the test ends (PR_SET_PDEATHSIG, PID 1 of the sandbox).
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <vector>

#include "common/error.h"
#include "common/process.h"
#include "common/unique_fd.h"
#include "supervisor/confinement.h"
#include "supervisor/policy.h"
#include "supervisor/sandbox.h"
#include "tests/escape/escape_support.h"
#include "tests/support/support.h"

namespace vmwarden::supervisor {
namespace {

using namespace vmwarden::escape;
using vmwarden::testing::TempDir;
using Clock = std::chrono::steady_clock;

// Both services' uid: unused on the machine, distinct per test run.
uid_t service_uid() { return 3'500'000 + static_cast<uid_t>(::getpid() % 100'000); }

// The target's pid in the sandbox: the warden forks nothing before the
// first service of stage 0.
constexpr const char* kTargetPid = "2";

// In the attacker's arguments: the path of a unix socket the warden binds
// for the target in the sandbox's runtime dir.
constexpr const char* kTargetSocket = "{target socket}";

// In the attacker's arguments: the sandbox's runtime dir.
constexpr const char* kRuntimeDir = "{runtime dir}";

// What protections the attacker's own confinement leaves out.
struct Without {
  bool landlock = false;
  bool seccomp = false;
};

// Reads `fd` until EOF.
std::string read_all(int fd) {
  std::string text;
  char buffer[512];
  for (;;) {
    ssize_t n = ::read(fd, buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return text;
    text.append(buffer, static_cast<std::size_t>(n));
  }
}

class ServiceEscapeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root";
    // The services' uid creates nothing in the runtime dir, but must reach
    // the attacker's copy.
    std::filesystem::permissions(runtime_.path(), std::filesystem::perms(0711));
  }

  Confinement confinement(Without without = {}) const {
    Confinement confinement;
    confinement.uid = confinement.gid = service_uid();
    auto& paths = confinement.landlock.paths;
    for (const auto& rules : {system_read_execute_rules(), device_rules(), proc_self_rules()})
      paths.insert(paths.end(), rules.begin(), rules.end());
    paths.push_back({tools_.dir(), PathRights::read_execute()});
    if (without.landlock) confinement.landlock.mode = LandlockMode::off;
    if (without.seccomp) confinement.seccomp.profile = "none";
    return confinement;
  }

  // Runs a sandbox of two services: the target (`target_args` of the
  // attacker program, which prints "ready" once set up) and, once the target
  // is ready, the attacker (`attack_args`). Returns the attacker's outcome.
  Outcome attack(const std::vector<std::string>& target_args, const std::vector<std::string>& attack_args,
                 Without without = {}) {
    auto [target_read, target_write] = make_pipe();
    auto [out_read, out_write] = make_pipe();
    auto [err_read, err_write] = make_pipe();
    int null = ::open("/dev/null", O_RDWR | O_CLOEXEC);
    UniqueFd null_fd(null);

    SandboxSpec spec;
    // Short: the target's socket path must fit in sun_path (107 bytes)
    // under a long TMPDIR; runtime_ is this test's own.
    spec.name = "se" + std::to_string(++runs_);
    spec.runtime_dir = runtime_.path() / spec.name;
    spec.runtime_dir_uid = service_uid();
    spec.runtime_dir_gid = service_uid();
    spec.shutdown_timeout = std::chrono::milliseconds(2'000);
    spec.ready_timeout = std::chrono::milliseconds(10'000);

    ServiceSpec target;
    target.name = "target";
    target.argv = program(target_args);
    target.confinement = confinement();
    target.fds = {{null, 0}, {target_write.get(), 1}, {null, 2}};
    target.stage = 0;
    std::vector<std::string> attack_argv = attack_args;
    for (std::string& arg : attack_argv) {
      if (arg.starts_with(kRuntimeDir)) arg = spec.runtime_dir.string() + arg.substr(std::string(kRuntimeDir).size());
      if (arg != kTargetSocket) continue;
      arg = (spec.runtime_dir / "target.sock").string();
      target.listen_sockets = {{arg, 3}};
    }
    // In the warden: the target printed "ready" (its socket is bound).
    const int ready_fd = target_read.get();
    target.wait_ready = [ready_fd](const RunningService& service, Clock::time_point deadline) {
      std::string seen;
      while (seen.find("ready\n") == std::string::npos) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
        pollfd poll_fd{ready_fd, POLLIN, 0};
        if (left <= 0 || ::poll(&poll_fd, 1, static_cast<int>(left)) <= 0 || !service.running())
          throw std::runtime_error("the target did not become ready");
        char buffer[64];
        ssize_t n = ::read(ready_fd, buffer, sizeof buffer);
        if (n <= 0) throw std::runtime_error("the target closed its output before it was ready");
        seen.append(buffer, static_cast<std::size_t>(n));
      }
    };

    ServiceSpec attacker;
    attacker.name = "attacker";
    attacker.argv = program(attack_argv);
    attacker.confinement = confinement(without);
    auto& rules = attacker.confinement.landlock.paths;
    rules.insert(rules.end(), attacker_rules_.begin(), attacker_rules_.end());
    attacker.fds = {{null, 0}, {out_write.get(), 1}, {err_write.get(), 2}};
    attacker.stage = 1;
    attacker.main = true;
    spec.services = {target, attacker};

    pid_t outer = check(::fork(), "fork");
    if (outer == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      int status = 125;
      try {
        status = run_sandbox(spec);
      } catch (const std::exception& error) {
        std::fprintf(stderr, "run_sandbox: %s\n", error.what());
      }
      ::_exit(status);
    }
    // Only the sandbox may hold the write ends, or the reads never end.
    target_write.reset();
    out_write.reset();
    err_write.reset();
    Outcome outcome;
    outcome.out = read_all(out_read.get());
    outcome.err = read_all(err_read.get());
    if (!outcome.out.empty() && outcome.out.back() == '\n') outcome.out.pop_back();
    int status = 0;
    while (::waitpid(outer, &status, 0) < 0 && errno == EINTR) {
    }
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    // The sandbox reports a main service killed by signal N as 128+N.
    if (code > 128 && code < 128 + 65) {
      outcome.signal = code - 128;
    } else {
      outcome.exit_code = code;
    }
    return outcome;
  }

  std::vector<std::string> program(const std::vector<std::string>& args) const {
    std::vector<std::string> argv = {tools_.attacker().string()};
    argv.insert(argv.end(), args.begin(), args.end());
    return argv;
  }

  Tools tools_;
  std::vector<PathRule> attacker_rules_;  // Landlock rules of the attacker's beyond confinement()'s
  TempDir runtime_{"vmwarden-service-escape"};
  int runs_ = 0;
};

TEST_F(ServiceEscapeTest, CannotSignalASiblingService) {
  // Signal 0: the permission check without disturbing the target.
  std::vector<std::string> args = {"signal", kTargetPid, "0"};
  expect_denied(attack({"sleep"}, args), "EPERM");
  // Same uid, no capabilities: only the attacker's signal scope stood in the way.
  expect_success(attack({"sleep"}, args, {.landlock = true}));
}

TEST_F(ServiceEscapeTest, CannotConnectToAnAbstractSocketBoundByASiblingService) {
  std::string name = "vmwarden-service-escape-" + std::to_string(::getpid());
  std::vector<std::string> args = {"connect-abstract", name};
  expect_denied(attack({"bind-abstract", name}, args), "EPERM");
  expect_success(attack({"bind-abstract", name}, args, {.landlock = true}));
}

TEST_F(ServiceEscapeTest, CannotPtraceASiblingService) {
  std::vector<std::string> args = {"ptrace", kTargetPid};
  expect_killed_by_seccomp(attack({"sleep"}, args));
  // Without seccomp, Landlock: the target is not in a domain nested in the attacker's.
  expect_denied(attack({"sleep"}, args, {.seccomp = true}), "EPERM");
  expect_success(attack({"sleep"}, args, {.landlock = true, .seccomp = true}));
}

// Landlock (up to ABI 7) has no rule for connect() on a pathname unix
// socket: what keeps a service from a sibling's socket in the runtime dir
// (virtiofsd's, the VMM's control socket) is the empty tmpfs that covers
// the runtime dir in a service whose rules do not reach it.
TEST_F(ServiceEscapeTest, CannotConnectToASiblingsSocketInTheRuntimeDir) {
  std::vector<std::string> args = {"connect-path", kTargetSocket};
  expect_denied(attack({"sleep"}, args), "ENOENT");
  // Without Landlock the service's mounts are the warden's: nothing covers it.
  expect_success(attack({"sleep"}, args, {.landlock = true}));
}

// That tmpfs is read-only of its own. It matters where a write rule names /
// by another path (`exec --rw` of a symlink to /): such a rule leaves every
// mount as writable as on the host (nothing else is made read-only) and,
// not naming the runtime dir or a directory above it, has it covered, under
// a Landlock domain that allows writing everywhere. Nothing can be made in
// the cover still (EROFS, not its owner's EACCES), its root's mode not
// changed (EROFS, not EPERM), and the sibling's socket stays out of reach.
TEST_F(ServiceEscapeTest, TheCoverOfTheRuntimeDirIsReadOnlyUnderAWriteRuleOnRootByAnotherName) {
  std::filesystem::path root_link = tools_.dir() / "root";
  std::filesystem::create_directory_symlink("/", root_link);
  attacker_rules_ = {{root_link, PathRights::read_write()}};
  expect_denied(attack({"sleep"}, {"write", std::string(kRuntimeDir) + "/junk"}), "EROFS");
  expect_denied(attack({"sleep"}, {"chmod", kRuntimeDir}), "EROFS");
  expect_denied(attack({"sleep"}, {"connect-path", kTargetSocket}), "ENOENT");
}

}  // namespace
}  // namespace vmwarden::supervisor
