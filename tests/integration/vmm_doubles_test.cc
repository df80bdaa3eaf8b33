// The crosvm and cloud-hypervisor backends' readiness, graceful power-off
// and forced stop, driven against test doubles that speak the real control
// protocols (neither VMM can run here: not packaged, no /dev/kvm). The VMM
// double and its control programs run confined exactly as the plan says:
// the VM's uid, the plan's Landlock rules and seccomp profile.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/unix_socket.h"
#include "common/error.h"
#include "tests/integration/service.h"
#include "virtiofs-glue/virtiofsd.h"
#include "vm-launcher/backend.h"

namespace vmwarden::vm {
namespace {

using namespace std::chrono_literals;
using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;
using testing::TestService;
namespace fs = std::filesystem;

Deadline in(std::chrono::milliseconds duration) { return std::chrono::steady_clock::now() + duration; }

std::vector<std::vector<std::string>> recorded_calls(const fs::path& record) {
  std::vector<std::vector<std::string>> calls;
  if (!fs::exists(record)) return calls;
  std::string text = testing::read_file(record);
  size_t start = 0;
  for (size_t end; (end = text.find('\n', start)) != std::string::npos; start = end + 1) {
    std::vector<std::string> call;
    std::string_view line(text.data() + start, end - start);
    for (size_t from = 0;;) {
      size_t nul = line.find('\0', from);
      call.emplace_back(line.substr(from, nul - from));
      if (nul == std::string_view::npos) break;
      from = nul + 1;
    }
    calls.push_back(std::move(call));
  }
  return calls;
}

class VmmDoubleTest : public ::testing::TestWithParam<Vmm> {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root (the services run as their own uid)";
    uid_ = testing::service_uid();
    check(::chmod(root_.path().c_str(), 0755), "chmod", root_.path().string());
    for (auto dir : {"bin", "run", "rec", "share"}) fs::create_directory(root_ / dir);
    for (auto dir : {"run", "rec"}) check(::chown((root_ / dir).c_str(), uid_, uid_), "chown", dir);
    host_.crosvm = testing::copy_program("VMWARDEN_FAKE_CROSVM", root_ / "bin");
    host_.cloud_hypervisor = testing::copy_program("VMWARDEN_FAKE_CLOUD_HYPERVISOR", root_ / "bin");
    host_.ch_remote = testing::copy_program("VMWARDEN_FAKE_CH_REMOTE", root_ / "bin");
    testing::write_file(root_ / "vmlinuz", "not really a kernel\n");
    testing::write_file(root_ / "disk.img", std::string(4096, '\0'));

    definition_.name = "doubled";
    definition_.vmm = GetParam();
    definition_.kernel = root_ / "vmlinuz";
    definition_.cmdline = "console=ttyS0 quiet";
    definition_.disks = {{root_ / "disk.img", true}};
    definition_.shares = {{"data", root_ / "share", Access::rw}};
    paths_ = RuntimePaths::in(root_ / "run", definition_);
    // The share's virtiofsd socket, listening: the VMM connects to it at start.
    virtiofsd_socket_ = listen_unix_socket(paths_.share_sockets.at("data"), uid_, uid_);
  }

  std::unique_ptr<TestService> start(const VmmPlan& plan, std::vector<std::string> flags = {}) {
    // The console's descriptor: a pipe's write end, as the warden makes it
    // (the VMM's Landlock rule lets it write no file in the runtime
    // directory), so that the test reads what the double wrote through what
    // its argv names.
    int ends[2];
    check(::pipe2(ends, O_CLOEXEC), "pipe2");
    console_read_ = UniqueFd(ends[0]);
    console_ = UniqueFd(ends[1]);
    check(::fchown(console_.get(), uid_, uid_), "chown", "the console pipe");
    supervisor::ServiceSpec spec;
    spec.name = "vmm";
    spec.argv = plan.argv;
    spec.fds = {{console_.get(), plan.console_fd}};
    // The control socket, where the warden gives it (cloud-hypervisor).
    if (plan.control_fd) {
      control_ = listen_unix_socket(paths_.control_socket, uid_, uid_);
      spec.fds.push_back({control_.get(), *plan.control_fd});
    }
    spec.environment.set = {"VMWARDEN_FAKE_RECORD=" + record().string()};
    for (auto& flag : flags) spec.environment.set.push_back(flag + "=1");
    spec.confinement.uid = uid_;
    spec.confinement.gid = uid_;
    spec.confinement.landlock.paths = plan.paths;
    spec.confinement.landlock.paths.push_back({root_ / "rec", supervisor::PathRights::read_write()});
    spec.confinement.seccomp.profile = plan.seccomp_profile;
    return std::make_unique<TestService>(std::move(spec));
  }

  // The control program's call as recorded by the double, its argv[0] first.
  std::vector<std::string> control_call(std::string_view command) const {
    const Vmm vmm = GetParam();
    if (vmm == Vmm::crosvm) return {host_.crosvm, std::string(command), paths_.control_socket};
    return {host_.ch_remote, "--api-socket", paths_.control_socket, std::string(command)};
  }
  std::string_view graceful_command() const { return GetParam() == Vmm::crosvm ? "powerbtn" : "power-button"; }
  std::string_view stop_command() const { return GetParam() == Vmm::crosvm ? "stop" : "shutdown-vmm"; }

