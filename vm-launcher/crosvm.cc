// The crosvm backend. crosvm is not packaged for Debian 12 and needs KVM, so
// it has never run on the machines vmwarden is tested on: its argv and its
// control commands are checked against crosvm's own argument definitions
// (src/crosvm/cmdline.rs) and exercised against a test double (doc/VMM.md).
#include <sys/socket.h>

#include <cerrno>

#include <fmt/core.h>

#include "common/error.h"
#include "vm-launcher/backend.h"
#include "vm-launcher/backend_util.h"
#include "vm-launcher/unix_socket.h"

namespace vmwarden::vm {
namespace {

using namespace std::chrono_literals;
using supervisor::PathRights;

// crosvm binds its control socket before it creates the devices (and
// connects the vhost-user backends) and answers requests only once the VM
// runs. It has no status request, so readiness is what can be observed
// without side effects: the process is alive and its control socket accepts
// a connection. A VM that then fails to start makes crosvm exit, which the
// warden sees as the VMM's exit.
void wait_for_control_socket(const std::filesystem::path& socket, const supervisor::RunningService& vmm,
                             Deadline deadline) {
  std::string last = "control socket not there yet";
  while (std::chrono::steady_clock::now() < deadline) {
    backend::require_running(vmm, "crosvm");
    try {
      UnixConnection::connect(socket, SOCK_SEQPACKET, vmm.spec().confinement.uid);
      return;
    } catch (const SystemError& error) {
      if (error.code() != ENOENT && error.code() != ECONNREFUSED && error.code() != EAGAIN) throw;
      last = error.what();
    }
    backend::pause_before_retry(deadline);
  }
  throw std::runtime_error(fmt::format("crosvm not ready by the deadline: {}", last));
}

}  // namespace

VmmPlan plan_crosvm(const Definition& definition, const RuntimePaths& paths, const Host& host) {
  using backend::checked_path;
  using backend::checked_socket;
  auto crosvm = backend::required_program(host.crosvm, "crosvm", "VMWARDEN_CROSVM");
  if (definition.network)
    throw UsageError("network = true needs a tap device with crosvm, which vmwarden does not set up; "
                     "use vmm = \"qemu\" or network = false");

  VmmPlan plan;
  auto& argv = plan.argv;
  auto add = [&argv](std::initializer_list<std::string> args) { argv.insert(argv.end(), args); };
  std::string control = checked_socket("crosvm control socket", paths.control_socket);
  argv.push_back(crosvm.native());
  add({"run"});
  add({"--mem", std::to_string(definition.memory_mib)});
  add({"--cpus", std::to_string(definition.cpus)});
  // crosvm's own jail (minijail: user and mount namespaces, pivot_root) needs
  // exactly the calls vmwarden's seccomp profile denies; vmwarden's
  // confinement takes its place (doc/VMM.md).
  add({"--disable-sandbox"});
  add({"--socket", control});
  // crosvm takes a /proc/self/fd/N path for the descriptor N it inherited
  // (open_file_or_duplicate in its base crate): the console's pipe.
  add({"--serial", fmt::format("type=file,path=/proc/self/fd/{},console=true", plan.console_fd)});
  for (const Disk& disk : definition.disks)
    add({"--block", fmt::format("path={},ro={}", checked_path("disk", disk.path), disk.readonly ? "true" : "false")});
  for (const Share& share : definition.shares) {
    // crosvm takes the tag from the vhost-user backend (virtiofsd --tag).
    backend::checked_tag(share.tag);
    add({"--vhost-user", fmt::format("fs,socket={}", checked_socket(fmt::format("socket of share \"{}\"", share.tag),
                                                                    backend::share_socket(paths, share)))});
  }
  if (definition.wayland) {
    if (paths.wayland_socket.empty())
      throw UsageError("[display] wayland is set but no Wayland socket was found (is WAYLAND_DISPLAY set?)");
    add({"--wayland-sock", checked_socket("Wayland socket", paths.wayland_socket)});
  }
  if (!definition.initramfs.empty()) add({"--initrd", checked_path("initramfs", definition.initramfs)});
  if (!definition.cmdline.empty()) add({"--params", backend::checked_cmdline(definition.cmdline)});
  argv.push_back(checked_path("kernel", definition.kernel));

  // crosvm binds its control socket itself: its readiness is that socket
  // accepting (it has no status request), which a socket bound beforehand
  // would show at once.
  plan.paths = backend::common_rules(definition, paths, {crosvm}, backend::BlockDiskIoctl::all,
                                     backend::ControlSocket::bound_by_vmm);
  // crosvm and cloud-hypervisor run on KVM only; without it they fail at
  // start with their own message.
  if (host.kvm) plan.paths.push_back({"/dev/kvm", {.read = true, .write = true, .ioctl_dev = true}});
  if (definition.wayland) plan.paths.push_back({paths.wayland_socket, PathRights::read_write()});
  plan.seccomp_profile = "vm-daemon";

  plan.warden_actions = {{fmt::format("connect to the control socket {} as root until it accepts (readiness)",
                                       control),
                           {"CAP_DAC_OVERRIDE"},
                           "the socket lies in the runtime directory, the VM's uid's and 0700; a symlink, or a socket the VM's uid does not own, is refused before any connect, and the peer must be the VM's uid"}};
  plan.wait_ready = [control](const supervisor::RunningService& vmm, Deadline deadline) {
    wait_for_control_socket(control, vmm, deadline);
  };
  plan.stop_programs = {fmt::format("{} powerbtn {}", crosvm.native(), control),
                        fmt::format("{} stop {}", crosvm.native(), control)};
  plan.graceful_stop = [crosvm, control](const supervisor::RunningService& vmm, Deadline deadline) {
    backend::run_control_program(vmm, {crosvm.native(), "powerbtn", control}, deadline);
  };
  plan.force_stop = [crosvm, control](const supervisor::RunningService& vmm, Deadline deadline) {
    try {
      backend::run_control_program(vmm, {crosvm.native(), "stop", control},
                                   std::min(deadline, std::chrono::steady_clock::now() + 5s));
    } catch (const std::exception&) {
      // The control socket is gone or stuck: SIGKILL below settles it.
    }
    backend::kill_at_deadline(vmm, deadline);
  };
  return plan;
}

}  // namespace vmwarden::vm
