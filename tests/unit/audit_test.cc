// `vmwarden audit` and `vmwarden exec --audit`, run as a user would:
// - golden files (tests/golden/audit/) for every doc/examples/*.toml and for
//   plain `exec` commands, text and JSON, so that the output stays accurate;
//   VMWARDEN_UPDATE_GOLDEN=1 rewrites them instead of comparing;
// - the JSON parses, and says what the text says;
// - auditing changes nothing on disk: no lease, no grant, no directory.
//
// The goldens are those of this machine's kind (Debian 12, x86_64, Landlock
// ABI 7): the Landlock ABI is pinned with VMWARDEN_LANDLOCK_ABI=7 (it can
// only be lowered, so an older kernel skips), and every location is a fixed
// path that need not exist, since the audit creates nothing.
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <fmt/core.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "tests/support/support.h"
#include "vm-launcher/json.h"

namespace vmwarden::testing {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr int kGoldenAbi = 7;

int kernel_landlock_abi() {
  long abi = ::syscall(444 /* landlock_create_ruleset */, nullptr, 0, 1U /* VERSION */);
  return abi < 0 ? 0 : static_cast<int>(abi);
}

const std::map<std::string, std::string>& golden_env() {
  static const std::map<std::string, std::string> env = {
      {"VMWARDEN_CONFIG_DIR", "/nonexistent/vmwarden-golden/config"},
      {"VMWARDEN_STATE_DIR", "/nonexistent/vmwarden-golden/state"},
      {"VMWARDEN_RUNTIME_DIR", "/nonexistent/vmwarden-golden/run"},
      {"VMWARDEN_LANDLOCK_ABI", std::to_string(kGoldenAbi)},
      // The goldens show TCG's argv, whatever /dev/kvm this machine has.
      {"VMWARDEN_NO_KVM", "1"},
  };
  return env;
}

CommandResult vmwarden(std::vector<std::string> args, const std::map<std::string, std::string>& env = golden_env()) {
  args.insert(args.begin(), vmwarden_binary());
  CommandOptions options;
  options.extra_env = env;
  // Examples are named relative to the source tree, so that no checkout's
  // own path appears in the output.
  options.cwd = source_dir();
  return run_command(args, options);
}

std::string transcript(const CommandResult& result) {
  return "exit status: " + std::to_string(result.exit_code) + "\n--- stdout\n" + result.out + "--- stderr\n" +
         result.err;
}

bool updating() {
  const char* update = std::getenv("VMWARDEN_UPDATE_GOLDEN");
  return update != nullptr && std::string(update) == "1";
}

fs::path golden_dir() { return source_dir() / "tests" / "golden" / "audit"; }

// Compares `actual` with the golden file, or rewrites it in update mode.
void expect_golden(const std::string& name, const std::string& actual) {
  fs::path file = golden_dir() / name;
  if (updating()) {
    fs::create_directories(golden_dir());
    write_file(file, actual);
    return;
  }
  ASSERT_TRUE(fs::exists(file)) << file << " is missing; run the test with VMWARDEN_UPDATE_GOLDEN=1 to create it";
  EXPECT_EQ(read_file(file), actual) << "audit output differs from " << file
                                     << "; if the change is intended, rerun with VMWARDEN_UPDATE_GOLDEN=1";
}

std::size_t count_of(const std::string& text, const std::string& needle) {
  std::size_t count = 0;
  for (auto at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++count;
  return count;
}

// The text and JSON forms of one audit: both golden, the JSON valid and
// consistent with the text.
void check_audit(const std::string& name, const std::vector<std::string>& args) {
  CommandResult text = vmwarden(args);
  std::vector<std::string> json_args = args;
  json_args.insert(json_args.begin() + 1, "--json");
  CommandResult json = vmwarden(json_args);
  SCOPED_TRACE(name);
  EXPECT_EQ(json.exit_code, text.exit_code) << json.err;
  expect_golden(name + ".txt", transcript(text));
  expect_golden(name + ".json", json.out);

  vm::Json parsed;
  ASSERT_NO_THROW(parsed = vm::parse_json(json.out)) << json.out;
  ASSERT_EQ(parsed.type, vm::Json::Type::object);
  if (text.exit_code != 0) {
    EXPECT_NE(parsed.find("error"), nullptr);
    EXPECT_EQ(text.out, "");
    return;
  }
  // Every step of the text is in the JSON, and every warning.
  const vm::Json* steps = parsed.find("steps");
  const vm::Json* exit_steps = parsed.find("exit_steps");
  const vm::Json* warnings = parsed.find("warnings");
  const vm::Json* services = parsed.find("services");
  ASSERT_TRUE(steps && exit_steps && warnings && services);
  EXPECT_EQ(steps->items.size() + exit_steps->items.size(), count_of(text.out, "\n      needs: "));
  // Each warning is listed at the top, and again under its service.
  std::string top = text.out.substr(0, text.out.find("\nprivileged steps"));
  EXPECT_EQ(warnings->items.size(), count_of(top, "\n! "));
  for (const vm::Json& service : services->items) {
    const vm::Json* confinement = service.find("confinement");
    ASSERT_NE(confinement, nullptr);
    EXPECT_THAT(text.out, HasSubstr("service " + std::string(service.string_member("name")) + "\n"));
    const vm::Json* seccomp = confinement->find("seccomp");
    ASSERT_NE(seccomp, nullptr);
    EXPECT_THAT(text.out, HasSubstr("seccomp: profile " + std::string(seccomp->string_member("profile"))));
  }
}

class AuditGoldenTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (kernel_landlock_abi() < kGoldenAbi)
      GTEST_SKIP() << "the goldens were made on Landlock ABI " << kGoldenAbi << ", this kernel has "
                   << kernel_landlock_abi();
  }
};

