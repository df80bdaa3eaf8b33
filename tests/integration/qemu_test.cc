// The QMP client and the QEMU backend against the real QEMU of this machine
// (TCG). The guest is a multiboot stub that halts forever: it ignores the
// ACPI power button, which is exactly what the forced stop must handle.
// Booting a real Linux guest is the end-to-end suite's job.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <map>
#include <thread>

#include "common/unix_socket.h"
#include "common/error.h"
#include "common/process.h"
#include "tests/integration/service.h"
#include "virtiofs-glue/virtiofsd.h"
#include "vm-launcher/backend.h"
#include "vm-launcher/qmp.h"

namespace vmwarden::vm {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;
using testing::TestService;
namespace fs = std::filesystem;

constexpr const char* kQemu = "/usr/bin/qemu-system-x86_64";
constexpr const char* kCDaemon = "/usr/lib/qemu/virtiofsd";

Deadline in(std::chrono::milliseconds duration) { return std::chrono::steady_clock::now() + duration; }

double milliseconds(std::chrono::steady_clock::duration duration) {
  return std::chrono::duration<double, std::milli>(duration).count();
}

// A multiboot kernel (a.out kludge, loaded at 1 MiB) whose code is
// `cli; hlt; jmp .-1`.
std::string halting_kernel() {
  const std::uint32_t magic = 0x1BADB002, flags = 0x00010000;
  const std::uint32_t header[] = {magic, flags, static_cast<std::uint32_t>(-(magic + flags)), 0x100000,
                                  0x100000, 0, 0, 0x100020};
  std::string image(reinterpret_cast<const char*>(header), sizeof header);
  image += "\xFA\xF4\xEB\xFD";
  return image;
}

// Each disk QEMU has, by node name: whether it is read-only (QMP query-block).
std::map<std::string, bool> disks_read_only(const fs::path& control_socket) {
  QmpClient qmp = QmpClient::connect(control_socket, in(5s));
  Json blocks = qmp.execute("query-block", in(5s));
  std::map<std::string, bool> readonly;
  for (const Json& block : blocks.items)
    if (const Json* inserted = block.find("inserted"))
      readonly[std::string(inserted->string_member("node-name"))] = inserted->find("ro")->boolean;
  return readonly;
}

QmpClient connect_when_there(const fs::path& socket, Deadline deadline) {
  for (;;) {
    try {
      return QmpClient::connect(socket, deadline);
    } catch (const SystemError& e) {
      if ((e.code() != ENOENT && e.code() != ECONNREFUSED) || std::chrono::steady_clock::now() >= deadline) throw;
      std::this_thread::sleep_for(5ms);
    }
  }
}

TEST(QmpAgainstQemu, CapabilitiesStatusAndQuit) {
  if (!fs::exists(kQemu)) GTEST_SKIP() << kQemu << " is not installed";
  testing::TempDir dir("vmwarden-qmp-qemu");
  fs::path socket = dir / "qmp.sock";
  supervisor::ServiceSpec spec;
  spec.argv = {kQemu, "-machine", "none", "-nodefaults", "-display", "none", "-qmp",
               "unix:" + socket.string() + ",server=on,wait=off"};
  TestService qemu(spec, /*confine=*/false);
  QmpClient qmp = connect_when_there(socket, in(20s));
  std::printf("QEMU -machine none: exec to QMP answering %.1f ms\n", milliseconds(std::chrono::steady_clock::now() - qemu.started()));
  EXPECT_EQ(qmp.greeting().find("QMP")->find("version")->find("qemu")->find("major")->number, 7);
  Json status = qmp.execute("query-status", in(5s));
  EXPECT_EQ(status.string_member("status"), "running");
  try {
    qmp.execute("no-such-command", in(5s));
    FAIL() << "no error for an unknown command";
  } catch (const QmpError& e) {
    EXPECT_EQ(e.error_class(), "CommandNotFound");
  }
  EXPECT_NO_THROW(qmp.execute("quit", in(5s)));
  auto exit = qemu.wait_exit(in(10s));
  ASSERT_TRUE(exit);
  EXPECT_EQ(exit->exit_code, 0) << qemu.output();
}

TEST(QmpAgainstQemu, SystemPowerdownIsAcceptedAndAnnounced) {
  if (!fs::exists(kQemu)) GTEST_SKIP() << kQemu << " is not installed";
  testing::TempDir dir("vmwarden-qmp-q35");
  fs::path socket = dir / "qmp.sock";
  supervisor::ServiceSpec spec;
  spec.argv = {kQemu, "-machine", "q35", "-accel", "tcg", "-m", "32M", "-nodefaults", "-display", "none", "-qmp",
               "unix:" + socket.string() + ",server=on,wait=off"};
  TestService qemu(spec, /*confine=*/false);
  QmpClient qmp = connect_when_there(socket, in(20s));
  qmp.execute("system_powerdown", in(5s));
  // The POWERDOWN event may precede the reply: it must not be taken for it.
  qmp.execute("query-status", in(5s));
  bool announced = false;
  for (const Json& event : qmp.events()) announced = announced || event.string_member("event") == "POWERDOWN";
  EXPECT_TRUE(announced);
  qmp.execute("quit", in(5s));
  EXPECT_TRUE(qemu.wait_exit(in(10s)));
}

// The whole QEMU plan for real: a share served by the real virtiofsd
// (through virtiofs-glue, readiness first), a read-only and a read-write
// disk, the VMM confined by the plan (its own uid, Landlock rules, the "qemu"
// seccomp allow list), then readiness, power button and forced stop.
TEST(QemuBackend, RunsConfinedWithAShareAndDisksThenStops) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root (the services run as their own uid)";
  if (!fs::exists(kQemu) || !fs::exists(kCDaemon)) GTEST_SKIP() << "QEMU or its virtiofsd is not installed";
  const uid_t uid = testing::service_uid();
  testing::TempDir root("vmwarden-qemu-backend");
  check(::chmod(root.path().c_str(), 0755), "chmod", root.path().string());
  for (auto dir : {"run", "share"}) fs::create_directory(root / dir);
  check(::chown((root / "run").c_str(), uid, uid), "chown", "run");
  check(::chmod((root / "run").c_str(), 0700), "chmod", "run");
  testing::write_file(root / "kernel", halting_kernel());
  testing::write_file(root / "ro.img", std::string(1 << 20, '\0'), 0644);
  testing::write_file(root / "rw.img", std::string(1 << 20, '\0'), 0600);
  check(::chown((root / "rw.img").c_str(), uid, uid), "chown", "rw.img");

