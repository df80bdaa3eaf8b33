// The QEMU backend: the one that runs here (TCG without /dev/kvm).
//
// Every value that QEMU parses as "key=value,..." (QemuOpts) is a validated
// path or tag, so no `,` can smuggle in an option. Disks go further: they are
// described with -blockdev in JSON form, where the file name is a JSON string
// (any character is just data) handed to the `file` protocol driver
// explicitly, so neither QemuOpts splitting nor QEMU's "protocol:" and
// "json:" file name prefixes ever apply to it.
#include <unistd.h>
#include <sys/stat.h>

#include <cerrno>

#include <fmt/core.h>

#include "common/error.h"
#include "vm-launcher/backend.h"
#include "vm-launcher/backend_util.h"
#include "vm-launcher/json.h"
#include "vm-launcher/qmp.h"

namespace vmwarden::vm {
namespace {

using namespace std::chrono_literals;
using supervisor::PathRights;

// The fd set (-add-fd) that holds the console's descriptor.
constexpr int kConsoleFdSet = 1;

// QEMU >= 6 refuses the `file` driver on a block device ("'file' driver
// requires ... to be a regular file"); block devices take `host_device`.
// What the path leads to counts: a disk is often named by a symlink
// (/dev/mapper/*, /dev/disk/by-*).
const char* protocol_driver(const std::string& path) {
  return backend::is_block_device(path) ? "host_device" : "file";
}

std::string blockdev_json(size_t index, const std::string& path, bool readonly) {
  const char* ro = readonly ? "true" : "false";
  return fmt::format(
      "{{\"driver\":\"raw\",\"node-name\":\"disk{}\",\"read-only\":{},"
      "\"file\":{{\"driver\":\"{}\",\"filename\":{},\"read-only\":{}}}}}",
      index, ro, protocol_driver(path), json_quote(path), ro);
}

// The socket exists and QEMU answers once it has parsed its command line and
// built the machine; a refused or missing socket just means "not yet".
bool transient(const SystemError& error) {
  return error.code() == ENOENT || error.code() == ECONNREFUSED || error.code() == EAGAIN ||
         error.code() == ECONNRESET;
}

void wait_for_qmp(const std::filesystem::path& socket, const supervisor::RunningService& vmm, Deadline deadline) {
  std::string last = "QMP socket not there yet";
  while (std::chrono::steady_clock::now() < deadline) {
    backend::require_running(vmm, "QEMU");
    try {
      QmpClient qmp =
          QmpClient::connect(socket, backend::probe_deadline(deadline), vmm.spec().confinement.uid, ::geteuid());
      for (;;) {
        Json status = qmp.execute("query-status", backend::probe_deadline(deadline));
        std::string_view state = status.string_member("status");
        if (state == "running") return;
        last = fmt::format("QEMU reports status \"{}\"", state);
        backend::require_running(vmm, "QEMU");
        backend::pause_before_retry(deadline);
        if (std::chrono::steady_clock::now() >= deadline) break;
      }
    } catch (const SystemError& error) {
      if (!transient(error) && error.code() != ETIMEDOUT) throw;
      last = error.what();
    }
    backend::pause_before_retry(deadline);
  }
  throw std::runtime_error(fmt::format("QEMU not ready by the deadline: {}", last));
}

}  // namespace

VmmPlan plan_qemu(const Definition& definition, const RuntimePaths& paths, const Host& host) {
  using backend::checked_path;
  using backend::checked_socket;
  auto qemu = backend::required_program(host.qemu, "qemu-system-x86_64", "VMWARDEN_QEMU");
  if (definition.wayland)
    throw UsageError("[display] wayland is supported with crosvm only; QEMU runs without a display");

  VmmPlan plan;
  auto& argv = plan.argv;
  auto add = [&argv](std::initializer_list<std::string> args) { argv.insert(argv.end(), args); };
  argv.push_back(qemu.native());
  add({"-name", definition.name});
  add({"-machine", "q35"});
  if (host.kvm)
    add({"-accel", "kvm", "-cpu", "host"});
  else
    add({"-accel", "tcg"});
  add({"-smp", std::to_string(definition.cpus)});
  add({"-m", fmt::format("{}M", definition.memory_mib)});
  // vhost-user-fs needs guest memory that virtiofsd can map: a shared memfd.
  add({"-object", fmt::format("memory-backend-memfd,id=mem,size={}M,share=on", definition.memory_mib)});
  add({"-numa", "node,memdev=mem"});
  add({"-kernel", checked_path("kernel", definition.kernel)});
  if (!definition.initramfs.empty()) add({"-initrd", checked_path("initramfs", definition.initramfs)});
  if (!definition.cmdline.empty()) add({"-append", backend::checked_cmdline(definition.cmdline)});
  add({"-nographic", "-nodefaults", "-no-user-config", "-no-reboot"});
  // vmwarden applies its own, stricter seccomp filter before exec.
  add({"-sandbox", "off"});
  // The QMP socket, bound and listening, from the warden: QEMU creates
  // nothing in the runtime directory. (Its path is checked all the same:
  // the warden binds it there, and connects to it.)
  (void)checked_socket("QMP socket", paths.control_socket);
  plan.control_fd = kControlFd;
  add({"-chardev", fmt::format("socket,id=qmp,fd={},server=on,wait=off", kControlFd), "-mon",
       "chardev=qmp,mode=control"});
  // The console goes to the pipe at plan.console_fd, through an fd set:
  // QEMU's open of /dev/fdset/N dups the set's descriptor of the same access
  // mode (O_WRONLY) and then applies the other flags; without append=on they
  // include O_TRUNC, and ftruncate fails on a pipe.
  add({"-add-fd", fmt::format("fd={},set={}", plan.console_fd, kConsoleFdSet)});
  add({"-chardev", fmt::format("file,id=serial0,path=/dev/fdset/{},append=on", kConsoleFdSet), "-serial",
       "chardev:serial0"});
  for (size_t i = 0; i < definition.shares.size(); ++i) {
    const Share& share = definition.shares[i];
    std::string tag = backend::checked_tag(share.tag);
    std::string socket = checked_socket(fmt::format("socket of share \"{}\"", tag),
                                        backend::share_socket(paths, share));
    add({"-chardev", fmt::format("socket,id=fs{},path={}", i, socket), "-device",
         fmt::format("vhost-user-fs-pci,chardev=fs{},tag={}", i, tag)});
  }
  for (size_t i = 0; i < definition.disks.size(); ++i) {
    const Disk& disk = definition.disks[i];
    add({"-blockdev", blockdev_json(i, checked_path("disk", disk.path), disk.readonly), "-device",
         fmt::format("virtio-blk-pci,drive=disk{}", i)});
  }
  if (definition.network) {
    add({"-netdev", "user,id=net0", "-device", "virtio-net-pci,netdev=net0"});
    plan.needs_network = true;
  }

  plan.paths = backend::common_rules(definition, paths, {qemu}, backend::BlockDiskIoctl::read_write_only,
                                     backend::ControlSocket::given);
  if (host.kvm) plan.paths.push_back({"/dev/kvm", {.read = true, .write = true, .ioctl_dev = true}});
  plan.seccomp_profile = "qemu";

  std::filesystem::path qmp = paths.control_socket;
  plan.warden_actions = {
      {fmt::format("connect to the QMP socket {} as root: readiness (qmp_capabilities, query-status), the power "
                   "button at a stop (system_powerdown), quit at the shutdown timeout",
                   qmp.native()),
       {"CAP_DAC_OVERRIDE"},
       "the warden bound the socket for the VMM (the VM's uid's, in the runtime directory, 0700); a "
       "symlink, or a socket the VM's uid does not own, is refused before any connect, and it must be listened "
       "on by the warden or the VM's uid"}};
  plan.wait_ready = [qmp](const supervisor::RunningService& vmm, Deadline deadline) {
    wait_for_qmp(qmp, vmm, deadline);
  };
  plan.graceful_stop = [qmp](const supervisor::RunningService& vmm, Deadline deadline) {
    QmpClient::connect(qmp, deadline, vmm.spec().confinement.uid, ::geteuid()).execute("system_powerdown", deadline);
  };
  plan.force_stop = [qmp](const supervisor::RunningService& vmm, Deadline deadline) {
    try {
      Deadline quick = std::min(deadline, std::chrono::steady_clock::now() + 2s);
      QmpClient::connect(qmp, quick, vmm.spec().confinement.uid, ::geteuid()).execute("quit", quick);
    } catch (const std::exception&) {
      // QMP is gone or stuck: SIGKILL below settles it.
    }
    backend::kill_at_deadline(vmm, deadline);
  };
  return plan;
}

}  // namespace vmwarden::vm
