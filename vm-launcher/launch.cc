// From a definition to a running sandbox. The order of the outer process's
// own privileged steps is in launch(); each service's confinement is decided
// in plan_launch() and applied by the supervisor.

#include "vm-launcher/launch.h"

#include <grp.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <iterator>
#include <memory>
#include <string_view>

#include "acl-manager/acl.h"
#include "common/error.h"
#include "common/log.h"
#include "common/process.h"
#include "supervisor/policy.h"
#include "virtiofs-glue/virtiofsd.h"
#include "vm-launcher/backend.h"
#include "vm-launcher/backend_util.h"
#include "vm-launcher/share_check.h"


namespace vmwarden::vm {
namespace {

acl::Access acl_access(Access access) { return access == Access::rw ? acl::Access::rw : acl::Access::ro; }

supervisor::PathRights share_rights(Access access) {
  return access == Access::rw ? supervisor::PathRights::read_write() : supervisor::PathRights::read_only();
}

supervisor::Confinement base_confinement(const Definition& definition, uid_t uid) {
  supervisor::Confinement confinement;
  confinement.uid = uid;
  confinement.gid = static_cast<gid_t>(uid);  // each VM UID doubles as its own group
  confinement.landlock.mode = definition.landlock == LandlockMode::required ? supervisor::LandlockMode::required
                                                                             : supervisor::LandlockMode::best_effort;
  confinement.landlock.deny_tcp = !definition.network;
  confinement.seccomp.action =
      definition.seccomp == SeccompMode::kill ? supervisor::SeccompAction::kill : supervisor::SeccompAction::log;
  return confinement;
}

}  // namespace

void give_standard_descriptors(supervisor::ServiceSpec& service, bool under_s6) {
  service.fds = {{0, 0}};
  for (int fd : {1, 2}) {
    if (under_s6)
      service.captures.push_back({.child_fd = fd, .to_log = true});
    else
      service.fds.push_back({fd, fd});
  }
  for (const supervisor::FdMapping& mapping : service.fds)
    if (::isatty(mapping.parent_fd)) service.terminal_fds.push_back(mapping.child_fd);
}

namespace {

// A plain-command definition: the program is the sandbox's one (main)
// service, confined like `vmwarden exec`, and its shares are paths it may
// use at the same place as on the host.
supervisor::ServiceSpec command_service(const Definition& definition, const supervisor::SandboxSpec& spec,
                                        uid_t uid) {
  supervisor::ServiceSpec service;
  service.name = "command";
  service.main = true;
  service.argv = definition.command;
  service.environment = definition.environment;
  service.cwd = "/";
  give_standard_descriptors(service, spec.require_s6_parent);
  service.confinement = base_confinement(definition, uid);
  service.confinement.landlock.paths = supervisor::command_rules(definition.command.front(), spec.runtime_dir);
  for (const Share& share : definition.shares) {
    service.confinement.landlock.paths.push_back({share.path, share_rights(share.access)});
  }
  return service;
}

// Grants cover the shares themselves, never the directories above them (a
// change there would land outside the tree asked for). So a command, which
// uses its shares at their own paths, needs each share's parent searchable
// by the VM's UID already (a virtiofsd reaches its share through the mount
// under the runtime dir instead); and the files the VMM opens
// (kernel, initramfs, disks) must be readable (writable for a read-write
// disk) by it as they are. Found out as that UID, in one child, before
// anything is granted. `who` names `uid` in the messages: it may stand in
// for the UID a lease will give.
void check_reachable(const Definition& definition, uid_t uid, const std::string& who) {
  struct Need {
    std::filesystem::path path;
    int mode;
    std::string problem;
  };
  std::vector<Need> needs;
  for (const Share& share : definition.shares) {
    if (!definition.is_command()) break;
    needs.push_back({share.path.parent_path(), X_OK,
                     fmt::format("share \"{}\": {} cannot reach {}: a directory above it is not "
                                 "searchable by other users (chmod o+x on it, or move the share below a directory "
                                 "that is)",
                                 share.tag, who, share.path.string())});
  }
  constexpr std::string_view kReadable = "make it readable by others (chmod o+r, and o+x on every directory above it)";
  auto file = [&](std::string_view what, const std::filesystem::path& path, int mode, std::string_view fix) {
    if (path.empty()) return;
    needs.push_back({path, mode, fmt::format("{} {}: {} cannot {} it; {}", what, path.string(), who,
                                             mode == R_OK ? "read" : "read and write", fix)});
  };
  file("kernel", definition.kernel, R_OK, kReadable);
  file("initramfs", definition.initramfs, R_OK, kReadable);
  for (const Disk& disk : definition.disks) {
    if (disk.readonly)
      file("disk", disk.path, R_OK, kReadable);
    else
      file("read-write disk", disk.path, R_OK | W_OK,
           "give the VM a persistent UID ([uid] alias) and make the image its own (chown UID:UID), or grant it "
           "with setfacl -m u:UID:rw");
  }
  if (needs.empty()) return;

  // The child exits with the index of the first path it cannot use, 254 if
  // it cannot become the UID, or 255 when every path is usable (a
  // definition names at most 2 + kMaxDisks of them).
  static_assert(2 + kMaxDisks < 254);
  pid_t child = ::fork();
  if (child < 0) throw_errno("fork");
  if (child == 0) {
    if (::setgroups(0, nullptr) != 0 || ::setresgid(uid, uid, uid) != 0 || ::setresuid(uid, uid, uid) != 0) ::_exit(254);
    for (size_t i = 0; i < needs.size() && i < 254; ++i)
      if (::access(needs[i].path.c_str(), needs[i].mode) != 0) ::_exit(static_cast<int>(i));
    ::_exit(255);
  }
  int status = 0;
  while (::waitpid(child, &status, 0) < 0) {
    if (errno != EINTR) throw_errno("waitpid");
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) == 254)
    throw std::runtime_error(fmt::format("cannot check the VM's paths as UID {}: the check failed to run", uid));
  if (WEXITSTATUS(status) != 255) throw PermanentError(needs.at(static_cast<size_t>(WEXITSTATUS(status))).problem);
}

// The compositor's socket: WAYLAND_DISPLAY, relative to XDG_RUNTIME_DIR
// unless absolute. Empty when unset (the backend then refuses).
std::filesystem::path host_wayland_socket() {
  const char* display = std::getenv("WAYLAND_DISPLAY");
  if (display == nullptr || *display == '\0') return {};
  std::filesystem::path socket(display);
  if (socket.is_absolute()) return socket;
  const char* runtime = std::getenv("XDG_RUNTIME_DIR");
  if (runtime == nullptr || *runtime == '\0') return {};
  return std::filesystem::path(runtime) / socket;
}

// Services get a fixed, minimal environment: nothing of the caller's leaks
// into the VM's daemons.
EnvironmentRule daemon_environment() {
  return {.inherit = false, .set = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C"}};
}

// A VM: one virtiofsd per share first (stage 0), each in a user namespace of
// its own so that its file-server capabilities act on the VM's files only,
// listening on a socket the supervisor bound; then the VMM (stage 1, the
// main service), once every virtiofsd waits for it.
void add_vm_services(const Definition& definition, supervisor::SandboxSpec& spec, uid_t uid) {
  Host host = Host::detect();
  RuntimePaths paths = RuntimePaths::in(spec.runtime_dir, definition);
  if (definition.wayland) paths.wayland_socket = host_wayland_socket();
  VmmPlan vmm = plan_vmm(definition, paths, host);
  // The daemons' output and the VMM's: pipes whose lines the warden logs
  // (to the terminal, or s6-log under s6), never vmwarden's own stderr. On
  // a terminal a compromised VMM would read the operator's keys, change the
  // terminal's modes or stop its output (and with it the warden's log
  // writes); in a log, its lines could pass for vmwarden's.
  const std::vector<supervisor::OutputCapture> output = {{.child_fd = 1, .to_log = true},
                                                          {.child_fd = 2, .to_log = true}};

  if (!definition.shares.empty()) {
    std::filesystem::path binary = backend::required_program(host.virtiofsd, "virtiofsd", "VMWARDEN_VIRTIOFSD");
    virtiofs::Dialect dialect = virtiofs::detect_dialect(binary);
    for (const Share& share : definition.shares) {
      constexpr int kListenFd = 3;
      virtiofs::Share daemon_share;
      daemon_share.binary = binary;
      daemon_share.dialect = dialect;
      daemon_share.tag = share.tag;
      // Not the share's own path: the mount of the tree its grant opened,
      // on a tmpfs only root can write (see plan_launch).
      daemon_share.shared_dir = supervisor::private_mount_point(spec, share.tag);
      daemon_share.readonly = share.access == Access::ro;
      daemon_share.socket = backend::share_socket(paths, share);
      daemon_share.listen_fd = kListenFd;
      // crosvm finds the tag through the device; QEMU names it itself.
      daemon_share.advertise_tag = definition.vmm == Vmm::crosvm;
      virtiofs::DaemonPlan daemon = virtiofs::plan_virtiofsd(daemon_share);

      supervisor::ServiceSpec service;
      service.name = "virtiofsd-" + share.tag;
      service.argv = daemon.argv;
      service.environment = daemon_environment();
      service.captures = output;
      service.listen_sockets = {{daemon_share.socket, kListenFd}};
      service.stage = 0;
      service.confinement = base_confinement(definition, uid);
      service.confinement.keep_capabilities = daemon.keep_capabilities;
      service.confinement.user_namespace = supervisor::UserNamespace::identity;
      service.confinement.landlock.paths = daemon.paths;
      service.confinement.seccomp.profile = daemon.seccomp_profile;
      // virtiofsd never uses the network, whatever the VM does.
      service.confinement.landlock.deny_tcp = true;
      service.wait_ready = daemon.wait_ready;
      service.warden_actions = daemon.warden_actions;
      spec.services.push_back(std::move(service));
    }
  }

  supervisor::ServiceSpec service;
  service.name = "vmm";
  service.main = true;
  service.stage = 1;
  service.argv = vmm.argv;
  service.environment = daemon_environment();
  // The guest's console: the warden keeps it, bounded, in serial.log.
  service.captures = output;
  service.captures.push_back({vmm.console_fd, paths.serial_log, kSerialLogMaxBytes});
  // The control socket, where the warden binds it for the VMM.
  if (vmm.control_fd) service.listen_sockets = {{paths.control_socket, *vmm.control_fd}};
  service.confinement = base_confinement(definition, uid);
  service.confinement.landlock.paths = vmm.paths;
  service.confinement.landlock.deny_tcp = !vmm.needs_network;
  service.confinement.seccomp.profile = vmm.seccomp_profile;
  service.wait_ready = vmm.wait_ready;
  service.graceful_stop = vmm.graceful_stop;
  service.force_stop = vmm.force_stop;
  service.stop_programs = vmm.stop_programs;
  service.warden_actions = vmm.warden_actions;
  service.graceful_stop_repeat = std::chrono::seconds(1);
  spec.services.push_back(std::move(service));
}

}  // namespace

LaunchPlan plan_launch(const Definition& definition, uid_t uid, const LaunchOptions& options) {
  LaunchPlan plan;
  plan.uid_alias = definition.uid_alias;
  plan.uid = uid;

  supervisor::SandboxSpec& spec = plan.sandbox;
  spec.name = definition.name;
  spec.runtime_dir = options.locations.vm_runtime_dir(definition.name);
  spec.runtime_dir_uid = uid;
  spec.runtime_dir_gid = static_cast<gid_t>(uid);
  spec.private_network = !definition.network;
  spec.shutdown_timeout = std::chrono::seconds(definition.shutdown_timeout_s);
  spec.require_s6_parent = options.under_s6;
  spec.notify_fd = options.under_s6 ? supervisor::read_s6_notification_fd() : options.notify_fd;

  // Every share is granted to the VM's UID, so that its services pass the
  // host's permission checks there. The sandbox then mounts the tree the
  // grant opened (grant_shares() attaches it), with the mounts below it
  // read-only (the grant did not walk them); all of it read-only for a
  // read-only share, which holds whatever the ACLs say:
  // - a command sees its shares where they are on the host, so each is
  //   mounted over its own path (its Landlock rule is made from the granted
  //   directory as well);
  // - each virtiofsd is given the share's mount under the runtime dir
  //   instead of its path, which whoever can write the share's parent could
  //   have pointed elsewhere by the time the daemon looks it up.
  for (const Share& share : definition.shares) {
    plan.grants.push_back({share.path, acl_access(share.access)});
    bool readonly = share.access == Access::ro;
    if (definition.is_command()) {
      spec.mounts.push_back({.source = share.path, .target = share.path, .readonly = readonly});
    } else {
      spec.mounts.push_back({.source = share.path, .name = share.tag, .readonly = readonly});
    }
  }

  order_outer_first(plan);

  if (definition.is_command()) {
    spec.services.push_back(command_service(definition, spec, uid));
  } else {
    add_vm_services(definition, spec, uid);
  }
  return plan;
}

void order_outer_first(LaunchPlan& plan) {
  auto depth = [](const std::filesystem::path& path) { return std::distance(path.begin(), path.end()); };
  std::stable_sort(plan.grants.begin(), plan.grants.end(),
                   [&](const GrantPlan& a, const GrantPlan& b) { return depth(a.tree) < depth(b.tree); });
  std::stable_sort(plan.sandbox.mounts.begin(), plan.sandbox.mounts.end(),
                   [&](const supervisor::BindMount& a, const supervisor::BindMount& b) {
                     return depth(a.target) < depth(b.target);
                   });
}

std::vector<acl::Report> grant_shares(LaunchPlan& plan, acl::ScopedGrants& grants) {
  std::vector<acl::Report> reports;
  for (const GrantPlan& grant : plan.grants) {
    acl::Granted granted = grants.grant(grant.tree, grant.access);
    auto root = std::make_shared<const UniqueFd>(std::move(granted.root));
    for (supervisor::BindMount& mount : plan.sandbox.mounts) {
      if (mount.source == grant.tree)
        mount.source_copy = std::make_shared<const UniqueFd>(supervisor::detached_copy(root->get(), grant.tree));
    }
    for (supervisor::ServiceSpec& service : plan.sandbox.services) {
      for (supervisor::PathRule& rule : service.confinement.landlock.paths) {
        if (rule.path == grant.tree) rule.pinned = root;
      }
    }
    reports.push_back(std::move(granted.report));
  }
  return reports;
}

std::vector<std::string> check_plan(const LaunchPlan& plan) {
  std::vector<std::string> warnings;
  for (const supervisor::ServiceSpec& service : plan.sandbox.services) {
    for (std::string& warning : supervisor::check_confinement(service.confinement)) {
      warnings.push_back(service.name + ": " + warning);
    }
  }
  return warnings;
}

int launch(const Definition& definition, const LaunchOptions& options) {
  // 1. Under s6, prove the parent before changing anything. From here on a
  //    stop request (s6's down-signal is SIGTERM) waits for run_sandbox(),
  //    or for the grants to be revoked and the lease released if the start
  //    fails: it must not cut a grant short and leave it behind.
  if (options.under_s6) {
    supervisor::verify_s6_parent();
    supervisor::verify_s6_timeout_kill(std::chrono::seconds(definition.shutdown_timeout_s));
  }
  block_stop_signals();

  // 2. The VM's UID: a lease that the kernel drops however this process
  //    dies, so that `vmwarden acl sweep` can tell live UIDs from dead ones.
  // 2a. Plan once with a stand-in UID from the range (as `vmwarden audit`
  //     does) before leasing: a definition the backends refuse (crosvm or
  //     cloud-hypervisor with network, a cmdline starting with '-', a
  //     missing VMM program, ...) then fails with nothing changed on disk.
  //     Each share is checked as its grant will check it (a symlink on the
  //     way, no POSIX ACLs, ...) and kept from vmwarden's own directories
  //     (`check` and `audit` report the same, but a run's own directory is
  //     known only here).
  acl::UidRegistry registry(options.locations);
  for (const GrantPlan& grant : plan_launch(definition, registry.range().first, options).grants)
    (void)checked_share(grant.tree, options.locations, options.own_state_subdir);
  // 2b. What the VM's UID must reach without a grant (the VMM's files, a
  //     command's share parents), checked as a UID the lease could give: an
  //     alias's own once allocated, else a stand-in from the range, which no
  //     host account uses. Refused here, nothing is allocated or leased.
  //     The leased UID can differ from a stand-in by ACL entries naming one
  //     of them, so a different one is checked again below.
  std::optional<uid_t> alias_uid;
  if (!definition.uid_alias.empty()) alias_uid = registry.find_alias(definition.uid_alias);
  const uid_t checked_uid = alias_uid.value_or(registry.range().first);
  std::string checked_who = fmt::format("the VM's UID {}", checked_uid);
  if (!alias_uid && definition.uid_alias.empty())
    checked_who = fmt::format("the VM's single-use UID (checked as {}, from the range it is leased from)", checked_uid);
  else if (!alias_uid)
    checked_who = fmt::format("the UID alias \"{}\" will get (checked as {}, from the range it is allocated from)",
                              definition.uid_alias, checked_uid);
  check_reachable(definition, checked_uid, checked_who);
  acl::UidLease lease =
      definition.uid_alias.empty() ? registry.lease_single_use() : registry.lease_alias(definition.uid_alias);
  if (options.prepare) options.prepare(lease.uid());

  // 3. The whole plan, checked against the kernel, before any ACL changes.
  LaunchPlan plan = plan_launch(definition, lease.uid(), options);
  //     What best-effort drops is logged once, by run_sandbox().
  check_plan(plan);
  if (lease.uid() != checked_uid) check_reachable(definition, lease.uid(), fmt::format("the VM's UID {}", lease.uid()));

  // 4. ACL grants. A single-use UID's grants are revoked when `grants` goes
  //    out of scope, on every exit path; an alias keeps its grants between
  //    runs (revoked by `vmwarden acl revoke`, or by a sweep once the alias
  //    is released).
  acl::ScopedGrants grants(registry, lease.uid());
  std::vector<acl::Report> reports = grant_shares(plan, grants);
  for (std::size_t i = 0; i < reports.size(); ++i) {
    log::info("granted {} on {} to UID {}: {}", acl::to_string(plan.grants[i].access), plan.grants[i].tree.string(),
              lease.uid(), reports[i].summary());
  }
  if (!lease.single_use()) grants.dismiss();
  plan.sandbox.after_services = [&grants] { grants.revoke_all_or_warn(); };

  // 5. The sandbox: the outer process, the warden and the services.
  return supervisor::run_sandbox(plan.sandbox);
}

}  // namespace vmwarden::vm
