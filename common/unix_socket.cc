#include "common/unix_socket.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>

#include <fmt/core.h>

#include "common/error.h"

namespace vmwarden {

UniqueFd listen_unix_socket(const std::filesystem::path& path, uid_t uid, gid_t gid) {
  const std::string& name = path.native();
  sockaddr_un address{};
  if (name.empty() || name.size() >= sizeof address.sun_path)
    throw UsageError(fmt::format("socket path \"{}\" is empty or longer than {} bytes", name,
                                 sizeof address.sun_path - 1));
  address.sun_family = AF_UNIX;
  std::memcpy(address.sun_path, name.data(), name.size());
  UniqueFd fd(check(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0), "socket", name));
  // The socket file is born 0600 (no window in which others could connect)
  // and then handed to its owner.
  mode_t old_umask = ::umask(0177);
  int rc = ::bind(fd.get(), reinterpret_cast<const sockaddr*>(&address), sizeof address);
  ::umask(old_umask);
  check(rc, "bind", name);
  if (::lchown(name.c_str(), uid, gid) < 0) {
    int saved = errno;
    ::unlink(name.c_str());
    throw_system_error(saved, "lchown", name);
  }
  check(::listen(fd.get(), 1), "listen", name);
  return fd;
}

}  // namespace vmwarden
