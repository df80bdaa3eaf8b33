// The escape suite: each test forks a child, confines it with
// apply_confinement() and execs the attacker, which makes one attempt to get
// out. Every attack is shown denied (with the exact errno, or death by
// SIGSYS where seccomp kills), and again with the protection that stops it
// left out, where it must succeed: no test passes vacuously.
//
// Every process signalled, traced or probed here was started by the test.
#include <arpa/inet.h>
#include <endian.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/un.h>
#include <sys/xattr.h>
#include <linux/capability.h>
#include <linux/securebits.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <chrono>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

#include "common/error.h"
#include "common/process.h"
#include "common/unique_fd.h"
#include "supervisor/confinement.h"
#include "supervisor/confinement_testing.h"
#include "supervisor/policy.h"
#include "tests/escape/escape_support.h"
#include "tests/support/support.h"

namespace vmwarden::supervisor {
namespace {

namespace fs = std::filesystem;
using vmwarden::testing::TempDir;
using vmwarden::testing::write_file;
using vmwarden::escape::Outcome;
using vmwarden::escape::Tools;
using vmwarden::escape::expect_denied;
using vmwarden::escape::expect_killed_by_seccomp;
using vmwarden::escape::expect_success;

constexpr unsigned kAllSteps =
    step_identity | step_capabilities | step_no_new_privs | step_landlock | step_seccomp;
// Landlock and seccomp need no_new_privs from a process without
// CAP_SYS_ADMIN, so leaving it out means leaving them out as well.
constexpr unsigned kWithoutNoNewPrivs = step_no_new_privs | step_landlock | step_seccomp;

// The uid the services run as: unused on the machine, distinct per test run.
uid_t service_uid() { return 3'100'000 + static_cast<uid_t>(getpid() % 100'000); }

struct SpawnOptions {
  bool confine = true;           // false: a "host" process, no confinement at all
  unsigned omitted = 0;          // ConfinementStep mask left out
  bool private_mounts = false;   // its own mount namespace (for the mount attack)
  bool new_uts_namespace = false;
};

// A child process running argv, confined or not. Killed and reaped when the
// object goes away, so no test leaves a process behind.
class Child {
 public:
  Child(const Confinement& confinement, std::vector<std::string> argv, SpawnOptions options = {}) {
    Pipe out = make_pipe(), err = make_pipe();
    out_ = std::move(out.read_end);
    err_ = std::move(err.read_end);
    pid_ = check(::fork(), "fork");
    if (pid_ == 0) {
      ::dup2(out.write_end.get(), 1);
      ::dup2(err.write_end.get(), 2);
      rlimit no_core{0, 0};  // SIGSYS would dump core in the cwd otherwise
      ::setrlimit(RLIMIT_CORE, &no_core);
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      try {
        if (options.private_mounts) {
          check(::unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)");
          check(::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr), "mount / private");
        }
        if (options.new_uts_namespace) check(::unshare(CLONE_NEWUTS), "unshare(CLONE_NEWUTS)");
        if (options.confine) apply_confinement_except(confinement, options.omitted);
      } catch (const std::exception& error) {
        std::fprintf(stderr, "confinement: %s\n", error.what());
        ::_exit(125);
      }
      std::vector<char*> args;
      for (auto& arg : argv) args.push_back(arg.data());
      args.push_back(nullptr);
      ::execv(args[0], args.data());
      std::fprintf(stderr, "execv %s: %s\n", args[0], strerror(errno));
      ::_exit(127);
    }
  }
  ~Child() {
    if (pid_ > 0) {
      testing::kill_process(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  // Never a reaped child's -1: a test that signalled "-1" would hit every
  // process on the machine.
  pid_t pid() const {
    if (pid_ <= 0) throw std::logic_error("Child::pid() after the child was reaped");
    return pid_;
  }

  // Waits for the "ready" line of `sleep` and `bind-abstract`.
  void wait_ready() {
    std::string line;
    char c;
    while (line.find('\n') == std::string::npos) {
      pollfd poll_fd{out_.get(), POLLIN, 0};
      ASSERT_EQ(::poll(&poll_fd, 1, 10'000), 1) << "no \"ready\" from " << pid_;
      if (::read(out_.get(), &c, 1) != 1) {
        Outcome early = wait();
        FAIL() << "child exited before it was ready: " << early;
      }
      line += c;
    }
    ASSERT_EQ(line, "ready\n");
  }

  // Reads the output to the end and reaps the child (deadline: 20 s).
  Outcome wait() {
    const pid_t pid = this->pid();
    Outcome outcome;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    std::vector<pollfd> fds{{out_.get(), POLLIN, 0}, {err_.get(), POLLIN, 0}};
    int open_fds = 2;
    while (open_fds > 0 && std::chrono::steady_clock::now() < deadline) {
      if (::poll(fds.data(), fds.size(), 1000) <= 0) continue;
      for (std::size_t i = 0; i < fds.size(); ++i) {
        if (fds[i].fd < 0 || fds[i].revents == 0) continue;
        char buffer[4096];
        ssize_t n = ::read(fds[i].fd, buffer, sizeof buffer);
        if (n <= 0) {
          fds[i].fd = -1;
          --open_fds;
        } else {
          (i == 0 ? outcome.out : outcome.err).append(buffer, static_cast<std::size_t>(n));
        }
      }
    }
    if (open_fds > 0) testing::kill_process(pid, SIGKILL);
    int status = 0;
    ::waitpid(pid, &status, 0);
    pid_ = -1;
    if (WIFEXITED(status)) outcome.exit_code = WEXITSTATUS(status);
    if (WIFSIGNALED(status)) outcome.signal = WTERMSIG(status);
    if (!outcome.out.empty() && outcome.out.back() == '\n') outcome.out.pop_back();
    return outcome;
  }

  // Kills the child with `signal` from here (outside its domain) and
  // returns how it ended. Through pid(): a child that wait_ready() found
  // gone (its failure does not end the test) has been reaped already.
  Outcome kill_and_wait(int signal) {
    testing::kill_process(pid(), signal);
    return wait();
  }

 private:
  pid_t pid_ = -1;
  UniqueFd out_, err_;
};

class EscapeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "the escape suite needs root (uid switch, setuid helper)";
    if (landlock_abi() < 6) GTEST_SKIP() << "needs Landlock ABI >= 6, this kernel has " << landlock_abi();
  }
  void TearDown() override { override_landlock_abi_for_testing(std::nullopt); }

  // The full confinement of a VM daemon: its own uid, no capabilities,
  // system paths read/execute, the tools read/execute, devices, its /proc
  // entry; scopes; TCP denied; the vm-daemon seccomp profile killing.
  Confinement confinement() const {
    Confinement confinement;
    confinement.uid = service_uid();
    confinement.gid = service_uid();
    auto& paths = confinement.landlock.paths;
    for (auto rules : {system_read_execute_rules(), device_rules(), proc_self_rules()})
      paths.insert(paths.end(), rules.begin(), rules.end());
    paths.push_back({tools_.dir(), PathRights::read_execute()});
    return confinement;
  }

  Outcome attack(const Confinement& confinement, std::vector<std::string> args, SpawnOptions options = {}) {
    args.insert(args.begin(), tools_.attacker().string());
    return Child(confinement, args, options).wait();
  }

  // A target process in no sandbox at all, as a host process would be.
  std::unique_ptr<Child> host_process(SpawnOptions options = {}) {
    options.confine = false;
    auto child = std::make_unique<Child>(Confinement{}, std::vector<std::string>{tools_.attacker(), "sleep"}, options);
    child->wait_ready();
    return child;
  }

  std::unique_ptr<Child> sibling(std::vector<std::string> args) {
    args.insert(args.begin(), tools_.attacker().string());
    auto child = std::make_unique<Child>(confinement(), args);
    child->wait_ready();
    return child;
  }

  Tools tools_;
};

std::atomic<int> usr1_received{0};

// --- signals --------------------------------------------------------------

TEST_F(EscapeTest, CannotSignalItsParentButTheParentCanSignalIt) {
  // The test process plays the warden: the service's parent.
  struct sigaction action {}, previous{};
  action.sa_handler = [](int) { usr1_received = 1; };
  ASSERT_EQ(::sigaction(SIGUSR1, &action, &previous), 0);
  std::string parent = std::to_string(getpid());
  std::string usr1 = std::to_string(SIGUSR1);

  usr1_received = 0;
  expect_denied(attack(confinement(), {"signal", parent, usr1}), "EPERM");
  // Still uid 0 (the parent's uid, so no DAC refusal): the scope alone stops it.
  expect_denied(attack(confinement(), {"signal", parent, usr1}, {.omitted = step_identity}), "EPERM");
  EXPECT_EQ(usr1_received, 0);

  Confinement no_scope = confinement();
  no_scope.landlock.scope_signal = false;
  expect_success(attack(no_scope, {"signal", parent, usr1}, {.omitted = step_identity}));
  EXPECT_EQ(usr1_received, 1);
  ::sigaction(SIGUSR1, &previous, nullptr);

  // Signals into the domain still work: the warden can stop its services.
  Child service(confinement(), {tools_.attacker(), "sleep"});
  service.wait_ready();
  EXPECT_EQ(service.kill_and_wait(SIGTERM).signal, SIGTERM);
}

TEST_F(EscapeTest, CannotSignalAHostProcessOfTheSameUid) {
  // A host process running as the service's uid, outside any domain: only
  // the Landlock signal scope stands between them.
  Child host(confinement(), {tools_.attacker(), "sleep"},
             {.omitted = kAllSteps & ~step_identity});
  host.wait_ready();
  std::string pid = std::to_string(host.pid());
  expect_denied(attack(confinement(), {"signal", pid}), "EPERM");

  Confinement no_scope = confinement();
  no_scope.landlock.scope_signal = false;
  expect_success(attack(no_scope, {"signal", pid}));
  EXPECT_EQ(host.wait().signal, SIGKILL);
}

// A VM's services share its uid, so the plain same-uid checks of
// prlimit, setpriority and sched_setaffinity would let the VMM kill
// virtiofsd by RLIMIT_CPU, starve or pin it, none of which is a signal the
// Landlock scope sees: the filter lets them name the caller only.
TEST_F(EscapeTest, CannotLimitReniceOrPinAProcessOfTheSameUid) {
  Child sibling(confinement(), {tools_.attacker(), "sleep"}, {.omitted = kAllSteps & ~step_identity});
  sibling.wait_ready();
  std::string pid = std::to_string(sibling.pid());
  expect_denied(attack(confinement(), {"prlimit", pid}), "EPERM");
  expect_denied(attack(confinement(), {"setpriority", "process", pid}), "EPERM");
  expect_denied(attack(confinement(), {"setpriority", "user", "0"}), "EPERM");
  expect_denied(attack(confinement(), {"setaffinity", pid}), "EPERM");
  // On itself all is as before.
  expect_success(attack(confinement(), {"prlimit", "0"}));
  expect_success(attack(confinement(), {"setpriority", "process", "0"}));
  // The allow lists name prlimit64 (the others not at all: killed).
  for (const char* profile : {"qemu", "virtiofsd"}) {
    SCOPED_TRACE(profile);
    Confinement allow_list = confinement();
    allow_list.seccomp.profile = profile;
    expect_denied(attack(allow_list, {"prlimit", pid}), "EPERM");
    expect_success(attack(allow_list, {"prlimit", "0"}));
    expect_killed_by_seccomp(attack(allow_list, {"setaffinity", pid}));
  }
  // The control: without the filter the same uid is all it takes.
  expect_success(attack(confinement(), {"prlimit", pid}, {.omitted = step_seccomp}));
  expect_success(attack(confinement(), {"setaffinity", pid}, {.omitted = step_seccomp}));
  EXPECT_EQ(sibling.kill_and_wait(SIGKILL).signal, SIGKILL);
}

TEST_F(EscapeTest, CannotSignalARootHostProcess) {
  auto host = host_process();
  std::string pid = std::to_string(host->pid());
  expect_denied(attack(confinement(), {"signal", pid}), "EPERM");
  expect_denied(attack(confinement(), {"signal", pid}, {.omitted = step_identity}), "EPERM");

  Confinement no_scope = confinement();
  no_scope.landlock.scope_signal = false;
  expect_success(attack(no_scope, {"signal", pid}, {.omitted = step_identity}));
  EXPECT_EQ(host->wait().signal, SIGKILL);
}

TEST_F(EscapeTest, CannotSignalASibling) {
  auto target = sibling({"sleep"});
  std::string pid = std::to_string(target->pid());
  expect_denied(attack(confinement(), {"signal", pid}), "EPERM");

  Confinement no_scope = confinement();
  no_scope.landlock.scope_signal = false;
  expect_success(attack(no_scope, {"signal", pid}));
  EXPECT_EQ(target->wait().signal, SIGKILL);
}

// --- abstract unix sockets ------------------------------------------------

TEST_F(EscapeTest, CannotConnectToAnAbstractSocketBoundOutsideTheDomain) {
  std::string name = "vmwarden-escape-host-" + std::to_string(getpid());
  UniqueFd listener = testing::listen_on_abstract_socket(name);

  expect_denied(attack(confinement(), {"connect-abstract", name}), "EPERM");
  Confinement no_scope = confinement();
  no_scope.landlock.scope_abstract_unix = false;
  expect_success(attack(no_scope, {"connect-abstract", name}));
}

TEST_F(EscapeTest, CannotConnectToAnAbstractSocketBoundByASibling) {
  std::string name = "vmwarden-escape-sibling-" + std::to_string(getpid());
  auto target = sibling({"bind-abstract", name});
  expect_denied(attack(confinement(), {"connect-abstract", name}), "EPERM");
  Confinement no_scope = confinement();
  no_scope.landlock.scope_abstract_unix = false;
  expect_success(attack(no_scope, {"connect-abstract", name}));
}

// --- ptrace ---------------------------------------------------------------

TEST_F(EscapeTest, CannotPtraceASibling) {
  auto target = sibling({"sleep"});
  std::string pid = std::to_string(target->pid());
  expect_killed_by_seccomp(attack(confinement(), {"ptrace", pid}));
  // Without seccomp, Landlock refuses: the sibling is not in a nested domain.
  expect_denied(attack(confinement(), {"ptrace", pid}, {.omitted = step_seccomp}), "EPERM");
  // Same uid, no capabilities on either side: only those two stood in the way.
  expect_success(attack(confinement(), {"ptrace", pid}, {.omitted = step_seccomp | step_landlock}));
}

// --- the filesystem -------------------------------------------------------

TEST_F(EscapeTest, CannotReadAHostFileOutsideItsRules) {
  TempDir host_dir("vmwarden-escape-host");
  ASSERT_EQ(::chmod(host_dir.path().c_str(), 0755), 0);
  write_file(host_dir / "secret", "host secret\n", 0644);  // readable by every uid
  std::string secret = host_dir / "secret";
  expect_denied(attack(confinement(), {"read", secret}), "EACCES");

  Confinement with_rule = confinement();
  with_rule.landlock.paths.push_back({host_dir.path(), PathRights::read_only()});
  expect_success(attack(with_rule, {"read", secret}));

  // /etc/shadow: as uid 0 (which owns it) Landlock alone refuses it.
  expect_denied(attack(confinement(), {"read", "/etc/shadow"}), "EACCES");
  expect_denied(attack(confinement(), {"read", "/etc/shadow"}, {.omitted = step_identity}), "EACCES");
  expect_success(attack(confinement(), {"read", "/etc/shadow"}, {.omitted = step_identity | step_landlock}));
}

TEST_F(EscapeTest, CannotWriteOrTruncateAReadOnlyPath) {
  TempDir data("vmwarden-escape-data");
  write_file(data / "existing", "keep me\n", 0666);
  ASSERT_EQ(::chown(data.path().c_str(), service_uid(), service_uid()), 0);
  ASSERT_EQ(::chown((data / "existing").c_str(), service_uid(), service_uid()), 0);
  std::string created = data / "created", existing = data / "existing";

  Confinement read_only = confinement();
  read_only.landlock.paths.push_back({data.path(), PathRights::read_only()});
  expect_denied(attack(read_only, {"write", created}), "EACCES");
  expect_denied(attack(read_only, {"write", existing}), "EACCES");
  expect_denied(attack(read_only, {"truncate", existing}), "EACCES");
  EXPECT_FALSE(fs::exists(created));
  EXPECT_EQ(vmwarden::testing::read_file(existing), "keep me\n");
  expect_success(attack(read_only, {"read", existing}));

  Confinement read_write = confinement();
  read_write.landlock.paths.push_back({data.path(), PathRights::read_write()});
  expect_success(attack(read_write, {"write", created}));
  expect_success(attack(read_write, {"truncate", existing}));
  EXPECT_TRUE(fs::exists(created));
  EXPECT_EQ(fs::file_size(existing), 0u);
}

// A write rule lets a service write files, not run them: a program it copies
// there is refused at execve (the mode allows it), unless the rule also says
// execute.
TEST_F(EscapeTest, CannotRunAProgramItWroteUnderAWriteRule) {
  TempDir data("vmwarden-escape-exec");
  ASSERT_EQ(::chown(data.path().c_str(), service_uid(), service_uid()), 0);
  std::vector<std::string> args{"exec-copy", data.path()};
  Confinement read_write = confinement();
  read_write.landlock.paths.push_back({data.path(), PathRights::read_write()});
  expect_denied(attack(read_write, args), "EACCES");
  expect_success(attack(read_write, args, {.omitted = step_landlock}));
  Confinement executable = confinement();
  executable.landlock.paths.push_back({data.path(), {.read = true, .write = true, .execute = true}});
  expect_success(attack(executable, args));
}

// No rule grants making device nodes: a character device where a service
// may write would open whatever device it names (given CAP_MKNOD, which a
// service may be left). Without CAP_MKNOD, an overlayfs whiteout (0:0) is
// the one character device the kernel lets anyone make: Landlock refuses
// that too.
TEST_F(EscapeTest, CannotMakeACharacterDeviceWhereItMayWrite) {
  TempDir data("vmwarden-escape-mknod");
  ASSERT_EQ(::chown(data.path().c_str(), service_uid(), service_uid()), 0);
  std::string whiteout = data / "whiteout", null = data / "null";
  Confinement read_write = confinement();
  read_write.landlock.paths.push_back({data.path(), PathRights::read_write()});
  expect_denied(attack(read_write, {"mknod-char", whiteout, "0", "0"}), "EACCES");
  Confinement with_mknod = read_write;
  with_mknod.keep_capabilities = {CAP_MKNOD};
  expect_denied(attack(with_mknod, {"mknod-char", null, "1", "3"}), "EACCES");
  EXPECT_FALSE(fs::exists(fs::symlink_status(whiteout)));
  EXPECT_FALSE(fs::exists(fs::symlink_status(null)));
  // Without Landlock: the whiteout for anyone, a real device with CAP_MKNOD.
  expect_success(attack(read_write, {"mknod-char", whiteout, "0", "0"}, {.omitted = step_landlock}));
  expect_denied(attack(read_write, {"mknod-char", null, "1", "3"}, {.omitted = step_landlock}), "EPERM");
  expect_success(attack(with_mknod, {"mknod-char", null, "1", "3"}, {.omitted = step_landlock}));
}

// --- the kernel's privileged interfaces -----------------------------------

// bpf() is the vm-daemon profile's to refuse whatever the kernel's
// unprivileged_bpf_disabled says; root with CAP_BPF gets a map.
TEST_F(EscapeTest, CannotCallBpf) {
  expect_killed_by_seccomp(attack(confinement(), {"bpf"}));
  // A service that is root of nothing: only the sysctl stands in the way.
  Outcome unfiltered = attack(confinement(), {"bpf"}, {.omitted = step_seccomp});
  if (vmwarden::testing::read_file("/proc/sys/kernel/unprivileged_bpf_disabled") != "0\n")
    expect_denied(unfiltered, "EPERM");
  expect_success(attack(confinement(), {"bpf"}, {.omitted = kAllSteps}));
}

TEST_F(EscapeTest, CannotMount) {
  TempDir target("vmwarden-escape-mnt");
  std::vector<std::string> args{"mount", target.path()};
  SpawnOptions options{.private_mounts = true};  // a success lands in a throwaway namespace
  expect_killed_by_seccomp(attack(confinement(), args, options));
  options.omitted = step_seccomp;
  expect_denied(attack(confinement(), args, options), "EPERM");  // no CAP_SYS_ADMIN
  // uid 0 with every capability: Landlock alone refuses mounts.
  options.omitted = step_seccomp | step_identity | step_capabilities;
  expect_denied(attack(confinement(), args, options), "EPERM");
  options.omitted = kAllSteps;
  expect_success(attack(confinement(), args, options));
}

TEST_F(EscapeTest, CannotCreateAUserNamespace) {
  // An unprivileged process may create user namespaces: only seccomp
  // refuses them, whether by unshare or by clone's flag.
  expect_killed_by_seccomp(attack(confinement(), {"unshare-user"}));
  expect_killed_by_seccomp(attack(confinement(), {"clone-newuser"}));
  expect_success(attack(confinement(), {"unshare-user"}, {.omitted = step_seccomp}));
  expect_success(attack(confinement(), {"clone-newuser"}, {.omitted = step_seccomp}));
}

TEST_F(EscapeTest, Clone3IsAnsweredEnosysSoThatLibcFallsBackToClone) {
  expect_denied(attack(confinement(), {"clone3"}), "ENOSYS");
  expect_success(attack(confinement(), {"clone3"}, {.omitted = step_seccomp}));
}

TEST_F(EscapeTest, CannotJoinAnotherNamespace) {
  auto host = host_process({.new_uts_namespace = true});
  std::vector<std::string> args{"setns", "/proc/" + std::to_string(host->pid()) + "/ns/uts"};
  // Each layer on its own: Landlock (no /proc rule for other processes),
  // the uid (the namespace file needs ptrace access to its owner), the
  // capabilities (root without them may not access a root process with
  // more capabilities), seccomp (setns itself).
  expect_denied(attack(confinement(), args), "EACCES");
  expect_denied(attack(confinement(), args, {.omitted = step_landlock}), "EACCES");
  expect_denied(attack(confinement(), args, {.omitted = step_landlock | step_identity}), "EACCES");
  expect_killed_by_seccomp(
      attack(confinement(), args, {.omitted = step_landlock | step_identity | step_capabilities}));
  expect_success(attack(confinement(), args, {.omitted = kAllSteps}));
}

TEST_F(EscapeTest, CannotLoadAKernelModule) {
  expect_killed_by_seccomp(attack(confinement(), {"load-module"}));
  // Without seccomp the call reaches the kernel. On a kernel with module
  // support CAP_SYS_MODULE is then what refuses it (EPERM), and root with it
  // gets to the loader; a kernel built without modules answers ENOSYS.
  bool modules = fs::exists("/proc/modules");
  Outcome unfiltered = attack(confinement(), {"load-module"}, {.omitted = step_seccomp});
  expect_denied(unfiltered, modules ? "EPERM" : "ENOSYS");
  Outcome unconfined = attack(confinement(), {"load-module"}, {.omitted = kAllSteps});
  if (modules) expect_success(unconfined);
  else expect_denied(unconfined, "ENOSYS");
}

// The kernel stores any personality but the query 0xffffffff, bit 31 set or
// not: ASLR cannot be turned off however the flag is dressed up.
TEST_F(EscapeTest, CannotTurnOffAddressSpaceRandomisation) {
  for (const char* value : {"0x40000", "0x400000", "0x80040000", "0x80400000", "0xfffffffe", "0x80000000"}) {
    expect_killed_by_seccomp(attack(confinement(), {"personality", value}));
  }
  Outcome query = attack(confinement(), {"personality", "0xffffffff"});
  expect_success(query);
  EXPECT_EQ(query.out, "ok persona 0x0") << query;
  expect_success(attack(confinement(), {"personality", "0x0"}));
  // The control: without the filter, the dressed-up flag sticks.
  Outcome unfiltered = attack(confinement(), {"personality", "0x80040000"}, {.omitted = step_seccomp});
  EXPECT_EQ(unfiltered.out, "ok persona 0x80040000") << unfiltered;
}

// TIOCSTI pushes input into the terminal, where the shell that started the
// sandbox reads it as its own; TIOCLINUX drives the console; TIOCSETD would
// have the kernel load a line discipline's module. The kernel
// takes the request as an unsigned int, so bits above 32 must not hide it
// from the filter, in the deny list and in the allow lists alike. (The
// test's stdin is no terminal: unfiltered, the request fails with ENOTTY.)
TEST_F(EscapeTest, CannotPushInputIntoTheTerminalHoweverTheRequestIsDressedUp) {
  // And the loop device's own requests (LOOP_CHANGE_FD 0x4C06 swaps a
  // read-only device's backing file with no capability).
  for (const char* request : {"0x5412", "0x100005412", "0xffffffff00005412", "0x541c", "0x10000541c", "0x4c00",
                              "0x4c06", "0x100004c01", "0x4c0a", "0x5423", "0x100005423"})
    expect_killed_by_seccomp(attack(confinement(), {"ioctl", request}));
  expect_denied(attack(confinement(), {"ioctl", "0x100005412"}, {.omitted = step_seccomp}), "ENOTTY");
  for (const char* profile : {"qemu", "virtiofsd"}) {
    SCOPED_TRACE(profile);
    Confinement allow_list = confinement();
    allow_list.seccomp.profile = profile;
    for (const char* request : {"0x5412", "0x100005412", "0x8000000000005412", "0x541c", "0x4c06", "0x300004c01",
                                "0x5423"})
      expect_killed_by_seccomp(attack(allow_list, {"ioctl", request}));
    if (std::string_view(profile) == "virtiofsd") continue;  // it lists no ioctl at all
    // Every other request still gets through, dressed up or not (TCGETS,
    // a neighbour of TIOCSTI, one of the loop range's, BLKROGET).
    for (const char* request : {"0x5401", "0x100005401", "0x5413", "0x4c0b", "0x4bff", "0x125e"})
      expect_denied(attack(allow_list, {"ioctl", request}), "ENOTTY");
  }
}

// AF_VSOCK is in no network namespace: a service with no network could
// still reach the host's vsock listeners, and other guests'. Every family
// but AF_UNIX, AF_INET, AF_INET6 and AF_NETLINK (for virtiofsd: but
// AF_UNIX) is refused with EAFNOSUPPORT, in every profile and however the
// family is dressed up.
// (This kernel has vsock: unfiltered, the socket is made.)
TEST_F(EscapeTest, CannotOpenAVsockOrAnyOtherUnlistedSocketFamily) {
  const std::string vsock = std::to_string(AF_VSOCK);
  const std::string dressed = std::to_string((1ULL << 32) | AF_VSOCK);
  expect_success(attack(confinement(), {"socket", vsock}, {.omitted = step_seccomp}));
  // Unfiltered, vsock's own code answers a socketpair (it has none).
  expect_denied(attack(confinement(), {"socketpair", vsock}, {.omitted = step_seccomp}), "EOPNOTSUPP");
  for (const char* profile : {"vm-daemon", "qemu", "virtiofsd"}) {
    SCOPED_TRACE(profile);
    Confinement confined = confinement();
    confined.seccomp.profile = profile;
    for (const std::string& family : {vsock, dressed, std::to_string(AF_PACKET), std::to_string(AF_ALG)}) {
      expect_denied(attack(confined, {"socket", family}), "EAFNOSUPPORT");
      // socketpair() runs the family's create code too (the virtiofsd list
      // has no socketpair at all).
      if (std::string_view(profile) != "virtiofsd")
        expect_denied(attack(confined, {"socketpair", family}), "EAFNOSUPPORT");
    }
    if (std::string_view(profile) != "virtiofsd")
      expect_success(attack(confined, {"socketpair", std::to_string(AF_UNIX)}));
    expect_success(attack(confined, {"socket", std::to_string(AF_UNIX)}));
    expect_success(attack(confined, {"socket", std::to_string((1ULL << 32) | AF_UNIX)}));
    // virtiofsd has no use for any other family: an AF_INET socket's listen()
    // binds a port that Landlock's TCP bind rule never sees (an attack
    // served the share from one, in a VM with network).
    for (int family : {AF_INET, AF_INET6, AF_NETLINK}) {
      if (std::string_view(profile) == "virtiofsd")
        expect_denied(attack(confined, {"socket", std::to_string(family)}), "EAFNOSUPPORT");
      else
        expect_success(attack(confined, {"socket", std::to_string(family)}));
    }
  }
}

TEST_F(EscapeTest, X32SyscallsAreKilled) {
  expect_killed_by_seccomp(attack(confinement(), {"x32-syscall"}));
  // Without the filter an x32 call reaches the kernel (ENOSYS from a kernel
  // without the x32 ABI).
  Outcome unfiltered = attack(confinement(), {"x32-syscall"}, {.omitted = step_seccomp});
  EXPECT_EQ(unfiltered.signal, 0) << unfiltered;
}

TEST_F(EscapeTest, I386SyscallsAreKilled) {
  // int 0x80 from a 64-bit process reaches the i386 syscall table, unless
  // the machine does not offer that entry at all (a fault without a filter:
  // a kernel without ia32 emulation, or some paravirtualised guests).
  Outcome i386_unfiltered = attack(confinement(), {"i386-syscall"}, {.omitted = step_seccomp});
  Outcome i386_filtered = attack(confinement(), {"i386-syscall"});
  if (i386_unfiltered.signal == SIGSEGV) {
    // Nothing gets through here with or without the filter, so what the
    // filter adds cannot be seen on this machine (it is on one that offers
    // the entry): the confined call must not get through either.
    std::printf("int 0x80 faults on this machine even unconfined: the filter's own part is not seen here\n");
    EXPECT_TRUE(i386_filtered.signal == SIGSEGV || i386_filtered.signal == SIGSYS) << i386_filtered;
    return;
  }
  expect_success(i386_unfiltered);
  expect_killed_by_seccomp(i386_filtered);
}

TEST_F(EscapeTest, SeccompLogModeOnlyLogs) {
  Confinement logging = confinement();
  logging.seccomp.action = SeccompAction::log;
  expect_success(attack(logging, {"unshare-user"}));
}

// --- capabilities through exec --------------------------------------------

class SetuidTest : public EscapeTest {
 protected:
  void SetUp() override {
    EscapeTest::SetUp();
    if (IsSkipped()) return;
    struct statvfs st {};
    ASSERT_EQ(::statvfs(tools_.dir().c_str(), &st), 0);
    if (st.f_flag & ST_NOSUID) GTEST_SKIP() << tools_.dir() << " is on a nosuid mount";
    ASSERT_EQ(::chown(tools_.probe().c_str(), 0, 0), 0);
    ASSERT_EQ(::chmod(tools_.probe().c_str(), 04755), 0);
  }
  std::string probe() const { return tools_.probe(); }
  std::string euid(uid_t uid) const { return "euid=" + std::to_string(uid); }
};

// What a process of the test's own (root) credentials can hold: its
// bounding set, as the probe prints it.
std::string all_capabilities() {
  std::string status = vmwarden::testing::read_file("/proc/self/status");
  auto at = status.find("CapBnd:\t");
  unsigned long long mask = std::stoull(status.substr(at + 8, 16), nullptr, 16);
  char text[32];
  std::snprintf(text, sizeof text, "%llx", mask);
  return text;
}

TEST_F(SetuidTest, ASetuidRootBinaryGrantsNothing) {
  Outcome full = attack(confinement(), {"setuid-exec", probe()});
  EXPECT_EQ(full.out, euid(service_uid()) + " cap_eff=0 cap_prm=0") << full;
  // no_new_privs without the Landlock and seccomp steps that need it.
  Outcome bare = attack(confinement(), {"setuid-exec", probe()}, {.omitted = step_landlock | step_seccomp});
  EXPECT_EQ(bare.out, euid(service_uid()) + " cap_eff=0 cap_prm=0") << bare;

  // Without no_new_privs the set-user-ID bit works, but SECBIT_NOROOT and
  // the emptied bounding set still leave it without capabilities.
  Outcome no_nnp = attack(confinement(), {"setuid-exec", probe()}, {.omitted = kWithoutNoNewPrivs});
  EXPECT_EQ(no_nnp.out, euid(0) + " cap_eff=0 cap_prm=0") << no_nnp;

  // Only the uid switch: the setuid binary regains every capability.
  Outcome regained = attack(confinement(), {"setuid-exec", probe()},
                            {.omitted = kWithoutNoNewPrivs | step_capabilities});
  std::string all = all_capabilities();
  EXPECT_EQ(regained.out, euid(0) + " cap_eff=" + all + " cap_prm=" + all) << regained;
}

TEST_F(SetuidTest, AUidZeroServiceHasNoCapabilities) {
  // The host's uid 0 with the confinement's capability steps: it gets
  // nothing (the supervisor refuses such a service altogether; this shows
  // SECBIT_NOROOT and the bounding set on their own).
  Confinement root = confinement();
  root.uid = root.gid = 0;
  Outcome confined = Child(root, {probe()}).wait();
  EXPECT_EQ(confined.out, "euid=0 cap_eff=0 cap_prm=0") << confined;
  Outcome with_caps = Child(root, {probe()}, {.omitted = step_capabilities}).wait();
  std::string all = all_capabilities();
  EXPECT_EQ(with_caps.out, "euid=0 cap_eff=" + all + " cap_prm=" + all) << with_caps;
}

// A file capability is honoured without no_new_privs, and SECBIT_NOROOT
// does nothing against it: the emptied bounding set alone stands in the
// way. The probe (not set-user-ID here) is given every capability there is,
// permitted, so that none the bounding set kept would go unseen; not
// effective, or an exec that cannot grant them all fails instead (EPERM).
TEST_F(SetuidTest, AFileCapabilityGrantsNothingWithoutNoNewPrivs) {
  ASSERT_EQ(::chmod(probe().c_str(), 0755), 0);
  vfs_cap_data file_caps{};
  file_caps.magic_etc = htole32(VFS_CAP_REVISION_2);
  file_caps.data[0].permitted = file_caps.data[1].permitted = htole32(0xffffffffU);
  ASSERT_EQ(::setxattr(probe().c_str(), "security.capability", &file_caps, XATTR_CAPS_SZ_2, 0), 0)
      << std::strerror(errno);
  Outcome confined = Child(confinement(), {probe()}, {.omitted = kWithoutNoNewPrivs}).wait();
  EXPECT_EQ(confined.out, euid(service_uid()) + " cap_eff=0 cap_prm=0") << confined;
  // Without the capability step the file capability grants them all.
  Outcome regained = Child(confinement(), {probe()}, {.omitted = kWithoutNoNewPrivs | step_capabilities}).wait();
  std::string all = all_capabilities();
  EXPECT_EQ(regained.out, euid(service_uid()) + " cap_eff=0 cap_prm=" + all) << regained;
}

TEST_F(SetuidTest, AKeptCapabilitySurvivesExecAlone) {
  Confinement chroot = confinement();
  chroot.keep_capabilities = {CAP_SYS_CHROOT};
  Outcome outcome = Child(chroot, {probe()}).wait();
  char mask[32];
  std::snprintf(mask, sizeof mask, "%llx", 1ULL << CAP_SYS_CHROOT);
  EXPECT_EQ(outcome.out, euid(service_uid()) + " cap_eff=" + mask + " cap_prm=" + mask) << outcome;
}

// The securebits a service starts with, each one locked. A lock matters to
// a service that keeps CAP_SETPCAP, which PR_SET_SECUREBITS asks for
// (virtiofsd keeps it, over its own user namespace): unlocked, it could
// clear SECBIT_NOROOT, so that uid 0, or a set-user-ID-root binary, gains
// by exec what its bounding set holds; set KEEP_CAPS; or clear
// NO_CAP_AMBIENT_RAISE. (A user namespace it creates starts from no bits at
// all, whatever the locks: seccomp refuses it one.) The attacker reads its
// bits (PR_GET_SECUREBITS needs no privilege), then tries to flip each.
TEST_F(EscapeTest, SecurebitsAreSetAndLocked) {
  Confinement setpcap = confinement();
  setpcap.keep_capabilities = {CAP_SETPCAP};
  char expected[32];
  std::snprintf(expected, sizeof expected, "ok securebits 0x%x",
                SECBIT_NOROOT | SECBIT_NOROOT_LOCKED | SECBIT_KEEP_CAPS_LOCKED | SECBIT_NO_CAP_AMBIENT_RAISE |
                    SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED);
  Outcome read = attack(confinement(), {"securebits"});
  EXPECT_EQ(read.exit_code, 0) << read;
  EXPECT_EQ(read.out, expected) << read;
  for (int bit : {SECBIT_NOROOT, SECBIT_KEEP_CAPS, SECBIT_NO_CAP_AMBIENT_RAISE})
    expect_denied(attack(setpcap, {"securebits", std::to_string(bit)}), "EPERM");
  // The control: NO_SETUID_FIXUP, left alone and unlocked, can be set: the
  // attacker holds CAP_SETPCAP, and only the locks refuse the others.
  std::snprintf(expected, sizeof expected, "ok securebits 0x%x",
                SECBIT_NOROOT | SECBIT_NOROOT_LOCKED | SECBIT_KEEP_CAPS_LOCKED | SECBIT_NO_CAP_AMBIENT_RAISE |
                    SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED | SECBIT_NO_SETUID_FIXUP);
  Outcome unlocked = attack(setpcap, {"securebits", std::to_string(SECBIT_NO_SETUID_FIXUP)});
  EXPECT_EQ(unlocked.out, expected) << unlocked;
}

// --- /proc and the network ------------------------------------------------

TEST_F(EscapeTest, CannotReadAHostProcessInProc) {
  auto host = host_process();
  std::string pid = std::to_string(host->pid());
  // /proc/PID/status is world-readable: only Landlock (no rule for other
  // processes' /proc entries) refuses it. Hiding the pid altogether is the
  // PID namespace's job.
  expect_denied(attack(confinement(), {"proc-read", pid, "status"}), "EACCES");
  expect_success(attack(confinement(), {"proc-read", pid, "status"}, {.omitted = step_landlock}));
  // environ needs ptrace access as well: the uid switch refuses it too.
  expect_denied(attack(confinement(), {"proc-read", pid, "environ"}, {.omitted = step_landlock}), "EACCES");
  expect_success(attack(confinement(), {"proc-read", pid, "environ"}, {.omitted = kAllSteps}));
  // Its own entry stays readable (proc_self_rules()).
  expect_success(attack(confinement(), {"proc-read", "self", "status"}));
}

TEST_F(EscapeTest, CannotConnectOverTcpWithoutNetwork) {
  UniqueFd listener(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(listener.get(), reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
  ASSERT_EQ(::listen(listener.get(), 8), 0);
  socklen_t length = sizeof address;
  ASSERT_EQ(::getsockname(listener.get(), reinterpret_cast<sockaddr*>(&address), &length), 0);
  std::string port = std::to_string(ntohs(address.sin_port));

  expect_denied(attack(confinement(), {"tcp-connect", "127.0.0.1", port}), "EACCES");
  Confinement network = confinement();
  network.landlock.deny_tcp = false;
  expect_success(attack(network, {"tcp-connect", "127.0.0.1", port}));
}

// --- Landlock ABI modes ---------------------------------------------------

TEST_F(EscapeTest, RequiredRefusesWhenTheAbiIsFakedLower) {
  override_landlock_abi_for_testing(5);
  try {
    check_confinement(confinement());
    ADD_FAILURE() << "check_confinement accepted a required policy on ABI 5";
  } catch (const PermanentError& error) {
    std::string message = error.what();
    EXPECT_NE(message.find("Landlock ABI 5"), std::string::npos) << message;
    EXPECT_NE(message.find("scope SIGNAL (ABI 6"), std::string::npos) << message;
    EXPECT_NE(message.find("scope ABSTRACT_UNIX_SOCKET (ABI 6"), std::string::npos) << message;
  }
  // apply_confinement() refuses as well, before changing anything: exec never happens.
  Outcome refused = attack(confinement(), {"sleep"});
  EXPECT_EQ(refused.exit_code, 125) << refused;
  EXPECT_NE(refused.err.find("Landlock ABI 5"), std::string::npos) << refused;
  EXPECT_EQ(refused.out, "") << refused;
}

TEST_F(EscapeTest, BestEffortAppliesWhatTheAbiHasAndReportsTheRest) {
  TempDir host_dir("vmwarden-escape-host");
  ASSERT_EQ(::chmod(host_dir.path().c_str(), 0755), 0);
  write_file(host_dir / "secret", "host secret\n", 0644);
  auto host = host_process();
  Confinement best_effort = confinement();
  best_effort.landlock.mode = LandlockMode::best_effort;

  override_landlock_abi_for_testing(5);
  std::vector<std::string> dropped = check_confinement(best_effort);
  ASSERT_EQ(dropped.size(), 2u);
  EXPECT_NE(dropped[0].find("scope ABSTRACT_UNIX_SOCKET (ABI 6"), std::string::npos) << dropped[0];
  EXPECT_NE(dropped[1].find("scope SIGNAL (ABI 6"), std::string::npos) << dropped[1];
  // The scopes are gone (uid 0 so that only the scope could refuse), the
  // filesystem rules are not.
  expect_denied(attack(best_effort, {"read", host_dir / "secret"}), "EACCES");
  expect_success(attack(best_effort, {"signal", std::to_string(host->pid()), "0"},
                        {.omitted = step_identity}));

  override_landlock_abi_for_testing(3);
  dropped = check_confinement(best_effort);
  ASSERT_EQ(dropped.size(), 3u);
  EXPECT_NE(dropped[0].find("NET_BIND_TCP and NET_CONNECT_TCP (ABI 4"), std::string::npos) << dropped[0];
  expect_denied(attack(best_effort, {"truncate", host_dir / "secret"}, {.omitted = step_identity}), "EACCES");

  override_landlock_abi_for_testing(2);
  dropped = check_confinement(best_effort);
  ASSERT_EQ(dropped.size(), 4u);
  EXPECT_NE(dropped[0].find("FS_TRUNCATE (ABI 3"), std::string::npos) << dropped[0];
  // Below ABI 3 truncate(2) is not restricted: that is what "dropped" means.
  expect_success(attack(best_effort, {"truncate", host_dir / "secret"}, {.omitted = step_identity}));
}

}  // namespace
}  // namespace vmwarden::supervisor
