#include "supervisor/runtime_dir_watch.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <cerrno>
#include <string>
#include <string_view>

#include "common/error.h"

namespace vmwarden::supervisor {

RuntimeDirWatch::RuntimeDirWatch(int dir)
    : dir_(dir), inotify_(check(::inotify_init1(IN_CLOEXEC | IN_NONBLOCK), "inotify_init1")) {
  // By the descriptor: whatever the warden's mount namespace shows at the
  // directory's path, the watch is on the host's directory.
  std::string self = "/proc/self/fd/" + std::to_string(dir);
  check(::inotify_add_watch(inotify_.get(), self.c_str(), IN_CREATE | IN_MOVED_TO | IN_ONLYDIR), "inotify_add_watch",
        self);
  counted_ = count_entries();
}

bool RuntimeDirWatch::over_limit() {
  bool lost_events = false;
  alignas(inotify_event) char buffer[16 * 1024];
  for (;;) {
    ssize_t n = ::read(inotify_.get(), buffer, sizeof buffer);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) break;
      throw_errno("read", "(inotify)");
    }
    for (ssize_t offset = 0; offset < n;) {
      const auto* event = reinterpret_cast<const inotify_event*>(buffer + offset);
      offset += static_cast<ssize_t>(sizeof(inotify_event) + event->len);
      if (event->mask & IN_Q_OVERFLOW) lost_events = true;
      if (event->mask & (IN_CREATE | IN_MOVED_TO)) ++made_since_count_;
    }
  }
  // Counting lists the directory: done only when what was made could have
  // taken it past the limit, so that making entries costs the warden no
  // more than it costs their maker.
  if (lost_events || counted_ + made_since_count_ > kEntryLimit) {
    counted_ = count_entries();
    made_since_count_ = 0;
  }
  return counted_ > kEntryLimit;
}

std::size_t RuntimeDirWatch::count_entries() const {
  UniqueFd listing(::openat(dir_, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!listing) throw_errno("open", "(runtime directory)");
  std::size_t entries = 0;
  alignas(8) char buffer[8192];
  for (;;) {
    ssize_t n = ::getdents64(listing.get(), buffer, sizeof buffer);
    if (n < 0) throw_errno("getdents64", "(runtime directory)");
    if (n == 0) return entries;
    for (ssize_t offset = 0; offset < n;) {
      const auto* entry = reinterpret_cast<const dirent64*>(buffer + offset);
      offset += entry->d_reclen;
      std::string_view name = entry->d_name;
      if (name != "." && name != "..") ++entries;
    }
  }
}

}  // namespace vmwarden::supervisor
