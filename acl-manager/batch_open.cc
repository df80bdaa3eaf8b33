#include "acl-manager/batch_open.h"

#include <liburing.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
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

struct Outcome {
  unsigned submitted = 0;  // the first `submitted` queued requests went to the kernel
  bool ok = false;         // all `count` submitted and every completion seen
};

// Submits the `count` queued requests and collects one result per submitted
// request (user_data is its index into results). Every submitted request is
// waited for even when the submission fell short: one in flight may still
// open or close a descriptor, and only its completion says which. Requests
// the kernel never took (the ones from `submitted` on) leave their results
// alone and are never run: the ring is not used again after a failure. Only
// if waiting itself fails (which io_uring_wait_cqe does for a broken ring
// alone) is a completion lost, and with it a descriptor it may have opened.
Outcome run(io_uring& ring, unsigned count, std::span<int> results) {
  int rc = io_uring_submit_and_wait(&ring, count);
  Outcome outcome;
  outcome.submitted = rc < 0 ? 0 : std::min(static_cast<unsigned>(rc), count);
  unsigned seen = 0;
  while (seen < outcome.submitted) {
    io_uring_cqe* cqe = nullptr;
    rc = io_uring_wait_cqe(&ring, &cqe);
    if (rc == -EINTR) continue;
    if (rc < 0) return outcome;
    if (cqe->user_data < results.size()) results[cqe->user_data] = cqe->res;
    io_uring_cqe_seen(&ring, cqe);
    ++seen;
  }
  outcome.ok = outcome.submitted == count;
  return outcome;
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
    if (run(ring_->ring, static_cast<unsigned>(names.size()), results).ok) return;
    // A ring that failed mid-batch may have opened some: run() has collected
    // every completion it could, so each fd in results is open and ours.
    // Close those, then do it the slow way from now on.
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
    int queued[kMaxBatch];  // request i closes queued[i]
    for (int fd : fds) {
      if (fd < 0) continue;
      io_uring_sqe* sqe = io_uring_get_sqe(&ring_->ring);
      io_uring_prep_close(sqe, fd);
      sqe->user_data = count;
      queued[count++] = fd;
    }
    if (count == 0) return;
    int ignored[kMaxBatch];
    Outcome outcome = run(ring_->ring, count, std::span<int>(ignored, count));
    if (outcome.ok) return;
    ring_->broken = true;
    // A submitted close is not retried, whatever its result: the kernel
    // released the number (close(2) does even when it reports an error), so
    // it may already be reused. The requests the kernel never took left
    // their descriptors open: those are closed here, exactly once.
    for (unsigned i = outcome.submitted; i < count; ++i) ::close(queued[i]);
    return;
  }
  for (int fd : fds) {
    if (fd >= 0) ::close(fd);
  }
}

}  // namespace vmwarden::acl::detail
