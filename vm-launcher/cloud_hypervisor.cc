// The cloud-hypervisor backend. cloud-hypervisor is not packaged for Debian
// 12 and needs KVM, so it has never run on the machines vmwarden is tested
// on: its argv is checked against its own argument definitions, and its HTTP
// API against the shapes in its source (vmm/src/api/http); a test double
// that speaks that API stands in for it in the tests (doc/VMM.md).
#include <unistd.h>
#include <cerrno>
#include <charconv>

#include <fmt/core.h>

#include "common/error.h"
#include "vm-launcher/backend.h"
#include "vm-launcher/backend_util.h"
#include "vm-launcher/json.h"
#include "vm-launcher/unix_socket.h"

namespace vmwarden::vm {
namespace {

using namespace std::chrono_literals;

struct HttpResponse {
  int status = 0;
  std::string body;
};

// One request on a fresh connection to the API socket (HTTP/1.1 as
// cloud-hypervisor's own ch-remote sends it). The response ends after
// Content-Length bytes of body, or at end of stream without one.
HttpResponse http_request(const std::filesystem::path& socket, uid_t peer_uid, std::string_view method,
                          std::string_view endpoint, Deadline deadline) {
  // The warden bound the socket and gave it to cloud-hypervisor: it is the
  // VM's UID's, served (as SO_PEERCRED sees it) by the warden, or by the
  // VM's UID should cloud-hypervisor call listen() on it again.
  UnixConnection connection = UnixConnection::connect(socket, SOCK_STREAM, peer_uid, ::geteuid());
  connection.write_all(
      fmt::format("{} /api/v1/{} HTTP/1.1\r\nHost: localhost\r\nAccept: */*\r\n\r\n", method, endpoint), deadline);
  std::string text;
  size_t header_end = std::string::npos;
  std::optional<size_t> content_length;
  for (;;) {
    bool more = connection.read_some(text, deadline);
    if (header_end == std::string::npos && (header_end = text.find("\r\n\r\n")) != std::string::npos) {
      header_end += 4;
      std::string lower;
      for (unsigned char c : std::string_view(text).substr(0, header_end)) lower += static_cast<char>(std::tolower(c));
      if (size_t at = lower.find("\r\ncontent-length:"); at != std::string::npos) {
        size_t value = lower.find_first_not_of(' ', at + 17);
        size_t length = 0;
        auto [end, error] = std::from_chars(lower.data() + value, lower.data() + lower.size(), length);
        if (error != std::errc()) throw std::runtime_error("cloud-hypervisor API: bad Content-Length");
        if (length > UnixConnection::kMaxPending)
          throw std::runtime_error(fmt::format("cloud-hypervisor API on {}: a Content-Length of {} is over the {} bytes "
                                               "vmwarden reads",
                                               socket.native(), length, UnixConnection::kMaxPending));
        content_length = length;
      }
    }
    if (header_end != std::string::npos && content_length && text.size() >= header_end + *content_length) break;
    if (!more) break;
  }
  if (header_end == std::string::npos || text.compare(0, 9, "HTTP/1.1 ") != 0)
    throw std::runtime_error(fmt::format("cloud-hypervisor API on {}: not an HTTP response", socket.native()));
  HttpResponse response;
  std::from_chars(text.data() + 9, text.data() + text.size(), response.status);
  response.body = text.substr(header_end, content_length.value_or(std::string::npos));
  return response;
}

// With --kernel on its command line cloud-hypervisor creates and boots the
// VM itself; GET vm.info answers 200 with {"state": "Running", ...} once it
// runs (an error status while the VM is not created yet).
void wait_for_running(const std::filesystem::path& socket, const supervisor::RunningService& vmm,
                      Deadline deadline) {
  std::string last = "API socket not there yet";
  while (std::chrono::steady_clock::now() < deadline) {
    backend::require_running(vmm, "cloud-hypervisor");
    try {
      HttpResponse response =
          http_request(socket, vmm.spec().confinement.uid, "GET", "vm.info", backend::probe_deadline(deadline));
      if (response.status == 200) {
        Json info = parse_json(response.body);
        std::string_view state = info.string_member("state");
        if (state == "Running") return;
        last = fmt::format("VM state \"{}\"", state);
      } else {
        last = fmt::format("vm.info answered {}", response.status);
      }
    } catch (const SystemError& error) {
      if (error.code() != ENOENT && error.code() != ECONNREFUSED && error.code() != EAGAIN &&
          error.code() != ECONNRESET && error.code() != ETIMEDOUT)
        throw;
      last = error.what();
    }
    backend::pause_before_retry(deadline);
  }
  throw std::runtime_error(fmt::format("cloud-hypervisor not ready by the deadline: {}", last));
}

}  // namespace

VmmPlan plan_cloud_hypervisor(const Definition& definition, const RuntimePaths& paths, const Host& host) {
  using backend::checked_path;
  using backend::checked_socket;
  auto vmm_program = backend::required_program(host.cloud_hypervisor, "cloud-hypervisor", "VMWARDEN_CLOUD_HYPERVISOR");
  auto ch_remote = backend::required_program(host.ch_remote, "ch-remote", "VMWARDEN_CH_REMOTE");
  if (definition.network)
    throw UsageError("network = true needs a tap device with cloud-hypervisor, which vmwarden does not set up; "
                     "use vmm = \"qemu\" or network = false");
  if (definition.wayland)
    throw UsageError("[display] wayland is supported with crosvm only");

  VmmPlan plan;
  auto& argv = plan.argv;
  auto add = [&argv](std::initializer_list<std::string> args) { argv.insert(argv.end(), args); };
  std::string api = checked_socket("cloud-hypervisor API socket", paths.control_socket);
  argv.push_back(vmm_program.native());
  // Bound by the warden: by path, cloud-hypervisor (53.0 and later) would
  // also create control.sock.lock beside it, a file in the runtime
  // directory.
  plan.control_fd = kControlFd;
  add({"--api-socket", fmt::format("fd={}", kControlFd)});
  add({"--kernel", checked_path("kernel", definition.kernel)});
  if (!definition.initramfs.empty()) add({"--initramfs", checked_path("initramfs", definition.initramfs)});
  // The `=` form: clap then takes the value verbatim.
  if (!definition.cmdline.empty()) add({"--cmdline=" + backend::checked_cmdline(definition.cmdline)});
  add({"--cpus", fmt::format("boot={}", definition.cpus)});
  // vhost-user-fs needs guest memory that virtiofsd can map.
  add({"--memory", fmt::format("size={}M,shared=on", definition.memory_mib)});
  for (const Disk& disk : definition.disks)
    add({"--disk", fmt::format("path={},readonly={}", checked_path("disk", disk.path), disk.readonly ? "on" : "off")});
  for (const Share& share : definition.shares) {
    std::string tag = backend::checked_tag(share.tag);
    add({"--fs", fmt::format("tag={},socket={}", tag,
                             checked_socket(fmt::format("socket of share \"{}\"", tag), backend::share_socket(paths, share)))});
  }
  // cloud-hypervisor opens the path (File::create): through /proc/self/fd
  // that is the console's pipe, which it inherited, opened again for
  // writing (O_TRUNC means nothing to a pipe).
  add({"--serial", fmt::format("file=/proc/self/fd/{}", plan.console_fd)});
  add({"--console", "off"});
  // cloud-hypervisor's own per-thread seccomp filters stack under vmwarden's
  // (the kernel applies every filter; the strictest answer wins), so keeping
  // them only narrows what each thread may do.
  add({"--seccomp", "true"});

  plan.paths = backend::common_rules(definition, paths, {vmm_program, ch_remote}, backend::BlockDiskIoctl::all,
                                     backend::ControlSocket::given);
  // The VMM runs on KVM only; without it, it fails at start with its own
  // message.
  if (host.kvm) plan.paths.push_back({"/dev/kvm", {.read = true, .write = true, .ioctl_dev = true}});
  plan.seccomp_profile = "vm-daemon";

  std::filesystem::path socket = paths.control_socket;
  plan.warden_actions = {{fmt::format("connect to the API socket {} as root: readiness (GET vm.info until the "
                                       "VM runs)",
                                       socket.native()),
                           {"CAP_DAC_OVERRIDE"},
                           "the warden bound the socket for the VMM (the VM's uid's, in the runtime directory, 0700); a "
       "symlink, or a socket the VM's uid does not own, is refused before any connect, and it must be listened "
       "on by the warden or the VM's uid"}};
  plan.wait_ready = [socket](const supervisor::RunningService& vmm, Deadline deadline) {
    wait_for_running(socket, vmm, deadline);
  };
  plan.stop_programs = {fmt::format("{} --api-socket {} power-button", ch_remote.native(), api),
                        fmt::format("{} --api-socket {} shutdown-vmm", ch_remote.native(), api)};
  plan.graceful_stop = [ch_remote, api](const supervisor::RunningService& vmm, Deadline deadline) {
    backend::run_control_program(vmm, {ch_remote.native(), "--api-socket", api, "power-button"}, deadline);
  };
  // `shutdown` would only shut the VM down and leave the VMM process serving
  // its API; `shutdown-vmm` makes the process exit.
  plan.force_stop = [ch_remote, api](const supervisor::RunningService& vmm, Deadline deadline) {
    try {
      backend::run_control_program(vmm, {ch_remote.native(), "--api-socket", api, "shutdown-vmm"},
                                   std::min(deadline, std::chrono::steady_clock::now() + 5s));
    } catch (const std::exception&) {
      // The API is gone or stuck: SIGKILL below settles it.
    }
    backend::kill_at_deadline(vmm, deadline);
  };
  return plan;
}

}  // namespace vmwarden::vm
