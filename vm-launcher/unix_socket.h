// Client side of the VMMs' control sockets: connect to a pathname unix
// socket and exchange bytes, every step bounded by a deadline.
#pragma once

#include <sys/socket.h>
#include <sys/un.h>

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

#include "common/process.h"
#include "common/unique_fd.h"

namespace vmwarden::vm {

// The longest socket path a sockaddr_un holds (107 bytes on Linux).
inline constexpr size_t kMaxSocketPath = sizeof(sockaddr_un::sun_path) - 1;

// A connected socket (SOCK_STREAM or SOCK_SEQPACKET), non-blocking.
class UnixConnection {
 public:
  // One attempt; throws SystemError (ENOENT, ECONNREFUSED, ...) on failure.
  // With `peer_uid` (the VMM's own UID), the directory `path` lies in is
  // taken for the VMM's, which could put a symlink or a hard link to another
  // socket there: `path` must be a socket, not a symlink, owned by that UID
  // (else PermanentError, before any connect), the connection goes to that
  // very inode (through /proc/self/fd), and must be served by a process of
  // that UID (SO_PEERCRED), or of `listener_uid` when given: a socket the
  // warden bound (and chowned to the VMM's UID) and gave the VMM is served,
  // as SO_PEERCRED reports it, by the warden that listened on it, until the
  // VMM calls listen() on it again (QEMU does), which makes it the VMM's.
  static UnixConnection connect(const std::filesystem::path& path, int type = SOCK_STREAM,
                                std::optional<uid_t> peer_uid = std::nullopt,
                                std::optional<uid_t> listener_uid = std::nullopt);

  void write_all(std::string_view data, Deadline deadline);
  // Appends what is available (waiting for at least one byte) to `buffer`.
  // Returns false at end of stream; throws SystemError(ETIMEDOUT) at the
  // deadline. The peer is a VMM that a guest may have taken over, and the
  // reader is root: past kMaxPending bytes in `buffer` it throws
  // std::runtime_error rather than grow without end.
  bool read_some(std::string& buffer, Deadline deadline);
  static constexpr size_t kMaxPending = 1 << 20;

  int fd() const { return fd_.get(); }
  const std::filesystem::path& path() const { return path_; }

 private:
  UnixConnection(UniqueFd fd, std::filesystem::path path) : fd_(std::move(fd)), path_(std::move(path)) {}
  void wait_for(short events, Deadline deadline, std::string_view operation);

  UniqueFd fd_;
  std::filesystem::path path_;
};

}  // namespace vmwarden::vm