TEST_F(AuditGoldenTest, EveryExampleDefinition) {
  std::vector<fs::path> examples;
  for (const auto& entry : fs::directory_iterator(source_dir() / "doc" / "examples"))
    if (entry.path().extension() == ".toml") examples.push_back(entry.path());
  std::sort(examples.begin(), examples.end());
  ASSERT_FALSE(examples.empty());
  for (const fs::path& example : examples)
    check_audit("audit-" + example.stem().string(), {"audit", fs::relative(example, source_dir())});
}

TEST_F(AuditGoldenTest, ExecWithASingleUseUid) {
  check_audit("exec-single-use", {"exec", "--audit", "--name", "golden", "--ro", "/usr/share", "--rw", "/var/tmp",
                                  "--", "/bin/true"});
}

TEST_F(AuditGoldenTest, ExecAsRootWithWeakenedConfinement) {
  check_audit("exec-root-weakened", {"exec", "--audit", "--name", "golden", "--uid", "0", "--network",
                                     "--landlock", "best-effort", "--seccomp", "log", "--", "/bin/true"});
}

// `vmwarden run`: its own directory, the manifest at the lease, the
// transient definition's plan, and the clean-up.
TEST_F(AuditGoldenTest, RunAProgramInAThrowawayVm) {
  check_audit("run-scratch", {"run", "--audit", "--kernel", "/bin/true", "--initramfs", "/bin/true", "--scratch",
                              "--", "/bin/echo", "hi"});
}

TEST_F(AuditGoldenTest, ExecWithoutLandlockOrSeccomp) {
  check_audit("exec-unconfined", {"exec", "--audit", "--name", "golden", "--uid", "1000", "--landlock", "off",
                                  "--seccomp-profile", "none", "--", "/bin/true"});
}

