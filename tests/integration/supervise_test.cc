// `vmwarden supervise` on plain-command definitions: the real binary, real
// namespaces, real ACLs, with the UID registry and runtime dirs in scratch
// locations.

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <sstream>
#include <string>
#include <thread>

#include <fmt/core.h>

#include "tests/support/support.h"

namespace vmwarden {
namespace {

using ::testing::HasSubstr;
using testing::CommandResult;
using testing::TempDir;
using testing::read_file;
using testing::run_command;
using testing::write_file;
namespace fs = std::filesystem;

class SuperviseTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // The VM's UID must be able to reach the shares (mkdtemp made it 0700).
    fs::permissions(root_, fs::perms::owner_all | fs::perms::group_exec | fs::perms::others_exec);
    for (const char* dir : {"config/vms", "state", "run", "rw", "ro"}) fs::create_directories(root_ / dir);
    write_file(root_ / "ro/in.txt", "from the host\n");
  }

  // Writes CONFIG/vms/NAME.toml running `script` with an rw and an ro share.
  void define(const std::string& name, const std::string& script, const std::string& extra = "") {
    write_file(root_ / "config/vms" / (name + ".toml"),
               fmt::format("command = [\"/bin/sh\", \"-c\", '''{}''']\nshutdown_timeout_s = 5\n{}\n"
                           "[[share]]\ntag = \"rw\"\npath = \"{}\"\naccess = \"rw\"\n"
                           "[[share]]\ntag = \"ro\"\npath = \"{}\"\n",
                           script, extra, (root_ / "rw").string(), (root_ / "ro").string()));
  }

  CommandResult supervise(const std::string& name, std::vector<std::string> flags = {},
                          std::map<std::string, std::string> env = {}) {
    std::vector<std::string> argv = {testing::vmwarden_binary(), "supervise"};
    argv.insert(argv.end(), flags.begin(), flags.end());
    argv.push_back(name);
    env["VMWARDEN_CONFIG_DIR"] = (root_ / "config").string();
    env["VMWARDEN_STATE_DIR"] = (root_ / "state").string();
    env["VMWARDEN_RUNTIME_DIR"] = (root_ / "run").string();
    return run_command(argv, {.extra_env = env, .timeout = std::chrono::seconds(60)});
  }

  TempDir scratch_{"vmwarden-supervise"};
  fs::path root_ = scratch_.path();
};

