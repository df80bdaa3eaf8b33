#include "supervisor/runtime_dir_watch.h"

#include <sys/timerfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>

#include "common/error.h"
#include "supervisor/runtime_dir.h"

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
    // No count due: the last one was within the limit (the watch ends once
    // one is not).
    if (errno == EAGAIN || errno == EINTR) return false;
    throw_errno("read", "(timerfd)");
  }
  // Past the limit is all there is to know: a directory of millions is not
  // listed to its end.
  std::size_t entries = 0;
  list_directory(dir_, "(runtime directory)", [&entries](std::string_view) { return ++entries <= kEntryLimit; });
  return entries > kEntryLimit;
}

}  // namespace vmwarden::supervisor