  fs::path record() const { return root_ / "rec" / "calls"; }

  testing::TempDir root_{"vmwarden-vmm-double"};
  uid_t uid_ = 0;
  Host host_;
  Definition definition_;
  RuntimePaths paths_;
  UniqueFd virtiofsd_socket_;
  // What the VMM wrote to its console so far (the pipe's read end
  // drained without waiting).
  std::string console_output() const {
    check(::fcntl(console_read_.get(), F_SETFL, O_NONBLOCK), "fcntl", "the console pipe");
    std::string text;
    char buffer[4096];
    for (ssize_t n; (n = ::read(console_read_.get(), buffer, sizeof buffer)) > 0;) text.append(buffer, n);
    return text;
  }

  UniqueFd console_, console_read_, control_;
};

TEST_P(VmmDoubleTest, ReadyThenPowerButtonEndsTheVmm) {
  VmmPlan plan = plan_vmm(definition_, paths_, host_);
  auto vmm = start(plan);
  ASSERT_NO_THROW(plan.wait_ready(*vmm, in(10s))) << vmm->output();
  plan.graceful_stop(*vmm, in(5s));
  auto exit = vmm->wait_exit(in(10s));
  ASSERT_TRUE(exit) << "the guest did not power off";
  EXPECT_EQ(exit->exit_code, 0) << vmm->output();
  auto calls = recorded_calls(record());
  ASSERT_EQ(calls.size(), 2u);
  EXPECT_THAT(calls[0], ElementsAreArray(plan.argv));  // exactly what the plan says
  EXPECT_THAT(calls[1], ElementsAreArray(control_call(graceful_command())));
  EXPECT_EQ(console_output(), "fake guest booted\n");
}

TEST_P(VmmDoubleTest, ForceStopUsesTheVmmsStopWhenTheGuestIgnoresTheButton) {
  VmmPlan plan = plan_vmm(definition_, paths_, host_);
  auto vmm = start(plan, {"VMWARDEN_FAKE_IGNORE_POWER"});
  ASSERT_NO_THROW(plan.wait_ready(*vmm, in(10s))) << vmm->output();
  plan.graceful_stop(*vmm, in(5s));
  EXPECT_FALSE(vmm->wait_exit(in(300ms))) << "the guest was meant to ignore the button";
  plan.force_stop(*vmm, in(10s));
  auto exit = vmm->wait_exit(in(1s));
  ASSERT_TRUE(exit);
  EXPECT_EQ(exit->exit_code, 0) << "stopped by its own stop command, not by a signal";
  auto calls = recorded_calls(record());
  ASSERT_EQ(calls.size(), 3u);
  EXPECT_THAT(calls[2], ElementsAreArray(control_call(stop_command())));
}

TEST_P(VmmDoubleTest, ForceStopKillsAVmmThatIgnoresItsStop) {
  VmmPlan plan = plan_vmm(definition_, paths_, host_);
  auto vmm = start(plan, {"VMWARDEN_FAKE_IGNORE_POWER", "VMWARDEN_FAKE_IGNORE_STOP"});
  ASSERT_NO_THROW(plan.wait_ready(*vmm, in(10s))) << vmm->output();
  auto start_time = std::chrono::steady_clock::now();
  plan.force_stop(*vmm, in(1s));
  auto exit = vmm->wait_exit(in(1s));
  ASSERT_TRUE(exit);
  EXPECT_EQ(exit->signal, SIGKILL);
  EXPECT_GE(std::chrono::steady_clock::now() - start_time, 900ms) << "killed before the deadline";
}

TEST_P(VmmDoubleTest, ReadinessFailsWhenTheVmmExits) {
  definition_.kernel = root_ / "missing-kernel";
  VmmPlan plan = plan_vmm(definition_, paths_, host_);
  auto vmm = start(plan);
  try {
    plan.wait_ready(*vmm, in(10s));
    FAIL() << "ready without a kernel";
  } catch (const std::runtime_error& e) {
    EXPECT_THAT(e.what(), HasSubstr("exited before it was ready"));
  }
  EXPECT_THAT(vmm->output(), HasSubstr("missing-kernel"));
}

TEST_P(VmmDoubleTest, ReadinessTimesOutWithoutAControlSocket) {
  // A "VMM" that runs but never opens its control socket.
  VmmPlan plan = plan_vmm(definition_, paths_, host_);
  VmmPlan sleeper = plan;
  sleeper.argv = {"/bin/sleep", "30"};
  auto vmm = start(sleeper);
  auto start_time = std::chrono::steady_clock::now();
  EXPECT_THROW(plan.wait_ready(*vmm, in(300ms)), std::runtime_error);
  EXPECT_GE(std::chrono::steady_clock::now() - start_time, 290ms);
}

// A stop arriving while the warden waits for the VMM ends the wait at the
// next probe, not at the ready timeout.
TEST_P(VmmDoubleTest, ReadinessGivesUpWhenAStopArrives) {
  VmmPlan plan = plan_vmm(definition_, paths_, host_);
  VmmPlan sleeper = plan;
  sleeper.argv = {"/bin/sleep", "300"};
  auto vmm = start(sleeper);
  vmm->request_stop();
  testing::WaitOutcome wait = testing::run_wait(plan.wait_ready, *vmm);
  EXPECT_THAT(wait.error, HasSubstr("stopped while waiting for")) << "ready without a control socket?";
  EXPECT_LT(wait.took, 60s) << "waited for the deadline";
}

TEST_P(VmmDoubleTest, GracefulStopFailsLoudlyWhenTheVmmIsGone) {
  VmmPlan plan = plan_vmm(definition_, paths_, host_);
  auto vmm = start(plan);
  ASSERT_NO_THROW(plan.wait_ready(*vmm, in(10s))) << vmm->output();
  plan.force_stop(*vmm, in(5s));
  ASSERT_TRUE(vmm->wait_exit(in(1s)));
  EXPECT_THROW(plan.graceful_stop(*vmm, in(5s)), std::runtime_error);
}

// cloud-hypervisor is ready when the API reports the VM running, not when the
// socket appears: the double stays "Created" for 400 ms.
TEST(CloudHypervisorDouble, ReadinessWaitsForTheRunningState) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root";
  testing::TempDir root("vmwarden-ch-boot");
  check(::chmod(root.path().c_str(), 0755), "chmod", root.path().string());
  fs::create_directory(root / "bin");
  Host host;
  host.cloud_hypervisor = testing::copy_program("VMWARDEN_FAKE_CLOUD_HYPERVISOR", root / "bin");
  host.ch_remote = testing::copy_program("VMWARDEN_FAKE_CH_REMOTE", root / "bin");
  testing::write_file(root / "vmlinuz", "kernel\n");
  Definition definition;
  definition.name = "booting";
  definition.vmm = Vmm::cloud_hypervisor;
  definition.kernel = root / "vmlinuz";
  RuntimePaths paths = RuntimePaths::in(root.path(), definition);
  VmmPlan plan = plan_vmm(definition, paths, host);
  UniqueFd console(check(::open("/dev/null", O_WRONLY | O_CLOEXEC), "open", "/dev/null"));
  UniqueFd control = listen_unix_socket(paths.control_socket, 0, 0);
  supervisor::ServiceSpec spec;
  spec.argv = plan.argv;
  spec.environment.set = {"VMWARDEN_FAKE_BOOT_MS=400"};
  spec.fds = {{console.get(), plan.console_fd}, {control.get(), *plan.control_fd}};
  TestService vmm(spec, /*confine=*/false);
  auto start_time = std::chrono::steady_clock::now();
  ASSERT_NO_THROW(plan.wait_ready(vmm, in(10s))) << vmm.output();
  EXPECT_GE(std::chrono::steady_clock::now() - start_time, 350ms);
}