// With its stdin on a terminal (script(1)), stdout and stderr in files: the
// new pty the command gets in its place, setsid and TIOCSCTTY, the relay.
TEST_F(AuditGoldenTest, ExecWithATerminalOnStdin) {
  TempDir output("vmwarden-audit-tty");
  CommandOptions options;
  options.extra_env = golden_env();
  for (bool json : {false, true}) {
    std::vector<std::string> argv = {vmwarden_binary(), "exec", "--audit", "--name", "golden", "--", "/bin/true"};
    if (json) argv.insert(argv.begin() + 2, "--json");
    std::string out = (output / "out").string(), err = (output / "err").string();
    CommandResult result = run_on_terminal(shell_words(argv) + " >" + shell_words({out}) + " 2>" + shell_words({err}) +
                                               "; echo rc=$?",
                                           options);
    EXPECT_NE(result.out.find("rc=0"), std::string::npos) << result.out;
    expect_golden(json ? "exec-terminal.json" : "exec-terminal.txt", read_file(out) + read_file(err));
  }
}

// ---- what an audit reports, beyond the goldens ----------------------------

TEST(Audit, ARequiredPolicyTheKernelCannotMeetIsReportedNotThrown) {
  std::map<std::string, std::string> env = golden_env();
  env["VMWARDEN_LANDLOCK_ABI"] = "5";
  CommandResult result = vmwarden({"exec", "--audit", "--name", "golden", "--", "/bin/true"}, env);
  EXPECT_EQ(result.exit_code, 0) << result.err;
  EXPECT_THAT(result.out, HasSubstr("! service command: refuses to start: the kernel lacks Landlock features"));
  EXPECT_THAT(result.out, HasSubstr("this kernel offers Landlock ABI 5, which lacks:"));
}

// crosvm and cloud-hypervisor are stopped through their own control
// program, which the warden runs with privilege (it joins the VMM's mount
// namespace): the audit says so. (Their binaries need not exist for an
// audit: /bin/true stands in.)
TEST(Audit, AVmmsControlProgramIsAPrivilegedStep) {
  TempDir dir("vmwarden-audit");
  write_file(dir / "kernel", "not booted");
  for (auto [vmm, stop] : {std::pair{"crosvm", "/bin/true powerbtn "}, std::pair{"cloud-hypervisor", "power-button"}}) {
    write_file(dir / "vm.toml", fmt::format("vmm = \"{}\"\nkernel = \"{}\"\n", vmm, (dir / "kernel").string()));
    std::map<std::string, std::string> env = golden_env();
    env["VMWARDEN_CROSVM"] = env["VMWARDEN_CLOUD_HYPERVISOR"] = env["VMWARDEN_CH_REMOTE"] = "/bin/true";
    CommandResult result = vmwarden({"audit", (dir / "vm.toml").string()}, env);
    EXPECT_EQ(result.exit_code, 0) << vmm << ": " << result.err;
    EXPECT_THAT(result.out, HasSubstr("warden: to stop service vmm: run /bin/true")) << vmm;
    EXPECT_THAT(result.out, HasSubstr(stop)) << vmm;
    EXPECT_THAT(result.out, HasSubstr("joins the service's mount namespace (setns through its pidfd)")) << vmm;
  }
}

// A program override set but empty is refused, as an empty VMWARDEN_*_DIR
// is: it is most likely an unset shell variable, and quietly looking on PATH
// instead could run another program than the one meant. The audit exits
// 125 for it, as supervise would (and as for an override naming no program).
TEST(Audit, AnEmptyProgramOverrideIsRefused) {
  TempDir dir("vmwarden-audit");
  write_file(dir / "kernel", "not booted");
  write_file(dir / "vm.toml", fmt::format("vmm = \"qemu\"\nkernel = \"{}\"\n", (dir / "kernel").string()));
  for (const char* variable :
       {"VMWARDEN_QEMU", "VMWARDEN_CROSVM", "VMWARDEN_CLOUD_HYPERVISOR", "VMWARDEN_CH_REMOTE", "VMWARDEN_VIRTIOFSD"}) {
    std::map<std::string, std::string> env = golden_env();
    env[variable] = "";
    CommandResult result = vmwarden({"audit", (dir / "vm.toml").string()}, env);
    EXPECT_EQ(result.exit_code, 125) << variable << ": " << result.err;
    EXPECT_THAT(result.err, HasSubstr(std::string(variable) + " is set but empty; unset it to look for")) << variable;
  }
}

