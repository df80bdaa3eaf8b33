#include "acl-manager/batch_io.h"

#include <fcntl.h>
#include <liburing.h>
#include <sched.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <bitset>
#include <cerrno>
#include <climits>
#include <cstdint>

namespace vmwarden::acl::detail {

struct BatchIo::Ring {
  io_uring ring{};
  std::bitset<IORING_OP_LAST> offered;  // the operations this kernel's io_uring knows
  bool broken = false;
  bool workers_placed = false;  // io_uring_register_iowq_aff
};

namespace {
std::atomic<bool> io_uring_forced_off{false};
}  // namespace

void force_no_io_uring(bool on) { io_uring_forced_off.store(on, std::memory_order_relaxed); }

BatchIo::BatchIo(bool use_io_uring)
    : want_ring_(use_io_uring && !io_uring_forced_off.load(std::memory_order_relaxed)) {}

namespace {

// The xattr and statx requests run on io_uring's worker threads, and each
// completion is handed back to this thread as task work. By default every
// one of them interrupts it (and wakes it from its wait); with
// DEFER_TASKRUN (Linux 6.1, only the thread that set the ring up submits:
// each walk thread has its own) they wait until it asks for completions,
// and a batch wakes it once. COOP_TASKRUN (5.19) spares the interrupts only.
//
// The workers are this thread's, and run on the CPUs it may run on when it
// sets the ring up: a walk thread kept on one CPU hands its requests over
// without waking another (walk.cc, PinnedToCpu). The setting is the
// thread's, not the ring's: the destructor puts it back when it runs on the
// same thread (the walk's first worker is the calling thread); the other
// walk threads' workers end with their threads.
bool set_up(io_uring& ring, bool& workers_placed) {
  for (unsigned flags : {IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN, IORING_SETUP_COOP_TASKRUN, 0u}) {
    io_uring_params params{};
    params.flags = flags;
    if (io_uring_queue_init_params(BatchIo::kMaxQueued, &ring, &params) != 0) continue;
    cpu_set_t cpus;
    workers_placed = ::sched_getaffinity(0, sizeof cpus, &cpus) == 0 &&
                     io_uring_register_iowq_aff(&ring, sizeof cpus, &cpus) == 0;
    return true;
  }
  return false;
}

}  // namespace

BatchIo::Ring* BatchIo::ring() {
  if (want_ring_ && !ring_) {
    want_ring_ = false;  // one attempt
    auto ring = std::make_unique<Ring>();
    if (!set_up(ring->ring, ring->workers_placed)) return nullptr;
    // Without a probe (before Linux 5.6) only what every ring has is used.
    if (io_uring_probe* probe = io_uring_get_probe_ring(&ring->ring)) {
      for (unsigned op = 0; op < IORING_OP_LAST; ++op) ring->offered[op] = io_uring_opcode_supported(probe, op) != 0;
      io_uring_free_probe(probe);
    }
    ring_ = std::move(ring);
  }
  return ring_.get();
}

BatchIo::Ring* BatchIo::ring_for(std::size_t count, std::size_t most) {
  if (count < 2 || count > most) return nullptr;  // one call costs no more than one submission
  Ring* r = ring();
  return r != nullptr && !r->broken ? r : nullptr;
}

BatchIo::~BatchIo() {
  if (!ring_) return;
  if (ring_->workers_placed) io_uring_unregister_iowq_aff(&ring_->ring);
  io_uring_queue_exit(&ring_->ring);
}

namespace {

// The result of a request whose completion was not seen.
constexpr int kNotSeen = INT_MIN;

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
//
// `to_workers`: the requests all go to io_uring's workers (the xattr and
// statx ones), which run on this thread's CPU (set_up). Each completion
// wakes a thread waiting for them, which then waits again for the next: on
// one CPU, a switch back and forth per request. Yielding the CPU once the
// batch is submitted lets the workers make the whole batch first, and the
// wait that follows finds it done (a statx batch 15-25% faster).
Outcome run_ring(io_uring& ring, unsigned count, std::span<int> results, bool to_workers = false) {
  int rc = to_workers ? io_uring_submit(&ring) : io_uring_submit_and_wait(&ring, count);
  Outcome outcome;
  outcome.submitted = rc < 0 ? 0 : std::min(static_cast<unsigned>(rc), count);
  if (to_workers && outcome.submitted > 0) {
    ::sched_yield();
    // All at once; should the wait fail, the loop below waits for each.
    io_uring_submit_and_wait(&ring, outcome.submitted);
  }
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

int result_of(long rc) { return rc < 0 ? -errno : static_cast<int>(rc); }

}  // namespace

struct BatchIo::Request {
  enum class Kind : std::uint8_t { get_xattr, stat, stat_at, set_xattr } kind;
  int fd;
  const char* name;  // get_xattr, set_xattr; stat_at: the name in the directory fd
  char* buffer;      // get_xattr
  std::size_t size;  // get_xattr
  unsigned mask;     // stat
  struct statx* stats;
  std::string_view value;  // set_xattr
  int* result;

  unsigned opcode() const {
    switch (kind) {
      case Kind::get_xattr: return IORING_OP_FGETXATTR;
      case Kind::stat:
      case Kind::stat_at: return IORING_OP_STATX;
      case Kind::set_xattr: return IORING_OP_FSETXATTR;
    }
    return IORING_OP_LAST;
  }

