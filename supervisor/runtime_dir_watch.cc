#include "supervisor/runtime_dir_watch.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <string_view>

#include "common/error.h"

namespace vmwarden::supervisor {

RuntimeDirWatch::RuntimeDirWatch(int dir)
    : dir_(dir), timer_(check(::timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK), "timerfd_create")) {
  auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(kInterval).count();
  itimerspec every{};
  every.it_value.tv_sec = every.it_interval.tv_sec = ns / 1'000'000'000;
  every.it_value.tv_nsec = every.it_interval.tv_nsec = ns % 1'000'000'000;
  check(::timerfd_settime(timer_.get(), 0, &every, nullptr), "timerfd_settime");
}

bool RuntimeDirWatch::over_limit() {
  std::uint64_t expirations = 0;
  if (::read(timer_.get(), &expirations, sizeof expirations) < 0) {
    if (errno == EAGAIN || errno == EINTR) return counted_ > kEntryLimit;
    throw_errno("read", "(timerfd)");
  }
  // Its own descriptor: the directory's is shared with whoever else lists it.
  UniqueFd listing(::openat(dir_, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!listing) throw_errno("open", "(runtime directory)");
  std::size_t entries = 0;
  alignas(8) char buffer[8192];
  for (;;) {
    ssize_t n = ::getdents64(listing.get(), buffer, sizeof buffer);
    if (n < 0) throw_errno("getdents64", "(runtime directory)");
    if (n == 0) break;
    for (ssize_t offset = 0; offset < n;) {
      const auto* entry = reinterpret_cast<const dirent64*>(buffer + offset);
      offset += entry->d_reclen;
      std::string_view name = entry->d_name;
      if (name != "." && name != "..") ++entries;
    }
    // Past the limit is all there is to know: a directory of millions is
    // not listed to its end.
    if (entries > kEntryLimit) break;
  }
  counted_ = entries;
  return counted_ > kEntryLimit;
}

}  // namespace vmwarden::supervisor