TEST_F(SuperviseTest, ACommandRunsAsASingleUseUidWithItsSharesAndNothingElse) {
  // Readable by anyone as far as file modes go (root_ is 0711): only the
  // sandbox can keep the command out.
  write_file(root_ / "outside.txt", "not shared\n", 0644);
  define("app", fmt::format("id -u > {0}/rw/uid; cat {0}/ro/in.txt > {0}/rw/copy; "
                            "echo x > {0}/ro/new 2>/dev/null || echo ro-refused > {0}/rw/ro; "
                            "cat {0}/outside.txt > /dev/null 2> {0}/rw/outside; exit 7",
                            root_.string()));
  CommandResult result = supervise("app");
  EXPECT_EQ(result.exit_code, 7) << result.err;
  // Every line of vmwarden's names the VM, the grants' before the sandbox
  // starts included.
  EXPECT_THAT(result.err, HasSubstr("vmwarden[app]: granted rw on " + (root_ / "rw").string()));
  EXPECT_THAT(result.err, ::testing::Not(HasSubstr("vmwarden: ")));

  uid_t uid = static_cast<uid_t>(std::stoul(read_file(root_ / "rw/uid")));
  EXPECT_GE(uid, 1879048192u) << "a UID from the registry's range";
  struct stat st {};
  ASSERT_EQ(::stat((root_ / "rw/uid").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, uid) << "files the command creates belong to the VM's UID on the host";
  EXPECT_EQ(read_file(root_ / "rw/copy"), "from the host\n");
  EXPECT_EQ(read_file(root_ / "rw/ro"), "ro-refused\n");
  EXPECT_FALSE(fs::exists(root_ / "ro/new"));
  EXPECT_THAT(read_file(root_ / "rw/outside"), HasSubstr("Permission denied"))
      << "paths outside the shares are not reachable";

  // A single-use UID's grants are revoked at exit, the UID is released and
  // the runtime dir removed.
  EXPECT_EQ(testing::acl_entries_naming(uid, root_ / "rw"), "");
  EXPECT_EQ(testing::acl_entries_naming(uid, root_ / "ro"), "");
  EXPECT_FALSE(fs::exists(root_ / "run/app"));
  CommandResult list = run_command({testing::vmwarden_binary(), "--state-dir", (root_ / "state").string(),
                                    "--runtime-dir", (root_ / "run").string(), "--config-dir",
                                    (root_ / "config").string(), "uid", "list"});
  ASSERT_EQ(list.exit_code, 0) << list.err;
  EXPECT_THAT(list.out, ::testing::Not(HasSubstr(std::to_string(uid)))) << list.out;
}

// What reaches the command is vmwarden's environment unless the
// definition's [environment] table says otherwise; /usr/bin/env prints
// exactly what execve gave it.
TEST_F(SuperviseTest, TheEnvironmentTableDecidesWhatTheCommandGets) {
  const std::map<std::string, std::string> secret = {{"SECRET_TOKEN", "hunter2"}};
  auto define_env = [&](const std::string& name, const std::string& table) {
    write_file(root_ / "config/vms" / (name + ".toml"), "command = [\"/usr/bin/env\"]\n" + table);
  };
  define_env("inherits", "");
  CommandResult inherited = supervise("inherits", {}, secret);
  ASSERT_EQ(inherited.exit_code, 0) << inherited.err;
  EXPECT_THAT(inherited.out, HasSubstr("SECRET_TOKEN=hunter2\n")) << "the control: inherited by default";

  define_env("less", "[environment]\nunset = [\"SECRET_TOKEN\"]\nset = { GREETING = \"hi there\" }\n");
  CommandResult less = supervise("less", {}, secret);
  ASSERT_EQ(less.exit_code, 0) << less.err;
  EXPECT_THAT(less.out, ::testing::Not(HasSubstr("SECRET_TOKEN")));
  EXPECT_THAT(less.out, HasSubstr("GREETING=hi there\n"));
  EXPECT_THAT(less.out, HasSubstr("VMWARDEN_STATE_DIR=")) << "the rest is inherited";

  define_env("clean", "[environment]\ninherit = false\nset = { GREETING = \"hi\", PATH = \"/usr/bin:/bin\" }\n");
  CommandResult clean = supervise("clean", {}, secret);
  ASSERT_EQ(clean.exit_code, 0) << clean.err;
  EXPECT_EQ(clean.out, "GREETING=hi\nPATH=/usr/bin:/bin\n");

  // The audit says so, by names only.
  CommandResult audit = run_command({testing::vmwarden_binary(), "--config-dir", (root_ / "config").string(),
                                     "--state-dir", (root_ / "state").string(), "--runtime-dir",
                                     (root_ / "run").string(), "audit", "clean"});
  ASSERT_EQ(audit.exit_code, 0) << audit.err;
  EXPECT_THAT(audit.out, HasSubstr("  environment: only GREETING, PATH (values not shown)\n"));
  EXPECT_THAT(audit.out, ::testing::Not(HasSubstr("/usr/bin:/bin")));
  audit = run_command({testing::vmwarden_binary(), "--config-dir", (root_ / "config").string(), "--state-dir",
                       (root_ / "state").string(), "--runtime-dir", (root_ / "run").string(), "audit", "less"});
  ASSERT_EQ(audit.exit_code, 0) << audit.err;
  EXPECT_THAT(audit.out, HasSubstr("  environment: vmwarden's own (whatever it was started with; not shown), less "
                                   "SECRET_TOKEN, then set GREETING (values not shown)\n"));
}

// Started by hand in a terminal, a command gets a pty of its own (as
// `vmwarden exec` gives one): what it does to its terminal (modes, window
// size) stays there, and the caller's is as it was. (Under s6 no standard
// descriptor is a terminal.)
TEST_F(SuperviseTest, ACommandStartedInATerminalGetsAPtyOfItsOwn) {
  define("tty", "stty -echo -icanon rows 5 cols 5; echo \"its=$(tty)\"; exit 3");
  testing::CommandOptions options;
  options.extra_env = {{"VMWARDEN_CONFIG_DIR", (root_ / "config").string()},
                       {"VMWARDEN_STATE_DIR", (root_ / "state").string()},
                       {"VMWARDEN_RUNTIME_DIR", (root_ / "run").string()}};
  options.timeout = std::chrono::seconds(60);
  CommandResult result = testing::run_on_terminal(
      "stty rows 33 cols 77; modes=$(stty -g); echo \"mine=$(tty)\"; " +
          testing::shell_words({testing::vmwarden_binary(), "supervise", "tty"}) +
          "; echo \"rc=$? size=$(stty size)\"; [ \"$modes\" = \"$(stty -g)\" ] && echo 'modes kept'",
      options);
  const std::string& out = result.out;
  std::size_t mine = out.find("mine="), its = out.find("its=");
  ASSERT_NE(mine, std::string::npos) << out;
  ASSERT_NE(its, std::string::npos) << out;
  std::string caller_tty = out.substr(mine + 5, out.find('\r', mine) - mine - 5);
  std::string command_tty = out.substr(its + 4, out.find('\r', its) - its - 4);
  EXPECT_THAT(command_tty, ::testing::StartsWith("/dev/pts/")) << out;
  EXPECT_NE(command_tty, caller_tty) << out;
  EXPECT_THAT(out, HasSubstr("rc=3 size=33 77\r\n"));
  EXPECT_THAT(out, HasSubstr("modes kept"));
}

// s6's down-signal is SIGTERM, and it may come while a share is being
// granted: it must not kill `supervise` there and leave the grant (and the
// lease) behind. The grant is held open with strace (its record's fsync
// slowed), and SIGTERM sent the moment the record is being written.
TEST_F(SuperviseTest, ASigtermDuringTheGrantsLeavesNoGrantAndNoUid) {
  if (::access("/usr/bin/strace", X_OK) != 0) GTEST_SKIP() << "strace is not installed (./bootstrap installs it)";
  // Long-running: the stop, passed on once the sandbox runs, ends it either
  // way (before or after it started), so the status says SIGTERM.
  define("app", "exec sleep 30");
  pid_t tracer = ::fork();
  if (tracer == 0) {
    ::setenv("VMWARDEN_CONFIG_DIR", (root_ / "config").c_str(), 1);
    ::setenv("VMWARDEN_STATE_DIR", (root_ / "state").c_str(), 1);
    ::setenv("VMWARDEN_RUNTIME_DIR", (root_ / "run").c_str(), 1);
    std::string binary = testing::vmwarden_binary();
    ::execlp("strace", "strace", "-qq", "-o", "/dev/null", "-e", "trace=fsync", "-e",
             "inject=fsync:delay_enter=500000", "--", binary.c_str(), "supervise", "app", nullptr);
    ::_exit(127);
  }
  auto recording = [&] {
    for (const std::string& uid : testing::directory_names(root_ / "state/grants")) {
      for (const std::string& name : testing::directory_names(root_ / "state/grants" / uid))
        if (name.starts_with(".tmp-")) return true;
    }
    return false;
  };
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (!recording() && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  ASSERT_TRUE(recording()) << "no grant was recorded";
  std::set<pid_t> traced = testing::process_tree(tracer);
  traced.erase(tracer);
  ASSERT_EQ(traced.size(), 1u) << "only vmwarden itself runs yet";
  ASSERT_EQ(testing::kill_process(*traced.begin(), SIGTERM), 0);
  int status = 0;
  ASSERT_EQ(::waitpid(tracer, &status, 0), tracer);
  ASSERT_TRUE(WIFEXITED(status)) << "strace was killed";
  EXPECT_EQ(WEXITSTATUS(status), 128 + SIGTERM) << "vmwarden returns 143 after its clean-up, not killed by it";

  CommandResult list = run_command({testing::vmwarden_binary(), "--state-dir", (root_ / "state").string(),
                                    "--runtime-dir", (root_ / "run").string(), "--config-dir",
                                    (root_ / "config").string(), "uid", "list"});
  ASSERT_EQ(list.exit_code, 0) << list.err;
  EXPECT_THAT(list.out, ::testing::Not(HasSubstr("single-use"))) << "the UID was released";
  CommandResult acl = run_command({"getfacl", "-R", "-p", "-n", (root_ / "rw").string(), (root_ / "ro").string()});
  EXPECT_THAT(acl.out, ::testing::Not(HasSubstr("user:18"))) << "a grant was left: " << acl.out;
  EXPECT_FALSE(fs::exists(root_ / "run/app"));
}

// A service leads a session of its own, without a controlling terminal:
// nothing it does can reach the terminal `vmwarden supervise` was started
// from (TIOCSTI needs that terminal to be its own).
TEST_F(SuperviseTest, AServiceLeadsASessionOfItsOwn) {
  define("session", fmt::format("cat /proc/$$/stat > {}/rw/stat", root_.string()));
  CommandResult result = supervise("session");
  ASSERT_EQ(result.exit_code, 0) << result.err;
  std::string stat = read_file(root_ / "rw/stat");
  std::istringstream fields(stat.substr(stat.rfind(')') + 2));
  std::string state;
  long parent = 0, group = 0, session = 0, tty = -1;
  fields >> state >> parent >> group >> session >> tty;
  long pid = std::stol(stat);
  EXPECT_EQ(session, pid) << stat;
  EXPECT_EQ(group, pid) << stat;
  EXPECT_EQ(tty, 0) << stat;
}

TEST_F(SuperviseTest, AnAliasKeepsItsUidAndGrantsAcrossRuns) {
  define("work", fmt::format("id -u >> {}/rw/uids", root_.string()), "[uid]\nalias = \"work\"\n");
  ASSERT_EQ(supervise("work").exit_code, 0);
  ASSERT_EQ(supervise("work").exit_code, 0);
  std::istringstream uids(read_file(root_ / "rw/uids"));
  std::string first, second;
  uids >> first >> second;
  EXPECT_EQ(first, second);
  EXPECT_NE(testing::acl_entries_naming(static_cast<uid_t>(std::stoul(first)), root_ / "rw"), "")
      << "an alias's grants stay for the next run";
}

TEST_F(SuperviseTest, AnInvalidDefinitionExits125AndChangesNothing) {
  write_file(root_ / "config/vms/bad.toml", "command = [\"/bin/true\"]\nmemroy_mib = 5\n");
  CommandResult result = supervise("bad");
  EXPECT_EQ(result.exit_code, 125);
  EXPECT_THAT(result.err, HasSubstr("bad.toml:2:1: error: unknown key \"memroy_mib\""));
  EXPECT_TRUE(fs::is_empty(root_ / "state")) << "no UID allocated";
  EXPECT_TRUE(fs::is_empty(root_ / "run"));

  CommandResult missing = supervise("nosuchvm");
  EXPECT_EQ(missing.exit_code, 125);
  EXPECT_THAT(missing.err, HasSubstr("nosuchvm.toml:1:1: error: cannot read definition"));
}

TEST_F(SuperviseTest, AShareTheUidCannotReachIsRefusedBeforeAnyGrant) {
  fs::create_directories(root_ / "private/inner");
  fs::permissions(root_ / "private", fs::perms::owner_all);
  write_file(root_ / "config/vms/hidden.toml",
             fmt::format("command = [\"/bin/true\"]\n[[share]]\ntag = \"in\"\npath = \"{}\"\naccess = \"rw\"\n",
                         (root_ / "private/inner").string()));
  CommandResult result = supervise("hidden");
  EXPECT_EQ(result.exit_code, 125);
  EXPECT_THAT(result.err, HasSubstr("cannot reach " + (root_ / "private/inner").string()));
  // Checked before the lease, as a UID that stands in for the one it gives.
  EXPECT_THAT(result.err, HasSubstr("share \"in\": the VM's single-use UID (checked as "));
  EXPECT_EQ(testing::named_acl_entries(root_ / "private/inner"), "") << "nothing granted";
  // Found before the lease: no UID was consumed (single-use) or allocated
  // for good (an alias's first start).
  EXPECT_TRUE(fs::is_empty(root_ / "state")) << "the registry changed";
  write_file(root_ / "config/vms/hidden-alias.toml",
             fmt::format("command = [\"/bin/true\"]\n[uid]\nalias = \"hid\"\n[[share]]\ntag = \"in\"\npath = "
                         "\"{}\"\naccess = \"rw\"\n",
                         (root_ / "private/inner").string()));
  CommandResult alias = supervise("hidden-alias");
  EXPECT_EQ(alias.exit_code, 125);
  EXPECT_THAT(alias.err, HasSubstr("cannot reach " + (root_ / "private/inner").string()));
  EXPECT_THAT(alias.err, HasSubstr("share \"in\": the UID alias \"hid\" will get (checked as "));
  EXPECT_TRUE(fs::is_empty(root_ / "state")) << "the alias was allocated";
}

TEST_F(SuperviseTest, AParentThatIsNotS6IsRefusedBeforeAnyChange) {
  define("app", "true");
  CommandResult result = run_command({testing::vmwarden_binary(), "supervise", "--s6", "app"},
                                     {.extra_env = {{"VMWARDEN_CONFIG_DIR", (root_ / "config").string()},
                                                    {"VMWARDEN_STATE_DIR", (root_ / "state").string()},
                                                    {"VMWARDEN_RUNTIME_DIR", (root_ / "run").string()}},
                                      .cwd = root_});
  EXPECT_EQ(result.exit_code, 125);
  EXPECT_THAT(result.err, HasSubstr("supervise/lock"));
  EXPECT_TRUE(fs::is_empty(root_ / "state"));
  EXPECT_EQ(testing::named_acl_entries(root_ / "rw"), "");
}

TEST_F(SuperviseTest, BadVmDefinitionsAreRefusedBeforeAnythingStarts) {
  fs::create_directories(root_ / "odd,dir");
  write_file(root_ / "kernel", "not started anyway");
  struct Case {
    std::string name, toml, diagnostic;
  };
  const std::vector<Case> cases = {
      {"nokernel",
       fmt::format("vmm = \"qemu\"\nkernel = \"{}/missing/vmlinuz\"\n", root_.string()), "nokernel.toml:2:"},
      {"comma",
       fmt::format("vmm = \"qemu\"\nkernel = \"{0}/kernel\"\n[[share]]\ntag = \"odd\"\npath = \"{0}/odd,dir\"\n",
                   root_.string()),
       "comma.toml:5:"},
  };
  for (const Case& bad : cases) {
    write_file(root_ / "config/vms" / (bad.name + ".toml"), bad.toml);
    CommandResult result = supervise(bad.name);
    EXPECT_EQ(result.exit_code, 125) << bad.name << ": " << result.err;
    EXPECT_THAT(result.err, HasSubstr(bad.diagnostic)) << bad.name;
    EXPECT_THAT(result.err, HasSubstr("invalid definition, not started")) << bad.name;
  }
  // Nothing leased, granted or created.
  EXPECT_TRUE(fs::is_empty(root_ / "state"));
  EXPECT_TRUE(fs::is_empty(root_ / "run"));
  EXPECT_EQ(testing::named_acl_entries(root_ / "odd,dir"), "");
}

// Definitions the validator passes but a backend refuses while planning: the
// plan is made before the lease, so nothing is leased, granted or created,
// and the refusal is permanent (125), not a restart loop under s6.
TEST_F(SuperviseTest, ABackendRefusalExits125BeforeAnyLease) {
  fs::create_directories(root_ / "shared");
  write_file(root_ / "kernel", "not started anyway");
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"dashcmdline", fmt::format("vmm = \"qemu\"\nkernel = \"{}/kernel\"\ncmdline = \"-S console=ttyS0\"\n"
                                  "[[share]]\ntag = \"s\"\npath = \"{}/shared\"\naccess = \"rw\"\n",
                                  root_.string(), root_.string())},
      {"crosvmnet", fmt::format("vmm = \"crosvm\"\nkernel = \"{}/kernel\"\n[sandbox]\nnetwork = true\n", root_.string())},
  };
  for (const auto& [name, toml] : cases) {
    write_file(root_ / "config/vms" / (name + ".toml"), toml);
    CommandResult result = supervise(name);
    EXPECT_EQ(result.exit_code, 125) << name << ": " << result.err;
  }
  EXPECT_TRUE(fs::is_empty(root_ / "state")) << "no UID leased";
  EXPECT_TRUE(fs::is_empty(root_ / "run"));
  EXPECT_EQ(testing::named_acl_entries(root_ / "shared"), "") << "nothing granted";
}