  void prepare(io_uring_sqe* sqe) const {
    switch (kind) {
      case Kind::get_xattr: io_uring_prep_fgetxattr(sqe, fd, name, buffer, static_cast<unsigned>(size)); break;
      case Kind::stat: io_uring_prep_statx(sqe, fd, "", AT_EMPTY_PATH, mask, stats); break;
      case Kind::stat_at: io_uring_prep_statx(sqe, fd, name, AT_SYMLINK_NOFOLLOW, mask, stats); break;
      case Kind::set_xattr:
        io_uring_prep_fsetxattr(sqe, fd, name, value.data(), 0, static_cast<unsigned>(value.size()));
        break;
    }
  }

  int make_directly() const {
    switch (kind) {
      case Kind::get_xattr: return result_of(::fgetxattr(fd, name, buffer, size));
      case Kind::stat: return result_of(::statx(fd, "", AT_EMPTY_PATH, mask, stats));
      case Kind::stat_at: return result_of(::statx(fd, name, AT_SYMLINK_NOFOLLOW, mask, stats));
      case Kind::set_xattr: return result_of(::fsetxattr(fd, name, value.data(), value.size(), 0));
    }
    return -EINVAL;
  }
};

void BatchIo::get_xattr(int fd, const char* name, char* buffer, std::size_t size, int* result) {
  queued_.push_back(Request{Request::Kind::get_xattr, fd, name, buffer, size, 0, nullptr, {}, result});
}

void BatchIo::stat(int fd, unsigned mask, struct statx* stats, int* result) {
  queued_.push_back(Request{Request::Kind::stat, fd, nullptr, nullptr, 0, mask, stats, {}, result});
}

void BatchIo::stat_at(int dirfd, const char* name, unsigned mask, struct statx* stats, int* result) {
  queued_.push_back(Request{Request::Kind::stat_at, dirfd, name, nullptr, 0, mask, stats, {}, result});
}

void BatchIo::set_xattr(int fd, const char* name, std::string_view value, int* result) {
  queued_.push_back(Request{Request::Kind::set_xattr, fd, name, nullptr, 0, 0, nullptr, value, result});
}


// These requests only read or write an attribute of an inode (a
// descriptor's, or a name's in a directory): after a ring failure, one
// whose completion was not seen is made again directly (reading twice, or
// writing the same value twice, does what doing it once does).
void BatchIo::run() {
  std::size_t count = queued_.size();
  Ring* r = ring_for(count, kMaxQueued);
  bool offered = r != nullptr &&
                 std::all_of(queued_.begin(), queued_.end(), [r](const Request& q) { return r->offered[q.opcode()]; });
  int results[kMaxQueued];
  if (offered) {
    for (std::size_t i = 0; i < count; ++i) {
      io_uring_sqe* sqe = io_uring_get_sqe(&r->ring);
      queued_[i].prepare(sqe);
      sqe->user_data = i;
      results[i] = kNotSeen;
    }
    if (!run_ring(r->ring, static_cast<unsigned>(count), std::span<int>(results, count), /*to_workers=*/true).ok) {
      r->broken = true;
    }
  }
  for (std::size_t i = 0; i < count; ++i) {
    const Request& request = queued_[i];
    *request.result = offered && results[i] != kNotSeen ? results[i] : request.make_directly();
  }
  queued_.clear();
}

void BatchIo::open(int dirfd, std::span<const char* const> names, const open_how& how, std::span<int> results) {
  if (Ring* r = ring_for(names.size(), kMaxBatch); r != nullptr && r->offered[IORING_OP_OPENAT2]) {
    for (std::size_t i = 0; i < names.size(); ++i) {
      io_uring_sqe* sqe = io_uring_get_sqe(&r->ring);
      io_uring_prep_openat2(sqe, dirfd, names[i], const_cast<open_how*>(&how));
      sqe->user_data = i;
      results[i] = -ECANCELED;
    }
    if (run_ring(r->ring, static_cast<unsigned>(names.size()), results).ok) return;
    // A ring that failed mid-batch may have opened some: run_ring() has collected
    // every completion it could, so each fd in results is open and ours.
    // Close those, then do it the slow way from now on.
    r->broken = true;
    for (std::size_t i = 0; i < names.size(); ++i) {
      if (results[i] >= 0) ::close(results[i]);
    }
  }
  for (std::size_t i = 0; i < names.size(); ++i) {
    results[i] = result_of(syscall(SYS_openat2, dirfd, names[i], &how, sizeof how));
  }
}

void BatchIo::close(std::span<const int> fds) {
  auto usable = static_cast<std::size_t>(std::count_if(fds.begin(), fds.end(), [](int fd) { return fd >= 0; }));
  // Only a ring that has already opened (the opens that gave these fds went
  // through it): a batch of one is closed directly like any other.
  if (Ring* r = ring_ ? ring_for(usable, kMaxBatch) : nullptr; r != nullptr && r->offered[IORING_OP_CLOSE]) {
    unsigned count = 0;
    int queued[kMaxBatch];  // request i closes queued[i]
    for (int fd : fds) {
      if (fd < 0) continue;
      io_uring_sqe* sqe = io_uring_get_sqe(&r->ring);
      io_uring_prep_close(sqe, fd);
      sqe->user_data = count;
      queued[count++] = fd;
    }
    int ignored[kMaxBatch];
    Outcome outcome = run_ring(r->ring, count, std::span<int>(ignored, count));
    if (outcome.ok) return;
    r->broken = true;
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
