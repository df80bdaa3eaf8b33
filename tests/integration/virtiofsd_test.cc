// The real C virtiofsd (/usr/lib/qemu/virtiofsd) started with the argv,
// rules, capabilities and seccomp profile of virtiofs-glue, and the readiness
// probe that must not consume the one connection the daemon serves.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>

#include <fmt/core.h>

#include "common/unix_socket.h"
#include "common/error.h"
#include "common/process.h"
#include "tests/integration/service.h"
#include "virtiofs-glue/virtiofsd.h"

namespace vmwarden::virtiofs {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;
using testing::TestService;
namespace fs = std::filesystem;

using Deadline = std::chrono::steady_clock::time_point;
Deadline in(std::chrono::milliseconds duration) { return std::chrono::steady_clock::now() + duration; }

constexpr const char* kCDaemon = "/usr/lib/qemu/virtiofsd";
constexpr int kListenFd = 3;

UniqueFd connect_to(const fs::path& path) {
  UniqueFd fd(check(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0), "socket"));
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::strcpy(address.sun_path, path.c_str());
  check(::connect(fd.get(), reinterpret_cast<sockaddr*>(&address), sizeof address), "connect", path.string());
  return fd;
}

// Polls `condition` until it holds or the deadline passes.
template <typename Condition>
bool eventually(Condition condition, Deadline deadline) {
  while (!condition()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(5ms);
  }
  return true;
}

class VirtiofsdTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root (virtiofsd serves files as any uid)";
    check(::chmod(root_.path().c_str(), 0755), "chmod", root_.path().string());
    fs::create_directory(root_ / "share");
    fs::create_directory(root_ / "run");
    testing::write_file(root_ / "share" / "hello", "hello\n");
  }

  Share share(const fs::path& binary, Dialect dialect, bool with_fd) {
    Share s;
    s.binary = binary;
    s.dialect = dialect;
    s.tag = "data";
    s.shared_dir = root_ / "share";
    s.readonly = false;
    s.socket = root_ / "run" / "fs0.sock";
    if (with_fd) s.listen_fd = kListenFd;
    return s;
  }

  // The daemon confined as the composition will: the plan's rules, profile
  // and capabilities. It runs as uid 0 here; which uid (and user namespace)
  // it gets is the caller's decision, not the glue's.
  std::unique_ptr<TestService> start(const DaemonPlan& plan, const UniqueFd* listener,
                                     std::function<void()> in_child = {}) {
    supervisor::ServiceSpec spec;
    spec.name = "virtiofsd-data";
    spec.argv = plan.argv;
    if (listener) spec.fds.push_back({listener->get(), kListenFd});
    spec.confinement.keep_capabilities = plan.keep_capabilities;
    spec.confinement.landlock.paths = plan.paths;
    spec.confinement.seccomp.profile = plan.seccomp_profile;
    return std::make_unique<TestService>(std::move(spec), true, std::move(in_child));
  }

  testing::TempDir root_{"vmwarden-virtiofsd"};
};

TEST_F(VirtiofsdTest, CDaemonWithAListeningFdIsReadyAndStillServesItsFrontend) {
  if (!fs::exists(kCDaemon)) GTEST_SKIP() << kCDaemon << " is not installed";
  Share s = share(kCDaemon, detect_dialect(kCDaemon), true);
  ASSERT_EQ(s.dialect, Dialect::c);
  DaemonPlan plan = plan_virtiofsd(s);
  UniqueFd listener = listen_unix_socket(s.socket, 0, 0);
  std::vector<std::string> run_before = testing::directory_names("/run/virtiofsd");
  auto daemon = start(plan, &listener);
  ASSERT_NO_THROW(plan.wait_ready(*daemon, in(10s))) << daemon->output();
  auto ready_after = std::chrono::steady_clock::now() - daemon->started();
  std::printf("virtiofsd (C, --fd, confined): exec to ready %.1f ms\n",
              std::chrono::duration<double, std::milli>(ready_after).count());
  // The probe consumed nothing: the daemon still waits for its frontend.
  std::this_thread::sleep_for(200ms);
  EXPECT_TRUE(daemon->running() && !PidFd(daemon->pid()).exited()) << daemon->output();
  EXPECT_TRUE(accepting_on(daemon->pid(), s.socket));
  // A frontend connects: the daemon takes it (leaves accept) and stays up...
  UniqueFd frontend = connect_to(s.socket);
  EXPECT_TRUE(eventually([&] { return !accepting_on(daemon->pid(), s.socket); }, in(5s)));
  EXPECT_FALSE(daemon->wait_exit(in(200ms))) << daemon->output();
  // ...and serves that one connection only: it exits when it closes.
  frontend.reset();
  auto exit = daemon->wait_exit(in(10s));
  ASSERT_TRUE(exit) << "virtiofsd did not exit after its frontend left";
  // It logs at warn level: none of its per-connection chatter.
  EXPECT_THAT(daemon->output(), ::testing::Not(HasSubstr("Waiting for vhost-user socket connection")));
  // No pid file with --fd (the daemon names it after the socket path, each
  // / turned into a .): nothing was written outside the share.
  std::string pid_file = s.socket.string();
  for (auto& c : pid_file) c = c == '/' ? '.' : c;
  for (const char* run : {"/run/virtiofsd", "/var/run/virtiofsd"})
    EXPECT_FALSE(fs::exists(fmt::format("{}/{}.pid", run, pid_file))) << "pid file in " << run;
  EXPECT_EQ(testing::directory_names("/run/virtiofsd"), run_before);
}