// What the grant of a share would refuse (a symlink on the way, a
// filesystem without POSIX ACLs) is found before the lease: `check` passes
// such a definition, since it does not look at the host.
TEST_F(SuperviseTest, AShareTheGrantWouldRefuseIsRefusedBeforeAnyLease) {
  fs::create_directory_symlink(root_ / "ro", root_ / "link");
  write_file(root_ / "config/vms/viasymlink.toml",
             fmt::format("command = [\"/bin/true\"]\n[uid]\nalias = \"sym\"\n"
                         "[[share]]\ntag = \"rw\"\npath = \"{}\"\naccess = \"rw\"\n"
                         "[[share]]\ntag = \"ro\"\npath = \"{}\"\n",
                         (root_ / "rw").string(), (root_ / "link").string()));
  write_file(root_ / "config/vms/proc.toml",
             "command = [\"/bin/true\"]\n[[share]]\ntag = \"p\"\npath = \"/proc/sys\"\n");
  for (const auto& [name, message] : {std::pair{"viasymlink", "the path goes through a symlink"},
                                      std::pair{"proc", "does not support POSIX ACLs"}}) {
    CommandResult result = supervise(name);
    EXPECT_EQ(result.exit_code, 125) << result.err;
    EXPECT_THAT(result.err, HasSubstr(message));
  }
  EXPECT_TRUE(fs::is_empty(root_ / "state")) << "no UID leased, no alias allocated";
  EXPECT_TRUE(fs::is_empty(root_ / "run"));
  EXPECT_EQ(testing::named_acl_entries(root_ / "rw"), "") << "nothing granted";
}

