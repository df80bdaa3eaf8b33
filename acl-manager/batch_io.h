// Makes the walk's per-file system calls for a batch of files with one
// io_uring submission per step, instead of a syscall per file: on the
// machines vmwarden targets a syscall costs microseconds (more with page
// table isolation) and the walk is syscall-bound. Each request is the
// syscall it stands for, made on the same descriptor: opening applies the
// same open_how (flags and RESOLVE_* rules) as openat2(2), and the xattr
// and statx requests act on the descriptor's own inode, as their f*
// syscalls do (stat_at: on a name in a directory, never followed). Without io_uring, or without one of its operations (kernel,
// sysctl or seccomp refusing it), each step falls back to one syscall per
// file. One per thread. Internal to acl-manager.
#pragma once

#include <linux/openat2.h>
#include <linux/stat.h>

#include <memory>
#include <span>
#include <string_view>
#include <vector>

namespace vmwarden::acl::detail {

class BatchIo {
 public:
  static constexpr unsigned kMaxBatch = 256;

  // use_io_uring=false: always one syscall per file (tests of the fallback).
  explicit BatchIo(bool use_io_uring = true);
  ~BatchIo();
  BatchIo(const BatchIo&) = delete;
  BatchIo& operator=(const BatchIo&) = delete;

  // results[i] = openat2(dirfd, names[i], how): an fd or -errno.
  // names.size() <= kMaxBatch.
  void open(int dirfd, std::span<const char* const> names, const open_how& how, std::span<int> results);
  // Closes every fd >= 0 in fds (fds.size() <= kMaxBatch).
  void close(std::span<const int> fds);

  // Requests on an open descriptor, queued until run(), which makes them all
  // at once; each sets *result as the syscall it stands for would, 0 (or a
  // size) or -errno. Up to kMaxQueued; what is passed by pointer or view must
  // stay valid until run() returns.
  static constexpr unsigned kMaxQueued = 2 * kMaxBatch;
  // *result = fgetxattr(fd, name, buffer, size).
  void get_xattr(int fd, const char* name, char* buffer, std::size_t size, int* result);
  // *result = statx(fd, "", AT_EMPTY_PATH, mask, stats).
  void stat(int fd, unsigned mask, struct statx* stats, int* result);
  // *result = statx(dirfd, name, AT_SYMLINK_NOFOLLOW, mask, stats): a name
  // in the directory, never followed if it is a symlink.
  void stat_at(int dirfd, const char* name, unsigned mask, struct statx* stats, int* result);
  // *result = fsetxattr(fd, name, value, 0).
  void set_xattr(int fd, const char* name, std::string_view value, int* result);
  void run();

  // Whether batches go through io_uring (sets the ring up if not yet done).
  bool uses_io_uring() { return ring() != nullptr; }

 private:
  struct Ring;
  // Set up at the first batch of more than one file: a walk of a tree with
  // a handful of files (a VM's small share) never pays for a ring.
  Ring* ring();
  // The ring, if it can take a batch of `count` requests (2 to `most`); the
  // caller checks that it offers their operations.
  Ring* ring_for(std::size_t count, std::size_t most);
  struct Request;
  bool want_ring_ = true;
  std::unique_ptr<Ring> ring_;
  std::vector<Request> queued_;
};

// For tests: while on, every BatchIo made goes without io_uring, as where
// the kernel refuses it.
void force_no_io_uring(bool on);

}  // namespace vmwarden::acl::detail
