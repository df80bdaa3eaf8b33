// The virtiofsd socket and the readiness probe.
//
// Both virtiofsd implementations serve exactly one frontend connection and
// exit when it closes, so readiness must not connect. What the daemon does
// once it is ready is visible in /proc: its main thread blocks in accept(2)
// on the listening socket. The probe checks exactly that: a thread's current
// syscall (/proc/PID/task/TID/syscall) is accept or accept4, its first
// argument is a socket fd of the process (/proc/PID/fd), and that socket is a
// listening unix socket bound at the expected path (/proc/PID/net/unix). The
// C daemon reaches accept after checking its options and the shared directory;
// with --fd the socket exists before exec, so a VMM may connect early and is
// simply accepted once the daemon gets there.
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <sstream>
#include <vector>

#include <fmt/core.h>

#include "common/error.h"
#include "virtiofs-glue/virtiofsd.h"

namespace vmwarden::virtiofs {
namespace {

constexpr unsigned long kAcceptingConnections = 0x10000;  // __SO_ACCEPTCON in /proc/net/unix

std::optional<unsigned long> socket_inode(pid_t pid, long fd) {
  char target[64];
  ssize_t n = ::readlink(fmt::format("/proc/{}/fd/{}", pid, fd).c_str(), target, sizeof target - 1);
  if (n <= 0) return std::nullopt;
  target[n] = '\0';
  unsigned long inode = 0;
  if (std::sscanf(target, "socket:[%lu]", &inode) != 1) return std::nullopt;
  return inode;
}

}  // namespace

std::optional<bool> unix_table_listening(const std::string& line, unsigned long inode,
                                         const std::string& expected_path) {
  // Num RefCount Protocol Flags Type St Inode Path
  std::istringstream fields(line);
  std::string num, refcount, protocol, flags, type, state, path;
  unsigned long entry_inode = 0;
  if (!(fields >> num >> refcount >> protocol >> flags >> type >> state >> entry_inode)) return std::nullopt;
  if (entry_inode != inode) return std::nullopt;
  // The path is the rest of the line after one separating space: a runtime
  // directory may contain spaces (path_problem allows them), so reading one
  // whitespace-delimited word would never match such a socket.
  if (fields.get() == ' ') std::getline(fields, path);
  return (std::strtoul(flags.c_str(), nullptr, 16) & kAcceptingConnections) != 0 && path == expected_path;
}

bool accepting_on(pid_t pid, const std::filesystem::path& socket) {
  // First the sockets the daemon's threads wait in accept on, then one read
  // of the socket table, only if there are any.
  std::vector<unsigned long> waited_on;
  std::error_code error;
  for (const auto& task : std::filesystem::directory_iterator(fmt::format("/proc/{}/task", pid), error)) {
    std::ifstream syscall_file(task.path() / "syscall");
    long number = -1;
    std::string first_argument;
    // "running" for a thread on a CPU: no number, not in accept.
    if (!(syscall_file >> number >> first_argument)) continue;
    if (number != SYS_accept && number != SYS_accept4) continue;
    long fd = std::strtol(first_argument.c_str(), nullptr, 16);
    if (auto inode = socket_inode(pid, fd)) waited_on.push_back(*inode);
  }
  if (waited_on.empty()) return false;
  // Only lines that end with the path are parsed: the daemon may have made
  // any number of other sockets (an attack made 90,000 and put 300 threads
  // in accept, for a read of the table per thread and probe).
  std::ifstream table(fmt::format("/proc/{}/net/unix", pid));
  std::string line;
  std::getline(table, line);  // the header
  while (std::getline(table, line)) {
    if (!line.ends_with(socket.native())) continue;
    for (unsigned long inode : waited_on)
      if (unix_table_listening(line, inode, socket.native()).value_or(false)) return true;
  }
  return false;
}

}  // namespace vmwarden::virtiofs