  Definition definition;
  definition.name = "backend";
  definition.vmm = Vmm::qemu;
  definition.kernel = root / "kernel";
  definition.cmdline = "console=ttyS0 quiet";
  definition.memory_mib = 64;
  definition.disks = {{root / "ro.img", true}, {root / "rw.img", false}};
  definition.shares = {{"data", root / "share", Access::rw}};
  Host host = Host::detect();
  host.kvm = false;  // the halting kernel and the seccomp profile were made for TCG
  RuntimePaths paths = RuntimePaths::in(root / "run", definition);
  VmmPlan plan = plan_vmm(definition, paths, host);

  // virtiofsd first, with a socket bound for it (the VM's uid may connect).
  virtiofs::Share share;
  share.binary = kCDaemon;
  share.dialect = virtiofs::detect_dialect(kCDaemon);
  share.tag = "data";
  share.shared_dir = root / "share";
  share.readonly = false;
  share.socket = paths.share_sockets.at("data");
  share.listen_fd = 3;
  virtiofs::DaemonPlan daemon_plan = virtiofs::plan_virtiofsd(share);
  UniqueFd listener = listen_unix_socket(share.socket, uid, uid);
  supervisor::ServiceSpec daemon_spec;
  daemon_spec.name = "virtiofsd-data";
  daemon_spec.argv = daemon_plan.argv;
  daemon_spec.fds = {{listener.get(), 3}};
  daemon_spec.confinement.keep_capabilities = daemon_plan.keep_capabilities;
  daemon_spec.confinement.landlock.paths = daemon_plan.paths;
  daemon_spec.confinement.seccomp.profile = daemon_plan.seccomp_profile;
  TestService daemon(daemon_spec);
  ASSERT_NO_THROW(daemon_plan.wait_ready(daemon, in(10s))) << daemon.output();

