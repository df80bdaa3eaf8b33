// Bounds what a sandbox makes in its runtime directory. The directory lies
// on the host's /run, and the services that may bind sockets there (crosvm,
// a plain command: Landlock's FS_MAKE_SOCK) could otherwise make one inode
// after another until /run is full, and other VMs could not take a lease.
#pragma once

#include <chrono>
#include <cstddef>

#include "common/unique_fd.h"

namespace vmwarden::supervisor {

class RuntimeDirWatch {
 public:
  // Far above what any VM makes there (a socket per share and service, the
  // console log and its rotation, `mnt/`), far below what fills a /run.
  static constexpr std::size_t kEntryLimit = 1024;
  // How often the entries are counted: what a service can make between two
  // counts is what it can make past the limit. A timer, not inotify: the
  // last close of an inotify instance waits for an SRCU grace period (about
  // 12 ms on a 2-CPU VM), which every sandbox's exit would pay.
  static constexpr std::chrono::milliseconds kInterval{100};

  // Counts the entries of the directory open as `dir` (in the host's mount
  // namespace) every kInterval.
  explicit RuntimeDirWatch(int dir);

  // A timerfd, readable when a count is due (close-on-exec, non-blocking).
  int fd() const { return timer_.get(); }

  // Counts if a count is due; true if the directory holds more than
  // kEntryLimit entries.
  bool over_limit();

 private:
  int dir_;
  UniqueFd timer_;
};

}  // namespace vmwarden::supervisor