TEST(Audit, InvalidDefinitionsAndUnknownNamesAreUsageErrors) {
  TempDir dir("vmwarden-audit");
  write_file(dir / "broken.toml", "command = [\"/bin/true\"]\nmemory_mib = \"lots\"\n");
  CommandResult broken = vmwarden({"audit", (dir / "broken.toml").string()});
  EXPECT_EQ(broken.exit_code, 2) << broken.err;
  EXPECT_THAT(broken.err, HasSubstr("broken.toml:2:"));
  EXPECT_EQ(broken.out, "");
  CommandResult json = vmwarden({"audit", "--json", (dir / "broken.toml").string()});
  EXPECT_EQ(json.exit_code, 2);
  ASSERT_NO_THROW(vm::parse_json(json.out)) << json.out;
  EXPECT_THAT(json.out, HasSubstr("\"error\":"));
  // The FILE:LINE:COL diagnostics are in the object too.
  vm::Json object = vm::parse_json(json.out);
  const vm::Json* diagnostics = object.find("diagnostics");
  ASSERT_NE(diagnostics, nullptr) << json.out;
  EXPECT_EQ(diagnostics->type, vm::Json::Type::array) << json.out;
  EXPECT_THAT(json.out, HasSubstr("broken.toml:2:"));
  // exec --audit --json says what was wrong as one JSON object as well.
  CommandResult exec_json = vmwarden({"exec", "--audit", "--json", "--ro", (dir / "absent").string(), "--", "/bin/true"});
  EXPECT_EQ(exec_json.exit_code, 2) << exec_json.err;
  ASSERT_NO_THROW(vm::parse_json(exec_json.out)) << exec_json.out;
  EXPECT_THAT(exec_json.out, HasSubstr("no such directory"));
  // And run --audit --json.
  CommandResult run_json =
      vmwarden({"run", "--audit", "--json", "--ro", (dir / "absent").string(), "--kernel", "/bin/true", "--", "/bin/true"});
  EXPECT_EQ(run_json.exit_code, 2) << run_json.err;
  ASSERT_NO_THROW(vm::parse_json(run_json.out)) << run_json.out;
  EXPECT_THAT(run_json.out, HasSubstr("\"audit\":\"vmwarden run\",\"error\":"));
  CommandResult json_alone = vmwarden({"run", "--json", "--kernel", "/bin/true", "--", "/bin/true"});
  EXPECT_EQ(json_alone.exit_code, 2) << json_alone.err;
  EXPECT_THAT(json_alone.err, HasSubstr("--json goes with --audit"));
  CommandResult missing = vmwarden({"audit", "no-such-vm"});
  EXPECT_NE(missing.exit_code, 0);
  EXPECT_THAT(missing.err, HasSubstr("no-such-vm"));
}

