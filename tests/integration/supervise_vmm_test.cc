// `vmwarden supervise` with crosvm and cloud-hypervisor, which cannot run
// here: their test doubles (tests/doubles) stand in, and everything else is
// real: the UID lease and grants, the warden, a Rust-dialect virtiofsd
// double in its user namespace on a socket the warden bound, readiness
// through the VMM's control socket, and the graceful stop through the VMM's
// own control program (`crosvm powerbtn`, `ch-remote power-button`) run by
// the warden under the VMM's confinement.

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <fmt/core.h>

#include "tests/doubles/double.h"
#include "tests/support/support.h"

namespace vmwarden {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;
using ::testing::Contains;
using ::testing::HasSubstr;
using ::testing::Not;

struct Backend {
  const char* vmm;
  std::vector<std::pair<std::string, std::string>> programs;  // VMWARDEN_* -> double's env name
  const char* process;  // the double's file name
};

class SuperviseVmmTest : public ::testing::TestWithParam<Backend> {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root";
    fs::permissions(root_, fs::perms(0711));
    for (const char* dir : {"config/vms", "state", "run", "private/share", "outside"})
      fs::create_directories(root_ / dir);
    // The share lies below a directory the VM's UID cannot search: its
    // virtiofsd reaches it through its mount under the runtime dir.
    fs::permissions(root_ / "private", fs::perms::owner_all);
    testing::write_file(root_ / "private/share/marker", "the share");
    testing::write_file(root_ / "outside/secret", "not shared");
    testing::write_file(root_ / "vmlinuz", "not booted by a double");
    // Copies of the doubles in the scratch tree: a build tree under /tmp
    // would be hidden from the services, who see /tmp as their own tmpfs.
    fs::create_directories(root_ / "bin");
    for (const char* fake : {"VMWARDEN_FAKE_VIRTIOFSD", "VMWARDEN_FAKE_CROSVM", "VMWARDEN_FAKE_CLOUD_HYPERVISOR",
                             "VMWARDEN_FAKE_CH_REMOTE"}) {
      fs::path source = std::getenv(fake);
      fs::copy_file(source, root_ / "bin" / source.filename());
      doubles_[fake] = (root_ / "bin" / source.filename()).string();
    }
    testing::write_file(root_ / "config/vms/vm.toml",
                        fmt::format("vmm = \"{0}\"\nkernel = \"{1}/vmlinuz\"\ncmdline = \"console=ttyS0\"\n"
                                    "shutdown_timeout_s = 10\n[[share]]\ntag = \"data\"\npath = \"{1}/private/share\"\n"
                                    "access = \"rw\"\n",
                                    GetParam().vmm, root_.string()));
  }

  // The command line of the running process whose executable is `name`
  // and whose arguments name this test's tree.
  std::vector<std::string> find_argv(const std::string& name) const { return find(name).second; }

  // Its pid and command line; {0, {}} if there is none.
  std::pair<pid_t, std::vector<std::string>> find(const std::string& name) const {
    auto named = [&](const std::vector<std::string>& argv) {
      return fs::path(argv[0]).filename() == name && argv.size() > 2 &&
             testing::some_argument_contains(argv, root_.string());
    };
    std::vector<testing::ProcessInfo> found = testing::processes_where(named);
    if (found.empty()) return {0, {}};
    return {found.front().pid, found.front().argv};
  }