// A control socket that accepts (the kernel's backlog completes the connect)
// and never answers: the graceful stop runs on the warden's loop, so it must
// give up by the deadline it is given instead of a fixed 5 s. The bound is
// generous (deadline + 2 s) so a loaded machine does not fail it.
TEST(QemuGracefulStop, GivesUpByTheDeadlineOnAWedgedControlSocket) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root";
  testing::TempDir root("vmwarden-qmp-wedged");
  testing::write_file(root / "vmlinuz", "kernel\n");
  Host host;
  host.qemu = "/usr/bin/qemu-system-x86_64";
  Definition definition;
  definition.name = "wedged";
  definition.vmm = Vmm::qemu;
  definition.kernel = root / "vmlinuz";
  RuntimePaths paths = RuntimePaths::in(root.path(), definition);
  VmmPlan plan = plan_vmm(definition, paths, host);
  UniqueFd wedged = listen_unix_socket(paths.control_socket, 0, 0);
  supervisor::ServiceSpec spec;
  spec.argv = {"/bin/sleep", "30"};
  TestService vmm(spec, /*confine=*/false);
  auto start_time = std::chrono::steady_clock::now();
  try {
    plan.graceful_stop(vmm, in(500ms));
    ADD_FAILURE() << "no error from a socket that never answers";
  } catch (const SystemError& e) {
    EXPECT_EQ(e.code(), ETIMEDOUT) << e.what();  // not a refused or missing socket
  }
  auto took = std::chrono::steady_clock::now() - start_time;
  EXPECT_GE(took, 450ms) << "gave up before the deadline";
  EXPECT_LT(took, 2500ms) << "the stop overran its deadline";
  // The stop did reach this socket: its connection waits in the backlog.
  UniqueFd reached(::accept4(wedged.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
  EXPECT_TRUE(reached) << "nothing connected to the control socket";
}

INSTANTIATE_TEST_SUITE_P(Backends, VmmDoubleTest, ::testing::Values(Vmm::crosvm, Vmm::cloud_hypervisor),
                         [](const auto& param_info) { return param_info.param == Vmm::crosvm ? "crosvm" : "cloud_hypervisor"; });

}  // namespace
}  // namespace vmwarden::vm