// A share that launching would refuse (here: the UID registry) is reported
// before anything runs: `check` as an error at the share's path, `audit` as
// what will stop the start; a share beside it passes both.
TEST(Audit, CheckAndAuditReportAShareThatLaunchingWouldRefuse) {
  TempDir root("vmwarden-audit-share");
  for (const char* dir : {"config/vms", "state/uids", "run", "data"}) fs::create_directories(root / dir);
  std::map<std::string, std::string> env = {
      {"VMWARDEN_CONFIG_DIR", (root / "config").string()},
      {"VMWARDEN_STATE_DIR", (root / "state").string()},
      {"VMWARDEN_RUNTIME_DIR", (root / "run").string()},
  };
  auto definition = [&](const fs::path& share) {
    write_file(root / "config/vms/app.toml",
               "command = [\"/bin/true\"]\n\n[[share]]\ntag = \"s\"\npath = \"" + share.string() + "\"\n");
  };
  std::string refusal = fmt::format("share.path: {0}/state/uids is {0}/state/uids, the UID registry, which the VM "
                                    "would then reach; share a directory outside it",
                                    root.path().string());
  definition(root / "state/uids");
  CommandResult check = vmwarden({"check", "app"}, env);
  EXPECT_EQ(check.exit_code, 2) << check.err;
  EXPECT_THAT(check.err, HasSubstr((root / "config/vms/app.toml").string() + ":5:8: error: " + refusal));
  CommandResult syntax = vmwarden({"check", "--syntax-only", "app"}, env);
  EXPECT_EQ(syntax.exit_code, 0) << syntax.err;
  CommandResult audit = vmwarden({"audit", "app"}, env);
  EXPECT_EQ(audit.exit_code, 0) << audit.err;
  EXPECT_THAT(audit.out, HasSubstr("! refuses to start: line 5: " + refusal));

  definition(root / "data");
  check = vmwarden({"check", "app"}, env);
  EXPECT_EQ(check.exit_code, 0) << check.err;
  audit = vmwarden({"audit", "app"}, env);
  EXPECT_EQ(audit.exit_code, 0) << audit.err;
  EXPECT_THAT(audit.out, Not(HasSubstr("refuses to start")));
}

// Every step of an audit in --json form, the starting ones and the ending
// ones in order, with the capabilities each needs.
struct AuditedStep {
  std::string action;
  std::vector<std::string> capabilities;
};
std::vector<AuditedStep> audited_steps(const std::vector<std::string>& args,
                                       const std::map<std::string, std::string>& env = golden_env()) {
  std::vector<std::string> json_args = args;
  json_args.insert(json_args.begin() + 1, "--json");
  CommandResult result = vmwarden(json_args, env);
  EXPECT_EQ(result.exit_code, 0) << result.err;
  vm::Json parsed = vm::parse_json(result.out);
  std::vector<AuditedStep> steps;
  for (const char* list : {"steps", "exit_steps"}) {
    const vm::Json* items = parsed.find(list);
    if (items == nullptr) continue;
    for (const vm::Json& item : items->items) {
      AuditedStep step{std::string(item.string_member("action")), {}};
      if (const vm::Json* capabilities = item.find("capabilities"))
        for (const vm::Json& capability : capabilities->items) step.capabilities.push_back(capability.string);
      steps.push_back(std::move(step));
    }
  }
  return steps;
}

// The ACL walk raises its own descriptor limit while it runs, the hard
// limit too with CAP_SYS_RESOURCE (acl-manager/walk.cc): the grant's and
// the revoke's steps say so and name the capability.
TEST(Audit, TheAclWalksRaisedDescriptorLimitIsAPrivilegedStep) {
  TempDir dir("vmwarden-audit");
  fs::create_directories(dir / "share");
  write_file(dir / "app.toml", "command = [\"/bin/true\"]\n[[share]]\ntag = \"s\"\npath = \"" +
                                   (dir / "share").string() + "\"\naccess = \"rw\"\n");
  int walks = 0;
  for (const AuditedStep& step : audited_steps({"audit", (dir / "app.toml").string()})) {
    if (!step.action.starts_with("grant u:") && !step.action.starts_with("revoke uid ")) continue;
    ++walks;
    EXPECT_THAT(step.action, HasSubstr("its descriptor limit (RLIMIT_NOFILE) is raised to 1048576")) << step.action;
    EXPECT_THAT(step.capabilities, ::testing::Contains("CAP_SYS_RESOURCE")) << step.action;
  }
  EXPECT_EQ(walks, 2);
}