// A readiness fd that is not open is a usage error found before the lease
// and the grants, not a permanent failure after them.
TEST_F(SuperviseTest, ANotifyFdThatIsNotOpenIsRefusedBeforeAnyChange) {
  define("app", "true", "[uid]\nalias = \"kept\"\n");
  CommandResult result = supervise("app", {"--notify-fd", "47"});
  EXPECT_EQ(result.exit_code, 2) << result.err;
  EXPECT_THAT(result.err, HasSubstr("--notify-fd 47: no such open file descriptor"));
  EXPECT_TRUE(fs::is_empty(root_ / "state")) << "nothing leased";
  EXPECT_EQ(testing::named_acl_entries(root_ / "rw"), "") << "nothing granted";
}

// What a backend refuses for this host, the audit reports with supervise's
// permanent status (125), not as a usage error.
TEST_F(SuperviseTest, AuditExits125WhereSuperviseWouldRefuseTheHost) {
  write_file(root_ / "kernel", "not started anyway");
  write_file(root_ / "config/vms/gui.toml",
             fmt::format("vmm = \"crosvm\"\nkernel = \"{}/kernel\"\n[display]\nwayland = true\n", root_.string()));
  auto env = std::map<std::string, std::string>{{"VMWARDEN_CONFIG_DIR", (root_ / "config").string()},
                                                {"VMWARDEN_STATE_DIR", (root_ / "state").string()},
                                                {"VMWARDEN_RUNTIME_DIR", (root_ / "run").string()},
                                                {"VMWARDEN_CROSVM", "/bin/true"},
                                                {"WAYLAND_DISPLAY", ""}};
  CommandResult audit = run_command({testing::vmwarden_binary(), "audit", "gui"}, {.extra_env = env});
  EXPECT_EQ(audit.exit_code, 125) << audit.err;
  EXPECT_THAT(audit.err, HasSubstr("no Wayland socket was found"));
  CommandResult supervise = run_command({testing::vmwarden_binary(), "supervise", "gui"}, {.extra_env = env});
  EXPECT_EQ(supervise.exit_code, 125) << supervise.err;
  EXPECT_TRUE(fs::is_empty(root_ / "state"));
}

