#include "vm-launcher/unix_socket.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>

#include <fmt/core.h>

#include "common/error.h"
#include "common/file_kind.h"

namespace vmwarden::vm {

namespace {

// The socket `name` names, pinned: opened without following a symbolic link
// in its last component and checked to be a socket of `owner`. The directory
// it lies in is the VM's, so the VMM can put anything there: a symlink, or a
// hard link to a socket of the host on the same filesystem, which root's
// connect() would otherwise reach. Connecting through /proc/self/fd/N then
// reaches this inode, whatever the name leads to by then.
UniqueFd open_socket_of(const std::string& name, uid_t owner) {
  UniqueFd fd(::open(name.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
  // Errors as connect() would report them (ENOENT: not there yet).
  if (!fd) throw_errno("connect", name);
  struct stat st {};
  check(::fstat(fd.get(), &st), "fstat", name);
  if (!S_ISSOCK(st.st_mode))
    throw PermanentError(
        fmt::format("{} is {}, not the VMM's socket: not connecting to it", name, file_kind(st.st_mode)));
  if (st.st_uid != owner)
    throw PermanentError(fmt::format("{} is a socket owned by UID {}, not by the VMM's UID {} (a link to another "
                                     "socket?): not connecting to it",
                                     name, st.st_uid, owner));
  return fd;
}

}  // namespace

UnixConnection UnixConnection::connect(const std::filesystem::path& path, int type, std::optional<uid_t> peer_uid,
                                       std::optional<uid_t> listener_uid) {
  const std::string& name = path.native();
  if (name.size() > kMaxSocketPath)
    throw UsageError("socket path " + name + " is longer than " + std::to_string(kMaxSocketPath) +
                     " bytes; use a shorter runtime directory");
  UniqueFd pinned;
  if (peer_uid) pinned = open_socket_of(name, *peer_uid);
  // "/proc/self/fd/N" is far shorter than sun_path.
  std::string target = pinned ? fmt::format("/proc/self/fd/{}", pinned.get()) : name;
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::memcpy(address.sun_path, target.data(), target.size());
  UniqueFd fd(check(::socket(AF_UNIX, type | SOCK_CLOEXEC | SOCK_NONBLOCK, 0), "socket", name));
  // A unix connect completes or fails at once; EAGAIN means a full backlog.
  if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&address), sizeof address) < 0)
    throw_errno("connect", name);
  if (peer_uid) {
    // The file's owner says who bound the name, not who listens on it now.
    ucred peer{};
    socklen_t size = sizeof peer;
    check(::getsockopt(fd.get(), SOL_SOCKET, SO_PEERCRED, &peer, &size), "getsockopt SO_PEERCRED", name);
    if (peer.uid != *peer_uid && (!listener_uid || peer.uid != *listener_uid))
      throw PermanentError(fmt::format("{} is served by UID {}, not by the VMM's UID {}{}: not talking to it", name,
                                       peer.uid, *peer_uid,
                                       listener_uid ? fmt::format(" nor UID {}, which bound it for the VMM", *listener_uid)
                                                    : std::string()));
  }
  return UnixConnection(std::move(fd), path);
}

void UnixConnection::wait_for(short events, Deadline deadline, std::string_view operation) {
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) throw SystemError(ETIMEDOUT, operation, path_.native());
    pollfd pfd{fd_.get(), events, 0};
    int rc = ::poll(&pfd, 1, static_cast<int>(std::min<long long>(left.count() + 1, 60'000)));
    if (rc < 0 && errno == EINTR) continue;
    check(rc, "poll", path_.native());
    if (rc > 0) return;
  }
}

void UnixConnection::write_all(std::string_view data, Deadline deadline) {
  while (!data.empty()) {
    ssize_t n = ::send(fd_.get(), data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN) throw_errno("send", path_.native());
      wait_for(POLLOUT, deadline, "send");
      continue;
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
}

bool UnixConnection::read_some(std::string& buffer, Deadline deadline) {
  for (;;) {
    // Before every read, not only when there is nothing to read: a VMM that
    // keeps sending (events without end) must not hold its reader past the
    // deadline.
    if (std::chrono::steady_clock::now() >= deadline) throw SystemError(ETIMEDOUT, "recv", path_.native());
    char chunk[8192];
    ssize_t n = ::recv(fd_.get(), chunk, sizeof chunk, 0);
    if (n > 0) {
      buffer.append(chunk, static_cast<size_t>(n));
      if (buffer.size() > kMaxPending)
        throw std::runtime_error(
            fmt::format("{}: more than {} bytes unread from the VMM (a reply that long is no reply)", path_.native(),
                        kMaxPending));
      return true;
    }
    if (n == 0) return false;
    if (errno == EINTR) continue;
    if (errno == ECONNRESET) return false;
    if (errno != EAGAIN) throw_errno("recv", path_.native());
    wait_for(POLLIN, deadline, "recv");
  }
}

}  // namespace vmwarden::vm