// The warden gives each captured pipe (the daemons' output, a VMM's
// console) to the service's uid and gid with fchown (supervisor/capture.cc),
// which needs CAP_CHOWN: each such step says so.
TEST(Audit, EveryCapturePipeIsChownedWithCapChown) {
  int pipes = 0;
  for (const AuditedStep& step : audited_steps({"audit", "doc/examples/work.toml"})) {
    if (step.action.find("receives a pipe as fd") == std::string::npos) continue;
    ++pipes;
    EXPECT_THAT(step.action, ::testing::ContainsRegex("receives a pipe as fd [0-9]+, chowned to")) << step.action;
    EXPECT_THAT(step.capabilities, ::testing::Contains("CAP_CHOWN")) << step.action;
  }
  // Two virtiofsd and the VMM: stdout and stderr each, and the VMM's console.
  EXPECT_EQ(pipes, 7);
}

// `vmwarden supervise --s6` gives a plain command pipes for its stdout and
// stderr, which the warden logs and chowns to the command's uid (CAP_CHOWN);
// by hand it passes vmwarden's own. `audit --s6` shows what s6 would run.
TEST(Audit, UnderS6ACommandsOutputPipesAreShown) {
  TempDir dir("vmwarden-audit");
  write_file(dir / "app.toml", "command = [\"/bin/true\"]\n");
  auto pipes = [&](std::vector<std::string> args) {
    std::vector<std::string> found;
    for (const AuditedStep& step : audited_steps(args))
      if (step.action.find("service command receives a pipe as fd") != std::string::npos &&
          std::find(step.capabilities.begin(), step.capabilities.end(), "CAP_CHOWN") != step.capabilities.end())
        found.push_back(step.action);
    return found;
  };
  EXPECT_EQ(pipes({"audit", "--s6", (dir / "app.toml").string()}).size(), 2u);
  EXPECT_EQ(pipes({"audit", (dir / "app.toml").string()}).size(), 0u);
}

// What a definition names reaches the audit's text escaped, as it reaches
// an error: an 8-bit CSI (U+009B) or a bidirectional override (U+202E) in a
// path would act on the terminal or reorder the line the reader checks.
TEST(Audit, ControlCharactersInPathsAreEscapedInTheText) {
  TempDir dir("vmwarden-audit");
  write_file(dir / "app.toml", "vmm = \"qemu\"\nkernel = \"" + (dir / "vm\u009b2J\u202elinuz").string() + "\"\n");
  CommandResult result = vmwarden({"audit", (dir / "app.toml").string()});
  EXPECT_EQ(result.exit_code, 0) << result.err;
  EXPECT_THAT(result.out, HasSubstr("-kernel " + (dir / "vm\\xc2\\x9b2J\\xe2\\x80\\xaelinuz").string()));
  EXPECT_THAT(result.out, Not(HasSubstr("\u009b")));
  EXPECT_THAT(result.out, Not(HasSubstr("\u202e")));
}

// ---- purity ------------------------------------------------------------------

// Everything under `root` that an audit could have changed: each entry's
// type, mode, owner, size, modification time and ACLs.
std::map<std::string, std::string> snapshot(const fs::path& root) {
  std::map<std::string, std::string> entries;
  for (auto it = fs::recursive_directory_iterator(root); it != fs::recursive_directory_iterator(); ++it) {
    struct stat st {};
    std::string path = it->path().string();
    if (::lstat(path.c_str(), &st) != 0) continue;
    std::string record = std::to_string(st.st_mode) + " " + std::to_string(st.st_uid) + " " +
                         std::to_string(st.st_size) + " " + std::to_string(st.st_mtim.tv_sec) + "." +
                         std::to_string(st.st_mtim.tv_nsec);
    for (const char* name : {"system.posix_acl_access", "system.posix_acl_default"}) {
      char value[1024];
      ssize_t n = ::lgetxattr(path.c_str(), name, value, sizeof value);
      if (n > 0) record += std::string(" ") + name + "=" + std::string(value, static_cast<std::size_t>(n));
    }
    entries[path] = record;
  }
  return entries;
}