  // Starts `vmwarden supervise vm` with the doubles; its stderr goes to
  // root_/log.
  // Starts `vmwarden supervise vm`, its readiness on a pipe that
  // wait_until_ready() reads.
  pid_t start_supervise() {
    int ready[2];
    if (::pipe2(ready, O_CLOEXEC) != 0) return -1;
    ready_ = UniqueFd(ready[0]);
    pid_t outer = ::fork();
    if (outer == 0) {
      // A failed assertion leaves the test early: the VM goes with the test
      // binary at the latest (the warden follows its outer).
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      ::setenv("VMWARDEN_CONFIG_DIR", (root_ / "config").c_str(), 1);
      ::setenv("VMWARDEN_STATE_DIR", (root_ / "state").c_str(), 1);
      ::setenv("VMWARDEN_RUNTIME_DIR", (root_ / "run").c_str(), 1);
      ::setenv("VMWARDEN_VIRTIOFSD", doubles_.at("VMWARDEN_FAKE_VIRTIOFSD").c_str(), 1);
      for (const auto& [variable, fake] : GetParam().programs) ::setenv(variable.c_str(), doubles_.at(fake).c_str(), 1);
      for (const auto& [variable, value] : extra_env_) ::setenv(variable.c_str(), value.c_str(), 1);
      if (umask_) ::umask(*umask_);
      int log = ::open((root_ / "log").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      ::dup2(log, 2);
      ::dup2(ready[1], 3);  // without close-on-exec
      std::string binary = testing::vmwarden_binary();
      ::execl(binary.c_str(), "vmwarden", "supervise", "--notify-fd", "3", "vm", nullptr);
      ::_exit(127);
    }
    ::close(ready[1]);
    return outer;
  }

  // Whether every service of the VM reported ready (the readiness newline)
  // within `timeout`.
  bool wait_until_ready(std::chrono::milliseconds timeout) {
    pollfd entry{ready_.get(), POLLIN, 0};
    char newline = 0;
    return ::poll(&entry, 1, static_cast<int>(timeout.count())) == 1 && ::read(ready_.get(), &newline, 1) == 1 &&
           newline == '\n';
  }

  // The wait status of `outer`, waited for up to `timeout`; SIGKILLed after.
  static int wait_for(pid_t outer, std::chrono::seconds timeout) {
    int status = 0;
    for (auto deadline = Clock::now() + timeout; Clock::now() < deadline;) {
      if (::waitpid(outer, &status, WNOHANG) == outer) return status;
      std::this_thread::sleep_for(10ms);
    }
    testing::kill_process(outer, SIGKILL);
    ::waitpid(outer, &status, 0);
    return status;
  }

  // With a 1 s shutdown timeout and `flags` on the kernel command line (the
  // doubles' guest reads them there): starts the VM, sends SIGTERM once the
  // VMM runs, and returns supervise's wait status.
  // Sends `stop` (SIGTERM: the stop asked for; SIGKILL: the outer dies) to
  // `vmwarden supervise` once the VMM runs, with `flags` on the double's
  // command line; returns the outer's wait status.
  int stop_a_guest_that_ignores(const std::string& flags, int stop = SIGTERM) {
    std::string definition = testing::read_file(root_ / "config/vms/vm.toml");
    definition.replace(definition.find("shutdown_timeout_s = 10"), 23, "shutdown_timeout_s = 1");
    definition.replace(definition.find("console=ttyS0"), 13, "console=ttyS0 " + flags);
    testing::write_file(root_ / "config/vms/vm.toml", definition);
    pid_t outer = start_supervise();
    for (auto deadline = Clock::now() + 20s; Clock::now() < deadline && find(GetParam().process).first == 0;) {
      std::this_thread::sleep_for(10ms);
    }
    EXPECT_GT(find(GetParam().process).first, 0) << testing::read_file(root_ / "log");
    // Stopped before it is ready, the VMM might not listen on its control
    // socket yet, and its own stop, which the tests look for, would fail.
    EXPECT_TRUE(wait_until_ready(20s)) << testing::read_file(root_ / "log");
    EXPECT_EQ(testing::kill_process(outer, stop), 0);
    return wait_for(outer, 20s);
  }

  UniqueFd ready_;  // the read end of the last start_supervise()'s readiness pipe
  std::map<std::string, std::string> doubles_;  // VMWARDEN_FAKE_* -> the copy
  std::map<std::string, std::string> extra_env_;  // set for the next start_supervise()
  std::optional<mode_t> umask_;  // vmwarden's, for the next start_supervise()
  testing::TempDir scratch_{"vmwarden-supervise-vmm"};
  fs::path root_ = scratch_.path();
};

TEST_P(SuperviseVmmTest, StartsVirtiofsdThenTheVmmAndPowersItOffOnSigterm) {
  const Backend& backend = GetParam();
  pid_t outer = start_supervise();
  std::vector<std::string> vmm, daemon;
  for (auto deadline = Clock::now() + 20s; Clock::now() < deadline && vmm.empty();) {
    std::this_thread::sleep_for(10ms);
    vmm = find_argv(backend.process);
  }
  daemon = find_argv("fake-virtiofsd");
  ASSERT_FALSE(vmm.empty()) << testing::read_file(root_ / "log");
  ASSERT_FALSE(daemon.empty()) << "virtiofsd serves while the VMM runs";
  fs::path runtime = root_ / "run/vm";
  // The daemon got the socket the warden bound, and the VMM connects to it.
  EXPECT_THAT(daemon, Contains("--fd=3"));
  // Not the share's path: its mount under the runtime dir.
  EXPECT_THAT(daemon, Contains(fmt::format("--shared-dir={}/mnt/data", runtime.string())));
  std::string joined;
  for (const auto& arg : vmm) joined += arg + " ";
  EXPECT_THAT(joined, HasSubstr((runtime / "fs0.sock").string()));
  // crosvm binds its control socket by path; cloud-hypervisor gets it bound
  // from the warden, as descriptor 4, and the socket is there all the same.
  if (GetParam().vmm == std::string("crosvm"))
    EXPECT_THAT(joined, HasSubstr((runtime / "control.sock").string()));
  else
    EXPECT_THAT(joined, HasSubstr("--api-socket fd=4"));
  // crosvm's is there once it has bound it, which may come just after the
  // process shows in the listing: by its readiness at the latest.
  EXPECT_TRUE(wait_until_ready(20s)) << testing::read_file(root_ / "log");
  EXPECT_TRUE(fs::exists(runtime / "control.sock"));
  EXPECT_THAT(joined, HasSubstr((root_ / "vmlinuz").string()));

  // Each service has a mount namespace, and so a /tmp, of its own: neither
  // the warden's nor the other's.
  // A process seen in a listing may be gone by the time its status is
  // read (one that matched while the VMM service was still starting): the
  // running VMM is the one whose status can be read.
  pid_t vmm_pid = 0, daemon_pid = find("fake-virtiofsd").first;
  std::string vmm_status;
  for (auto deadline = Clock::now() + 5s; Clock::now() < deadline && vmm_status.empty();) {
    vmm_pid = find(backend.process).first;
    try {
      if (vmm_pid > 0) vmm_status = testing::read_file(fmt::format("/proc/{}/status", vmm_pid));
    } catch (const std::exception&) {
      std::this_thread::sleep_for(10ms);
    }
  }
  ASSERT_GT(vmm_pid, 0);
  ASSERT_GT(daemon_pid, 0);
  ASSERT_FALSE(vmm_status.empty());
  // Their stdout and stderr are pipes the warden logs from, never
  // vmwarden's own stderr (here a file; on a terminal the VMM would read the
  // operator's keys and set its modes).
  for (const char* name : {backend.process, "fake-virtiofsd"}) {
    for (int fd : {1, 2}) {
      // Read from whichever process of that name is there (one seen in a
      // listing may have gone, as above).
      std::string target;
      for (auto deadline = Clock::now() + 5s; Clock::now() < deadline && target.empty();) {
        std::error_code error;
        target = fs::read_symlink(fmt::format("/proc/{}/fd/{}", find(name).first, fd), error).string();
        if (target.empty()) std::this_thread::sleep_for(10ms);
      }
      EXPECT_THAT(target, ::testing::StartsWith("pipe:")) << name << " fd " << fd;
    }
  }
  size_t ppid_at = vmm_status.find("PPid:");
  ASSERT_NE(ppid_at, std::string::npos);
  pid_t warden_pid = std::atoi(vmm_status.c_str() + ppid_at + 5);
  ASSERT_GT(warden_pid, 1);
  auto mount_namespace = [](pid_t pid) { return fs::read_symlink(fmt::format("/proc/{}/ns/mnt", pid)).string(); };
  EXPECT_NE(mount_namespace(vmm_pid), mount_namespace(daemon_pid));
  EXPECT_NE(mount_namespace(vmm_pid), mount_namespace(warden_pid));
  EXPECT_NE(mount_namespace(daemon_pid), mount_namespace(warden_pid));
  auto tmp_device = [](pid_t pid) {
    struct stat st {};
    EXPECT_EQ(::stat(fmt::format("/proc/{}/root/tmp", pid).c_str(), &st), 0);
    return st.st_dev;
  };
  EXPECT_NE(tmp_device(vmm_pid), tmp_device(daemon_pid));

  // The daemon's shared dir is the share. Whoever can write the share's
  // parent renames it away and puts a symlink to another directory in its
  // place: the daemon's path still leads to the share.
  fs::path seen = fmt::format("/proc/{}/root{}/mnt/data", daemon_pid, runtime.string());
  EXPECT_EQ(testing::read_file(seen / "marker"), "the share");
  fs::rename(root_ / "private/share", root_ / "private/moved");
  fs::create_directory_symlink(root_ / "outside", root_ / "private/share");
  EXPECT_EQ(testing::read_file(seen / "marker"), "the share");
  EXPECT_FALSE(fs::exists(seen / "secret"));
  fs::remove(root_ / "private/share");
  fs::rename(root_ / "private/moved", root_ / "private/share");

  // The VMM's Landlock rule on the runtime dir would reach the share's copy
  // mounted below it (and its UID holds the grant): the copy is not mounted
  // in the VMM's namespace. The shares are virtiofsd's alone.
  fs::path vmm_view = fmt::format("/proc/{}/root{}/mnt/data", vmm_pid, runtime.string());
  EXPECT_FALSE(fs::exists(vmm_view / "marker")) << "the VMM sees the share";
  EXPECT_TRUE(fs::exists(fmt::format("/proc/{}/root{}/control.sock", vmm_pid, runtime.string())))
      << "the VMM still sees its runtime dir";

  // The daemon, no rule of which is on the runtime dir, sees there only its
  // share's mount point: not the VMM's control socket, which a virtiofsd
  // taken over by its guest would otherwise connect to (it tries by name,
  // once the VMM is connected to it, and writes what it met into the share;
  // Landlock keeps it from listing the directory either way).
  fs::path view = root_ / "private/share/runtime-view";
  for (auto deadline = Clock::now() + 5s; Clock::now() < deadline && !fs::exists(view);)
    std::this_thread::sleep_for(10ms);
  EXPECT_EQ(testing::read_file(view), "control.sock: No such file or directory\n");
  EXPECT_EQ(testing::directory_names(fmt::format("/proc/{}/root{}", daemon_pid, runtime.string())),
            std::vector<std::string>{"mnt"});

  ASSERT_EQ(testing::kill_process(outer, SIGTERM), 0);
  int status = wait_for(outer, 20s);
  std::string log = testing::read_file(root_ / "log");
  ASSERT_TRUE(WIFEXITED(status)) << log;
  EXPECT_EQ(WEXITSTATUS(status), 0) << log;
  EXPECT_THAT(log, HasSubstr("with its graceful stop action"));
  // The stop ran the VMM's control program under the VMM's confinement, and
  // in its mount namespace: the shares' copies were out of its reach.
  EXPECT_FALSE(fs::exists(root_ / "private/share/left-by-a-control-program"))
      << "the VMM's control program wrote into the share";
  EXPECT_FALSE(fs::exists(runtime)) << "the runtime dir goes with the VM";
  EXPECT_TRUE(find_argv(backend.process).empty());
  EXPECT_TRUE(find_argv("fake-virtiofsd").empty());
}

// A guest that writes its console without end (8 MiB here) cannot fill the
// runtime dir's filesystem: the VMM writes into the warden's pipe, and the
// warden keeps the last of it, serial.log and serial.log.1 at most 1 MiB
// each (vm::kSerialLogMaxBytes, doc/VMM.md). The double writes through what
// its argv names (/proc/self/fd/3) from a thread, as a vCPU would.
TEST_P(SuperviseVmmTest, AFloodedConsoleKeepsAtMostTwiceTheCapAndItsLastBytes) {
  constexpr std::uintmax_t kCap = 1 << 20;
  std::string definition = testing::read_file(root_ / "config/vms/vm.toml");
  definition.replace(definition.find("console=ttyS0"), 13, "console=ttyS0 VMWARDEN_FAKE_CONSOLE_FLOOD=1");
  testing::write_file(root_ / "config/vms/vm.toml", definition);
  pid_t outer = start_supervise();
  fs::path runtime = root_ / "run/vm";
  fs::path current = runtime / "serial.log", previous = runtime / "serial.log.1";
  // The warden may rotate serial.log away between any two looks (or between
  // a look and the read): a file not there is "not yet".
  auto ends_the_flood = [&] {
    try {
      return testing::read_file(current).ends_with(double_support::kFloodEnd);
    } catch (const std::exception&) {
      return false;
    }
  };
  bool ended = false;
  for (auto deadline = Clock::now() + 60s; Clock::now() < deadline && !(ended = ends_the_flood());)
    std::this_thread::sleep_for(20ms);
  ASSERT_TRUE(ended) << "the flood's last bytes did not reach serial.log: " << testing::read_file(root_ / "log");

  auto size = [](const fs::path& path) {
    std::error_code error;
    std::uintmax_t bytes = fs::file_size(path, error);
    return error ? std::uintmax_t{0} : bytes;
  };
  std::uintmax_t kept = size(current) + size(previous);
  EXPECT_LE(size(current), kCap);
  EXPECT_EQ(size(previous), kCap) << "rotated once full";
  EXPECT_GT(double_support::kFloodBytes, 4 * kCap) << "the flood must be far more than the cap";
  // What is kept is the end of what was written, in order: numbered lines
  // one after another (the first may be cut), then the end marker.
  std::string text = (fs::exists(previous) ? testing::read_file(previous) : "") + testing::read_file(current);
  EXPECT_EQ(text.size(), kept);
  text.resize(text.size() - double_support::kFloodEnd.size());
  size_t at = text.find('\n') + 1;
  long expected = -1;
  int out_of_order = 0;
  for (size_t end; (end = text.find('\n', at)) != std::string::npos; at = end + 1) {
    long number = std::atol(text.c_str() + at + 13);
    if (expected >= 0 && number != expected) ++out_of_order;
    expected = number + 1;
  }
  EXPECT_EQ(out_of_order, 0);
  EXPECT_EQ(at, text.size()) << "the flood's last line is whole";
  // The VM's UID's, as the file its VMM made was; and no byte of it in the log.
  struct stat file {}, dir {};
  ASSERT_EQ(::stat(current.c_str(), &file), 0);
  ASSERT_EQ(::stat(runtime.c_str(), &dir), 0);
  EXPECT_EQ(file.st_uid, dir.st_uid);
  EXPECT_EQ(file.st_gid, dir.st_gid);
  EXPECT_EQ(file.st_mode & 07777, 0600u);

  ASSERT_EQ(testing::kill_process(outer, SIGTERM), 0);
  int status = wait_for(outer, 20s);
  std::string log = testing::read_file(root_ / "log");
  ASSERT_TRUE(WIFEXITED(status)) << log;
  EXPECT_EQ(WEXITSTATUS(status), 0) << log;
  EXPECT_THAT(log, Not(HasSubstr("console line")));
}

// A compromised VMM owns its runtime directory and, where Landlock is
// missing (faked away here), may put what it likes there: it makes
// serial.log a symlink to a file outside (ROOT/outside/console, root's) and
// serial.log.1 a hard link to that symlink, so that the warden's rotation
// leaves it in place, then floods its console past the cap. The warden
// (root) must not follow it: it refuses to create serial.log over it
// (O_EXCL | O_NOFOLLOW) and drops the rest of the console, the file outside
// untouched and still root's. cloud-hypervisor's runtime directory is
// read-only to it, with or without Landlock: it cannot plant the link, and
// the console is rotated as usual (checked as such).
TEST_P(SuperviseVmmTest, ASerialLogSymlinkIsNotFollowedByTheRotation) {
  const bool can_plant = GetParam().vmm == std::string("crosvm");
  std::string definition = testing::read_file(root_ / "config/vms/vm.toml");
  definition.replace(definition.find("console=ttyS0"), 13,
                     "console=ttyS0 VMWARDEN_FAKE_SERIAL_SYMLINK=1 VMWARDEN_FAKE_CONSOLE_FLOOD=1");
  testing::write_file(root_ / "config/vms/vm.toml", definition + "[sandbox]\nlandlock = \"best-effort\"\n");
  extra_env_["VMWARDEN_LANDLOCK_ABI"] = "0";
  fs::path outside = root_ / "outside/console";
  testing::write_file(outside, "untouched");
  pid_t outer = start_supervise();
  // Done once the warden gave up on the console, or wrote through the link
  // (or, where the link cannot be made, once the console was rotated).
  std::string log;
  fs::path rotated = root_ / "run/vm/serial.log.1";
  for (auto deadline = Clock::now() + 60s; Clock::now() < deadline; std::this_thread::sleep_for(20ms)) {
    std::error_code error;
    log = fs::exists(root_ / "log", error) ? testing::read_file(root_ / "log") : std::string();
    if (log.find("is dropped") != std::string::npos || testing::read_file(outside) != "untouched") break;
    if (!can_plant && log.find("fake VMM: serial.log:") != std::string::npos && fs::exists(rotated, error)) break;
  }
  if (!can_plant) {
    EXPECT_THAT(log, HasSubstr("fake VMM: serial.log: unlink: "));
    EXPECT_THAT(log, Not(HasSubstr("symlink: done"))) << "its runtime directory is read-only to it";
    EXPECT_TRUE(fs::exists(rotated)) << "the console was not rotated: " << log;
    EXPECT_FALSE(fs::is_symlink(root_ / "run/vm/serial.log"));
    EXPECT_EQ(testing::read_file(outside), "untouched");
    ASSERT_EQ(testing::kill_process(outer, SIGTERM), 0);
    int status = wait_for(outer, 20s);
    ASSERT_TRUE(WIFEXITED(status)) << testing::read_file(root_ / "log");
    EXPECT_EQ(WEXITSTATUS(status), 0) << testing::read_file(root_ / "log");
    return;
  }
  EXPECT_THAT(log, HasSubstr("fake VMM: serial.log: unlink: done; symlink: done; link to serial.log.1: done"))
      << "the attack was not made: the test would prove nothing";
  // Compared as a whole, reported by size: what went through would be
  // megabytes of console lines.
  auto untouched = [&] { return testing::read_file(outside) == "untouched"; };
  EXPECT_TRUE(untouched()) << "the warden wrote through the symlink: "
                           << testing::read_file(outside).size() << " bytes there";
  struct stat file {};
  ASSERT_EQ(::stat(outside.c_str(), &file), 0);
  EXPECT_EQ(file.st_uid, 0u);
  EXPECT_THAT(log, HasSubstr("File exists"));
  EXPECT_TRUE(fs::is_symlink(root_ / "run/vm/serial.log")) << "left as the VMM made it";

  ASSERT_EQ(testing::kill_process(outer, SIGTERM), 0);
  int status = wait_for(outer, 20s);
  log = testing::read_file(root_ / "log");
  ASSERT_TRUE(WIFEXITED(status)) << log;
  EXPECT_EQ(WEXITSTATUS(status), 0) << log;
  EXPECT_TRUE(untouched()) << testing::read_file(outside).size() << " bytes there";
}

// A compromised VMM owns the runtime directory. crosvm, which binds its own
// control socket there, has that directory writable; where Landlock is
// missing (landlock = "best-effort" on a kernel without it, faked here) it
// can put a symlink where its control socket should be: the warden (root)
// refuses it before any connect, at readiness already, rather than follow
// it to whatever socket it names. (crosvm's readiness probe once connected
// with no check at all.) With Landlock it cannot make the symlink (below).
// cloud-hypervisor, given its socket by the warden, sees the runtime
// directory read-only even without Landlock: it cannot plant one at all.
TEST_P(SuperviseVmmTest, AControlSocketNamedByASymlinkIsRefusedNotFollowed) {
  std::string definition = testing::read_file(root_ / "config/vms/vm.toml");
  definition.replace(definition.find("console=ttyS0"), 13, "console=ttyS0 VMWARDEN_FAKE_CONTROL_SYMLINK=1");
  testing::write_file(root_ / "config/vms/vm.toml", definition + "[sandbox]\nlandlock = \"best-effort\"\n");
  extra_env_["VMWARDEN_LANDLOCK_ABI"] = "0";
  pid_t outer = start_supervise();
  int status = wait_for(outer, 30s);
  std::string log = testing::read_file(root_ / "log");
  ASSERT_TRUE(WIFEXITED(status)) << log;
  EXPECT_NE(WEXITSTATUS(status), 0) << log;
  if (GetParam().vmm == std::string("crosvm"))
    EXPECT_THAT(log, HasSubstr("is a symlink, not the VMM's socket")) << log;
  else
    EXPECT_THAT(log, HasSubstr("control.sock.real: Read-only file system")) << log;
  EXPECT_FALSE(fs::exists(root_ / "run/vm")) << "the runtime dir goes with the VM";
}

// A VMM taken over by its guest may create nothing in its runtime
// directory but, for crosvm, its control socket: no file (which could fill
// /run), no write to serial.log (which the warden keeps bounded), no
// directory, no symlink. crosvm's rule there is FS_MAKE_SOCK alone (EACCES);
// cloud-hypervisor, given its socket by the warden, has a read-only rule,
// and the directory is a read-only mount for it (EROFS, even without
// Landlock). The control: crosvm with Landlock faked away, where every
// attempt goes through. In every case the warden's tmpfs of the shares'
// mount points, RUNTIME_DIR/NAME/mnt, refuses a file as a read-only mount
// (EROFS), not only by its owner (root) or Landlock (EACCES).
TEST_P(SuperviseVmmTest, AVmmCannotWriteFilesInItsRuntimeDirectory) {
  std::string definition = testing::read_file(root_ / "config/vms/vm.toml");
  definition.replace(definition.find("console=ttyS0"), 13, "console=ttyS0 VMWARDEN_FAKE_FILL_RUNTIME=1");
  auto attempt = [&](bool with_landlock) {
    testing::write_file(root_ / "config/vms/vm.toml",
                        with_landlock ? definition : definition + "[sandbox]\nlandlock = \"best-effort\"\n");
    if (!with_landlock) extra_env_["VMWARDEN_LANDLOCK_ABI"] = "0";
    fs::remove(root_ / "log");  // the earlier attempt's
    pid_t outer = start_supervise();
    std::string line;
    for (auto deadline = Clock::now() + 30s; Clock::now() < deadline && line.empty();) {
      std::error_code error;
      std::string log = fs::exists(root_ / "log", error) ? testing::read_file(root_ / "log") : std::string();
      if (auto at = log.find("fill the runtime directory: "); at != std::string::npos)
        line = log.substr(at, log.find('\n', at) - at);
      std::this_thread::sleep_for(20ms);
    }
    bool junk = fs::exists(root_ / "run/vm/junk");
    testing::kill_process(outer, SIGTERM);
    wait_for(outer, 20s);
    EXPECT_FALSE(line.empty()) << testing::read_file(root_ / "log");
    return std::make_pair(line, junk);
  };
  const bool given_socket = GetParam().vmm != std::string("crosvm");
  // mnt, the tmpfs of the shares' mount points, is read-only in every case:
  // root's, and made read-only by the warden once the points are on it.
  auto refused = [](const char* error) {
    return fmt::format("fill the runtime directory: create junk: {0}; append to serial.log: {0}; mkdir: {0}; "
                       "symlink: {0}; create in mnt: Read-only file system",
                       error);
  };
  auto [denied, junk_made] = attempt(true);
  EXPECT_EQ(denied, refused(given_socket ? "Read-only file system" : "Permission denied"));
  EXPECT_FALSE(junk_made);
  auto [without_landlock, junk_made_without] = attempt(false);
  if (given_socket) {
    EXPECT_EQ(without_landlock, refused("Read-only file system"));
    EXPECT_FALSE(junk_made_without);
  } else {
    EXPECT_EQ(without_landlock, "fill the runtime directory: create junk: done; append to serial.log: done; mkdir: "
                                "done; symlink: done; create in mnt: Read-only file system")
        << "the control changed nothing: the test would prove nothing";
    EXPECT_TRUE(junk_made_without);
  }
}

// A VMM taken over by its guest binding sockets in its runtime directory
// (the host's /run) one after another, before its control socket (so in
// the warden's readiness wait): crosvm, which may bind sockets there, is
// killed with the whole sandbox once there are more than 1,024, and
// supervise exits 1; cloud-hypervisor, whose directory is read-only to it,
// cannot bind the first.
TEST_P(SuperviseVmmTest, AVmmBindingSocketsWithoutEndInItsRuntimeDirectoryIsKilled) {
  std::string definition = testing::read_file(root_ / "config/vms/vm.toml");
  definition.replace(definition.find("console=ttyS0"), 13, "console=ttyS0 VMWARDEN_FAKE_BIND_SOCKETS=1");
  testing::write_file(root_ / "config/vms/vm.toml", definition);
  pid_t outer = start_supervise();
  if (GetParam().vmm == std::string("crosvm")) {
    int status = wait_for(outer, 60s);
    std::string log = testing::read_file(root_ / "log");
    ASSERT_TRUE(WIFEXITED(status)) << log;
    EXPECT_EQ(WEXITSTATUS(status), 1) << log;
    EXPECT_THAT(log, HasSubstr("made more than the 1024 entries it may in its runtime directory " +
                               (root_ / "run/vm").string()));
    EXPECT_THAT(log, Not(HasSubstr("fake VMM: bind socket"))) << "a bind failed before the warden stepped in";
    EXPECT_THAT(log, Not(HasSubstr("did not become ready"))) << "the readiness wait ran its course meanwhile";
  } else {
    EXPECT_TRUE(wait_until_ready(20s)) << testing::read_file(root_ / "log");
    EXPECT_EQ(testing::kill_process(outer, SIGTERM), 0);
    int status = wait_for(outer, 20s);
    std::string log = testing::read_file(root_ / "log");
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << log;
    EXPECT_THAT(log, HasSubstr("fake VMM: bind socket 0: Read-only file system"));
  }
  EXPECT_TRUE(find_argv(GetParam().process).empty());
  EXPECT_FALSE(fs::exists(root_ / "run/vm")) << "the runtime dir goes with the VM";
}

// A guest that ignores the power button: at the shutdown timeout the warden
// stops the VMM with the VMM's own stop command (`crosvm stop`, `ch-remote
// shutdown-vmm`), which lets it exit by itself, before it SIGKILLs anything.
TEST_P(SuperviseVmmTest, AtTheTimeoutTheVmmIsStoppedWithItsOwnStopBeforeSigkill) {
  const Backend& backend = GetParam();
  int status = stop_a_guest_that_ignores("VMWARDEN_FAKE_IGNORE_POWER=1");
  std::string log = testing::read_file(root_ / "log");
  ASSERT_TRUE(WIFEXITED(status)) << log;
  EXPECT_EQ(WEXITSTATUS(status), 0) << "the VMM exited by itself, not by SIGKILL (137): " << log;
  EXPECT_THAT(log, HasSubstr("with its own stop command"));
  EXPECT_TRUE(find_argv(backend.process).empty());
}

// The same when the VMM ignores its stop too: SIGKILL about a second later.
TEST_P(SuperviseVmmTest, AVmmThatIgnoresItsStopIsKilled) {
  const Backend& backend = GetParam();
  int status = stop_a_guest_that_ignores("VMWARDEN_FAKE_IGNORE_POWER=1 VMWARDEN_FAKE_IGNORE_STOP=1");
  std::string log = testing::read_file(root_ / "log");
  ASSERT_TRUE(WIFEXITED(status)) << log;
  EXPECT_EQ(WEXITSTATUS(status), 128 + SIGKILL) << log;
  EXPECT_TRUE(find_argv(backend.process).empty());
}

// With the outer gone (SIGKILL), the warden takes the VM down within its
// short orphan grace: the VMM's own stop gets 200 ms, not the second it gets
// when the outer waits (the runtime dir, and s6's next instance, wait on the
// warden). The VMM ignores both the button and its stop.
TEST_P(SuperviseVmmTest, AnOrphanedVmThatIgnoresItsStopIsKilledWithinTheOrphanGrace) {
  const Backend& backend = GetParam();
  stop_a_guest_that_ignores("VMWARDEN_FAKE_IGNORE_POWER=1 VMWARDEN_FAKE_IGNORE_STOP=1", SIGKILL);
  for (auto deadline = Clock::now() + 20s; Clock::now() < deadline && find(backend.process).first != 0;) {
    std::this_thread::sleep_for(10ms);
  }
  EXPECT_EQ(find(backend.process).first, 0) << "the VMM outlived its warden";
  for (auto deadline = Clock::now() + 20s; Clock::now() < deadline && fs::exists(root_ / "run/vm");) {
    std::this_thread::sleep_for(10ms);
  }
  std::string log = testing::read_file(root_ / "log");
  EXPECT_THAT(log, HasSubstr("with its own stop command, SIGKILL after 200 ms")) << log;
  EXPECT_FALSE(fs::exists(root_ / "run/vm")) << "the warden removes the runtime dir when the outer is gone";
}

// Root's umask (077, as hardened hosts set it) keeps no service from its
// share: the directories on virtiofsd's way to its share's copy, made by
// the warden under the runtime dir, have their modes whatever the umask.
TEST_P(SuperviseVmmTest, RootsUmaskKeepsNoDaemonFromItsShare) {
  umask_ = 077;
  pid_t outer = start_supervise();
  EXPECT_TRUE(wait_until_ready(20s)) << testing::read_file(root_ / "log");
  EXPECT_EQ(testing::kill_process(outer, SIGTERM), 0);
  int status = wait_for(outer, 20s);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status << "\n" << testing::read_file(root_ / "log");
  EXPECT_THAT(testing::read_file(root_ / "log"), Not(HasSubstr("does not exist")));
}

// kill -9 of `vmwarden supervise` at random instants of its start-up, while
// it leases a single-use UID, grants the share, makes its runtime
// directory and starts the warden, virtiofsd and the VMM: within 3 s no
// process of the VM runs and the host's mounts are as before; after one
// sweep no lease, allocation, ACL entry or runtime directory is left.
TEST_P(SuperviseVmmTest, KillNineAtRandomInstantsOfTheStartLeavesNothingASweepDoesNotClear) {
  auto mount_table = [] { return testing::read_file("/proc/self/mountinfo"); };
  // The outer and the warden carry the test's directories in their
  // environment, the services in their arguments.
  auto left_running = [&] {
    std::string left;
    for (const auto& entry : fs::directory_iterator("/proc")) {
      std::string pid = entry.path().filename().string();
      if (pid.find_first_not_of("0123456789") != std::string::npos || std::stoi(pid) == ::getpid()) continue;
      std::string seen;
      try {
        seen = testing::read_proc_file(entry.path() / "cmdline") + testing::read_proc_file(entry.path() / "environ");
      } catch (const std::exception&) {
        continue;  // gone meanwhile
      }
      if (seen.find(root_.string()) != std::string::npos) left += " " + pid;
    }
    return left;
  };
  const std::string mounts_before = mount_table();

  auto started_at = Clock::now();
  pid_t first = start_supervise();
  ASSERT_TRUE(wait_until_ready(20s)) << testing::read_file(root_ / "log");
  auto start_time = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - started_at);
  testing::kill_process(first, SIGTERM);
  wait_for(first, 20s);

