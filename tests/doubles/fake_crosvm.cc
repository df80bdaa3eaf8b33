// fake-crosvm: `run` records its argv, checks what crosvm would check,
// connects to each vhost-user backend as crosvm does, binds the control
// socket (SOCK_SEQPACKET) and serves the crosvm control protocol: each
// request a serde-JSON message ("Powerbtn", "Exit"), each answer "Ok".
// `powerbtn SOCKET` and `stop SOCKET` are the client side.
//
// The simulated guest powers off on the power button (crosvm then exits 0)
// unless VMWARDEN_FAKE_IGNORE_POWER is set; VMWARDEN_FAKE_IGNORE_STOP makes
// `stop` answered but ignored, to exercise the SIGKILL fallback.
#include <sys/stat.h>

#include "tests/doubles/double.h"

using namespace double_support;

namespace {

constexpr int kInvalidArgs = 35;  // crosvm's CommandStatus::InvalidArgs

int client(const std::string& request, const std::string& socket) {
  try_to_write_into_the_shares(socket);
  int fd = connect_to(socket, SOCK_SEQPACKET);
  if (fd < 0) die("failed to connect to " + socket + ": " + std::strerror(errno));
  write_all(fd, request);
  char reply[256];
  ssize_t n = ::recv(fd, reply, sizeof reply, 0);
  if (n <= 0) die("no response from " + socket);
  if (std::string_view(reply, static_cast<size_t>(n)) != "\"Ok\"")
    die("request failed: " + std::string(reply, static_cast<size_t>(n)));
  return 0;
}

int run(int argc, char** argv) {
  std::string socket, serial, kernel;
  std::vector<std::string> vhost_user;
  for (int i = 2; i < argc; ++i) {
    std::string_view arg = argv[i];
    bool has_value = i + 1 < argc;
    if (arg == "--socket" && has_value) {
      socket = argv[++i];
    } else if (arg == "--serial" && has_value) {
      serial = option_value(argv[++i], "path");
    } else if (arg == "--vhost-user" && has_value) {
      std::string value = argv[++i];
      if (value.rfind("fs,", 0) != 0 && value.rfind("type=fs,", 0) != 0) die("unsupported --vhost-user " + value, kInvalidArgs);
      vhost_user.push_back(option_value(value, "socket"));
    } else if (arg == "--params" && has_value) {
      kernel_params() = argv[++i];
    } else if ((arg == "--mem" || arg == "--cpus" || arg == "--block" || arg == "--initrd" ||
                arg == "--wayland-sock") && has_value) {
      ++i;
    } else if (arg == "--disable-sandbox") {
    } else if (arg.substr(0, 1) == "-") {
      die("fake-crosvm: unknown option " + std::string(arg), kInvalidArgs);
    } else if (kernel.empty()) {
      kernel = arg;
    } else {
      die("fake-crosvm: a second positional argument " + std::string(arg), kInvalidArgs);
    }
  }
  struct stat st {};
  if (kernel.empty() || ::stat(kernel.c_str(), &st) != 0) die("failed to open kernel image " + kernel);
  int control = socket.empty() ? -1 : listen_for_control(socket, SOCK_SEQPACKET);
  std::vector<int> backends;
  for (const std::string& path : vhost_user) {
    int fd = connect_to(path, SOCK_STREAM);
    if (fd < 0) die("failed to connect to vhost-user socket " + path + ": " + std::strerror(errno));
    backends.push_back(fd);
  }
  if (!serial.empty()) {
    // As crosvm's open_file_or_duplicate: /proc/self/fd/N is the inherited
    // descriptor N itself (checked to be open), anything else a file it
    // opens for appending.
    int fd = -1;
    if (serial.rfind("/proc/self/fd/", 0) == 0) {
      fd = std::atoi(serial.c_str() + 14);
      if (::fcntl(fd, F_GETFD) < 0) die("failed to open serial output " + serial + ": " + std::strerror(errno));
    } else {
      fd = ::open(serial.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    }
    if (fd < 0) die("failed to open serial output " + serial);
    write_console(fd);
  }
  if (control < 0) {
    ::pause();
    return 0;
  }
  for (;;) {
    int connection = ::accept4(control, nullptr, nullptr, SOCK_CLOEXEC);
    if (connection < 0) continue;
    char request[256];
    ssize_t n = ::recv(connection, request, sizeof request, 0);
    std::string_view message(request, n > 0 ? static_cast<size_t>(n) : 0);
    bool power_off = false;
    if (message == "\"Powerbtn\"") {
      write_all(connection, "\"Ok\"");
      power_off = !flag("VMWARDEN_FAKE_IGNORE_POWER");
    } else if (message == "\"Exit\"") {
      write_all(connection, "\"Ok\"");
      power_off = !flag("VMWARDEN_FAKE_IGNORE_STOP");
    } else if (!message.empty()) {
      write_all(connection, "{\"ErrString\":\"unsupported request\"}");
    }
    ::close(connection);
    if (power_off) {
      ::unlink(socket.c_str());
      return 0;  // crosvm's exit status when the VM stops
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  record(argc, argv);
  std::string command = argc > 1 ? argv[1] : "";
  if (command == "run") return run(argc, argv);
  if (command == "powerbtn" && argc == 3) return client("\"Powerbtn\"", argv[2]);
  if (command == "stop" && argc == 3) return client("\"Exit\"", argv[2]);
  die("fake-crosvm: unsupported command line", kInvalidArgs);
}
