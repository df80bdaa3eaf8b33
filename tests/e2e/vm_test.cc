// End to end: `vmwarden supervise` boots the real guest image
// (tools/build-guest-image) under QEMU with the real virtiofsd, under the
// full sandbox, and the host checks what the guest did. The guest's init
// (tools/guest-init) runs a script from the read-only share as the VM's UID
// and reports on its serial console and in the read-write share.

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>

#include <fmt/core.h>

#include "tests/e2e/image.h"
#include "tests/support/support.h"

namespace vmwarden {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;
using testing::CommandResult;
using testing::TempDir;
using testing::read_file;
using testing::run_command;
using testing::write_file;
using ::testing::HasSubstr;
using ::testing::Not;

double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

testing::CommandOptions with_timeout(std::chrono::milliseconds timeout) {
  testing::CommandOptions options;
  options.timeout = timeout;
  return options;
}

// Everything but the binary and the image lives in one scratch tree that is
// searchable by the VM's UID.
class VmTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root";
    if (!fs::exists("/usr/bin/qemu-system-x86_64") || !fs::exists("/usr/lib/qemu/virtiofsd"))
      GTEST_SKIP() << "QEMU or virtiofsd is not installed";
    image_ = testing::guest_image();
    fs::permissions(root_, fs::perms(0711));
    for (const char* dir : {"config/vms", "state", "run", "ro", "rw"}) fs::create_directories(root_ / dir);
    uid_ = static_cast<uid_t>(std::stoul(vmwarden({"uid", "alloc", "--alias", "e2e"}).out));
    // The read-only share belongs to the VM's UID and is writable by its
    // mode: only the read-only bind mount stops the guest's writes there.
    ASSERT_EQ(::chown((root_ / "ro").c_str(), uid_, uid_), 0);
    write_file(root_ / "ro/greeting.txt", "hello guest\n");
    // The read-write share is root's and private: the ACL grant lets the VM in.
    fs::permissions(root_ / "rw", fs::perms(0700));
  }

  CommandResult vmwarden(std::vector<std::string> args, std::chrono::milliseconds timeout = 60s) {
    args.insert(args.begin(), testing::vmwarden_binary());
    testing::CommandOptions options;
    options.extra_env = env();
    options.timeout = timeout;
    return run_command(args, options);
  }

  std::map<std::string, std::string> env() const {
    return {{"VMWARDEN_CONFIG_DIR", (root_ / "config").string()},
            {"VMWARDEN_STATE_DIR", (root_ / "state").string()},
            {"VMWARDEN_RUNTIME_DIR", (root_ / "run").string()}};
  }

  // A VM whose guest runs `script` (from the ro share) as the VM's UID.
  fs::path define(const std::string& script, const std::string& guest_flags = "", int timeout_s = 20) {
    write_file(root_ / "ro/run.sh", "#!/bin/sh\n" + script + "\n", 0755);
    fs::path file = root_ / "config/vms/e2e.toml";
    write_file(file, fmt::format(R"TOML(vmm = "qemu"
kernel = "{image}/vmlinuz"
initramfs = "{image}/initrd.img"
cmdline = "console=ttyS0 quiet vmwarden.share=ro@/mnt/ro vmwarden.share=rw@/mnt/rw vmwarden.run=/mnt/ro/run.sh vmwarden.uid={uid} {flags}"
memory_mib = 256
shutdown_timeout_s = {timeout}
[uid]
alias = "e2e"
[[share]]
tag = "ro"
path = "{root}/ro"
access = "ro"
[[share]]
tag = "rw"
path = "{root}/rw"
access = "rw"
)TOML",
                                 fmt::arg("image", image_.string()), fmt::arg("uid", uid_),
                                 fmt::arg("flags", guest_flags), fmt::arg("timeout", timeout_s),
                                 fmt::arg("root", root_.string())));
    return file;
  }

  // `vmwarden supervise` in the background, its stderr in a file.
  pid_t start_supervise() {
    started_ = Clock::now();
    pid_t child = ::fork();
    if (child == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // gone with the test binary at the latest
      for (const auto& [key, value] : env()) ::setenv(key.c_str(), value.c_str(), 1);
      int log = ::open((root_ / "supervise.log").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      ::dup2(log, 1);
      ::dup2(log, 2);
      ::execl(testing::vmwarden_binary().c_str(), "vmwarden", "supervise", "e2e", nullptr);
      ::_exit(127);
    }
    outer_ = child;
    return child;
  }

  // The outer's exit status (128+N for signal N), or nothing at the deadline.
  std::optional<int> wait_outer(std::chrono::milliseconds timeout) {
    auto deadline = Clock::now() + timeout;
    while (Clock::now() < deadline) {
      int status = 0;
      if (::waitpid(outer_, &status, WNOHANG) == outer_) {
        outer_ = 0;
        return WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status);
      }
      std::this_thread::sleep_for(5ms);
    }
    return std::nullopt;
  }

  // Waits for `line` on the guest's serial console (in the runtime dir).
  bool wait_serial(const std::string& line, std::chrono::milliseconds timeout = 120s) {
    auto deadline = Clock::now() + timeout;
    while (Clock::now() < deadline) {
      std::ifstream serial(root_ / "run/e2e/serial.log");
      std::stringstream text;
      text << serial.rdbuf();
      if (text.str().find(line) != std::string::npos) return true;
      if (outer_ == 0) return false;
      std::this_thread::sleep_for(20ms);
    }
    return false;
  }

  std::string log() const { return read_file(root_ / "supervise.log"); }

  // Processes whose command line names this test's scratch tree: the
  // virtiofsd (its shared dir) and QEMU (its sockets) of this VM only.
  std::set<pid_t> processes_of_this_vm() const {
    std::set<pid_t> found;
    auto of_this_vm = [&](const std::vector<std::string>& argv) {
      // s6-svscan names the scandir; it is the test's, not the VM's.
      return testing::some_argument_contains(argv, root_.string()) && !argv[0].starts_with("s6-svscan");
    };
    for (const testing::ProcessInfo& process : testing::processes_where(of_this_vm)) found.insert(process.pid);
    return found;
  }

  void TearDown() override {
    if (outer_ > 0) {
      testing::kill_process(outer_, SIGKILL);
      ::waitpid(outer_, nullptr, 0);
    }
  }

  TempDir scratch_{"vmwarden-e2e"};
  fs::path root_ = scratch_.path();
  fs::path image_;
  uid_t uid_ = 0;
  pid_t outer_ = 0;
  Clock::time_point started_;
};

