// The confinement's pure parts: PathRights -> Landlock bits per ABI, what
// `required` refuses and `best_effort` drops, the seccomp profiles as they
// resolve here, and the audit description (text and JSON). No root needed:
// nothing is applied (see tests/escape for that).
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cctype>
#include <string>

#include "common/error.h"
#include "supervisor/audit.h"
#include "supervisor/caps.h"
#include "supervisor/confinement.h"
#include "supervisor/landlock.h"
#include "supervisor/policy.h"
#include "supervisor/seccomp.h"

namespace vmwarden::supervisor {
namespace {

using ::testing::AllOf;
using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsSupersetOf;
using ::testing::Not;

LandlockPolicy policy_with(std::vector<PathRule> paths, LandlockMode mode = LandlockMode::required) {
  LandlockPolicy policy;
  policy.mode = mode;
  policy.paths = std::move(paths);
  return policy;
}

TEST(LandlockPlan, MapsPathRightsToAccessBits) {
  LandlockPlan plan = plan_landlock(policy_with({{"/usr", PathRights::read_execute()},
                                                 {"/srv/share", PathRights::read_write()},
                                                 {"/dev/kvm", {.read = true, .write = true, .ioctl_dev = true}},
                                                 {"/run/vmwarden/vm", PathRights::sockets()}}),
                                    7);
  ASSERT_EQ(plan.paths.size(), 4u);
  EXPECT_THAT(landlock_fs_names(plan.paths[0].allowed),
              ElementsAre("FS_EXECUTE", "FS_READ_FILE", "FS_READ_DIR"));
  auto write = landlock_fs_names(plan.paths[1].allowed);
  EXPECT_THAT(write, IsSupersetOf({"FS_WRITE_FILE", "FS_TRUNCATE", "FS_REFER", "FS_MAKE_REG",
                                   "FS_MAKE_DIR", "FS_REMOVE_FILE", "FS_MAKE_SOCK"}));
  // Device nodes are never creatable, not even beneath a writable path.
  EXPECT_THAT(write, AllOf(Not(Contains("FS_MAKE_CHAR")), Not(Contains("FS_MAKE_BLOCK")),
                           Not(Contains("FS_EXECUTE")), Not(Contains("FS_IOCTL_DEV"))));
  EXPECT_THAT(landlock_fs_names(plan.paths[2].allowed), Contains("FS_IOCTL_DEV"));
  // A VMM's runtime directory: its sockets, and no file.
  EXPECT_THAT(landlock_fs_names(plan.paths[3].allowed), ElementsAre("FS_READ_FILE", "FS_READ_DIR", "FS_MAKE_SOCK"));
  // Everything ABI 7 knows is handled (denied unless granted), the device
  // node rights included; TCP is denied; both scopes are set.
  EXPECT_EQ(landlock_fs_names(plan.handled_fs).size(), 16u);
  EXPECT_THAT(landlock_net_names(plan.handled_net), ElementsAre("NET_BIND_TCP", "NET_CONNECT_TCP"));
  EXPECT_THAT(landlock_scope_names(plan.scoped), ElementsAre("ABSTRACT_UNIX_SOCKET", "SIGNAL"));
  EXPECT_TRUE(plan.dropped.empty());
}

TEST(LandlockPlan, FileRulesKeepOnlyFileRights) {
  EXPECT_THAT(landlock_fs_names(landlock_file_rights()),
              ElementsAre("FS_EXECUTE", "FS_WRITE_FILE", "FS_READ_FILE", "FS_TRUNCATE", "FS_IOCTL_DEV"));
}

TEST(LandlockPlan, RequiredNamesEveryMissingFeatureAndTheAbi) {
  LandlockPolicy policy = policy_with({{"/srv/share", PathRights::read_write()}});
  try {
    plan_landlock(policy, 1);
    FAIL() << "ABI 1 accepted";
  } catch (const PermanentError& error) {
    std::string message = error.what();
    EXPECT_THAT(message, HasSubstr("Landlock ABI 1,"));
    EXPECT_THAT(message, HasSubstr("FS_REFER for /srv/share (ABI 2"));
    EXPECT_THAT(message, HasSubstr("FS_TRUNCATE (ABI 3"));
    EXPECT_THAT(message, HasSubstr("NET_BIND_TCP and NET_CONNECT_TCP (ABI 4"));
    EXPECT_THAT(message, HasSubstr("scope SIGNAL (ABI 6"));
    EXPECT_THAT(message, HasSubstr("Linux >= 6.12 (Landlock ABI 6)"));
    EXPECT_THAT(message, HasSubstr("best-effort"));
  }
  try {
    plan_landlock(policy, 0);
    FAIL() << "ABI 0 accepted";
  } catch (const PermanentError& error) {
    EXPECT_THAT(error.what(), HasSubstr("Landlock ABI 0"));
    EXPECT_THAT(error.what(), HasSubstr("Landlock (ABI 1, Linux 5.13)"));
  }
  // What the policy does not ask for is not needed.
  policy.scope_signal = policy.scope_abstract_unix = policy.deny_tcp = false;
  EXPECT_NO_THROW(plan_landlock(policy, 3));
  EXPECT_THROW(plan_landlock(policy, 2), PermanentError);  // FS_TRUNCATE
}

TEST(LandlockPlan, BestEffortMasksToTheAbiAndListsTheDrops) {
  LandlockPolicy policy = policy_with({{"/srv/share", PathRights::read_write()},
                                       {"/dev/kvm", {.read = true, .ioctl_dev = true}}},
                                      LandlockMode::best_effort);
  LandlockPlan plan = plan_landlock(policy, 4);
  EXPECT_EQ(plan.abi, 4);
  EXPECT_THAT(landlock_fs_names(plan.handled_fs), Not(Contains("FS_IOCTL_DEV")));
  EXPECT_THAT(landlock_fs_names(plan.handled_fs), Contains("FS_TRUNCATE"));
  EXPECT_EQ(plan.scoped, 0u);
  EXPECT_NE(plan.handled_net, 0u);
  ASSERT_EQ(plan.dropped.size(), 3u);
  EXPECT_THAT(plan.dropped[0], HasSubstr("FS_IOCTL_DEV for /dev/kvm (ABI 5"));
  EXPECT_THAT(plan.dropped[1], HasSubstr("scope ABSTRACT_UNIX_SOCKET (ABI 6"));
  EXPECT_THAT(plan.dropped[2], HasSubstr("scope SIGNAL (ABI 6"));
  EXPECT_THAT(landlock_fs_names(plan.paths[1].allowed), ElementsAre("FS_READ_FILE", "FS_READ_DIR"));

  LandlockPlan none = plan_landlock(policy, 0);
  EXPECT_TRUE(none.paths.empty());
  ASSERT_EQ(none.dropped.size(), 1u);
  EXPECT_THAT(none.dropped[0], HasSubstr("no filesystem, network or scope restriction"));
}

TEST(LandlockPlan, RelativePathsAreRejected) {
  EXPECT_THROW(plan_landlock(policy_with({{"srv", PathRights::read_only()}}), 7), UsageError);
}

TEST(LandlockAbi, OverrideReplacesTheDetectedAbi) {
  int detected = landlock_abi();
  override_landlock_abi_for_testing(2);
  EXPECT_EQ(landlock_abi(), 2);
  override_landlock_abi_for_testing(std::nullopt);
  EXPECT_EQ(landlock_abi(), detected);
}

TEST(Policy, SystemRulesCoverTheLoaderAndExistOnly) {
  auto rules = system_read_execute_rules();
  ASSERT_FALSE(rules.empty());
  EXPECT_EQ(rules[0].path, "/usr");
  EXPECT_TRUE(rules[0].rights.execute);
  for (const auto& rule : rules) {
    EXPECT_TRUE(std::filesystem::exists(rule.path)) << rule.path;
    EXPECT_FALSE(rule.rights.write) << rule.path;
  }
  for (const auto& rule : device_rules()) EXPECT_FALSE(rule.rights.execute) << rule.path;
}

TEST(Seccomp, VmDaemonDeniesWhatTheIssueLists) {
  SeccompProfileInfo info = describe_seccomp_profile("vm-daemon");
  EXPECT_EQ(info.kind, SeccompKind::deny_list);
  EXPECT_THAT(info.syscalls,
              IsSupersetOf({"ptrace", "process_vm_readv", "process_vm_writev", "kexec_load",
                            "kexec_file_load", "init_module", "finit_module", "delete_module", "bpf",
                            "perf_event_open", "keyctl", "add_key", "request_key", "mount", "umount2",
                            "pivot_root", "move_mount", "open_tree", "fsopen", "fsconfig", "fsmount",
                            "fspick", "mount_setattr", "open_tree_attr", "setns",
                            "open_by_handle_at", "acct", "swapon", "swapoff", "reboot"}));
  EXPECT_THAT(info.enosys, IsSupersetOf({"clone3", "userfaultfd", "io_uring_setup"}));
  EXPECT_THAT(info.argument_filters, Contains(HasSubstr("clone: refused with any CLONE_NEW")));
  EXPECT_THAT(info.argument_filters, Contains(HasSubstr("unshare: refused with any CLONE_NEW")));
  EXPECT_THAT(info.syscalls, Not(Contains("landlock_restrict_self")));  // stacking only narrows
}

TEST(Seccomp, EveryProfileBuildsAndUnknownOnesAreRefused) {
  for (const std::string& name : seccomp_profile_names()) {
    SeccompProfileInfo info = describe_seccomp_profile(name);
    SeccompFilter filter(SeccompPolicy{.profile = name});
    EXPECT_EQ(filter.empty(), info.kind == SeccompKind::none) << name;
    if (info.kind == SeccompKind::allow_list) {
      EXPECT_THAT(info.syscalls, IsSupersetOf({"execve", "exit_group", "read"})) << name;
      EXPECT_THAT(info.syscalls, Not(Contains("ptrace"))) << name;
      EXPECT_THAT(info.syscalls, Not(Contains("mount"))) << name;
    }
  }
  try {
    describe_seccomp_profile("vm-deamon");
    FAIL();
  } catch (const UsageError& error) {
    EXPECT_THAT(error.what(), HasSubstr("did you mean \"vm-daemon\""));
  }
}

// The programs the binary carries (compiled at build time) are exactly what
// libseccomp compiles from the profiles now, for both actions; the kill and
// log variants differ only in their action.
TEST(Seccomp, PrecompiledProgramsMatchTheProfiles) {
  for (const std::string& name : seccomp_profile_names()) {
    for (SeccompAction action : {SeccompAction::kill, SeccompAction::log}) {
      SeccompPolicy policy{.profile = name, .action = action};
      std::vector<sock_filter> compiled = compile_seccomp_program(policy);
      std::span<const sock_filter> precompiled = SeccompFilter(policy).program();
      ASSERT_EQ(precompiled.size(), compiled.size()) << name;
      for (std::size_t i = 0; i < compiled.size(); ++i) {
        EXPECT_EQ(precompiled[i].code, compiled[i].code) << name << " instruction " << i;
        EXPECT_EQ(precompiled[i].jt, compiled[i].jt) << name << " instruction " << i;
        EXPECT_EQ(precompiled[i].jf, compiled[i].jf) << name << " instruction " << i;
        EXPECT_EQ(precompiled[i].k, compiled[i].k) << name << " instruction " << i;
      }
    }
    if (describe_seccomp_profile(name).kind == SeccompKind::none) continue;
    auto kill = SeccompFilter({.profile = name, .action = SeccompAction::kill}).program();
    auto log = SeccompFilter({.profile = name, .action = SeccompAction::log}).program();
    EXPECT_FALSE(std::equal(kill.begin(), kill.end(), log.begin(), log.end(),
                            [](const sock_filter& a, const sock_filter& b) { return a.k == b.k; }))
        << name;
  }
}

TEST(Caps, NamesAndValidation) {
  EXPECT_EQ(capability_name(18), "cap_sys_chroot");
  EXPECT_EQ(capability_from_name("cap_sys_chroot"), 18);
  EXPECT_THROW(validate_capabilities({capability_count()}), UsageError);
  EXPECT_THROW(validate_capabilities({-1}), UsageError);
}

// A strict JSON syntax check: enough to prove the audit's output parses.
class JsonChecker {
 public:
  explicit JsonChecker(std::string_view text) : text_(text) {}
  bool valid() {
    bool ok = value();
    space();
    return ok && at_ == text_.size();
  }

