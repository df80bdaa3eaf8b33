// The one loop that writes a whole buffer to a descriptor. Header-only, so
// that the guest agent (a static program of its own) uses it too.
#pragma once

#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <string_view>

namespace vmwarden {

// Writes all of `data` to `fd`: again after EINTR or a short write, and,
// on a non-blocking descriptor (one shared with another program may be),
// once there is room. False with errno set on failure; how much was written
// then is not said.
inline bool write_all(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t written = ::write(fd, data.data(), data.size());
    if (written < 0 && errno == EAGAIN) {
      pollfd room{fd, POLLOUT, 0};
      if (::poll(&room, 1, -1) < 0 && errno != EINTR) return false;
      continue;
    }
    if (written < 0 && errno == EINTR) continue;
    if (written < 0) return false;
    if (written == 0) {
      errno = EIO;
      return false;
    }
    data.remove_prefix(static_cast<std::size_t>(written));
  }
  return true;
}

}  // namespace vmwarden