TEST(AuditPurity, NothingIsLeasedGrantedOrCreated) {
  // A short name: run's VM (run-pid-random) puts its QMP socket at
  // run/run-pid-random/control.sock beneath it, within the 107 bytes a unix
  // socket address holds even in CI's longer build path.
  TempDir root("vw-purity");
  ASSERT_EQ(::chmod(root.path().c_str(), 0755), 0);
  fs::create_directories(root / "config" / "vms");
  fs::create_directories(root / "state");
  fs::create_directories(root / "run");
  fs::create_directories(root / "shares" / "rw");
  fs::create_directories(root / "shares" / "ro");
  write_file(root / "shares" / "rw" / "file", "data\n");
  write_file(root / "config" / "vms" / "app.toml",
             "command = [\"/bin/true\"]\n\n[uid]\nalias = \"app\"\n\n"
             "[[share]]\ntag = \"rw\"\npath = \"" + (root / "shares" / "rw").string() + "\"\naccess = \"rw\"\n\n"
             "[[share]]\ntag = \"ro\"\npath = \"" + (root / "shares" / "ro").string() + "\"\naccess = \"ro\"\n");
  write_file(root / "config" / "vms" / "once.toml",
             "command = [\"/bin/true\"]\n\n[[share]]\ntag = \"rw\"\npath = \"" + (root / "shares" / "rw").string() +
                 "\"\naccess = \"rw\"\n");
  std::map<std::string, std::string> env = {
      {"VMWARDEN_CONFIG_DIR", (root / "config").string()},
      {"VMWARDEN_STATE_DIR", (root / "state").string()},
      {"VMWARDEN_RUNTIME_DIR", (root / "run").string()},
  };
  auto audit_everything = [&] {
    std::vector<std::string> outputs;
    for (std::vector<std::string> args : std::vector<std::vector<std::string>>{
             {"audit", "app"},
             {"audit", "--json", "app"},
             {"audit", "once"},
             {"exec", "--audit", "--name", "app", "--rw", (root / "shares" / "rw").string(), "--", "/bin/true"},
             {"exec", "--audit", "--json", "--", "/bin/true"},
             {"run", "--audit", "--kernel", "/bin/true", "--initramfs", "/bin/true", "--scratch", "--rw",
              (root / "shares" / "rw").string(), "--", "/bin/true"}}) {
      CommandResult result = vmwarden(args, env);
      EXPECT_EQ(result.exit_code, 0) << result.err;
      outputs.push_back(result.out);
    }
    return outputs;
  };

  // A fresh machine: no registry at all.
  auto before = snapshot(root.path());
  std::vector<std::string> outputs = audit_everything();
  EXPECT_EQ(snapshot(root.path()), before);
  EXPECT_THAT(outputs[0], HasSubstr("alias \"app\": a UID allocated on first start"));
  EXPECT_THAT(outputs[0], HasSubstr("setresuid(<UID of alias \"app\">)"));
  EXPECT_THAT(outputs[0], HasSubstr("grant u:<UID of alias \"app\">:rwX on every"));
  EXPECT_THAT(outputs[2], HasSubstr("revoke uid <single-use UID>'s entries under"));

  // A registry with the alias allocated: the audit shows its UID, and still
  // changes nothing.
  CommandResult alloc = vmwarden({"uid", "alloc", "--alias", "app"}, env);
  ASSERT_EQ(alloc.exit_code, 0) << alloc.err;
  std::string uid = alloc.out.substr(0, alloc.out.find('\n'));
  before = snapshot(root.path());
  outputs = audit_everything();
  EXPECT_EQ(snapshot(root.path()), before);
  EXPECT_THAT(outputs[0], HasSubstr("uid: " + uid + " (alias \"app\")"));
  EXPECT_THAT(outputs[0], HasSubstr("setresuid(" + uid + ")"));
  EXPECT_THAT(outputs[0], HasSubstr("grant u:" + uid + ":rwX on every directory and regular file under " +
                                        (root / "shares" / "rw").string()));
  EXPECT_THAT(outputs[0], HasSubstr("grant u:" + uid + ":r-X on every"));
}

}  // namespace
}  // namespace vmwarden::testing