 private:
  void space() {
    while (at_ < text_.size() && std::isspace(static_cast<unsigned char>(text_[at_]))) ++at_;
  }
  bool eat(char c) {
    space();
    if (at_ < text_.size() && text_[at_] == c) return ++at_, true;
    return false;
  }
  bool literal(std::string_view word) {
    space();
    if (text_.substr(at_, word.size()) != word) return false;
    at_ += word.size();
    return true;
  }
  bool string() {
    if (!eat('"')) return false;
    while (at_ < text_.size() && text_[at_] != '"') {
      if (static_cast<unsigned char>(text_[at_]) < 0x20) return false;
      if (text_[at_] == '\\') ++at_;
      ++at_;
    }
    return at_++ < text_.size();
  }
  bool number() {
    space();
    std::size_t start = at_;
    while (at_ < text_.size() && (std::isdigit(static_cast<unsigned char>(text_[at_])) || text_[at_] == '-')) ++at_;
    return at_ > start;
  }
  bool value() {
    space();
    if (at_ >= text_.size()) return false;
    char c = text_[at_];
    if (c == '"') return string();
    if (c == '{') return sequence('}', true);
    if (c == '[') return sequence(']', false);
    if (c == 't') return literal("true");
    if (c == 'f') return literal("false");
    if (c == 'n') return literal("null");
    return number();
  }
  bool sequence(char close, bool object) {
    ++at_;
    if (eat(close)) return true;
    do {
      if (object && !(string() && eat(':'))) return false;
      if (!value()) return false;
    } while (eat(','));
    return eat(close);
  }
  std::string_view text_;
  std::size_t at_ = 0;
};

Confinement example_confinement() {
  Confinement confinement;
  confinement.uid = confinement.gid = 4242;
  confinement.keep_capabilities = {18};
  confinement.landlock.paths = {{"/usr", PathRights::read_execute()},
                                {"/dev/null", PathRights::read_write()},
                                {"/nonexistent/\"quoted\"\tpath", PathRights::read_write()}};
  return confinement;
}

TEST(Audit, TextShowsTheConfinementAsAppliedOnThisAbi) {
  override_landlock_abi_for_testing(7);
  std::string text = describe_confinement_text("virtiofsd-home", example_confinement());
  override_landlock_abi_for_testing(std::nullopt);
  EXPECT_THAT(text, HasSubstr("service virtiofsd-home\n"));
  EXPECT_THAT(text, HasSubstr("identity: uid 4242, gid 4242, no supplementary groups"));
  EXPECT_THAT(text, HasSubstr("capabilities: 1 kept (ambient): cap_sys_chroot;"));
  EXPECT_THAT(text, HasSubstr("landlock: required, this kernel's ABI 7"));
  EXPECT_THAT(text, HasSubstr("    /usr (directory): FS_EXECUTE FS_READ_FILE FS_READ_DIR\n"));
  // A file gets the file rights only.
  EXPECT_THAT(text, HasSubstr("    /dev/null (file): FS_WRITE_FILE FS_READ_FILE FS_TRUNCATE\n"));
  EXPECT_THAT(text, HasSubstr("(missing): "));
  EXPECT_THAT(text, HasSubstr("tcp: NET_BIND_TCP NET_CONNECT_TCP denied on every port"));
  EXPECT_THAT(text, HasSubstr("scopes: ABSTRACT_UNIX_SOCKET SIGNAL"));
  std::size_t denied = describe_seccomp_profile("vm-daemon").syscalls.size();
  EXPECT_THAT(text, HasSubstr("seccomp: profile vm-daemon (deny-list), action kill, " +
                              std::to_string(denied) + " syscalls denied"));
  EXPECT_THAT(text, HasSubstr("! keeps capability cap_sys_chroot\n"));
  EXPECT_THAT(text, Not(HasSubstr("user namespace")));
}

// The host's uid 0 needs no capability to connect to root's sockets or to
// write root-owned sysctls: no service runs as it. Root of a user namespace
// of its own is an unprivileged UID to the host, and allowed.
TEST(Confinement, NoServiceRunsAsTheHostsRoot) {
  Confinement root = example_confinement();
  root.uid = 0;
  EXPECT_THROW(check_confinement(root), PermanentError);
  root.user_namespace = UserNamespace::identity;
  EXPECT_THROW(check_confinement(root), PermanentError);
  root.user_namespace = UserNamespace::root;
  EXPECT_THROW(check_confinement(root), PermanentError) << "uid 0 mapped onto 0 is still the host's root";
  Confinement root_group = example_confinement();
  root_group.gid = 0;
  EXPECT_THROW(check_confinement(root_group), PermanentError) << "nor with the host's group 0";
  Confinement mapped = example_confinement();
  mapped.user_namespace = UserNamespace::root;
  EXPECT_NO_THROW(check_confinement(mapped));
  std::string text = describe_confinement_text("command", mapped);
  EXPECT_THAT(text, HasSubstr("user namespace: its own, in which only uid 4242 and gid 4242 are mapped, as uid 0 and "
                              "gid 0 (root there, with no capability; the host sees uid 4242); setgroups denied"));
}

TEST(Audit, FlagsDropsAndRefusals) {
  Confinement weakened = example_confinement();
  weakened.keep_capabilities.clear();
  weakened.seccomp.action = SeccompAction::log;
  weakened.landlock.mode = LandlockMode::best_effort;
  override_landlock_abi_for_testing(5);
  std::string text = describe_confinement_text("command", weakened);
  weakened.landlock.mode = LandlockMode::required;
  std::string refused = describe_confinement_text("command", weakened);
  override_landlock_abi_for_testing(std::nullopt);

  EXPECT_THAT(text, HasSubstr("! seccomp violations are only logged"));
  EXPECT_THAT(text, HasSubstr("! Landlock drops scope SIGNAL (ABI 6"));
  EXPECT_THAT(text, HasSubstr("    dropped: scope ABSTRACT_UNIX_SOCKET (ABI 6"));
  EXPECT_THAT(text, HasSubstr("scopes: none"));
  EXPECT_THAT(refused, HasSubstr("refuses to start: landlock = \"required\", but this kernel offers Landlock ABI 5"));
  EXPECT_THAT(refused, HasSubstr("! refuses to start"));
}

TEST(Audit, JsonIsValidAndComplete) {
  override_landlock_abi_for_testing(7);
  std::string json = describe_confinement_json("vmm", example_confinement());
  override_landlock_abi_for_testing(5);
  std::string refused = describe_confinement_json("vmm", example_confinement());
  override_landlock_abi_for_testing(std::nullopt);
  EXPECT_TRUE(JsonChecker(json).valid()) << json;
  EXPECT_TRUE(JsonChecker(refused).valid()) << refused;
  EXPECT_FALSE(JsonChecker("{\"a\":[1,}").valid());  // the checker can fail
  EXPECT_THAT(json, HasSubstr("\"service\":\"vmm\",\"uid\":4242,\"gid\":4242,\"supplementary_groups\":[]"));
  EXPECT_THAT(json, HasSubstr("\"kept\":[\"cap_sys_chroot\"]"));
  EXPECT_THAT(json, HasSubstr("{\"path\":\"/nonexistent/\\\"quoted\\\"\\tpath\",\"type\":\"missing\""));
  EXPECT_THAT(json, HasSubstr("\"scopes\":[\"ABSTRACT_UNIX_SOCKET\",\"SIGNAL\"]"));
  EXPECT_THAT(json, HasSubstr("\"refused\":null"));
  std::size_t denied = describe_seccomp_profile("vm-daemon").syscalls.size();
  EXPECT_THAT(json, HasSubstr("\"profile\":\"vm-daemon\",\"kind\":\"deny-list\",\"action\":\"kill\","
                              "\"syscall_count\":" + std::to_string(denied)));
  EXPECT_THAT(refused, HasSubstr("\"refused\":\"landlock = \\\"required\\\", but this kernel offers Landlock ABI 5"));
}

}  // namespace
}  // namespace vmwarden::supervisor
