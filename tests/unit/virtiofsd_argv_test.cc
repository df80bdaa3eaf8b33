// virtiofsd command lines in both dialects, their rules and capabilities,
// and dialect detection against the real C virtiofsd and a Rust-dialect
// double.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <linux/capability.h>

#include <algorithm>
#include <cstdlib>

#include "common/error.h"
#include "tests/support/support.h"
#include "virtiofs-glue/virtiofsd.h"

namespace vmwarden::virtiofs {
namespace {

using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;
using ::testing::UnorderedElementsAre;

Share share(Dialect dialect) {
  Share share;
  share.binary = dialect == Dialect::c ? "/usr/lib/qemu/virtiofsd" : "/usr/libexec/virtiofsd";
  share.dialect = dialect;
  share.tag = "home";
  share.shared_dir = "/home/user/work";
  share.readonly = false;
  share.socket = "/run/vmwarden/work/fs0.sock";
  return share;
}

TEST(VirtiofsdArgv, CDialectWithListeningFd) {
  Share s = share(Dialect::c);
  s.listen_fd = 3;
  DaemonPlan plan = plan_virtiofsd(s);
  EXPECT_THAT(plan.argv, ElementsAre("/usr/lib/qemu/virtiofsd", "--fd=3", "-o", "source=/home/user/work", "-o",
                                     "sandbox=chroot", "-o", "cache=auto", "-o", "xattr", "-o", "posix_acl", "-o",
                                     "modcaps=-mknod:-setfcap", "-o", "log_level=warn", "--rlimit-nofile=0"));
  EXPECT_EQ(plan.seccomp_profile, "virtiofsd");
  EXPECT_THAT(plan.keep_capabilities, UnorderedElementsAre(CAP_CHOWN, CAP_DAC_OVERRIDE, CAP_FOWNER, CAP_FSETID,
                                                           CAP_SETGID, CAP_SETUID, CAP_SETPCAP, CAP_SYS_CHROOT));
}

TEST(VirtiofsdArgv, CDialectCreatingItsSocketIsReadOnlyOnlyThroughRules) {
  Share s = share(Dialect::c);
  s.readonly = true;
  DaemonPlan plan = plan_virtiofsd(s);
  EXPECT_EQ(plan.argv[1], "--socket-path=/run/vmwarden/work/fs0.sock");
  // The C daemon has no read-only flag: nothing in its argv says so...
  for (const auto& arg : plan.argv) EXPECT_THAT(arg, ::testing::Not(HasSubstr("readonly")));
  // ...its Landlock rule does (and the caller's read-only bind mount).
  auto share_rule = std::find_if(plan.paths.begin(), plan.paths.end(),
                                 [](const auto& rule) { return rule.path == "/home/user/work"; });
  ASSERT_NE(share_rule, plan.paths.end());
  EXPECT_TRUE(share_rule->rights.read);
  EXPECT_FALSE(share_rule->rights.write);
  // It creates its socket and a pid file in /var/run/virtiofsd.
  auto has = [&](const char* path) {
    return std::any_of(plan.paths.begin(), plan.paths.end(),
                       [&](const auto& rule) { return rule.path == path && rule.rights.write; });
  };
  EXPECT_TRUE(has("/run/vmwarden/work"));
  EXPECT_TRUE(has("/var/run/virtiofsd"));
}

TEST(VirtiofsdArgv, RustDialect) {
  Share s = share(Dialect::rust);
  s.readonly = true;
  s.advertise_tag = true;
  s.listen_fd = 4;
  DaemonPlan plan = plan_virtiofsd(s);
  EXPECT_THAT(plan.argv,
              ElementsAreArray({"/usr/libexec/virtiofsd", "--fd=4", "--shared-dir=/home/user/work", "--tag=home",
                                "--sandbox=chroot", "--seccomp=kill", "--cache=auto", "--xattr", "--posix-acl", "--modcaps=-mknod:-setfcap",
                                "--rlimit-nofile=0", "--log-level=warn", "--readonly"}));
  EXPECT_EQ(plan.seccomp_profile, "vm-daemon");
  // With --fd nothing is created: no write right outside the share.
  for (const auto& rule : plan.paths) EXPECT_FALSE(rule.rights.write && rule.path.string().find("/run") == 0) << rule.path;

  s.readonly = false;
  s.advertise_tag = false;
  s.listen_fd.reset();
  EXPECT_THAT(plan_virtiofsd(s).argv,
              ElementsAreArray({"/usr/libexec/virtiofsd", "--socket-path=/run/vmwarden/work/fs0.sock",
                                "--shared-dir=/home/user/work", "--sandbox=chroot", "--seccomp=kill", "--cache=auto",
                                "--xattr", "--posix-acl", "--modcaps=-mknod:-setfcap", "--rlimit-nofile=0", "--log-level=warn"}));
}

TEST(VirtiofsdArgv, CDialectCannotAdvertiseATag) {
  Share s = share(Dialect::c);
  s.advertise_tag = true;
  EXPECT_THROW(plan_virtiofsd(s), UsageError);
}

TEST(VirtiofsdArgv, RefusesInjection) {
  // "-o source=/a,sandbox=none" would switch the C daemon's sandbox off.
  for (Dialect dialect : {Dialect::c, Dialect::rust}) {
    Share s = share(dialect);
    s.shared_dir = "/srv/a,sandbox=none";
    EXPECT_THROW(plan_virtiofsd(s), UsageError);
    s = share(dialect);
    s.socket = "/run/x:y.sock";
    EXPECT_THROW(plan_virtiofsd(s), UsageError);
    s = share(dialect);
    s.shared_dir = "relative/dir";
    EXPECT_THROW(plan_virtiofsd(s), UsageError);
    s = share(dialect);
    s.tag = "a,b";
    EXPECT_THROW(plan_virtiofsd(s), UsageError);
    s = share(dialect);
    s.binary = "/opt/v=1/virtiofsd";
    EXPECT_THROW(plan_virtiofsd(s), UsageError);
    // The C daemon's -o parser takes '\\' as an escape; and a path names
    // what it seems to: no '.', '..' or empty components.
    for (const char* dir : {"/srv/a\\b", "/srv/a\\,b", "/srv/../etc", "/srv/./a", "/srv//a", "/srv/a/"}) {
      s = share(dialect);
      s.shared_dir = dir;
      EXPECT_THROW(plan_virtiofsd(s), UsageError) << dir;
    }
    EXPECT_NO_THROW(plan_virtiofsd(share(dialect)));
  }
}

TEST(VirtiofsdDialect, RecognisesTheRealCDaemon) {
  const char* c_daemon = "/usr/lib/qemu/virtiofsd";
  if (!std::filesystem::exists(c_daemon)) GTEST_SKIP() << c_daemon << " is not installed";
  EXPECT_EQ(detect_dialect(c_daemon), Dialect::c);
}

TEST(VirtiofsdDialect, RecognisesTheRustDialectAndCachesIt) {
  testing::TempDir dir;
  // --help runs as nobody: it must reach the programs and write the count.
  std::filesystem::permissions(dir.path(), std::filesystem::perms(0777));
  testing::write_file(dir / "calls", "", 0666);
  // Detection runs the program with a bare environment; a wrapper counts
  // the calls and prints the Rust daemon's option (split in the file, so
  // that only --help shows it). A shell script rather than the virtiofsd
  // double: a sanitizer build's runtime cannot run under the probe's
  // seccomp filter (LeakSanitizer ptraces at exit).
  std::filesystem::path wrapper = dir / "counting-virtiofsd";
  testing::write_file(wrapper,
                      "#!/bin/sh\necho call >> " + (dir / "calls").string() + "\necho '  --shared''-dir=DIR'\n", 0755);
  EXPECT_EQ(detect_dialect(wrapper), Dialect::rust);
  EXPECT_EQ(detect_dialect(wrapper), Dialect::rust);
  EXPECT_EQ(testing::read_file(dir / "calls"), "call\n");
  // A new binary at the same path is detected afresh (the marker is split
  // in the file, so only --help shows it).
  std::filesystem::remove(wrapper);
  testing::write_file(wrapper,
                      "#!/bin/sh\necho call >> " + (dir / "calls").string() + "\necho usage: -o sour\"\"ce=PATH\n", 0755);
  EXPECT_EQ(detect_dialect(wrapper), Dialect::c);
  EXPECT_EQ(testing::read_file(dir / "calls"), "call\ncall\n");
}

TEST(VirtiofsdDialect, ABinaryHoldingItsHelpTextIsRecognisedWithoutRunningIt) {
  testing::TempDir dir;
  // Not executable: running it would fail, so only the contents can tell.
  std::filesystem::path rust = dir / "rust-virtiofsd", c = dir / "c-virtiofsd";
  testing::write_file(rust, "\x7f" "ELF...Options: --shared-dir <DIR> ...", 0644);
  testing::write_file(c, "\x7f" "ELF...usage: -o source=PATH ...", 0644);
  EXPECT_EQ(detect_dialect(rust), Dialect::rust);
  EXPECT_EQ(detect_dialect(c), Dialect::c);
}

// The --help run is unprivileged: a wrapper that answers only as nobody
// without capabilities.
TEST(VirtiofsdDialect, HelpRunsAsNobodyWithoutCapabilities) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root";
  testing::TempDir dir;
  std::filesystem::permissions(dir.path(), std::filesystem::perms(0755));
  std::filesystem::path strict = dir / "virtiofsd";
  // The marker is split in the file, so that only a run can show it.
  testing::write_file(strict,
                      "#!/bin/sh\n[ \"$(id -u):$(id -g)\" = 65534:65534 ] && "
                      "grep -q 'CapEff:.*0000000000000000' /proc/self/status && echo '  -o sour''ce=PATH'\n",
                      0755);
  // The control: run as this test runs (root), it prints nothing.
  testing::CommandResult as_root = testing::run_command({strict.string(), "--help"});
  ASSERT_EQ(as_root.out, "") << "the wrapper answers root too: the test would prove nothing";
  EXPECT_NO_THROW(EXPECT_EQ(detect_dialect(strict), Dialect::c)) << "--help ran as root or with capabilities";
}

TEST(VirtiofsdDialect, RefusesOtherPrograms) {
  try {
    detect_dialect("/bin/true");
    FAIL() << "/bin/true taken for virtiofsd";
  } catch (const PermanentError& e) {
    EXPECT_THAT(e.what(), HasSubstr("does not look like virtiofsd"));
  }
  EXPECT_THROW(detect_dialect("/nonexistent/virtiofsd"), PermanentError);
  EXPECT_THROW(detect_dialect("relative/virtiofsd"), PermanentError);
}

}  // namespace
}  // namespace vmwarden::virtiofs

namespace vmwarden::virtiofs {
namespace {

// A runtime directory with a space: the readiness probe must compare the
// whole path, not its first word.
TEST(ReadinessProbe, SocketPathWithSpaceMatches) {
  const std::string line = "0000000000000000: 00000002 00000000 00010000 0001 01 4242 /run/vm warden/work/fs0.sock";
  EXPECT_EQ(unix_table_listening(line, 4242, "/run/vm warden/work/fs0.sock"), std::optional<bool>(true));
  EXPECT_EQ(unix_table_listening(line, 4242, "/run/vm"), std::optional<bool>(false));
  EXPECT_EQ(unix_table_listening(line, 4243, "/run/vm warden/work/fs0.sock"), std::nullopt);
  const std::string not_listening = "0000000000000000: 00000002 00000000 00000000 0001 01 4242 /run/a b";
  EXPECT_EQ(unix_table_listening(not_listening, 4242, "/run/a b"), std::optional<bool>(false));
}

}  // namespace
}  // namespace vmwarden::virtiofs