  // The console's descriptor as the warden gives it: a pipe's write end.
  Pipe console = make_pipe();
  supervisor::ServiceSpec vmm_spec;
  vmm_spec.name = "vmm";
  vmm_spec.argv = plan.argv;
  // And its QMP socket: bound, listening, the VM's uid's.
  UniqueFd control = listen_unix_socket(paths.control_socket, uid, uid);
  vmm_spec.fds = {{console.write_end.get(), plan.console_fd}, {control.get(), *plan.control_fd}};
  vmm_spec.confinement.uid = uid;
  vmm_spec.confinement.gid = uid;
  vmm_spec.confinement.landlock.paths = plan.paths;
  vmm_spec.confinement.seccomp.profile = plan.seccomp_profile;
  TestService qemu(vmm_spec);
  ASSERT_NO_THROW(plan.wait_ready(qemu, in(30s))) << qemu.output();
  std::printf("QEMU backend (TCG, confined, 1 share, 2 disks): exec to QMP ready %.1f ms\n",
              milliseconds(std::chrono::steady_clock::now() - qemu.started()));

  // QEMU connected to virtiofsd (the vhost-user handshake happens while the
  // device is realized): the daemon left accept and is still serving.
  EXPECT_FALSE(virtiofs::accepting_on(daemon.pid(), share.socket));
  EXPECT_FALSE(daemon.wait_exit(in(100ms))) << daemon.output();
  EXPECT_EQ(disks_read_only(paths.control_socket), (std::map<std::string, bool>{{"disk0", true}, {"disk1", false}}));
  // Its console is the pipe (-add-fd, /dev/fdset): it made no file.
  EXPECT_FALSE(fs::exists(paths.serial_log));

  // The halting guest ignores the power button...
  ASSERT_NO_THROW(plan.graceful_stop(qemu, in(10s)));
  EXPECT_FALSE(qemu.wait_exit(in(500ms))) << "the stub guest cannot power off";
  // ...so the forced stop ends it: QMP quit, no signal needed.
  auto stop_start = std::chrono::steady_clock::now();
  plan.force_stop(qemu, in(10s));
  auto exit = qemu.wait_exit(in(1s));
  ASSERT_TRUE(exit);
  EXPECT_EQ(exit->signal, 0) << qemu.output();
  EXPECT_EQ(exit->exit_code, 0) << qemu.output();
  std::printf("QEMU forced stop (QMP quit) took %.1f ms\n", milliseconds(std::chrono::steady_clock::now() - stop_start));
  // Its frontend gone, virtiofsd exits too.
  EXPECT_TRUE(daemon.wait_exit(in(10s))) << daemon.output();
}

// A loop device over `image`, given to `owner`; detached (and given back
// to root) when the test ends.
class LoopDevice {
 public:
  LoopDevice(const fs::path& image, uid_t owner) {
    auto attached = testing::run_command({"losetup", "--find", "--show", image.string()});
    if (attached.exit_code != 0) return;
    path_ = attached.out.substr(0, attached.out.find('\n'));
    check(::chown(path_.c_str(), owner, owner), "chown", path_.string());
  }
  ~LoopDevice() {
    if (path_.empty()) return;
    ::chown(path_.c_str(), 0, 0);
    testing::run_command({"losetup", "--detach", path_.string()});
  }
  LoopDevice(const LoopDevice&) = delete;
  LoopDevice& operator=(const LoopDevice&) = delete;
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

// Block-device disks named by a symlink, as /dev/mapper/* and
// /dev/disk/by-* name them, used by the confined QEMU, one read-write and
// one read-only: the plan picks QEMU's host_device driver for what the
// symlink leads to, and the Landlock domain lets QEMU ask the read-write
// one for its read-only flag (BLKROGET: QEMU refuses a read-write block
// device it cannot ask); the read-only one gets no ioctl at all.
TEST(QemuBackend, UsesABlockDeviceDiskNamedByASymlink) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root (the services run as their own uid)";
  if (!fs::exists(kQemu)) GTEST_SKIP() << kQemu << " is not installed";
  const uid_t uid = testing::service_uid();
  testing::TempDir root("vmwarden-qemu-blockdev");
  check(::chmod(root.path().c_str(), 0755), "chmod", root.path().string());
  fs::create_directory(root / "run");
  check(::chown((root / "run").c_str(), uid, uid), "chown", "run");
  testing::write_file(root / "kernel", halting_kernel());
  testing::write_file(root / "disk.img", std::string(1 << 20, '\0'), 0600);
  testing::write_file(root / "base.img", std::string(1 << 20, '\0'), 0600);
  LoopDevice loop(root / "disk.img", uid);
  LoopDevice base(root / "base.img", uid);
  if (loop.path().empty() || base.path().empty()) GTEST_SKIP() << "no loop device here";
  fs::create_symlink(loop.path(), root / "by-name");
  fs::create_symlink(base.path(), root / "base");

