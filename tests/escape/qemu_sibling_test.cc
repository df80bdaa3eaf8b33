// A compromised virtiofsd against the VM's real QEMU, through the real
// `vmwarden supervise`: the attacker (tests/escape/attacker.cc, which plays
// a compromised virtiofsd when started with the Rust virtiofsd's arguments)
// is put where virtiofsd runs (VMWARDEN_VIRTIOFSD), and the real
// qemu-system-x86_64 (TCG) runs as the VMM beside it, as the same uid. The
// attacker runs under virtiofsd's own confinement: a user namespace of its
// own over the VM's uid, its mount namespace (the runtime directory covered
// by an empty tmpfs holding only its share), its Landlock domain and the
// vm-daemon seccomp profile. Its reports reach the log as the warden's
// "virtiofsd-data fd 1: ..." lines.
//
// QEMU, realizing the vhost-user-fs device, waits for the daemon's answer
// to its first request for as long as it takes: the attacker reads that
// request and does not answer, so every attack meets a live QEMU in a known
// state (its QMP monitor up, the guest not started; the kernel is 8 KiB of
// zeros, which QEMU loads as an old zImage without looking further). Then
// it closes the connection and QEMU exits (status 1) before it was ready;
// the last attack (SIGKILL through SIGIO), which kills QEMU where it
// works, comes just before.
//
// Each attack is shown refused, then run again in the same sandbox with
// Landlock dropped and seccomp only logging (`landlock = "best-effort"`
// with the testing aid VMWARDEN_LANDLOCK_ABI=0, `seccomp = "log"`). The
// signals (kill, tgkill, pidfd_send_signal, SIGIO) then go through:
// Landlock's scope alone stops them. What needs ptrace access to QEMU (its
// /proc entry, environ, mem, root, an attach) is still refused there, by
// virtiofsd's user namespace: a tracer must be in the target's user
// namespace or hold CAP_SYS_PTRACE over it, and QEMU's is the host's. So that this refusal is not vacuous, the test, while the
// attacker holds QEMU, runs the same attacks in QEMU's PID and mount
// namespaces as the VM's uid in the host's user namespace without Landlock
// (nsenter, setpriv): they work. QEMU's QMP socket, which virtiofsd's
// runtime directory (an empty tmpfs) does not show, is reached there
// through /proc/PID/root.
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <fmt/core.h>

#include "tests/escape/escape_support.h"
#include "tests/support/support.h"

namespace vmwarden::escape {
namespace {

namespace fs = std::filesystem;
using ::testing::ContainsRegex;
using ::testing::HasSubstr;
using ::testing::Not;
using testing::CommandOptions;
using testing::CommandResult;
using testing::TempDir;

constexpr const char* kQemu = "/usr/bin/qemu-system-x86_64";

class QemuSiblingTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root";
    if (!fs::exists(kQemu)) GTEST_SKIP() << "QEMU is not installed";
    fs::permissions(root_.path(), fs::perms(0711));
    for (const char* dir : {"config/vms", "state", "run", "private/share"}) fs::create_directories(root_ / dir);
    fs::permissions(root_ / "private", fs::perms::owner_all);
    testing::write_file(root_ / "private/share/marker", "the share\n");
    std::ofstream(root_ / "vmlinuz", std::ios::binary) << std::string(8192, '\0');
    std::string definition = fmt::format(
        "vmm = \"qemu\"\nkernel = \"{0}/vmlinuz\"\nmemory_mib = 128\n"
        "[[share]]\ntag = \"data\"\npath = \"{0}/private/share\"\naccess = \"ro\"\n",
        root_.path().string());
    testing::write_file(root_ / "config/vms/vm.toml", definition);
    testing::write_file(root_ / "config/vms/open.toml",
                        definition + "[sandbox]\nlandlock = \"best-effort\"\nseccomp = \"log\"\n");
  }

