// The launcher's own privileged steps around run_sandbox(), in the order
// launch() takes them (vm-launcher/launch.cc) and `vmwarden exec` mirrors.
#include "vm-launcher/launch_audit.h"

#include <fmt/format.h>

namespace vmwarden::vm {
namespace {

// The ACL walk's own limit (acl-manager/walk.cc, RaisedFileLimit): it holds a
// descriptor per level of the tree.
constexpr const char* kRaisedFileLimit =
    "while the walk runs, its descriptor limit (RLIMIT_NOFILE) is raised to 1048576 (at most fs.nr_open), the hard "
    "limit too where CAP_SYS_RESOURCE is held, else the soft one up to the hard one, and restored afterwards";
constexpr const char* kWhyRaisedFileLimit =
    "CAP_SYS_RESOURCE, where held, for the raised descriptor limit: the walk holds a descriptor per level, and a "
    "tree deeper than the limit would keep entries below it";

std::string placeholder_label(const LaunchPlan& plan, UidSource source) {
  if (source == UidSource::alias) return fmt::format("<UID of alias \"{}\">", plan.uid_alias);
  return "<single-use UID>";
}

std::string uid_fact(const LaunchPlan& plan, const LaunchAuditOptions& options) {
  switch (options.uid_source) {
    case UidSource::single_use:
      return fmt::format("a single-use UID from {}, leased at start; its ACL grants revoked and the UID released "
                         "when the sandbox ends{}",
                         options.uid_range,
                         options.shown_as_root ? "; asked for with --uid 0, it is shown to the command as uid 0 and "
                                                 "gid 0 in a user namespace of the command's own, and the host sees "
                                                 "only the single-use UID"
                                               : "");
    case UidSource::alias:
      return options.uid_is_placeholder
                 ? fmt::format("alias \"{}\": a UID allocated on first start and kept; leased while the sandbox "
                               "runs; its ACL grants stay between runs",
                               plan.uid_alias)
                 : fmt::format("{} (alias \"{}\"), leased while the sandbox runs; its ACL grants stay between runs",
                               plan.uid, plan.uid_alias);
    case UidSource::given:
      break;
  }
  return fmt::format("{}, given with --uid; no lease, no ACL grants", plan.uid);
}

}  // namespace

supervisor::SandboxAudit launch_audit(const LaunchPlan& plan, const LaunchAuditOptions& options) {
  supervisor::SandboxAudit audit;
  audit.title = options.title;
  if (options.uid_is_placeholder) audit.labels.uids[plan.uid] = placeholder_label(plan, options.uid_source);
  const std::string uid = audit.labels.text(plan.uid);
  const supervisor::SandboxSpec& spec = plan.sandbox;

  audit.facts.push_back({"uid", uid_fact(plan, options)});
  audit.facts.push_back({"runtime dir", spec.runtime_dir.string()});
  // What Landlock denies is each service's own rule (off, or dropped by
  // best-effort on a kernel before ABI 4, it denies nothing).
  bool tcp_denied_to_all = !spec.services.empty();
  for (const supervisor::ServiceSpec& service : spec.services)
    tcp_denied_to_all = tcp_denied_to_all && supervisor::landlock_denies_tcp(service.confinement);
  audit.facts.push_back(
      {"network", spec.private_network
                      ? (tcp_denied_to_all ? "none: an empty network namespace, and TCP bind/connect denied by Landlock"
                                           : "none: an empty network namespace (TCP is not denied by Landlock to "
                                             "every service: see each service below)")
                      : "the host's network namespace"});
  audit.facts.push_back({"shutdown timeout", fmt::format("{} ms", spec.shutdown_timeout.count())});
  for (const std::string& refusal : options.refusals) audit.warnings.push_back("refuses to start: " + refusal);

  audit.before = options.steps_before;
  const auto uids_dir = (options.locations.state_dir / "uids").string();
  const std::string uid_in_path = options.uid_is_placeholder ? "UID" : std::to_string(plan.uid);
  const auto lease_file = (options.locations.runtime_dir / "_uid-leases" / uid_in_path).string();
  const auto grants_dir = (options.locations.state_dir / "grants").string();
  const char* lease_why =
      "the kernel drops the lease's flock however the process dies, so that a sweep tells live UIDs from dead ones";
  if (options.uid_source != UidSource::given) {
    audit.before.push_back({"outer",
                            fmt::format("when {}/vetted holds no fresh answer for the UIDs considered: run "
                                        "/usr/bin/getent passwd and getent group for up to 64 of them, in a child "
                                        "switched to uid and gid 65534, with no supplementary groups, every "
                                        "capability set (the bounding set too) empty and no_new_privs",
                                        uids_dir),
                            {"CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP"},
                            "a UID an account of any name service (NSS) uses is never handed out; the lookup needs "
                            "no privilege, and the name service modules getent loads get none"});
  }
  if (options.uid_source == UidSource::single_use) {
    audit.before.push_back({"outer",
                            fmt::format("allocate a single-use UID in {} ({}) and lease it: a flock on {}",
                                        options.uid_range, uids_dir, lease_file),
                            {},
                            std::string("a UID no other sandbox and no host account uses; ") + lease_why});
  } else if (options.uid_source == UidSource::alias) {
    audit.before.push_back({"outer",
                            fmt::format("lease the UID of alias \"{}\" ({}{}): a flock on {}", plan.uid_alias,
                                        uids_dir, options.uid_is_placeholder ? ", allocated now" : "", lease_file),
                            {},
                            std::string("one running instance per alias; ") + lease_why});
  }
  audit.before.insert(audit.before.end(), options.steps_at_prepare.begin(), options.steps_at_prepare.end());
  const auto& services = plan.sandbox.services;
  if (std::any_of(services.begin(), services.end(), [](const auto& s) { return s.name.starts_with("virtiofsd-"); })) {
    audit.before.push_back({"outer",
                            "when the virtiofsd program's contents do not tell which virtiofsd it is (a wrapper "
                            "script): run it with --help in a child switched to uid and gid 65534 (no supplementary "
                            "groups, every capability set empty, no_new_privs, the vm-daemon seccomp profile), as "
                            "PID 1 of a PID namespace of its own in an empty network namespace, for at most 10 s",
                            {"CAP_SYS_ADMIN", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP"},
                            "its options say which command line it takes; whatever it starts dies with it, and "
                            "nothing it runs reaches the network"});
  }

  if ((options.checks_shares && !plan.grants.empty()) || !options.files_read_as_uid.empty()) {
    std::string parents, files;
    for (const GrantPlan& grant : plan.grants) {
      if (options.checks_shares) parents += (parents.empty() ? "" : ", ") + grant.tree.parent_path().string();
    }
    for (const std::filesystem::path& file : options.files_read_as_uid)
      files += (files.empty() ? "" : ", ") + file.string();
    std::string what;
    if (!parents.empty()) what = "that each share's parent is searchable: " + parents;
    if (!files.empty()) what += (what.empty() ? "" : "; and ") + ("that the VMM's files can be opened: " + files);
    audit.before.push_back({"outer",
                            fmt::format("in a forked child switched to uid {} (setgroups, setresgid, setresuid), "
                                        "before any grant, check {} (and once before the lease, as the alias's "
                                        "UID or a UID of the range, so that a refusal allocates nothing)",
                                        uid, what),
                            {"CAP_SETGID", "CAP_SETUID"},
                            files.empty() ? "grants cover the shares, never the directories above them; refuse to "
                                            "start rather than run a VM that cannot reach its share"
                                          : "grants cover the shares, never the directories above them, and nothing "
                                            "grants the VMM its kernel or disks; refuse to start, naming the path, "
                                            "rather than run a VM that cannot reach them"});
  }
  for (const GrantPlan& grant : plan.grants) {
    audit.before.push_back(
        {"outer",
         fmt::format("grant u:{}:{} on every directory and regular file under {} (and as a default entry on its "
                     "directories), recorded in {} with the directory's file handle; {}",
                     uid, grant.access == acl::Access::rw ? "rwX" : "r-X", grant.tree.string(), grants_dir,
                     kRaisedFileLimit),
         {"CAP_FOWNER", "CAP_DAC_READ_SEARCH", "CAP_SYS_ADMIN", "CAP_SYS_RESOURCE"},
         std::string("the VM's uid must pass the host's permission checks beneath the tree; the walk never follows a "
                     "symlink and skips hard links (doc/ACL.md); the handle lets revoke and sweep find the directory "
                     "after a rename; CAP_SYS_ADMIN for the trusted.vmwarden.granted-default mark put on each "
                     "directory whose default ACL the grant creates (so that a revoke drops that one and keeps an "
                     "owner's own), and for a detached nodev copy of the tree's mounts that the walk opens files "
                     "through and that is attached nowhere; ") +
             kWhyRaisedFileLimit});
    bool mounted = false, ruled = false;
    for (const supervisor::BindMount& mount : plan.sandbox.mounts) mounted = mounted || mount.source == grant.tree;
    for (const supervisor::ServiceSpec& service : plan.sandbox.services) {
      for (const supervisor::PathRule& rule : service.confinement.landlock.paths) ruled = ruled || rule.path == grant.tree;
    }
    std::string action = fmt::format("keep the directory descriptor the grant opened for {}", grant.tree.string());
    if (mounted)
      action += "; make a detached copy of its mounts through it (open_tree OPEN_TREE_CLONE | AT_RECURSIVE), private "
                "(mount_setattr MS_PRIVATE), the mounts below the tree, which the grant does not walk, read-only, "
                "for the sandbox's mount of it";
    if (ruled) action += "; the Landlock rules naming it are made from that descriptor";
    audit.before.push_back({"outer", action, mounted ? std::vector<std::string>{"CAP_SYS_ADMIN"} : std::vector<std::string>{},
                            "from the grant on, nothing looks the tree up by its path again: whoever can write the "
                            "directory above it could have renamed it away and put a symlink in its place"});
  }

  // Revoked in the reverse order of the grants (ScopedGrants).
  bool revokes = options.uid_source == UidSource::single_use && !plan.grants.empty();
  for (auto it = plan.grants.rbegin(); revokes && it != plan.grants.rend(); ++it) {
    const GrantPlan& grant = *it;
    audit.after_services.push_back({"outer",
                           fmt::format("revoke uid {}'s entries under {}, drop the default ACLs the grant "
                                       "created (and their trusted.vmwarden.granted-default marks), clear the "
                                       "set-ID bits of its files there, and remove the grant record; {}",
                                       uid, grant.tree.string(), kRaisedFileLimit),
                           {"CAP_FOWNER", "CAP_FSETID", "CAP_DAC_READ_SEARCH", "CAP_SYS_ADMIN", "CAP_SYS_RESOURCE"},
                           "a single-use UID keeps nothing, and no file it made runs as it later; done before the "
                           "runtime directory is removed, which what the services left there can make slow; if "
                           "this process is killed first, `vmwarden acl sweep` revokes them; CAP_FSETID so that "
                           "clearing one set-ID bit keeps another owner's; CAP_SYS_ADMIN and CAP_SYS_RESOURCE as "
                           "for the grant"});
  }
  if (options.uid_source == UidSource::single_use) {
    audit.after.push_back({"outer", fmt::format("release the lease on {} and return the UID to the pool", lease_file),
                           {}, "the next single-use sandbox may get it; nothing of this run is left granted to it"});
  } else if (options.uid_source == UidSource::alias) {
    audit.after.push_back({"outer", fmt::format("release the lease on {} (the alias keeps its UID)", lease_file),
                           {}, "another instance of the VM may start"});
  }
  audit.after.insert(audit.after.end(), options.steps_after.begin(), options.steps_after.end());
  return audit;
}

}  // namespace vmwarden::vm
