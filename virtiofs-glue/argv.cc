// virtiofsd's command line in both dialects. Both daemons run with their
// chroot sandbox: their namespace sandbox needs unshare, mount and
// pivot_root, which vmwarden's seccomp profiles deny (the warden has already
// given each service its own mount and PID namespace).
#include <linux/capability.h>

#include <cctype>

#include <fmt/core.h>

#include "common/error.h"
#include "common/process.h"
#include "supervisor/policy.h"
#include "virtiofs-glue/virtiofsd.h"

namespace vmwarden::virtiofs {
namespace {

// The C daemon splits -o values at ',' (and takes '\\' as an escape) and
// both VMMs' socket options split at ',' ':' '='; a path is accepted only
// without them, and, as every path vmwarden hands a daemon, without '.',
// '..' or empty components, so that it names what it seems to.
std::string checked(std::string_view what, const std::filesystem::path& path) {
  const std::string& text = path.native();
  bool ok = path.is_absolute() && text.size() < 4096;
  for (char c : text)
    ok = ok && c != ',' && c != ':' && c != '=' && c != '\\' && static_cast<unsigned char>(c) >= 0x20 && c != 0x7f;
  ok = ok && text.find("//") == std::string::npos && text.back() != '/';
  for (const auto& component : path.relative_path()) ok = ok && component != "." && component != "..";
  if (!ok)
    throw UsageError(fmt::format("virtiofsd {} \"{}\" must be an absolute path without '.', '..' or empty "
                                 "components and without ',' ':' '=' '\\' or control characters (they would "
                                 "inject virtiofsd options)",
                                 what, text));
  return text;
}

std::string checked_tag(std::string_view tag) {
  bool ok = !tag.empty() && tag.size() <= 36;
  for (char c : tag) ok = ok && (std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-');
  if (!ok) throw UsageError(fmt::format("virtiofs tag \"{}\" must be 1 to 36 characters from A-Z a-z 0-9 _ -", tag));
  return std::string(tag);
}

// Neither device nodes (CAP_MKNOD) nor file capabilities (CAP_SETFCAP) are
// ever created on the guest's behalf.
//
// Extended attributes and POSIX ACLs are on: the share is reachable by the
// VM's UID through the ACL vmwarden granted (the directory's mode bits are
// usually the host user's own), and the guest kernel checks permissions
// itself (virtiofs mounts with default_permissions), so it must see that
// ACL. What the guest can set is bounded by the daemon's user namespace:
// user.* attributes and ACLs naming the VM's own UID; trusted.* and
// security.* need capabilities over the host's namespace, and an ACL naming
// any other uid does not map (EINVAL). See doc/SECURITY.md.
constexpr std::string_view kDroppedCaps = "-mknod:-setfcap";

}  // namespace

DaemonPlan plan_virtiofsd(const Share& share) {
  using supervisor::PathRights;
  DaemonPlan plan;
  std::string binary = checked("program", share.binary);
  std::string dir = checked("shared directory", share.shared_dir);
  std::string socket = checked("socket", share.socket);
  std::string tag = checked_tag(share.tag);
  std::string listen = share.listen_fd ? fmt::format("--fd={}", *share.listen_fd) : "--socket-path=" + socket;

  auto& argv = plan.argv;
  argv.push_back(binary);
  argv.push_back(listen);
  if (share.dialect == Dialect::c) {
    if (share.advertise_tag)
      throw UsageError(fmt::format("share \"{}\": QEMU's C virtiofsd cannot advertise a tag (crosvm needs one); "
                                   "use the Rust virtiofsd",
                                   tag));
    for (std::string option : {"source=" + dir, std::string("sandbox=chroot"), std::string("cache=auto"),
                               std::string("xattr"), std::string("posix_acl"), fmt::format("modcaps={}", kDroppedCaps),
                               std::string("log_level=warn")}) {
      argv.push_back("-o");
      argv.push_back(option);
    }
    // 0: keep the inherited limit instead of raising it, which needs
    // CAP_SYS_RESOURCE.
    argv.push_back("--rlimit-nofile=0");
    // Traced from this daemon (supervisor/seccomp_allow_lists.inc).
    plan.seccomp_profile = "virtiofsd";
  } else {
    argv.push_back("--shared-dir=" + dir);
    if (share.advertise_tag) argv.push_back("--tag=" + tag);
    argv.push_back("--sandbox=chroot");
    argv.push_back("--seccomp=kill");
    argv.push_back("--cache=auto");
    argv.push_back("--xattr");
    argv.push_back("--posix-acl");
    argv.push_back(fmt::format("--modcaps={}", kDroppedCaps));
    argv.push_back("--rlimit-nofile=0");
    argv.push_back("--log-level=warn");
    if (share.readonly) argv.push_back("--readonly");
    // No traced allow list for this daemon: the deny list, under its own
    // allow-list filter.
    plan.seccomp_profile = "vm-daemon";
  }

  plan.paths = supervisor::system_read_execute_rules();
  for (auto& rule : supervisor::device_rules()) plan.paths.push_back(std::move(rule));
  // Both daemons resolve guest requests through /proc/self/fd.
  for (auto& rule : supervisor::proc_self_rules()) plan.paths.push_back(std::move(rule));
  plan.paths.push_back({share.binary, PathRights::read_execute()});
  // The C daemon reads the system-wide file limit to compute its default
  // even when told to keep the inherited one; the Rust daemon reads nr_open.
  for (const char* limit : {"/proc/sys/fs/file-max", "/proc/sys/fs/nr_open"})
    plan.paths.push_back({limit, PathRights::read_only()});
  plan.paths.push_back({share.shared_dir, share.readonly ? PathRights::read_only() : PathRights::read_write()});
  if (!share.listen_fd) {
    plan.paths.push_back({share.socket.parent_path(), PathRights::read_write()});
    if (share.dialect == Dialect::c) plan.paths.push_back({"/var/run/virtiofsd", PathRights::read_write()});
  }
  plan.keep_capabilities = {CAP_CHOWN, CAP_DAC_OVERRIDE, CAP_FOWNER, CAP_FSETID,
                            CAP_SETGID, CAP_SETUID,      CAP_SETPCAP, CAP_SYS_CHROOT};

  std::filesystem::path socket_path = share.socket;
  plan.warden_actions = {
      {"until it waits in accept() on its socket, read its /proc/PID/task/*/syscall, /proc/PID/fd and "
       "/proc/PID/net/unix",
       {"CAP_SYS_PTRACE"},
       "its readiness: the daemon tells nobody when it is ready, and it runs as another uid, in a user namespace of "
       "its own"}};
  plan.wait_ready = [socket_path](const supervisor::RunningService& daemon,
                                  std::chrono::steady_clock::time_point deadline) {
    auto exited = [&daemon] {
      return std::runtime_error(fmt::format("{} exited before it was ready", daemon.spec().name));
    };
    if (!daemon.running()) throw exited();
    PidFd process(daemon.pid());
    // Start-up takes a few milliseconds: probe soon, then less often (a
    // probe reads a handful of /proc files).
    std::chrono::microseconds interval{250};
    for (;;) {
      if (process.exited()) throw exited();
      if (daemon.stop_requested())
        throw std::runtime_error(fmt::format("stopped while waiting for {}", daemon.spec().name));
      if (accepting_on(daemon.pid(), socket_path)) return;
      if (std::chrono::steady_clock::now() >= deadline)
        throw std::runtime_error(fmt::format("{} is not waiting for its VMM on {} by the deadline",
                                             daemon.spec().name, socket_path.native()));
      // Waiting on the pidfd meanwhile, so that an exit ends the wait at once.
      process.wait_exited(std::min(deadline, std::chrono::steady_clock::now() + interval));
      interval = std::min<std::chrono::microseconds>(interval * 2, std::chrono::milliseconds(2));
    }
  };
  return plan;
}

}  // namespace vmwarden::virtiofs
