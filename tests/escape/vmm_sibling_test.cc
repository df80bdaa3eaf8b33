// A compromised VMM against the VM's real virtiofsd, through the real
// `vmwarden supervise`: the attacker (tests/escape/attacker.cc, which plays
// a compromised VMM when started with QEMU's arguments) is put where QEMU
// runs (VMWARDEN_QEMU). It runs as the VM's uid under the VMM's own
// confinement (mount namespace, Landlock domain, qemu seccomp profile),
// while the real virtiofsd serves the VM's share beside it as the same uid.
// Its reports reach the log as the warden's "vmm fd 1: ..." lines.
//
// Each attack is shown refused, then shown to work in the same sandbox with
// Landlock dropped (`landlock = "best-effort"` with the testing aid
// VMWARDEN_LANDLOCK_ABI=0), so that none passes vacuously: same uid, and
// the VMM owns virtiofsd's user namespace, so only the VMM's Landlock domain
// keeps it from virtiofsd and, through /proc/PID/root, from the share.
#include <sys/stat.h>
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include <fmt/core.h>

#include "tests/escape/escape_support.h"
#include "tests/support/support.h"

namespace vmwarden::escape {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using testing::CommandOptions;
using testing::CommandResult;
using testing::TempDir;

class VmmSiblingTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fs::permissions(root_.path(), fs::perms(0711));
    for (const char* dir : {"config/vms", "state", "run", "private/share"}) fs::create_directories(root_ / dir);
    // Only the grant lets the VM's uid in; virtiofsd reaches the share
    // through its mount under the runtime dir.
    fs::permissions(root_ / "private", fs::perms::owner_all);
    testing::write_file(root_ / "private/share/marker", "the share\n");
    testing::write_file(root_ / "vmlinuz", "never booted\n");
    std::string definition = fmt::format(
        "vmm = \"qemu\"\nkernel = \"{0}/vmlinuz\"\nmemory_mib = 128\n"
        "[[share]]\ntag = \"data\"\npath = \"{0}/private/share\"\naccess = \"ro\"\n",
        root_.path().string());
    testing::write_file(root_ / "config/vms/vm.toml", definition);
    testing::write_file(root_ / "config/vms/open.toml", definition + "[sandbox]\nlandlock = \"best-effort\"\n");
  }

  // `vmwarden supervise NAME` with the attacker as its QEMU; its log.
  std::string supervise(const std::string& name, bool without_landlock) {
    CommandOptions options;
    options.extra_env = {{"VMWARDEN_CONFIG_DIR", (root_ / "config").string()},
                         {"VMWARDEN_STATE_DIR", (root_ / "state").string()},
                         {"VMWARDEN_RUNTIME_DIR", (root_ / "run").string()},
                         {"VMWARDEN_QEMU", tools_.attacker().string()}};
    if (without_landlock) options.extra_env["VMWARDEN_LANDLOCK_ABI"] = "0";
    options.timeout = std::chrono::milliseconds(60'000);
    CommandResult result = testing::run_command({testing::vmwarden_binary(), "supervise", name}, options);
    // The attacker made every attempt and exited by itself: no seccomp kill
    // cut the list short.
    EXPECT_THAT(result.err, HasSubstr("vmm fd 1: tgkill: ")) << result.err;
    EXPECT_THAT(result.err, ::testing::ContainsRegex("vmm \\(pid [0-9]+\\) exited with status 0")) << result.err;
    // Gone before it was ready: it is not asked to power off through its
    // control socket, which nobody serves any more.
    EXPECT_THAT(result.err, HasSubstr("vmm did not become ready: QEMU exited before it was ready")) << result.err;
    EXPECT_THAT(result.err, ::testing::Not(HasSubstr("graceful stop of vmm"))) << result.err;
    return result.err;
  }

  Tools tools_;
  TempDir root_{"vmwarden-vmm-sibling"};
};

TEST_F(VmmSiblingTest, ACompromisedVmmCanNeitherSignalTheRealVirtiofsdNorReachTheShareThroughIt) {
  std::string open = supervise("open", /*without_landlock=*/true);
  // The control: the sibling is the real virtiofsd, and without Landlock
  // the VMM signals it and reads the share through its root.
  // Said once per service, not once per check.
  auto count = [&](const std::string& text) {
    std::size_t n = 0;
    for (std::size_t at = open.find(text); at != std::string::npos; at = open.find(text, at + 1)) ++n;
    return n;
  };
  EXPECT_EQ(count("vmm: landlock = \"best-effort\": dropped Landlock"), 1u) << open;
  EXPECT_EQ(count("virtiofsd-data: landlock = \"best-effort\": dropped Landlock"), 1u) << open;
  EXPECT_THAT(open, HasSubstr("vmm fd 1: sibling comm: ok virtiofsd")) << open;
  EXPECT_THAT(open, HasSubstr("vmm fd 1: proc-root: ok the share")) << open;
  EXPECT_THAT(open, HasSubstr("vmm fd 1: tgkill: ok")) << open;

  std::string confined = supervise("vm", /*without_landlock=*/false);
  // Same sandbox, the VMM in its Landlock domain: virtiofsd, outside it,
  // is out of its reach, not even visible in /proc (hidepid=invisible hides
  // what it may not ptrace-read), and the signal scope refuses the signal.
  EXPECT_THAT(confined, ::testing::Not(HasSubstr("dropped Landlock"))) << confined;
  EXPECT_THAT(confined, HasSubstr("vmm fd 1: sibling comm: ENOENT")) << confined;
  EXPECT_THAT(confined, HasSubstr("vmm fd 1: proc-root: ENOENT")) << confined;
  EXPECT_THAT(confined, HasSubstr("vmm fd 1: tgkill: EPERM")) << confined;
  EXPECT_THAT(confined, ::testing::Not(HasSubstr("the share"))) << confined;
}

}  // namespace
}  // namespace vmwarden::escape
