#include "acl-manager/batch_open.h"

#include <liburing.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>

namespace vmwarden::acl::detail {

struct BatchOpen::Ring {
  io_uring ring{};
  bool broken = false;
};

BatchOpen::BatchOpen(bool use_io_uring) : want_ring_(use_io_uring) {}

BatchOpen::Ring* BatchOpen::ring() {
  if (want_ring_ && !ring_) {
    want_ring_ = false;  // one attempt
    auto ring = std::make_unique<Ring>();
    if (io_uring_queue_init(kMaxBatch, &ring->ring, 0) == 0) ring_ = std::move(ring);
  }
  return ring_.get();
}

BatchOpen::~BatchOpen() {
  if (ring_) io_uring_queue_exit(&ring_->ring);
}

namespace {

// Submits what is queued and collects one result per request (user_data is
// its index). False when the ring itself failed: the caller then falls back.
bool run(io_uring& ring, unsigned count, std::span<int> results) {
  int submitted = io_uring_submit_and_wait(&ring, count);
  if (submitted < 0 || static_cast<unsigned>(submitted) != count) return false;
  unsigned seen = 0;
  while (seen < count) {
    io_uring_cqe* cqe = nullptr;
    int rc = io_uring_wait_cqe(&ring, &cqe);
    if (rc == -EINTR) continue;
    if (rc < 0) return false;
    if (cqe->user_data < results.size()) results[cqe->user_data] = cqe->res;
    io_uring_cqe_seen(&ring, cqe);
    ++seen;
  }
  return true;
}

}  // namespace

void BatchOpen::open(int dirfd, std::span<const char* const> names, const open_how& how, std::span<int> results) {
  if (names.size() > 1 && ring() != nullptr && !ring_->broken && names.size() <= kMaxBatch) {
    for (std::size_t i = 0; i < names.size(); ++i) {
      io_uring_sqe* sqe = io_uring_get_sqe(&ring_->ring);
      io_uring_prep_openat2(sqe, dirfd, names[i], const_cast<open_how*>(&how));
      sqe->user_data = i;
      results[i] = -ECANCELED;
    }
    if (run(ring_->ring, static_cast<unsigned>(names.size()), results)) return;
    // A ring that failed mid-batch may have opened some: close those, then
    // do it the slow way from now on.
    ring_->broken = true;
    for (std::size_t i = 0; i < names.size(); ++i) {
      if (results[i] >= 0) ::close(results[i]);
    }
  }
  for (std::size_t i = 0; i < names.size(); ++i) {
    long fd = syscall(SYS_openat2, dirfd, names[i], &how, sizeof how);
    results[i] = fd < 0 ? -errno : static_cast<int>(fd);
  }
}

void BatchOpen::close(std::span<const int> fds) {
  if (ring_ && !ring_->broken && fds.size() <= kMaxBatch) {
    unsigned count = 0;
    for (int fd : fds) {
      if (fd < 0) continue;
      io_uring_sqe* sqe = io_uring_get_sqe(&ring_->ring);
      io_uring_prep_close(sqe, fd);
      sqe->user_data = count++;
    }
    int ignored[kMaxBatch];
    if (count == 0 || run(ring_->ring, count, std::span<int>(ignored, count))) return;
    // Closing is not retried: a descriptor number may already be reused.
    ring_->broken = true;
    return;
  }
  for (int fd : fds) {
    if (fd >= 0) ::close(fd);
  }
}

}  // namespace vmwarden::acl::detail
