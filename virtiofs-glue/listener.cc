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

// The inodes of the sockets listening at `expected_path`, from one read of
// /proc/PID/net/unix. Only lines that end with the path are parsed: the
// daemon may have made any number of other sockets (an attack made 90,000
// and put 300 threads in accept, for a table read per thread and probe).
std::vector<unsigned long> listening_inodes(pid_t pid, const std::string& expected_path) {
  std::vector<unsigned long> inodes;
  std::ifstream table(fmt::format("/proc/{}/net/unix", pid));
  std::string line;
  std::getline(table, line);  // the header
  while (std::getline(table, line)) {
    if (!line.ends_with(expected_path)) continue;
    std::istringstream fields(line);
    std::string num, refcount, protocol, flags, type, state;
    unsigned long inode = 0;
    if (!(fields >> num >> refcount >> protocol >> flags >> type >> state >> inode)) continue;
    if (unix_table_listening(line, inode, expected_path).value_or(false)) inodes.push_back(inode);
  }
  return inodes;
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
  std::vector<unsigned long> listening = listening_inodes(pid, socket.native());
  return std::any_of(waited_on.begin(), waited_on.end(), [&](unsigned long inode) {
    return std::find(listening.begin(), listening.end(), inode) != listening.end();
  });
}

}  // namespace vmwarden::virtiofs
