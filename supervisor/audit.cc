#include "supervisor/audit.h"

#include <sys/stat.h>

#include <fmt/format.h>

#include <algorithm>
#include <optional>

#include "common/error.h"
#include "supervisor/caps.h"
#include "supervisor/json_text.h"
#include "supervisor/landlock.h"
#include "supervisor/seccomp.h"

namespace vmwarden::supervisor {
namespace {

struct PathAudit {
  std::string path;
  std::string type;  // "directory", "file", "missing"
  std::vector<std::string> rights;
};

// Everything the two renderings show, gathered once.
struct Audit {
  std::string service;
  uid_t uid = 0;
  UserNamespace user_namespace = UserNamespace::host;
  gid_t gid = 0;
  std::vector<std::string> kept_capabilities;
  std::vector<std::string> dropped_capabilities;
  std::vector<std::string> securebits;

  std::string landlock_mode;
  int abi = 0;
  std::optional<std::string> refused;  // a `required` policy this kernel cannot meet
  std::vector<std::string> handled_fs, handled_net, scopes, dropped;
  std::vector<PathAudit> paths;

  SeccompProfileInfo seccomp;
  std::string seccomp_action;

  std::vector<std::string> flags;
};

Audit gather(std::string_view service, const Confinement& confinement, const AuditLabels& labels) {
  Audit audit;
  audit.service = service;
  audit.uid = confinement.uid;
  audit.user_namespace = confinement.user_namespace;
  audit.gid = confinement.gid;

  validate_capabilities(confinement.keep_capabilities);
  for (int capability = 0; capability < capability_count(); ++capability) {
    bool kept = std::find(confinement.keep_capabilities.begin(), confinement.keep_capabilities.end(),
                          capability) != confinement.keep_capabilities.end();
    (kept ? audit.kept_capabilities : audit.dropped_capabilities).push_back(capability_name(capability));
  }
  for (const auto& name : audit.kept_capabilities)
    audit.flags.push_back("keeps capability " + name +
                          (confinement.user_namespace != UserNamespace::host ? " (over its own user namespace only)"
                                                                             : ""));
  // Exactly the bits caps.cc sets (SECBIT_KEEP_CAPS itself is left clear).
  audit.securebits = {"SECBIT_NOROOT", "SECBIT_NOROOT_LOCKED", "SECBIT_KEEP_CAPS_LOCKED",
                      "SECBIT_NO_CAP_AMBIENT_RAISE", "SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED"};

  const LandlockPolicy& policy = confinement.landlock;
  audit.landlock_mode = policy.mode == LandlockMode::required      ? "required"
                        : policy.mode == LandlockMode::best_effort ? "best-effort"
                                                                    : "off";
  audit.abi = landlock_abi();
  if (policy.mode == LandlockMode::off)
    audit.flags.push_back("no Landlock domain (landlock off): no filesystem, TCP, signal or abstract-socket "
                          "restriction by Landlock");
  LandlockPlan plan;
  try {
    plan = plan_landlock(policy, audit.abi);
  } catch (const PermanentError& error) {
    audit.refused = error.what();
    audit.flags.push_back("refuses to start: the kernel lacks Landlock features the policy requires");
    // Describe what the policy would be on a kernel that has them.
    LandlockPolicy relaxed = policy;
    relaxed.mode = LandlockMode::best_effort;
    plan = plan_landlock(relaxed, audit.abi);
  }
  audit.handled_fs = landlock_fs_names(plan.handled_fs);
  audit.handled_net = landlock_net_names(plan.handled_net);
  audit.scopes = landlock_scope_names(plan.scoped);
  audit.dropped = plan.dropped;
  if (!audit.refused)
    for (const auto& dropped : plan.dropped) audit.flags.push_back("Landlock drops " + dropped);
  for (const LandlockPathPlan& rule : plan.paths) {
    PathAudit path{rule.path.string(), "missing", {}};
    std::uint64_t allowed = rule.allowed;
    struct stat st {};
    if (::stat(rule.path.c_str(), &st) == 0) {
      path.type = S_ISDIR(st.st_mode) ? "directory" : "file";
      if (!S_ISDIR(st.st_mode)) allowed &= landlock_file_rights();
    }
    path.rights = landlock_fs_names(allowed);
    if (rule.path == "/" && !path.rights.empty())
      audit.flags.push_back("Landlock grants " + join(path.rights, "|") + " on the whole filesystem");
    audit.paths.push_back(std::move(path));
  }

  audit.seccomp = describe_seccomp_profile(confinement.seccomp.profile);
  audit.seccomp_action = confinement.seccomp.action == SeccompAction::kill ? "kill" : "log";
  if (audit.seccomp.kind == SeccompKind::none)
    audit.flags.push_back("no seccomp filter (profile \"none\")");
  else if (confinement.seccomp.action == SeccompAction::log)
    audit.flags.push_back("seccomp violations are only logged (action \"log\")");
  return audit;
}

const char* user_namespace_name(UserNamespace user_namespace) {
  switch (user_namespace) {
    case UserNamespace::host:
      return "host";
    case UserNamespace::identity:
      return "identity";
    case UserNamespace::root:
      return "root";
  }
  return "host";
}

const char* kind_name(SeccompKind kind) {
  switch (kind) {
    case SeccompKind::deny_list: return "deny-list";
    case SeccompKind::allow_list: return "allow-list";
    case SeccompKind::none: break;
  }
  return "none";
}

}  // namespace

bool landlock_denies_tcp(const Confinement& confinement) {
  LandlockPolicy policy = confinement.landlock;
  if (policy.mode == LandlockMode::off || !policy.deny_tcp) return false;
  // A required policy this kernel cannot meet starts nothing; what it
  // would deny is what it asks for.
  if (policy.mode == LandlockMode::required) return true;
  return plan_landlock(policy, landlock_abi()).handled_net != 0;
}

const std::string* AuditLabels::label(uid_t uid) const {
  auto found = uids.find(uid);
  return found == uids.end() ? nullptr : &found->second;
}

std::string AuditLabels::text(uid_t uid) const {
  const std::string* found = label(uid);
  return found ? *found : std::to_string(uid);
}

std::string describe_confinement_text(std::string_view service, const Confinement& confinement,
                                      const AuditLabels& labels) {
  Audit audit = gather(service, confinement, labels);
  std::string out = fmt::format("service {}\n", audit.service);
  const std::string* uid_label = labels.label(audit.uid);
  const std::string* gid_label = labels.label(audit.gid);
  std::string uid = uid_label ? *uid_label : std::to_string(audit.uid);
  std::string gid = gid_label ? (audit.gid == audit.uid ? std::string("the same number") : *gid_label)
                              : std::to_string(audit.gid);
  out += fmt::format("  identity: uid {}, gid {}, no supplementary groups\n", uid, gid);
  if (audit.user_namespace == UserNamespace::identity)
    out += fmt::format("  user namespace: its own, mapping only uid {} and gid {} onto themselves; setgroups "
                       "denied\n",
                       uid, gid);
  else if (audit.user_namespace == UserNamespace::root)
    out += fmt::format("  user namespace: its own, in which only uid {} and gid {} are mapped, as uid 0 and gid 0 "
                       "(root there, with no capability; the host sees uid {}); setgroups denied\n",
                       uid, gid, uid);
  out += fmt::format("  capabilities: {} kept{}{}; {} dropped from every set and the bounding set\n",
                     audit.kept_capabilities.size(), audit.kept_capabilities.empty() ? "" : " (ambient): ",
                     join(audit.kept_capabilities, ", "), audit.dropped_capabilities.size());
  out += fmt::format("  securebits: {}; no_new_privs; parent-death signal SIGKILL\n",
                     join(audit.securebits, ", "));
  out += fmt::format("  landlock: {}, this kernel's ABI {}\n", audit.landlock_mode, audit.abi);
  if (audit.refused) out += fmt::format("    refuses to start: {}\n", *audit.refused);
  if (audit.abi >= 1 && audit.landlock_mode != "off") {
    out += fmt::format("    handled: {}\n", join(audit.handled_fs, " "));
    for (const PathAudit& path : audit.paths)
      out += fmt::format("    {} ({}): {}\n", path.path, path.type, join(path.rights, " "));
    out += fmt::format("    tcp: {}\n", audit.handled_net.empty()
                                           ? std::string("not restricted")
                                           : join(audit.handled_net, " ") + " denied on every port");
    out += fmt::format("    scopes: {}\n", audit.scopes.empty() ? "none" : join(audit.scopes, " "));
  }
  for (const auto& dropped : audit.dropped) out += fmt::format("    dropped: {}\n", dropped);
  const SeccompProfileInfo& seccomp = audit.seccomp;
  if (seccomp.kind == SeccompKind::none) {
    out += fmt::format("  seccomp: profile {}: no filter\n", seccomp.name);
  } else {
    out += fmt::format("  seccomp: profile {} ({}), action {}, {} syscalls{}\n", seccomp.name,
                       kind_name(seccomp.kind), audit.seccomp_action, seccomp.syscalls.size(),
                       seccomp.kind == SeccompKind::deny_list ? " denied" : " allowed");
    for (const auto& filter : seccomp.argument_filters) out += fmt::format("    {}\n", filter);
    out += fmt::format("    ENOSYS: {}\n", join(seccomp.enosys, " "));
    out += fmt::format("    other architectures (i386, x32): {}\n", audit.seccomp_action);
  }
  for (const auto& flag : audit.flags) out += fmt::format("! {}\n", flag);
  return out;
}

std::string describe_confinement_json(std::string_view service, const Confinement& confinement,
                                      const AuditLabels& labels) {
  Audit audit = gather(service, confinement, labels);
  auto id_json = [&](uid_t id) { return labels.label(id) ? std::string("null") : std::to_string(id); };
  auto label_json = [&](uid_t id) { return labels.label(id) ? json_quote(*labels.label(id)) : std::string("null"); };
  std::string paths = "[";
  for (std::size_t i = 0; i < audit.paths.size(); ++i)
    paths += fmt::format("{}{{\"path\":{},\"type\":{},\"rights\":{}}}", i ? "," : "",
                         json_quote(audit.paths[i].path), json_quote(audit.paths[i].type),
                         json_strings(audit.paths[i].rights));
  paths += "]";
  const SeccompProfileInfo& seccomp = audit.seccomp;
  return fmt::format(
      "{{\"service\":{},\"uid\":{},\"gid\":{},\"supplementary_groups\":[],\"uid_label\":{},\"gid_label\":{},"
      "\"user_namespace\":{},"
      "\"capabilities\":{{\"kept\":{},\"dropped\":{},\"securebits\":{},\"no_new_privs\":true}},"
      "\"parent_death_signal\":\"SIGKILL\","
      "\"landlock\":{{\"mode\":{},\"abi\":{},\"refused\":{},\"handled_fs\":{},\"paths\":{},"
      "\"handled_net\":{},\"scopes\":{},\"dropped\":{}}},"
      "\"seccomp\":{{\"profile\":{},\"kind\":{},\"action\":{},\"syscall_count\":{},\"syscalls\":{},"
      "\"argument_filters\":{},\"enosys\":{}}},"
      "\"flags\":{}}}",
      json_quote(audit.service), id_json(audit.uid), id_json(audit.gid), label_json(audit.uid),
      label_json(audit.gid), json_quote(user_namespace_name(audit.user_namespace)), json_strings(audit.kept_capabilities),
      json_strings(audit.dropped_capabilities), json_strings(audit.securebits),
      json_quote(audit.landlock_mode), audit.abi, audit.refused ? json_quote(*audit.refused) : "null",
      json_strings(audit.handled_fs), paths, json_strings(audit.handled_net),
      json_strings(audit.scopes), json_strings(audit.dropped), json_quote(seccomp.name),
      json_quote(kind_name(seccomp.kind)),
      json_quote(seccomp.kind == SeccompKind::none ? "none" : audit.seccomp_action),
      seccomp.syscalls.size(), json_strings(seccomp.syscalls), json_strings(seccomp.argument_filters),
      json_strings(seccomp.enosys), json_strings(audit.flags));
}

}  // namespace vmwarden::supervisor