TEST_F(VmTest, GuestReadsRoShareCannotWriteItAndWritesRwShareAsTheVmUid) {
  define(R"SH(r=/mnt/rw/report
id -u > $r.uid
cat /mnt/ro/greeting.txt > $r.read 2>&1 || echo "read failed" >> $r.read
if (echo x > /mnt/ro/intruder) 2> $r.rowrite; then echo WRITTEN >> $r.rowrite; fi
mkdir /mnt/rw/made && echo data > /mnt/rw/made/file
ls /mnt/rw > /dev/null && echo done > $r.done)SH");
  start_supervise();
  ASSERT_TRUE(wait_serial("vmwarden-guest: ready")) << log();
  fmt::print("cold start to guest init ready: {:.2f} s\n", seconds_since(started_));
  // Without vmwarden.idle the guest powers off after its script.
  auto status = wait_outer(120s);
  ASSERT_TRUE(status) << log();
  EXPECT_EQ(*status, 0) << log();

  EXPECT_EQ(read_file(root_ / "rw/report.uid"), fmt::format("{}\n", uid_));
  EXPECT_EQ(read_file(root_ / "rw/report.read"), "hello guest\n");
  // The guest's kernel let the write through (the directory is the VM's
  // own, mode 0755): the host's read-only bind mount refused it.
  EXPECT_NE(read_file(root_ / "rw/report.rowrite").find("Read-only file system"), std::string::npos)
      << read_file(root_ / "rw/report.rowrite");
  EXPECT_FALSE(fs::exists(root_ / "ro/intruder"));
  struct stat st {};
  ASSERT_EQ(::stat((root_ / "rw/made/file").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, uid_);
  EXPECT_EQ(st.st_gid, uid_);
  EXPECT_EQ(read_file(root_ / "rw/made/file"), "data\n");
  EXPECT_TRUE(fs::exists(root_ / "rw/report.done"));
  // The runtime dir (sockets, serial log) is gone with the VM.
  EXPECT_FALSE(fs::exists(root_ / "run/e2e"));
}

// A guest whose root is hostile sends virtiofsd requests as uid 0 and as
// uids of its choosing. virtiofsd's user namespace maps the VM's UID alone,
// so nothing can be created or given away as another uid, and no device node
// made; what the VM's UID may do (append to its own file) still works, which
// shows the share served guest root's requests at all.
TEST_F(VmTest, GuestRootCannotCreateOrChownAsAnotherUidNorMakeDevices) {
  write_file(root_ / "rw/victim", "host\n", 0644);
  ASSERT_EQ(::chown((root_ / "rw/victim").c_str(), uid_, uid_), 0);
  define(R"SH(cd /mnt/rw
r() { echo "attack: $1 rc=$2"; }
echo guest >> victim; r append $?
echo x > rootfile; r create $?
mkdir rootdir; r mkdir $?
ln -s /etc/shadow link; r symlink $?
chown 0:0 victim; r chown-root $?
chown 4242:4242 victim; r chown-other $?
mknod node c 1 3; r mknod $?
echo "attack: uid=$(id -u)")SH",
         "vmwarden.uid=0 vmwarden.idle=1");
  start_supervise();
  ASSERT_TRUE(wait_serial("vmwarden-guest: exit=")) << log();
  std::string console = read_file(root_ / "run/e2e/serial.log");
  testing::kill_process(outer_, SIGTERM);
  auto status = wait_outer(60s);
  ASSERT_TRUE(status) << log();
  EXPECT_EQ(*status, 0) << log();

  std::istringstream lines(console);
  for (std::string line; std::getline(lines, line);)
    if (line.starts_with("attack:")) fmt::print("{}\n", line);
  EXPECT_THAT(console, HasSubstr("attack: append rc=0")) << console;
  EXPECT_THAT(console, HasSubstr("attack: uid=0")) << "the script ran as guest root: " << console;
  for (const char* attack : {"create", "mkdir", "symlink", "chown-root", "chown-other", "mknod"}) {
    EXPECT_THAT(console, HasSubstr(fmt::format("attack: {} rc=", attack))) << console;
    EXPECT_THAT(console, Not(HasSubstr(fmt::format("attack: {} rc=0", attack)))) << attack << " succeeded";
  }
  EXPECT_EQ(read_file(root_ / "rw/victim"), "host\nguest\n") << "guest root's append as the VM's UID";
  struct stat st {};
  ASSERT_EQ(::lstat((root_ / "rw/victim").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, uid_) << "chown to root or another uid went through";
  EXPECT_EQ(st.st_gid, uid_);
  for (const char* name : {"rootfile", "rootdir", "link", "node"})
    EXPECT_FALSE(fs::exists(fs::symlink_status(root_ / "rw" / name))) << name << " was created by guest root";
}

TEST_F(VmTest, SigtermPowersTheGuestOffThroughTheButtonWithExitZero) {
  define("echo started > /mnt/rw/started", "vmwarden.idle=1", 20);
  start_supervise();
  ASSERT_TRUE(wait_serial("vmwarden-guest: ready")) << log();
  ASSERT_TRUE(wait_serial("vmwarden-guest: exit=0")) << log();
  auto stop = Clock::now();
  ASSERT_EQ(testing::kill_process(outer_, SIGTERM), 0);
  auto status = wait_outer(30s);
  ASSERT_TRUE(status) << log();
  double latency = seconds_since(stop);
  fmt::print("clean shutdown (SIGTERM to exit): {:.2f} s\n", latency);
  EXPECT_EQ(*status, 0) << log();
  EXPECT_LT(latency, 10.0) << "well inside the 20 s timeout";
  EXPECT_NE(log().find("graceful stop action"), std::string::npos) << log();
  EXPECT_TRUE(processes_of_this_vm().empty());
}

// A guest that ignores the ACPI button: at the shutdown timeout QEMU is
// stopped with QMP `quit`, its own stop, and exits by itself (status 0)
// instead of being SIGKILLed.
TEST_F(VmTest, AGuestIgnoringTheButtonIsStoppedWithQmpQuitAtTheTimeout) {
  define("true", "vmwarden.idle=1 vmwarden.ignore_powerbtn=1", 3);
  start_supervise();
  ASSERT_TRUE(wait_serial("vmwarden-guest: exit=0")) << log();
  auto stop = Clock::now();
  ASSERT_EQ(testing::kill_process(outer_, SIGTERM), 0);
  auto status = wait_outer(30s);
  ASSERT_TRUE(status) << log();
  double took = seconds_since(stop);
  EXPECT_EQ(*status, 0) << log();
  EXPECT_GE(took, 2.9);
  EXPECT_NE(log().find("stopping vmm with its own stop command"), std::string::npos) << log();
  EXPECT_EQ(log().find("killed with SIGKILL after the shutdown timeout"), std::string::npos) << log();
  EXPECT_TRUE(processes_of_this_vm().empty());
}

TEST_F(VmTest, KillingTheOuterLeavesNoProcessMountOrSocket) {
  define("true", "vmwarden.idle=1", 20);
  start_supervise();
  ASSERT_TRUE(wait_serial("vmwarden-guest: exit=0")) << log();
  std::set<pid_t> before = processes_of_this_vm();
  EXPECT_GE(before.size(), 3u) << "two virtiofsd and QEMU";
  // Everything under the outer, the warden (which names no path) included.
  // The sandbox's mounts live only in its processes' namespaces: with the
  // last of them gone, so are they.
  std::set<pid_t> tree = testing::process_tree(outer_);
  tree.erase(outer_);
  ASSERT_GE(tree.size(), 4u) << "the warden, two virtiofsd and QEMU";
  ASSERT_EQ(testing::kill_process(outer_, SIGKILL), 0);
  ASSERT_TRUE(wait_outer(5s));
  auto all_gone = [&] {
    return processes_of_this_vm().empty() &&
           std::all_of(tree.begin(), tree.end(), [](pid_t pid) { return testing::process_gone(pid); });
  };
  auto deadline = Clock::now() + 2s;
  while (!all_gone() && Clock::now() < deadline) std::this_thread::sleep_for(10ms);
  EXPECT_TRUE(processes_of_this_vm().empty());
  for (pid_t pid : tree) EXPECT_TRUE(testing::process_gone(pid)) << "pid " << pid << " of the sandbox is left";
  // The warden removes the runtime dir (sockets included) once the outer is gone.
  deadline = Clock::now() + 2s;
  while (fs::exists(root_ / "run/e2e") && Clock::now() < deadline) std::this_thread::sleep_for(10ms);
  EXPECT_FALSE(fs::exists(root_ / "run/e2e"));
}

TEST_F(VmTest, KillingAVirtiofsdShutsTheVmDown) {
  define("true", "vmwarden.idle=1", 5);
  start_supervise();
  ASSERT_TRUE(wait_serial("vmwarden-guest: exit=0")) << log();
  pid_t daemon = 0;
  for (pid_t pid : processes_of_this_vm()) {
    std::string cmdline = testing::read_proc_file(fmt::format("/proc/{}/cmdline", pid));
    if (cmdline.find("virtiofsd") != std::string::npos && cmdline.find("/rw") != std::string::npos) daemon = pid;
  }
  ASSERT_GT(daemon, 0);
  ASSERT_EQ(testing::kill_process(daemon, SIGKILL), 0);
  auto status = wait_outer(30s);
  ASSERT_TRUE(status) << log();
  EXPECT_NE(log().find("virtiofsd-rw"), std::string::npos) << log();
  EXPECT_NE(log().find("was killed by SIGKILL while the sandbox was running"), std::string::npos) << log();
  EXPECT_TRUE(processes_of_this_vm().empty());
  EXPECT_FALSE(fs::exists(root_ / "run/e2e"));
}


// The guest as an s6 service: s6-svwait -U returns once QEMU runs the guest
// and both virtiofsd serve, s6-svc -d powers it off through the button.
TEST_F(VmTest, UnderS6ReadinessMeansTheGuestRunsAndDownPowersItOff) {
  if (!fs::exists("/usr/bin/s6-svscan")) GTEST_SKIP() << "s6 is not installed";
  define("echo up > /mnt/rw/up", "vmwarden.idle=1", 20);
  fs::create_directories(root_ / "scandir");
  CommandResult written = vmwarden({"s6", "service", "e2e", "--scandir", (root_ / "scandir").string(), "--log"});
  ASSERT_EQ(written.exit_code, 0) << written.err;
  fs::path service = root_ / "scandir/e2e";
  // Written down, so that the test decides when it starts.
  write_file(service / "down", "");
  pid_t svscan = ::fork();
  if (svscan == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);  // see S6Test::SetUp
    ::execl("/usr/bin/s6-svscan", "s6-svscan", (root_ / "scandir").c_str(), nullptr);
    ::_exit(127);
  }
  auto stop_scanner = [&] {
    run_command({"s6-svscanctl", "-t", (root_ / "scandir").string()});
    for (int i = 0; i < 3000 && ::waitpid(svscan, nullptr, WNOHANG) == 0; ++i) std::this_thread::sleep_for(10ms);
    if (::waitpid(svscan, nullptr, WNOHANG) == 0) {
      testing::kill_process(svscan, SIGKILL);
      ::waitpid(svscan, nullptr, 0);
    }
  };
  bool supervised = false;
  for (int i = 0; i < 500 && !supervised; ++i) {
    // s6-svc and s6-svwait need the control fifo, the event fifodir and the status file.
    supervised = run_command({"s6-svok", service.string()}).exit_code == 0 && fs::exists(service / "event") &&
                 fs::exists(service / "supervise/status");
    if (!supervised) std::this_thread::sleep_for(10ms);
  }
  ASSERT_TRUE(supervised);
  outer_ = -1;  // the outer is s6-supervise's child, not ours: wait_serial keeps waiting

  auto start = Clock::now();
  run_command({"s6-svc", "-u", service.string()});
  CommandResult ready = run_command({"s6-svwait", "-U", "-t", "60000", service.string()}, with_timeout(70s));
  double up = seconds_since(start);
  EXPECT_EQ(ready.exit_code, 0) << ready.err;
  // Ready: QEMU answers QMP with "running", and both daemons serve it.
  EXPECT_GE(processes_of_this_vm().size(), 3u);
  fmt::print("under s6: s6-svc -u to ready {:.2f} s\n", up);
  EXPECT_TRUE(wait_serial("vmwarden-guest: exit=0", 120s));

  auto stop = Clock::now();
  run_command({"s6-svc", "-d", service.string()});
  CommandResult down = run_command({"s6-svwait", "-D", "-t", "30000", service.string()}, with_timeout(40s));
  double latency = seconds_since(stop);
  EXPECT_EQ(down.exit_code, 0) << down.err;
  fmt::print("under s6: s6-svc -d to down {:.2f} s\n", latency);
  EXPECT_EQ(run_command({"s6-svstat", "-o", "up,exitcode", service.string()}).out, "false 0\n");
  EXPECT_TRUE(processes_of_this_vm().empty());
  EXPECT_EQ(read_file(root_ / "rw/up"), "up\n");
  std::string log = read_file(service / "log/main/current");
  EXPECT_NE(log.find("graceful stop action"), std::string::npos) << log;
  stop_scanner();
}

// `vmwarden demo` end to end, on the test image (its builder a no-op). It
// names the acceleration the VMM gets, as the launch decides it: the VMM
// runs as the VM's UID, so root's own access to /dev/kvm says nothing.
TEST_F(VmTest, DemoPassesAndNamesTheAccelerationTheVmmGets) {
  fs::create_directories(root_ / "state/demo/image");
  for (const char* file : {"vmlinuz", "initrd.img"}) fs::copy_file(image_ / file, root_ / "state/demo/image" / file);
  testing::CommandOptions options;
  options.extra_env = env();
  options.extra_env["VMWARDEN_IMAGE_BUILDER"] = "/bin/true";
  options.extra_env["VMWARDEN_NO_KVM"] = "1";
  options.timeout = 300s;
  CommandResult demo = run_command({testing::vmwarden_binary(), "demo"}, options);
  EXPECT_EQ(demo.exit_code, 0) << demo.out << demo.err;
  EXPECT_THAT(demo.out, HasSubstr("VM \"demo\": QEMU (TCG")) << demo.out;
  EXPECT_THAT(demo.out, HasSubstr("demo passed")) << demo.out;
}

}  // namespace
}  // namespace vmwarden
