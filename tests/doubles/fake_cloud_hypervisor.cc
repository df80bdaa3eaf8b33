// fake-cloud-hypervisor: records its argv, checks what cloud-hypervisor
// would check, connects to each --fs vhost-user backend, and serves the HTTP
// API on the --api-socket path in the shape of cloud-hypervisor's
// vmm/src/api/http: GET vm.info (200, JSON with "state"), PUT
// vm.power-button, vm.shutdown, vmm.shutdown (204), GET vmm.ping (200).
//
// The simulated guest takes VMWARDEN_FAKE_BOOT_MS to boot (state "Created"
// meanwhile) and powers off on the power button, which makes the process
// exit 0 as cloud-hypervisor does, unless VMWARDEN_FAKE_IGNORE_POWER is set.
// vm.shutdown stops the VM but, as in cloud-hypervisor, not the process;
// vmm.shutdown ends the process unless VMWARDEN_FAKE_IGNORE_STOP is set.
#include <poll.h>
#include <sys/stat.h>

#include <chrono>

#include "tests/doubles/double.h"

using namespace double_support;

namespace {

std::string response(int status, std::string_view reason, std::string_view body = {}) {
  std::string text = "HTTP/1.1 " + std::to_string(status) + " " + std::string(reason) +
                     "\r\nServer: Cloud Hypervisor API\r\nConnection: keep-alive\r\n";
  if (!body.empty())
    text += "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
  return text + "\r\n" + std::string(body);
}

}  // namespace

int main(int argc, char** argv) {
  record(argc, argv);
  std::string api, serial, kernel, memory;
  int api_fd = -1;
  std::vector<std::string> fs_sockets;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i], value;
    if (size_t equals = arg.find('='); arg.rfind("--", 0) == 0 && equals != std::string::npos) {
      value = arg.substr(equals + 1);
      arg.resize(equals);
    } else if (arg.rfind("--", 0) == 0 && i + 1 < argc) {
      value = argv[++i];
    }
    if (arg == "--api-socket") {
      if (value.rfind("fd=", 0) == 0)
        api_fd = std::atoi(option_value(value, "fd").c_str());
      else
        api = value.rfind("path=", 0) == 0 ? option_value(value, "path") : value;
    }
    else if (arg == "--serial")
      serial = option_value(value, "file");
    else if (arg == "--kernel")
      kernel = value;
    else if (arg == "--cmdline")
      kernel_params() = value;
    else if (arg == "--memory")
      memory = value;
    else if (arg == "--fs") {
      if (option_value(value, "tag").empty()) die("Error parsing --fs: tag missing");
      fs_sockets.push_back(option_value(value, "socket"));
    } else if (arg != "--initramfs" && arg != "--cpus" && arg != "--disk" &&
               arg != "--console" && arg != "--seccomp")
      die("error: unexpected argument '" + arg + "' found");
  }
  struct stat st {};
  if (kernel.empty() || ::stat(kernel.c_str(), &st) != 0) die("Error booting VM: cannot open kernel " + kernel);
  if (!fs_sockets.empty() && option_value(memory, "shared") != "on")
    die("Error booting VM: virtio-fs requires shared memory (--memory shared=on)");
  if (api.empty() && api_fd < 0) die("fake-cloud-hypervisor needs --api-socket");
  int listener;
  if (api_fd >= 0) {
    // Where the caller bound it: beside the vhost-user sockets, in the
    // runtime directory (for the attack flags only).
    std::string where = fs_sockets.empty() ? std::string() : directory_of(fs_sockets.front()) + "/control.sock";
    if (where.empty() && (flag("VMWARDEN_FAKE_FILL_RUNTIME") || flag("VMWARDEN_FAKE_CONTROL_SYMLINK")))
      die("fake-cloud-hypervisor: the attack flags need an --fs socket to find the runtime directory");
    listener = given_control_socket(api_fd, where, SOCK_STREAM);
  } else {
    // As cloud-hypervisor 53.0 and later: a lock file beside the socket,
    // then a stale socket removed, then the bind.
    std::string lock = api + ".lock";
    int lock_fd = ::open(lock.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    if (lock_fd < 0) die("Error creating the API server's socket: " + lock + ": " + std::strerror(errno));
    ::unlink(api.c_str());
    listener = listen_for_control(api, SOCK_STREAM);
  }
  std::vector<int> backends;
  for (const std::string& path : fs_sockets) {
    int fd = connect_to(path, SOCK_STREAM);
    if (fd < 0) die("Error booting VM: cannot connect to vhost-user-fs " + path + ": " + std::strerror(errno));
    backends.push_back(fd);
  }
  if (!serial.empty()) {
    // As cloud-hypervisor's File::create: opened by path, /proc/self/fd/N too.
    int fd = ::open(serial.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    if (fd < 0) die("cannot open serial output " + serial + ": " + std::strerror(errno));
    write_console(fd);
  }
  const char* boot_ms = std::getenv("VMWARDEN_FAKE_BOOT_MS");
  auto booted_at = std::chrono::steady_clock::now() + std::chrono::milliseconds(boot_ms ? std::atoi(boot_ms) : 0);
  bool shut_down = false;
  for (;;) {
    int connection = ::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
    if (connection < 0) continue;
    std::string request = read_http_message(connection);
    std::string line = request.substr(0, request.find("\r\n"));
    bool exit_after = false;
    if (line == "GET /api/v1/vm.info HTTP/1.1") {
      const char* state = shut_down ? "Shutdown" : std::chrono::steady_clock::now() < booted_at ? "Created" : "Running";
      write_all(connection, response(200, "OK",
                                     std::string("{\"config\":{\"cpus\":{\"boot_vcpus\":1}},\"state\":\"") + state +
                                         "\",\"memory_actual_size\":0}"));
    } else if (line == "GET /api/v1/vmm.ping HTTP/1.1") {
      write_all(connection, response(200, "OK", "{\"build_version\":\"fake\",\"version\":\"fake\",\"pid\":" +
                                                    std::to_string(::getpid()) + "}"));
    } else if (line == "PUT /api/v1/vm.power-button HTTP/1.1") {
      write_all(connection, response(204, "No Content"));
      exit_after = !flag("VMWARDEN_FAKE_IGNORE_POWER");
    } else if (line == "PUT /api/v1/vm.shutdown HTTP/1.1") {
      write_all(connection, response(204, "No Content"));
      shut_down = true;
    } else if (line == "PUT /api/v1/vmm.shutdown HTTP/1.1") {
      write_all(connection, response(204, "No Content"));
      exit_after = !flag("VMWARDEN_FAKE_IGNORE_STOP");
    } else {
      write_all(connection, response(404, "Not Found"));
    }
    ::close(connection);
    if (exit_after) {
      ::unlink(api.c_str());
      return 0;
    }
  }
}
