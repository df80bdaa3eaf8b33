// Opens and closes many O_PATH descriptors with one io_uring submission each
// way, instead of a syscall per file: on the machines vmwarden targets a
// syscall costs microseconds and the walk is syscall-bound. Opening by
// io_uring applies the same open_how (flags and RESOLVE_* rules) as
// openat2(2). Without io_uring (kernel, sysctl or seccomp refusing it) it
// falls back to one openat2/close per file. One per thread. Internal to
// acl-manager.
#pragma once

#include <linux/openat2.h>

#include <memory>
#include <span>

namespace vmwarden::acl::detail {

class BatchOpen {
 public:
  static constexpr unsigned kMaxBatch = 64;

  // use_io_uring=false: always one syscall per file (tests of the fallback).
  explicit BatchOpen(bool use_io_uring = true);
  ~BatchOpen();
  BatchOpen(const BatchOpen&) = delete;
  BatchOpen& operator=(const BatchOpen&) = delete;

  // results[i] = openat2(dirfd, names[i], how): an fd or -errno.
  // names.size() <= kMaxBatch.
  void open(int dirfd, std::span<const char* const> names, const open_how& how, std::span<int> results);
  // Closes every fd >= 0 in fds.
  void close(std::span<const int> fds);

  // Whether batches go through io_uring (sets the ring up if not yet done).
  bool uses_io_uring() { return ring() != nullptr; }

 private:
  struct Ring;
  // Set up at the first batch of more than one name: a walk of a tree with
  // a handful of files (a VM's small share) never pays for a ring.
  Ring* ring();
  bool want_ring_ = true;
  std::unique_ptr<Ring> ring_;
};

}  // namespace vmwarden::acl::detail