  // `vmwarden supervise NAME` with the attacker as its virtiofsd and the
  // real QEMU; the log. `while_held` runs while the attacker holds QEMU.
  std::string supervise(const std::string& name, bool without_landlock,
                        const std::function<void()>& while_held = {}) {
    CommandOptions options;
    options.extra_env = {{"VMWARDEN_CONFIG_DIR", (root_ / "config").string()},
                         {"VMWARDEN_STATE_DIR", (root_ / "state").string()},
                         {"VMWARDEN_RUNTIME_DIR", (root_ / "run").string()},
                         {"VMWARDEN_QEMU", kQemu},
                         {"VMWARDEN_VIRTIOFSD", tools_.attacker().string()}};
    if (without_landlock) options.extra_env["VMWARDEN_LANDLOCK_ABI"] = "0";
    options.timeout = std::chrono::milliseconds(60'000);
    fs::path release = root_ / "private/share/release";
    fs::remove(release);
    if (!while_held) testing::write_file(release, "");
    CommandResult result;
    std::thread run([&] { result = testing::run_command({testing::vmwarden_binary(), "supervise", name}, options); });
    if (while_held) {
      while_held();
      testing::write_file(release, "");
    }
    run.join();
    // The attacker met QEMU, made every attempt and exited by itself: no
    // seccomp kill cut the list short.
    EXPECT_THAT(result.err, ContainsRegex("virtiofsd-data fd 1: qemu: pid [0-9]+, request 1")) << result.err;
    EXPECT_THAT(result.err, HasSubstr("virtiofsd-data fd 1: done")) << result.err;
    EXPECT_THAT(result.err, HasSubstr("virtiofsd-data fd 1: end")) << result.err;
    EXPECT_THAT(result.err, ContainsRegex("virtiofsd-data \\(pid [0-9]+\\) exited with status 0")) << result.err;
    EXPECT_THAT(result.err, HasSubstr("vmm did not become ready: QEMU exited before it was ready")) << result.err;
    return result.err;
  }

  // This test's QEMU, seen from the host: its pid, its pid in the sandbox,
  // its uid (the VM's). Only a QEMU whose kernel is this test's.
  struct Qemu {
    std::string pid, sandbox_pid, uid;
  };
  Qemu find_qemu() {
    std::string kernel = (root_ / "vmlinuz").string();
    for (int attempt = 0; attempt < 400; ++attempt) {
      for (const auto& entry : fs::directory_iterator("/proc", fs::directory_options::skip_permission_denied)) {
        std::string pid = entry.path().filename();
        if (pid.find_first_not_of("0123456789") != std::string::npos) continue;
        std::string cmdline, status;
        try {
          cmdline = testing::read_file(entry.path() / "cmdline");
          status = testing::read_file(entry.path() / "status");
        } catch (const std::exception&) {
          continue;  // gone meanwhile
        }
        if (cmdline.rfind(std::string(kQemu) + '\0', 0) != 0 || cmdline.find(kernel) == std::string::npos) continue;
        // The `index`th value of a "Name:\tA\tB..." line of the status.
        auto field = [&](const std::string& name, int index) {
          std::istringstream lines(status);
          for (std::string line; std::getline(lines, line);) {
            std::istringstream words(line);
            std::string word;
            words >> word;
            if (word != name + ":") continue;
            for (int i = 0; i <= index && words >> word; ++i) {
            }
            return word;
          }
          return std::string();
        };
        return {pid, field("NSpid", 1), field("Uid", 0)};
      }
      ::usleep(50'000);
    }
    ADD_FAILURE() << "no QEMU with kernel " << kernel;
    return {};
  }

  // The attacker's subcommand `args` as `qemu`'s uid, in its PID and mount
  // namespaces, in the host's user namespace, without Landlock or seccomp.
  CommandResult beside_qemu(const Qemu& qemu, const std::vector<std::string>& args) {
    std::vector<std::string> argv = {"/usr/bin/nsenter", "-t", qemu.pid, "-p", "-m", "--",
                                     "/usr/bin/setpriv", "--reuid=" + qemu.uid, "--regid=" + qemu.uid,
                                     "--clear-groups", tools_.attacker().string()};
    argv.insert(argv.end(), args.begin(), args.end());
    return testing::run_command(argv);
  }

  Tools tools_;
  TempDir root_{"vmwarden-qemu-sibling"};
};

TEST_F(QemuSiblingTest, ACompromisedVirtiofsdCanNeitherSignalNorInspectNorDriveTheRealQemu) {
  std::vector<CommandResult> beside;
  std::string open = supervise("open", /*without_landlock=*/true, [&] {
    Qemu qemu = find_qemu();
    if (qemu.pid.empty()) return;
    std::string qmp = "/proc/" + qemu.sandbox_pid + "/root" + (root_ / "run/open/control.sock").string();
    for (const std::vector<std::string>& args : {std::vector<std::string>{"proc-read", qemu.sandbox_pid, "environ"},
                                                 {"connect-path", qmp},
                                                 {"ptrace", qemu.sandbox_pid}})
      beside.push_back(beside_qemu(qemu, args));
  });
  // The control: the daemon without Landlock, seccomp only logging. The
  // signal scope was all that kept its signals from QEMU.
  EXPECT_THAT(open, HasSubstr("virtiofsd-data: landlock = \"best-effort\": dropped Landlock")) << open;
  EXPECT_THAT(open, HasSubstr("virtiofsd-data fd 1: kill: ok")) << open;
  EXPECT_THAT(open, HasSubstr("virtiofsd-data fd 1: tgkill: ok")) << open;
  EXPECT_THAT(open, HasSubstr("virtiofsd-data fd 1: pidfd_send_signal: ok")) << open;
  EXPECT_THAT(open, HasSubstr("virtiofsd-data fd 1: sigio: ok QEMU killed")) << open;
  EXPECT_THAT(open, ContainsRegex("vmm \\(pid [0-9]+\\) was killed by SIGKILL")) << open;
  // What needs ptrace access is refused by its user namespace all the same
  // (hidepid=invisible hides what it may not ptrace-read).
  EXPECT_THAT(open, HasSubstr("virtiofsd-data fd 1: proc-list: ENOENT")) << open;
  EXPECT_THAT(open, HasSubstr("virtiofsd-data fd 1: qemu comm: ENOENT")) << open;
  EXPECT_THAT(open, HasSubstr("virtiofsd-data fd 1: environ: ENOENT")) << open;
  EXPECT_THAT(open, HasSubstr("virtiofsd-data fd 1: mem: ENOENT")) << open;
  EXPECT_THAT(open, HasSubstr("virtiofsd-data fd 1: proc-root: ENOENT")) << open;
  EXPECT_THAT(open, HasSubstr("virtiofsd-data fd 1: proc-root qmp: ENOENT")) << open;
  EXPECT_THAT(open, HasSubstr("virtiofsd-data fd 1: ptrace: EPERM")) << open;
  // The runtime directory as the daemon sees it, even without Landlock: an
  // empty tmpfs but for the mount point of its share; no QMP socket there.
  EXPECT_THAT(open, HasSubstr("virtiofsd-data fd 1: runtime dir: ok mnt\n")) << open;
  EXPECT_THAT(open, HasSubstr("virtiofsd-data fd 1: qmp: ENOENT")) << open;
  // Beside the held QEMU as its uid, in its user namespace, no Landlock:
  // the same attacks work, so the refusals above are not vacuous.
  ASSERT_EQ(beside.size(), 3u);
  EXPECT_THAT(beside[0].out, ::testing::StartsWith("ok read /proc/")) << beside[0].out << beside[0].err;
  EXPECT_EQ(beside[1].out, "ok connected\n") << beside[1].out << beside[1].err;
  EXPECT_EQ(beside[2].out, "ok attached\n") << beside[2].out << beside[2].err;

  std::string confined = supervise("vm", /*without_landlock=*/false);
  // Same sandbox, the daemon in its Landlock domain: QEMU, outside it, is
  // out of its reach, not even visible in /proc, the signal scope refuses
  // every signal, and seccomp kills a ptrace.
  EXPECT_THAT(confined, Not(HasSubstr("dropped Landlock"))) << confined;
  EXPECT_THAT(confined, HasSubstr("virtiofsd-data fd 1: proc-list: EACCES")) << confined;
  EXPECT_THAT(confined, HasSubstr("virtiofsd-data fd 1: qemu comm: ENOENT")) << confined;
  EXPECT_THAT(confined, HasSubstr("virtiofsd-data fd 1: environ: ENOENT")) << confined;
  EXPECT_THAT(confined, HasSubstr("virtiofsd-data fd 1: mem: ENOENT")) << confined;
  EXPECT_THAT(confined, HasSubstr("virtiofsd-data fd 1: proc-root: ENOENT")) << confined;
  EXPECT_THAT(confined, HasSubstr("virtiofsd-data fd 1: proc-root qmp: ENOENT")) << confined;
  EXPECT_THAT(confined, HasSubstr("virtiofsd-data fd 1: runtime dir: EACCES")) << confined;
  EXPECT_THAT(confined, HasSubstr("virtiofsd-data fd 1: qmp: ENOENT")) << confined;
  EXPECT_THAT(confined, HasSubstr("virtiofsd-data fd 1: kill: EPERM")) << confined;
  EXPECT_THAT(confined, HasSubstr("virtiofsd-data fd 1: tgkill: EPERM")) << confined;
  EXPECT_THAT(confined, HasSubstr("virtiofsd-data fd 1: pidfd_send_signal: EPERM")) << confined;
  EXPECT_THAT(confined, HasSubstr("virtiofsd-data fd 1: ptrace: killed by SIGSYS")) << confined;
  EXPECT_THAT(confined, HasSubstr("virtiofsd-data fd 1: sigio: QEMU alive a second later")) << confined;
  // QEMU, left unanswered, gave the device up once the connection closed.
  EXPECT_THAT(confined, HasSubstr("vhost_backend_init failed")) << confined;
  EXPECT_THAT(confined, ContainsRegex("vmm \\(pid [0-9]+\\) exited with status 1")) << confined;
  // No abstract socket in the sandbox's network namespace, QEMU's or the
  // warden's, to try.
  EXPECT_THAT(confined, HasSubstr("virtiofsd-data fd 1: abstract sockets: 0")) << confined;
}

}  // namespace
}  // namespace vmwarden::escape
