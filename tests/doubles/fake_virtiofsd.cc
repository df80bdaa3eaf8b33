// fake-virtiofsd: the Rust virtiofsd's command line (clap's --help and
// --version, --shared-dir, --fd or --socket-path) and its life cycle as the
// warden sees it: it listens (or uses the listening --fd), blocks in accept
// until one frontend connects, serves it until it closes, then exits 0. No
// FUSE is served; it exists for dialect detection and readiness tests.
#include <sys/stat.h>

#include <filesystem>

#include "tests/doubles/double.h"

using namespace double_support;

// What a daemon taken over by its guest could reach in the runtime directory
// (its share's mount point is RUNTIME/mnt/TAG), once its VMM runs: a connect
// to the VMM's control socket there, by name (Landlock keeps the daemon from
// listing the directory), written to the share's runtime-view for the test.
void record_runtime_view(const std::string& shared_dir) {
  std::filesystem::path runtime = std::filesystem::path(shared_dir).parent_path().parent_path();
  std::string view;
  for (const char* name : {"control.sock"}) {
    std::string path = (runtime / name).string();
    int stream = connect_to(path, SOCK_STREAM);
    int error = errno;
    int packet = stream < 0 && error != ENOENT ? connect_to(path, SOCK_SEQPACKET) : -1;
    if (stream < 0 && error == EPROTOTYPE) error = errno;
    view += std::string(name) + ": " + (stream >= 0 || packet >= 0 ? "connected" : std::strerror(error)) + "\n";
  }
  FILE* out = std::fopen((std::filesystem::path(shared_dir) / "runtime-view").c_str(), "w");
  if (out == nullptr) return;
  std::fputs(view.c_str(), out);
  std::fclose(out);
}

int main(int argc, char** argv) {
  record(argc, argv);
  std::string shared_dir, socket;
  int fd = -1;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      std::printf(
          "Launch a virtiofsd backend.\n\nUsage: virtiofsd --shared-dir <SHARED_DIR> --socket-path <SOCKET_PATH> "
          "[OPTIONS]\n\nOptions:\n      --shared-dir <SHARED_DIR>  Shared directory path\n"
          "      --tag <TAG>                The tag that the virtio device advertises\n"
          "      --socket-path <SOCKET_PATH>  vhost-user socket path\n"
          "      --fd <FD>                  File descriptor for the listening (not yet connected) socket\n"
          "      --sandbox <SANDBOX>        Sandbox mechanism to isolate the daemon process (namespace, chroot, none)\n"
          "      --readonly                 Prevent the guest from making modifications to the filesystem\n");
      return 0;
    }
    if (arg == "--version" || arg == "-V") {
      std::printf("virtiofsd 1.13.0\n");
      return 0;
    }
    std::string value = arg.find('=') != std::string::npos ? arg.substr(arg.find('=') + 1) : "";
    if (arg.rfind("--shared-dir=", 0) == 0) shared_dir = value;
    else if (arg.rfind("--socket-path=", 0) == 0) socket = value;
    else if (arg.rfind("--fd=", 0) == 0) fd = std::atoi(value.c_str());
    else if (arg.rfind("--", 0) != 0) die("error: unexpected argument '" + arg + "' found", 2);
  }
  struct stat st {};
  if (shared_dir.empty() || ::stat(shared_dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
    die("[ERROR virtiofsd] " + shared_dir + " does not exist");
  if (fd < 0) {
    if (socket.empty()) die("error: --socket-path or --fd is required", 2);
    fd = listen_at(socket, SOCK_STREAM);
  }
  int frontend = ::accept4(fd, nullptr, nullptr, SOCK_CLOEXEC);
  if (frontend < 0) die("accept: " + std::string(std::strerror(errno)));
  record_runtime_view(shared_dir);
  char buffer[4096];
  while (::recv(frontend, buffer, sizeof buffer, 0) > 0) {
  }
  return 0;
}