// An alias whose allocation record is damaged (here: a second record
// claiming it) is refused by `audit` as `supervise` refuses it, naming the
// damage, before anything is granted; audit no longer plans it as an alias
// not yet allocated.
TEST_F(SuperviseTest, AuditRefusesADamagedAliasAsSuperviseDoes) {
  write_file(root_ / "config/vms/app.toml", "command = [\"/bin/true\"]\n[uid]\nalias = \"app\"\n");
  auto env = std::map<std::string, std::string>{{"VMWARDEN_CONFIG_DIR", (root_ / "config").string()},
                                                {"VMWARDEN_STATE_DIR", (root_ / "state").string()},
                                                {"VMWARDEN_RUNTIME_DIR", (root_ / "run").string()}};
  CommandResult alloc = run_command({testing::vmwarden_binary(), "uid", "alloc", "--alias", "app"}, {.extra_env = env});
  ASSERT_EQ(alloc.exit_code, 0) << alloc.err;
  write_file(root_ / "state/uids/allocated/1879048199", "alias app\n");
  CommandResult audit = run_command({testing::vmwarden_binary(), "audit", "app"}, {.extra_env = env});
  CommandResult supervise = run_command({testing::vmwarden_binary(), "supervise", "app"}, {.extra_env = env});
  EXPECT_NE(supervise.exit_code, 0) << supervise.err;
  EXPECT_EQ(audit.exit_code, supervise.exit_code) << audit.out << audit.err;
  EXPECT_THAT(audit.err, HasSubstr("1879048199"));
  EXPECT_THAT(supervise.err, HasSubstr("1879048199"));
  EXPECT_THAT(supervise.err, ::testing::Not(HasSubstr("will get")));
}

}  // namespace
}  // namespace vmwarden