// Without --fd the C daemon writes a pid file under /var/run/virtiofsd, which
// its rules allow; a caller of this mode gives it a private one (vmwarden's
// own composition always passes --fd).
TEST_F(VirtiofsdTest, CDaemonCreatingItsSocketMayWriteItsPidFile) {
  if (!fs::exists(kCDaemon)) GTEST_SKIP() << kCDaemon << " is not installed";
  Share s = share(kCDaemon, Dialect::c, false);
  DaemonPlan plan = plan_virtiofsd(s);
  // A private tmpfs for /var/run/virtiofsd in the daemon's own mount
  // namespace, so that no pid file lands on this machine.
  auto private_run = [] {
    check(::unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)");
    check(::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr), "mount / private");
    check(::mount("tmpfs", "/run", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=0755"), "mount tmpfs", "/run");
    check(::mkdir("/run/virtiofsd", 0700), "mkdir", "/run/virtiofsd");
  };
  auto daemon = start(plan, nullptr, private_run);
  ASSERT_NO_THROW(plan.wait_ready(*daemon, in(10s))) << daemon->output();
  struct stat st {};
  EXPECT_EQ(::stat(s.socket.c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  std::string pid_file = "." + s.socket.string().substr(1);
  for (auto& c : pid_file) c = c == '/' ? '.' : c;
  EXPECT_TRUE(fs::exists(fmt::format("/proc/{}/root/run/virtiofsd/{}.pid", daemon->pid(), pid_file)));
}

TEST_F(VirtiofsdTest, ReadinessFailsWhenTheDaemonExits) {
  if (!fs::exists(kCDaemon)) GTEST_SKIP() << kCDaemon << " is not installed";
  Share s = share(kCDaemon, Dialect::c, true);
  fs::path gone = root_ / "gone";
  fs::create_directory(gone);
  s.shared_dir = gone;
  DaemonPlan plan = plan_virtiofsd(s);
  fs::remove(gone);  // after the plan, before the daemon: it refuses to start
  UniqueFd listener = listen_unix_socket(s.socket, 0, 0);
  DaemonPlan unconfined = plan;
  supervisor::ServiceSpec spec;
  spec.name = "virtiofsd-gone";
  spec.argv = plan.argv;
  spec.fds.push_back({listener.get(), kListenFd});
  TestService daemon(spec, /*confine=*/false);
  try {
    plan.wait_ready(daemon, in(10s));
    FAIL() << "ready without a shared directory";
  } catch (const std::runtime_error& e) {
    EXPECT_THAT(e.what(), HasSubstr("exited before it was ready"));
  }
}

// The probe is not vacuous: a live process that is not in accept on the
// expected socket is not ready.
TEST_F(VirtiofsdTest, ProbeRequiresAcceptOnTheExpectedSocket) {
  if (!fs::exists(kCDaemon)) GTEST_SKIP() << kCDaemon << " is not installed";
  Share s = share(kCDaemon, Dialect::c, true);
  DaemonPlan plan = plan_virtiofsd(s);
  UniqueFd listener = listen_unix_socket(s.socket, 0, 0);
  auto daemon = start(plan, &listener);
  ASSERT_NO_THROW(plan.wait_ready(*daemon, in(10s))) << daemon->output();
  EXPECT_FALSE(accepting_on(daemon->pid(), root_ / "run" / "other.sock"));
  EXPECT_FALSE(accepting_on(::getpid(), s.socket));

  supervisor::ServiceSpec spec;
  spec.name = "not-virtiofsd";
  spec.argv = {"/bin/sleep", "30"};
  spec.fds.push_back({listener.get(), kListenFd});  // holds the socket, never accepts
  TestService sleeper(spec, /*confine=*/false);
  auto start_time = std::chrono::steady_clock::now();
  EXPECT_THROW(plan.wait_ready(sleeper, in(300ms)), std::runtime_error);
  EXPECT_GE(std::chrono::steady_clock::now() - start_time, 290ms);
}

TEST_F(VirtiofsdTest, ReadinessGivesUpWhenAStopArrives) {
  // The plan's daemon is never run: a sleeper stands in for it.
  Share s = share(root_ / "virtiofsd", Dialect::rust, true);
  DaemonPlan plan = plan_virtiofsd(s);
  supervisor::ServiceSpec spec;
  spec.name = "not-virtiofsd";
  spec.argv = {"/bin/sleep", "300"};
  TestService sleeper(spec, /*confine=*/false);
  sleeper.request_stop();
  testing::WaitOutcome wait = testing::run_wait(plan.wait_ready, sleeper);
  EXPECT_THAT(wait.error, HasSubstr("stopped while waiting for not-virtiofsd")) << "ready without a socket?";
  EXPECT_LT(wait.took, 60s) << "waited for the deadline";
}

TEST_F(VirtiofsdTest, RustDialectDoubleIsReadyTheSameWay) {
  fs::create_directory(root_ / "bin");
  fs::path binary = testing::copy_program("VMWARDEN_FAKE_VIRTIOFSD", root_ / "bin");
  Share s = share(binary, detect_dialect(binary), true);
  ASSERT_EQ(s.dialect, Dialect::rust);
  DaemonPlan plan = plan_virtiofsd(s);
  UniqueFd listener = listen_unix_socket(s.socket, 0, 0);
  auto daemon = start(plan, &listener);
  ASSERT_NO_THROW(plan.wait_ready(*daemon, in(10s))) << daemon->output();
  UniqueFd frontend = connect_to(s.socket);
  frontend.reset();
  auto exit = daemon->wait_exit(in(10s));
  ASSERT_TRUE(exit) << daemon->output();
  EXPECT_EQ(exit->exit_code, 0);
}

// A virtiofsd whose dialect its contents do not tell (a wrapper script) is
// asked for its --help, as uid 65534, as PID 1 of a PID namespace of its
// own in an empty network namespace: a wrapper that starts a detached
// process (an attack's stayed on the host's loopback network for good) does
// not outlive the question.
TEST_F(VirtiofsdTest, AWrappersHelpRunsInNamespacesOfItsOwnAndLeavesNothingBehind) {
  fs::create_directory(root_ / "bin");
  fs::create_directory(root_ / "out");
  fs::permissions(root_ / "out", fs::perms::all);
  const std::string marker = fmt::format("29.{}", ::getpid());
  // "--shared" "-dir" apart: the contents alone must not tell.
  testing::write_file(root_ / "bin/virtiofsd",
                      fmt::format("#!/bin/sh\nreadlink /proc/self/ns/net > {0}/net\nid -u > {0}/uid\n"
                                  "setsid sleep {1} </dev/null >/dev/null 2>&1 &\n"
                                  "while ! pgrep -f 'sleep {1}' >/dev/null; do sleep 0.05; done\n"
                                  "printf '%s\\n' '--shared''-dir=PATH'\n",
                                  (root_ / "out").string(), marker),
                      0755);
  EXPECT_EQ(detect_dialect(root_ / "bin/virtiofsd"), Dialect::rust);
  auto left = testing::processes_where(
      [&](const std::vector<std::string>& argv) { return testing::some_argument_contains(argv, marker); });
  for (const testing::ProcessInfo& process : left) ::kill(process.pid, SIGKILL);  // started by this test
  EXPECT_TRUE(left.empty()) << "the wrapper's detached process outlived --help";
  EXPECT_EQ(testing::read_file(root_ / "out/uid"), "65534\n");
  EXPECT_NE(testing::read_file(root_ / "out/net"), fs::read_symlink("/proc/self/ns/net").string() + "\n")
      << "in the host's network namespace";
}

}  // namespace
}  // namespace vmwarden::virtiofs
