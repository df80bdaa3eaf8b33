// Bounds what a sandbox makes in its runtime directory. The directory lies
// on the host's /run, and the services that may bind sockets there (crosvm,
// a plain command: Landlock's FS_MAKE_SOCK) could otherwise make one inode
// after another until /run is full, and other VMs could not take a lease.
#pragma once

#include <cstddef>

#include "common/unique_fd.h"

namespace vmwarden::supervisor {

class RuntimeDirWatch {
 public:
  // Far above what any VM makes there (a socket per share and service, the
  // console log and its rotation, `mnt/`), far below what fills a /run.
  static constexpr std::size_t kEntryLimit = 1024;

  // Watches the directory open as `dir` (in the host's mount namespace) for
  // entries made or moved in. The descriptor is close-on-exec and
  // non-blocking.
  explicit RuntimeDirWatch(int dir);

  // Readable when entries were made.
  int fd() const { return inotify_.get(); }

  // Takes in what fd() has to report; true once the directory holds more
  // than kEntryLimit entries (counted again whenever the events could take
  // it past the limit, or were too many to queue).
  bool over_limit();

  // The entries counted last.
  std::size_t entries() const { return counted_; }

 private:
  std::size_t count_entries() const;

  int dir_;
  UniqueFd inotify_;
  std::size_t counted_ = 0;
  std::size_t made_since_count_ = 0;
};

}  // namespace vmwarden::supervisor