  std::mt19937 random(std::random_device{}());
  std::uniform_int_distribution<long> instant(0, 2 * start_time.count());
  constexpr int kRuns = 15;
  for (int run = 0; run < kRuns; ++run) {
    pid_t outer = start_supervise();
    ASSERT_GT(outer, 0);
    std::this_thread::sleep_for(std::chrono::microseconds(instant(random)));
    ASSERT_EQ(testing::kill_process(outer, SIGKILL), 0);
    ASSERT_EQ(::waitpid(outer, nullptr, 0), outer);
    std::string left;
    for (auto deadline = Clock::now() + 3s; Clock::now() < deadline; std::this_thread::sleep_for(10ms)) {
      left = left_running();
      if (left.empty() && mount_table() == mounts_before) break;
    }
    EXPECT_EQ(left, "") << "run " << run << ": processes left 3 s after kill -9";
    EXPECT_EQ(mount_table(), mounts_before) << "run " << run;
  }

  testing::CommandOptions options;
  options.extra_env = {{"VMWARDEN_CONFIG_DIR", (root_ / "config").string()},
                       {"VMWARDEN_STATE_DIR", (root_ / "state").string()},
                       {"VMWARDEN_RUNTIME_DIR", (root_ / "run").string()}};
  testing::CommandResult sweep = testing::run_command({testing::vmwarden_binary(), "acl", "sweep"}, options);
  EXPECT_EQ(sweep.exit_code, 0) << sweep.out << sweep.err;
  EXPECT_EQ(testing::directory_names(root_ / "run"), std::vector<std::string>{"_uid-leases"}) << sweep.out;
  EXPECT_EQ(testing::directory_names(root_ / "run" / "_uid-leases"), std::vector<std::string>{}) << sweep.out;
  EXPECT_EQ(testing::directory_names(root_ / "state" / "uids" / "allocated"), std::vector<std::string>{}) << sweep.out;
  EXPECT_EQ(testing::named_acl_entries(root_ / "private" / "share"), "") << sweep.out;
}

INSTANTIATE_TEST_SUITE_P(
    Doubles, SuperviseVmmTest,
    ::testing::Values(Backend{"crosvm", {{"VMWARDEN_CROSVM", "VMWARDEN_FAKE_CROSVM"}}, "fake-crosvm"},
                      Backend{"cloud-hypervisor",
                              {{"VMWARDEN_CLOUD_HYPERVISOR", "VMWARDEN_FAKE_CLOUD_HYPERVISOR"},
                               {"VMWARDEN_CH_REMOTE", "VMWARDEN_FAKE_CH_REMOTE"}},
                              "fake-cloud-hypervisor"}),
    [](const auto& test_info) { return std::string(test_info.param.vmm == std::string("crosvm") ? "crosvm" : "cloud_hypervisor"); });

}  // namespace
}  // namespace vmwarden