  Definition definition;
  definition.name = "blockdev";
  definition.vmm = Vmm::qemu;
  definition.kernel = root / "kernel";
  definition.memory_mib = 32;
  definition.disks = {{root / "by-name", false}, {root / "base", true}};
  Host host = Host::detect();
  host.kvm = false;
  RuntimePaths paths = RuntimePaths::in(root / "run", definition);
  VmmPlan plan = plan_vmm(definition, paths, host);
  Pipe console = make_pipe();
  supervisor::ServiceSpec spec;
  spec.name = "vmm";
  spec.argv = plan.argv;
  UniqueFd control = listen_unix_socket(paths.control_socket, uid, uid);
  spec.fds = {{console.write_end.get(), plan.console_fd}, {control.get(), *plan.control_fd}};
  spec.confinement.uid = spec.confinement.gid = uid;
  spec.confinement.landlock.paths = plan.paths;
  spec.confinement.seccomp.profile = plan.seccomp_profile;
  TestService qemu(spec);
  ASSERT_NO_THROW(plan.wait_ready(qemu, in(30s))) << qemu.output();
  EXPECT_EQ(disks_read_only(paths.control_socket), (std::map<std::string, bool>{{"disk0", false}, {"disk1", true}}));
  plan.force_stop(qemu, in(10s));
  EXPECT_TRUE(qemu.wait_exit(in(5s)));
}

// A QEMU definition named `name` whose kernel, in `root`, is not one.
Definition bogus_kernel_definition(const testing::TempDir& root, const std::string& name) {
  testing::write_file(root / "kernel", "not a kernel at all");
  Definition definition;
  definition.name = name;
  definition.vmm = Vmm::qemu;
  definition.kernel = root / "kernel";
  definition.memory_mib = 32;
  return definition;
}

TEST(QemuBackend, ReadinessFailsWhenQemuExits) {
  if (!fs::exists(kQemu)) GTEST_SKIP() << kQemu << " is not installed";
  testing::TempDir root("vmwarden-qemu-bad");
  Definition definition = bogus_kernel_definition(root, "bad");
  RuntimePaths paths = RuntimePaths::in(root.path(), definition);
  VmmPlan plan = plan_vmm(definition, paths, Host::detect());
  Pipe console = make_pipe();
  UniqueFd control = listen_unix_socket(paths.control_socket, 0, 0);
  supervisor::ServiceSpec spec;
  spec.argv = plan.argv;
  spec.fds = {{console.write_end.get(), plan.console_fd}, {control.get(), *plan.control_fd}};
  TestService qemu(spec, /*confine=*/false);
  try {
    plan.wait_ready(qemu, in(30s));
    FAIL() << "ready with a bogus kernel";
  } catch (const std::runtime_error& e) {
    EXPECT_THAT(e.what(), HasSubstr("exited before it was ready"));
  }
}

// A QMP socket that accepts connections and never answers (a wedged VMM)
// holds a probe for at most its own bound: a stop arriving meanwhile ends
// the wait long before the ready deadline.
TEST(QemuBackend, AStopEndsTheWaitWhenQmpNeverAnswers) {
  if (!fs::exists(kQemu)) GTEST_SKIP() << kQemu << " is not installed";
  testing::TempDir root("vmwarden-qemu-mute");
  Definition definition = bogus_kernel_definition(root, "mute");  // never booted
  RuntimePaths paths = RuntimePaths::in(root.path(), definition);
  VmmPlan plan = plan_vmm(definition, paths, Host::detect());
  // The backlog completes connections nobody accepts: connect() succeeds,
  // the QMP greeting never comes.
  UniqueFd mute = listen_unix_socket(paths.control_socket, 0, 0);
  supervisor::ServiceSpec spec;
  spec.name = "mute-qemu";
  spec.argv = {"/bin/sleep", "300"};
  TestService qemu(spec, /*confine=*/false);
  std::thread stopper([&qemu] {
    std::this_thread::sleep_for(300ms);
    qemu.request_stop();
  });
  testing::WaitOutcome wait = testing::run_wait(plan.wait_ready, qemu);
  stopper.join();
  EXPECT_THAT(wait.error, HasSubstr("stopped while waiting for QEMU")) << "ready without a QMP greeting?";
  EXPECT_LT(wait.took, 60s) << "a probe held the stop to the deadline";
}

}  // namespace
}  // namespace vmwarden::vm
