#include <sched.h>
#include <signal.h>
#include <sys/stat.h>

#include <thread>

#include <fmt/core.h>

#include "common/error.h"
#include "supervisor/policy.h"
#include "vm-launcher/backend.h"
#include "vm-launcher/backend_util.h"
#include "vm-launcher/names.h"
#include "vm-launcher/unix_socket.h"

namespace vmwarden::vm {

// The backends, one file each.
VmmPlan plan_qemu(const Definition& definition, const RuntimePaths& paths, const Host& host);
VmmPlan plan_crosvm(const Definition& definition, const RuntimePaths& paths, const Host& host);
VmmPlan plan_cloud_hypervisor(const Definition& definition, const RuntimePaths& paths, const Host& host);

RuntimePaths RuntimePaths::in(const std::filesystem::path& runtime_dir, const Definition& definition) {
  RuntimePaths paths;
  paths.runtime_dir = runtime_dir;
  paths.control_socket = runtime_dir / "control.sock";
  paths.serial_log = runtime_dir / "serial.log";
  for (size_t i = 0; i < definition.shares.size(); ++i)
    paths.share_sockets[definition.shares[i].tag] = runtime_dir / fmt::format("fs{}.sock", i);
  return paths;
}

VmmPlan plan_vmm(const Definition& definition, const RuntimePaths& paths, const Host& host) {
  if (!definition.vmm)
    throw UsageError(fmt::format("VM \"{}\" runs a command, not a VM: there is no VMM to plan",
                                 definition.name));
  switch (*definition.vmm) {
    case Vmm::qemu: return plan_qemu(definition, paths, host);
    case Vmm::crosvm: return plan_crosvm(definition, paths, host);
    case Vmm::cloud_hypervisor: return plan_cloud_hypervisor(definition, paths, host);
  }
  throw UsageError("unknown VMM");
}

namespace backend {

std::string checked_path(std::string_view what, const std::filesystem::path& path) {
  if (auto problem = path_problem(path.native()))
    throw UsageError(fmt::format("{}: {}", what, *problem));
  return normalize_path(path.native());
}

std::string checked_socket(std::string_view what, const std::filesystem::path& path) {
  std::string checked = checked_path(what, path);
  if (checked.size() > kMaxSocketPath)
    throw UsageError(fmt::format("{} {} is {} bytes long, more than the {} a unix socket address holds; "
                                 "use a shorter runtime directory",
                                 what, checked, checked.size(), kMaxSocketPath));
  return checked;
}

std::string checked_tag(std::string_view tag) {
  if (auto problem = tag_problem(tag)) throw UsageError(*problem);
  return std::string(tag);
}

std::string checked_cmdline(std::string_view cmdline) {
  // A VMM's option parser could take a leading '-' for one of its options.
  if (!cmdline.empty() && cmdline.front() == '-')
    throw UsageError("the kernel command line starts with '-', which a VMM could read as an option; "
                     "start it with a parameter such as console=ttyS0");
  for (char c : cmdline)
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f)
      throw UsageError("the kernel command line contains a control character; use printable characters only");
  return std::string(cmdline);
}

std::filesystem::path required_program(const std::filesystem::path& program, std::string_view name,
                                       std::string_view variable) {
  if (program.empty())
    throw PermanentError(fmt::format("{} is not installed (not found on PATH or in the standard locations); "
                                     "install it or set {} to its absolute path",
                                     name, variable));
  checked_path(fmt::format("the {} program", name), program);
  return program;
}

std::filesystem::path share_socket(const RuntimePaths& paths, const Share& share) {
  auto found = paths.share_sockets.find(share.tag);
  if (found == paths.share_sockets.end())
    throw UsageError(fmt::format("no vhost-user socket path for share \"{}\"", share.tag));
  return found->second;
}

bool is_block_device(const std::filesystem::path& path) {
  // A path that cannot be looked at is the validator's and the
  // reachability check's to report, with its position; not a block device
  // here (so that `vmwarden audit` still shows the plan).
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISBLK(st.st_mode);
}

std::vector<supervisor::PathRule> common_rules(const Definition& definition, const RuntimePaths& paths,
                                               const std::vector<std::filesystem::path>& programs,
                                               BlockDiskIoctl block_ioctl, ControlSocket control) {
  using supervisor::PathRights;
  std::vector<supervisor::PathRule> rules = supervisor::system_read_execute_rules();
  for (auto& rule : supervisor::device_rules()) rules.push_back(std::move(rule));
  for (auto& rule : supervisor::proc_self_rules()) rules.push_back(std::move(rule));
  for (const auto& program : programs) rules.push_back({program, PathRights::read_execute()});
  rules.push_back({definition.kernel, PathRights::read_only()});
  if (!definition.initramfs.empty()) rules.push_back({definition.initramfs, PathRights::read_only()});
  for (const Disk& disk : definition.disks) {
    PathRights rights = disk.readonly ? PathRights::read_only() : PathRights::read_write();
    rights.ioctl_dev = (!disk.readonly || block_ioctl == BlockDiskIoctl::all) && is_block_device(disk.path);
    rules.push_back({disk.path, rights});
  }
  // The VMM connects to the virtiofsd sockets in the runtime directory (a
  // connect needs no Landlock right), and binds its control socket there
  // unless the warden gives it one. It may create nothing else there: no
  // file that could fill /run, no write to serial.log, which the warden
  // keeps bounded (its console goes to a pipe, kConsoleFd), no symlink or
  // directory.
  PathRights runtime = control == ControlSocket::given ? PathRights::read_only() : PathRights::sockets();
  rules.push_back({paths.runtime_dir, runtime});
  auto outside_runtime_dir = [&](const std::filesystem::path& path) {
    return path.parent_path() != paths.runtime_dir;
  };
  if (outside_runtime_dir(paths.control_socket))
    rules.push_back({paths.control_socket.parent_path(), runtime});
  for (const Share& share : definition.shares) {
    auto socket = share_socket(paths, share);
    if (outside_runtime_dir(socket)) rules.push_back({socket, PathRights::read_write()});
  }
  return rules;
}

void run_control_program(const supervisor::RunningService& vmm, const std::vector<std::string>& argv,
                         Deadline deadline) {
  const supervisor::Confinement& confinement = vmm.spec().confinement;
  // In the VMM's mount namespace too: the warden's holds the shares' copies
  // under the runtime directory, which the VMM's Landlock rule covers.
  PidFd process(vmm.pid());
  if (process.fd() < 0) throw std::runtime_error(fmt::format("{}: the VMM is gone", argv.at(0)));
  int vmm_fd = process.fd();
  ProgramResult result = run_program(argv, vmm.spec().environment.build(environ), deadline, [&confinement, vmm_fd] {
    check(::setns(vmm_fd, CLONE_NEWNS), "setns", "(the VMM's mount namespace)");
    supervisor::apply_confinement(confinement);
  });
  if (!result.success())
    throw std::runtime_error(fmt::format("{} {}: {}", argv.at(0), argv.size() > 1 ? argv[1] : "",
                                         result.describe()));
}

void kill_at_deadline(const supervisor::RunningService& vmm, Deadline deadline) {
  if (!vmm.running()) return;
  PidFd process(vmm.pid());
  if (process.wait_exited(deadline)) return;
  // The warden's loop reaps it (and SIGKILLs whatever else is left).
  process.send_signal(SIGKILL);
}

void require_running(const supervisor::RunningService& vmm, std::string_view what) {
  if (!vmm.running() || PidFd(vmm.pid()).exited())
    throw std::runtime_error(fmt::format("{} exited before it was ready", what));
  if (vmm.stop_requested()) throw std::runtime_error(fmt::format("stopped while waiting for {}", what));
}

Deadline probe_deadline(Deadline deadline) {
  return std::min(deadline, std::chrono::steady_clock::now() + std::chrono::seconds(1));
}

void pause_before_retry(Deadline deadline) {
  auto pause = std::min<std::chrono::steady_clock::duration>(
      std::chrono::milliseconds(10), deadline - std::chrono::steady_clock::now());
  if (pause > std::chrono::steady_clock::duration::zero()) std::this_thread::sleep_for(pause);
}

}  // namespace backend
}  // namespace vmwarden::vm
