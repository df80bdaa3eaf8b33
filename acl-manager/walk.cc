#include "acl-manager/walk.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <charconv>
#include <chrono>
#include <climits>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <span>
#include <thread>
#include <utility>

#include <fmt/core.h>

#include "acl-manager/batch_io.h"
#include "acl-manager/nodev_view.h"
#include "acl-manager/shown_path.h"
#include "acl-manager/store.h"
#include "acl-manager/xattr_at.h"
#include "common/error.h"
#include "common/unique_fd.h"

namespace vmwarden::acl::detail {
namespace {

std::atomic<bool> unknown_d_type_forced{false};

// The entry's type as the listing gives it (DT_UNKNOWN: not given).
unsigned char listed_type(const struct dirent64& entry) {
  return unknown_d_type_forced.load(std::memory_order_relaxed) ? static_cast<unsigned char>(DT_UNKNOWN) : entry.d_type;
}

constexpr std::size_t kMaxSkippedPaths = 100;
constexpr std::size_t kMaxErrors = 20;
// A directory with more entries than this is split across threads.
constexpr std::size_t kChunk = 512;
// A root holding no directory and at most this many other entries is walked
// without the nodev view (see Walk::run).
constexpr std::size_t kSmallTree = 64;
// ACL values up to this size are read without a second call.
constexpr std::size_t kValueBuffer = 1024;
// In a batch, for each file (an ACL of up to 62 entries; a larger one is
// read again on its own).
constexpr std::size_t kBatchValueBuffer = 500;

// Set by a grant on a directory where it creates the default ACL (there was
// none), before writing it. A removal that leaves a default ACL with no
// named entries drops it only where this mark says a grant made it (and
// then drops the mark, after the default ACL), or where the directory
// belongs to a UID whose entries it removes (the VM made it while the grant
// held, and it inherited the grant's). Any other such default ACL
// is someone's own rule for new files (`setfacl -d -m o::---`) and stays. A
// grant that finds a default ACL with no named entries drops a mark left
// there (its owner replaced the one the grant made). In trusted.*: only
// CAP_SYS_ADMIN sets or removes it, so a VM cannot mark a directory itself.
constexpr const char* kGrantedDefaultMark = "trusted.vmwarden.granted-default";

// Whether the filesystem has no trusted.* attributes: no directory there
// can be marked, and a removal drops such default ACLs as if marked.
bool no_marks_here(int error) { return error == EOPNOTSUPP || error == ENOTSUP; }

struct DirHandle {
  UniqueFd fd;
  std::shared_ptr<ShownPath> place;  // for messages only

  // The path shown for this directory (with `child`: for that entry of it).
  std::string path(std::string_view child = {}) const { return place->text(child); }
};

struct Task {
  // Either a subdirectory to open (parent + name)...
  std::shared_ptr<DirHandle> parent;
  std::string name;
  // ...or a batch of non-directories in an open directory, all listed as
  // regular files (d_type DT_REG) or all not.
  std::shared_ptr<DirHandle> dir;
  std::vector<std::string> files;
  bool listed_regular = false;
};

int open_beneath(int dirfd, const char* name, std::uint64_t flags, bool cross_mounts) {
  open_how how{};
  how.flags = flags | O_NOFOLLOW | O_CLOEXEC;
  how.resolve = RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | (cross_mounts ? 0 : RESOLVE_NO_XDEV);
  long fd = syscall(SYS_openat2, dirfd, name, &how, sizeof how);
  return fd < 0 ? -errno : static_cast<int>(fd);
}

// Closes a batch of descriptors from BatchIo::open however the scope is left.
struct CloseBatch {
  BatchIo& io;
  std::span<int> fds;
  CloseBatch(BatchIo& i, std::span<int> f) : io(i), fds(f) {}
  CloseBatch(const CloseBatch&) = delete;
  CloseBatch& operator=(const CloseBatch&) = delete;
  ~CloseBatch() { io.close(fds); }
};

// What the walk learns of a pinned file from statx (process_pinned's checks,
// and the ctime a file had before a grant wrote it: VerifiedFile).
constexpr unsigned kStatxMask =
    STATX_TYPE | STATX_MODE | STATX_NLINK | STATX_UID | STATX_GID | STATX_INO | STATX_CTIME;
// What a file's entry in a VerifiedFiles takes, and what tells that it is one.
constexpr unsigned kVerifyMask = STATX_TYPE | STATX_NLINK | STATX_INO | STATX_CTIME;

struct stat stat_from(const struct statx& sx) {
  struct stat st {};
  st.st_mode = sx.stx_mode;
  st.st_nlink = sx.stx_nlink;
  st.st_uid = sx.stx_uid;
  st.st_gid = sx.stx_gid;
  st.st_ino = sx.stx_ino;
  st.st_dev = makedev(sx.stx_dev_major, sx.stx_dev_minor);
  return st;
}

// Whether the directory open as dir_fd holds no subdirectory (nor an entry
// of unknown type) and at most kSmallTree other entries. Lists it through a
// descriptor of its own, leaving dir_fd's position alone.
bool small_flat_tree(int dir_fd) {
  UniqueFd dir(::openat(dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dir) return false;
  alignas(8) char entries[8192];
  std::size_t count = 0;
  for (;;) {
    long n = syscall(SYS_getdents64, dir.get(), entries, sizeof entries);
    if (n < 0) return false;
    if (n == 0) return true;
    for (long offset = 0; offset < n;) {
      auto* entry = reinterpret_cast<struct dirent64*>(entries + offset);
      offset += entry->d_reclen;
      const char* name = entry->d_name;
      if (name[0] == '.' && (name[1] == '\0' || (name[1] == '.' && name[2] == '\0'))) continue;
      unsigned char type = listed_type(*entry);
      if (type == DT_DIR || type == DT_UNKNOWN || ++count > kSmallTree) return false;
    }
  }
}

// The CPUs the calling thread may run on (none if that cannot be read),
// the one it runs on first: it stays there.
std::vector<int> allowed_cpus() {
  cpu_set_t set;
  std::vector<int> cpus;
  if (::sched_getaffinity(0, sizeof set, &set) != 0) return cpus;
  for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu)
    if (CPU_ISSET(cpu, &set)) cpus.push_back(cpu);
  if (auto here = std::find(cpus.begin(), cpus.end(), ::sched_getcpu()); here != cpus.end())
    std::rotate(cpus.begin(), here, cpus.end());
  return cpus;
}

// Keeps the calling thread on one CPU while it lives (cpu < 0: leaves it
// alone), then gives it back the CPUs it had. A walk thread waits for its
// io_uring workers, which run where it does (batch_io.cc), after every step
// of a batch: on one CPU the two hand over at once, where across CPUs each
// step waited for an idle CPU to wake up, which on a VM is an exit to the
// hypervisor (one thread walked 2-3 times slower than on one CPU).
class PinnedToCpu {
 public:
  explicit PinnedToCpu(int cpu) {
    if (cpu < 0 || ::sched_getaffinity(0, sizeof saved_, &saved_) != 0) return;
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(cpu, &one);
    pinned_ = ::sched_setaffinity(0, sizeof one, &one) == 0;
  }
  ~PinnedToCpu() {
    if (pinned_) ::sched_setaffinity(0, sizeof saved_, &saved_);
  }
  PinnedToCpu(const PinnedToCpu&) = delete;
  PinnedToCpu& operator=(const PinnedToCpu&) = delete;

 private:
  cpu_set_t saved_;
  bool pinned_ = false;
};

std::int64_t nanoseconds(const struct timespec& t) { return t.tv_sec * 1'000'000'000LL + t.tv_nsec; }

// The bound of the files a walk wrote (VerifiedFile), called once every
// write is done: the coarse clock, once it has passed the moment of the
// call. Every write's ctime lies below it; every timestamp given to a
// change made afterwards is at least the coarse clock, so none lies below
// it. Waits for the clock's next tick (up to 4 ms where HZ is 250); none if
// the clock does not get there within a second (it was set back).
std::optional<std::int64_t> end_of_writes() {
  struct timespec now, coarse, resolution;
  check(::clock_gettime(CLOCK_REALTIME, &now), "clock_gettime", "CLOCK_REALTIME");
  check(::clock_getres(CLOCK_REALTIME_COARSE, &resolution), "clock_getres", "CLOCK_REALTIME_COARSE");
  const std::int64_t written_by = nanoseconds(now);
  const std::int64_t tick = std::max<std::int64_t>(1, nanoseconds(resolution));
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(1);
  while (std::chrono::steady_clock::now() < deadline) {
    check(::clock_gettime(CLOCK_REALTIME_COARSE, &coarse), "clock_gettime", "CLOCK_REALTIME_COARSE");
    if (nanoseconds(coarse) > written_by) return nanoseconds(coarse);
    // Until just past the next tick.
    std::int64_t wait = std::clamp<std::int64_t>(nanoseconds(coarse) + tick - written_by, 1, tick) + 50'000;
    struct timespec pause{static_cast<time_t>(wait / 1'000'000'000), static_cast<long>(wait % 1'000'000'000)};
    ::nanosleep(&pause, nullptr);
  }
  return std::nullopt;
}

class Walk {
 public:
  Walk(const Editor& editor, const WalkOptions& options) : editor_(editor), options_(options) {
    proc_fd_ = UniqueFd(::open("/proc/self/fd", O_PATH | O_DIRECTORY | O_CLOEXEC));
    if (!proc_fd_) throw_errno("open", "/proc/self/fd");
    // The cheap check reads a name's ACL only: a walk that must also see
    // each file's owner and mode goes through the pinned path for all.
    use_fast_check_ = have_xattrat() && !editor.clears_setid_bits();
    std::uint64_t resolve = RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | (options_.cross_mounts ? 0 : RESOLVE_NO_XDEV);
    path_how_.flags = O_PATH | O_NOFOLLOW | O_CLOEXEC;
    path_how_.resolve = resolve;
    // O_NONBLOCK: a FIFO renamed in under a file's name opens at once instead
    // of waiting for a writer, and a file under a lease fails with EAGAIN
    // (then pinned with O_PATH) instead of waiting for the lease's holder.
    // O_NOCTTY for form's sake: the view is nodev, so no terminal opens.
    read_how_.flags = O_RDONLY | O_NONBLOCK | O_NOCTTY | O_NOFOLLOW | O_CLOEXEC;
    read_how_.resolve = resolve;
  }

  Report run(int root_fd, const std::string& display_root, Verified* verified) {
    auto root = std::make_shared<DirHandle>();
    // A small flat tree (a VM's fresh share) goes without the view: making
    // it and dissolving it (closing its descriptor waits for an RCU grace
    // period) costs more than pinning a few files O_PATH. If the tree grows
    // after this look, the rest is pinned O_PATH too, which is always safe.
    if (!small_flat_tree(root_fd)) view_ = open_nodev_view(root_fd);
    if (view_) {
      // Walked through the nodev view, so that files listed as regular can be
      // opened for reading (see process_files).
      root->fd = std::move(view_.dir);
    } else {
      root->fd = UniqueFd(check(::fcntl(root_fd, F_DUPFD_CLOEXEC, 0), "dup", display_root));
    }
    root->place = ShownPath::root(display_root);
    // Only a grant's walk can take a file as verified or verify one: a
    // removal's must read every ACL (and a revoke looks at set-ID bits).
    bool grant = editor_.adds_entries() && !editor_.clears_setid_bits();
    if (verified && grant && !verified->known.empty()) known_ = &verified->known;
    // A small tree's walk (a VM's fresh share) is not worth a record.
    recording_ = verified && grant && !options_.dry_run && through_view();
    if (recording_) found_ = std::make_unique<VerifiedFiles::Builder>();

    // One thread per CPU this process may run on, each kept on its own
    // (where the CPUs cannot be listed: one per online CPU, left alone).
    std::vector<int> cpus = allowed_cpus();
    unsigned threads = options_.threads != 0 ? options_.threads
                       : cpus.empty()        ? std::max(1u, std::thread::hardware_concurrency())
                                             : static_cast<unsigned>(cpus.size());
    // Only a walk through the view hands requests to io_uring's workers
    // (process_read_batch): a small flat tree's walk leaves the caller alone.
    auto cpu_of = [&](unsigned worker) {
      return cpus.empty() || !through_view() ? -1 : cpus[worker % cpus.size()];
    };
    std::vector<Worker> workers(threads);
    PinnedToCpu pinned(cpu_of(0));
    {
      // The root is processed first, by this thread, so that a root that is
      // not a usable directory fails the whole call.
      workers[0].process_dir(*this, root, /*is_root=*/true);
    }
    // More threads only when the root left work queued: a tree that is one
    // directory (a VM's fresh share) costs no thread start.
    std::vector<std::thread> pool;
    if (!tasks_.empty()) {
      for (unsigned i = 1; i < threads; ++i) {
        pool.emplace_back([this, &workers, i, cpu = cpu_of(i)] {
          PinnedToCpu pinned_here(cpu);
          loop(workers[i]);
        });
      }
    }
    loop(workers[0]);
    for (std::thread& thread : pool) thread.join();
    if (error_) std::rethrow_exception(error_);

    Report total;
    for (const Worker& worker : workers) total += worker.report;
    // Only a walk that verified a file of its own replaces the set: the
    // files it took from the set are there already, and an entry for a
    // file gone since is never wrong (verified_files.h).
    bool verified_more = std::any_of(workers.begin(), workers.end(), [](const Worker& w) { return w.verified_more; });
    if (recording_ && verified_more) {
      // The files taken from the set stay in it.
      std::span<const VerifiedFile> known = verified->known.files();
      VerifiedFile taken[BatchIo::kMaxBatch];
      std::size_t count = 0;
      for (std::size_t i = 0; i < known.size(); ++i) {
        if (std::none_of(workers.begin(), workers.end(), [i](const Worker& w) { return w.took_known(i); })) continue;
        taken[count++] = known[i];
        if (count == BatchIo::kMaxBatch) {
          found_->add(std::span<const VerifiedFile>(taken, count));
          count = 0;
        }
      }
      if (count != 0) found_->add(std::span<const VerifiedFile>(taken, count));
      bool wrote = std::any_of(workers.begin(), workers.end(), [](const Worker& w) { return w.wrote; });
      std::optional<std::int64_t> end = wrote ? end_of_writes() : std::int64_t{0};
      std::optional<VerifiedFiles> found;
      if (end) found = found_->build(verified->known.scope(), *end);
      if (found) {
        verified->found = std::move(*found);
        verified->recorded = true;
      }
    }
    return total;
  }

 private:
  struct Worker {
    Report report;
    Entries access, default_acl, original;
    std::string value;
    char buffer[kValueBuffer];
    unsigned fast_misses = 0;
    unsigned fast_pause = 0;
    unsigned fast_rounds = 0;
    // The files this worker verified itself go to Walk::found_ a batch at a
    // time (found right, or written: then bounded by the walk's end); those
    // it took from Walk::known_ are marked by their index there (a bit
    // each: a re-grant of an unchanged tree builds no list).
    VerifiedFile verified_[BatchIo::kMaxBatch];
    std::size_t verified_count = 0;
    bool verified_more = false;
    bool wrote = false;  // some of them written
    std::vector<std::uint64_t> known_taken;
    std::size_t last_known_index = 0;
    bool took_known(std::size_t i) const { return i / 64 < known_taken.size() && (known_taken[i / 64] >> (i % 64)) & 1; }
    unsigned verified_pause = 0;      // take_verified_files()
    unsigned verified_misses = 0;

    // The paths are made only for what the report keeps.
    void note_foreign(const DirHandle& dir, std::string_view name = {}) {
      ++report.skipped_foreign;
      if (report.foreign.size() < kMaxSkippedPaths) report.foreign.push_back(dir.path(name));
    }

    void note_error(const DirHandle& dir, std::string_view name, std::string_view operation, int error) {
      ++report.failed;
      if (report.errors.size() < kMaxErrors) {
        report.errors.push_back(fmt::format("{}: {}: {}", dir.path(name), operation, std::strerror(error)));
      }
    }

    // Reads an xattr into `value` with `get` (getxattr's contract, but
    // -errno on failure); returns 0, or -errno (ENODATA: none). A value that
    // grows between the calls is asked for again, a few times.
    template <typename Get>
    int read_into_value(Get&& get) {
      ssize_t size = get(buffer, sizeof buffer);
      if (size >= 0) {
        value.assign(buffer, static_cast<std::size_t>(size));
        return 0;
      }
      for (int attempt = 0; attempt < 4 && size == -ERANGE; ++attempt) {
        ssize_t needed = get(nullptr, 0);
        if (needed < 0) return static_cast<int>(needed);
        value.resize(static_cast<std::size_t>(needed));
        size = get(value.data(), value.size());
        if (size >= 0) {
          value.resize(static_cast<std::size_t>(size));
          return 0;
        }
      }
      return static_cast<int>(size);
    }

    int read_value(int dirfd, const char* name, bool follow, const char* attribute) {
      return read_into_value([&](void* data, std::size_t size) {
        return get_xattr_at(dirfd, name, follow, attribute, data, size);
      });
    }

    int read_fd_value(int fd, const char* attribute) {
      return read_into_value([&](void* data, std::size_t size) -> ssize_t {
        ssize_t rc = ::fgetxattr(fd, attribute, data, size);
        return rc < 0 ? -errno : rc;
      });
    }

    void process_dir(Walk& walk, const std::shared_ptr<DirHandle>& dir, bool is_root) {
      int fd = dir->fd.get();
      struct stat st;
      if (::fstat(fd, &st) < 0) {
        if (is_root) throw_errno("fstat", dir->path());
        note_error(*dir, {}, "fstat", errno);
        return;
      }
      if (!walk.first_visit(st)) return;
      // The root's owner decides whose objects a grant may edit. A directory
      // of a third party's is not entered either: what lies below it came in
      // with it.
      if (is_root) {
        walk.root_owner_ = st.st_uid;
        walk.root_dev_ = st.st_dev;
      }
      if (!is_root && !walk.editor_.accepts_owner(st.st_uid, walk.root_owner_)) {
        note_foreign(*dir);
        return;
      }
      fix_directory(walk, *dir, st, is_root);

      std::vector<std::string> files;    // listed as regular files
      std::vector<std::string> unknown;  // the filesystem gave no type, or a special file a removal edits
      std::vector<std::string> subdirs;
      alignas(8) char entries_buffer[32768];
      for (;;) {
        long n = syscall(SYS_getdents64, fd, entries_buffer, sizeof entries_buffer);
        if (n < 0) {
          if (is_root) throw_errno("getdents64", dir->path());
          note_error(*dir, {}, "getdents64", errno);
          break;
        }
        if (n == 0) break;
        for (long offset = 0; offset < n;) {
          auto* entry = reinterpret_cast<struct dirent64*>(entries_buffer + offset);
          offset += entry->d_reclen;
          const char* name = entry->d_name;
          if (name[0] == '.' && (name[1] == '\0' || (name[1] == '.' && name[2] == '\0'))) continue;
          switch (listed_type(*entry)) {
            case DT_DIR: subdirs.emplace_back(name); break;
            case DT_LNK: ++report.skipped_symlinks; break;
            case DT_REG: files.emplace_back(name); break;
            case DT_UNKNOWN: unknown.emplace_back(name); break;
            default:
              // A FIFO, socket or device node made under a grant's default
              // ACL carries the UID's entry too: a revoke or sweep removes
              // it (pinned O_PATH: never opened). A grant adds none.
              if (walk.editor_.adds_entries()) ++report.skipped_special;
              else unknown.emplace_back(name);
              break;
          }
        }
      }
      walk.push_subdirs(dir, std::move(subdirs));
      if (files.size() > kChunk) {
        for (std::size_t start = kChunk; start < files.size(); start += kChunk) {
          std::size_t end = std::min(files.size(), start + kChunk);
          walk.push_files(dir, std::vector<std::string>(files.begin() + start, files.begin() + end), true);
        }
        files.resize(kChunk);
      }
      process_files(walk, dir, files, /*listed_regular=*/true);
      if (!unknown.empty()) process_files(walk, dir, unknown, /*listed_regular=*/false);
    }

    void fix_directory(Walk& walk, const DirHandle& dir, const struct stat& st, bool is_root) {
      const Editor& editor = walk.editor_;
      int fd = dir.fd.get();
      int rc = read_fd_value(fd, kAccessAcl);
      if (rc == -ENODATA) {
        from_mode(st.st_mode, access);
      } else if (rc < 0 || !decode(value, access)) {
        if (is_root) throw_system_error(rc < 0 ? -rc : EINVAL, "read ACL of", dir.path());
        note_error(dir, {}, "read ACL", rc < 0 ? -rc : EINVAL);
        return;
      }
      bool access_changed = editor.edit_access(access, true, report);

      bool present = true;
      rc = read_fd_value(fd, kDefaultAcl);
      if (rc == -ENODATA) {
        present = false;
        default_acl.clear();
      } else if (rc < 0 || !decode(value, default_acl)) {
        if (is_root) throw_system_error(rc < 0 ? -rc : EINVAL, "read default ACL of", dir.path());
        note_error(dir, {}, "read default ACL", rc < 0 ? -rc : EINVAL);
        return;
      }
      bool had_default = present;
      bool creates_default = !had_default && editor.adds_entries();
      bool stale_mark = had_default && editor.adds_entries() && !has_named_entries(default_acl);
      bool default_changed = editor.edit_default(default_acl, present, access, report);
      bool drops_default = had_default && !present;
      if (drops_default) {
        int granted = made_by_a_grant(walk, fd, st);
        if (granted < 0) {
          if (is_root) throw_system_error(-granted, "read the granted-default mark of", dir.path());
          note_error(dir, {}, "read the granted-default mark", -granted);
          return;
        }
        if (granted == 0) {
          present = true;  // someone's own rule for new files: it stays
          drops_default = false;
        }
      }

      if (!access_changed && !default_changed) {
        ++report.unchanged;
        return;
      }
      if (!walk.options_.dry_run) {
        // Before the default ACL is written: a crash between the two leaves
        // a mark on a directory without a default ACL, which the next grant
        // creates (and marks) again, or whose owner's own one it drops.
        if (creates_default && ::fsetxattr(fd, kGrantedDefaultMark, "", 0, 0) != 0 && !no_marks_here(errno)) {
          if (is_root) throw_errno("mark the default ACL as granted on", dir.path());
          note_error(dir, {}, "mark the default ACL as granted", errno);
          return;
        }
        if (stale_mark && !remove_mark(dir, is_root)) return;
        if (access_changed) {
          if (int stored = store_access_acl(fd, access, st.st_mode); stored < 0) {
            if (is_root) throw_system_error(-stored, "set ACL on", dir.path());
            note_error(dir, {}, "set ACL", -stored);
            return;
          }
        }
        if (default_changed && present) {
          if (!write_directory_acl(dir, kDefaultAcl, default_acl, is_root, "default ACL")) return;
        } else if (default_changed && had_default) {
          if (::fremovexattr(fd, kDefaultAcl) < 0 && errno != ENODATA) {
            note_error(dir, {}, "remove default ACL", errno);
            return;
          }
        }
        // After the default ACL: a crash between the two leaves the mark on
        // a directory without one, which the next grant that makes one
        // there marks anyway, and on whose owner's own rule it drops it.
        if (drops_default && !remove_mark(dir, is_root)) return;
      }
      ++report.changed;
    }

    // Whether a default ACL that an edit left with no named entries (it
    // would be dropped) was made by a grant (see kGrantedDefaultMark), or
    // is on a directory of a UID whose entries go (the VM made it, and most
    // likely inherited the grant's; the VM's own rules carry no weight): 1
    // if so, 0 if it stays, -errno if the mark cannot be read.
    int made_by_a_grant(const Walk& walk, int fd, const struct stat& st) {
      if (walk.editor_.removes_entries_of(st.st_uid)) return 1;
      if (::fgetxattr(fd, kGrantedDefaultMark, nullptr, 0) >= 0) return 1;
      if (errno == ENODATA) return 0;
      return no_marks_here(errno) ? 1 : -errno;
    }

    // Removes the granted-default mark (none there is fine); false after
    // noting the failure.
    bool remove_mark(const DirHandle& dir, bool is_root) {
      if (::fremovexattr(dir.fd.get(), kGrantedDefaultMark) == 0 || errno == ENODATA || no_marks_here(errno)) return true;
      if (is_root) throw_errno("remove the granted-default mark of", dir.path());
      note_error(dir, {}, "remove the granted-default mark", errno);
      return false;
    }

    // Stores `entries` as the access ACL of the object open as `fd` (not
    // O_PATH), whose mode was `mode`; returns 0 or -errno. An ACL that is
    // minimal and grants what the mode's permission bits already say (what a
    // revoke usually leaves) is stored by the kernel as no xattr at all:
    // removing the xattr then has the same result as writing it, for about a
    // quarter less work (no ACL to parse, no mode to compare). Not with
    // S_ISGID set: writing an ACL may clear that bit (when the caller is
    // neither in the group nor has CAP_FSETID), removing one never does.
    int store_access_acl(int fd, const Entries& entries, mode_t mode) {
      if (!(mode & S_ISGID) && is_minimal_for_mode(entries, mode)) {
        // ENODATA: someone removed it meanwhile, which is where this was going.
        return ::fremovexattr(fd, kAccessAcl) == 0 || errno == ENODATA ? 0 : -errno;
      }
      value.clear();
      encode(entries, value);
      return ::fsetxattr(fd, kAccessAcl, value.data(), value.size(), 0) == 0 ? 0 : -errno;
    }

    bool write_directory_acl(const DirHandle& dir, const char* attribute, const Entries& entries, bool is_root,
                             std::string_view what) {
      value.clear();
      encode(entries, value);
      if (::fsetxattr(dir.fd.get(), attribute, value.data(), value.size(), 0) == 0) return true;
      if (is_root) throw_errno(fmt::format("set {} on", what), dir.path());
      note_error(dir, {}, fmt::format("set {}", what), errno);
      return false;
    }

    // The cheap check: one name-relative getxattrat that never follows a
    // symlink. It only ever decides "nothing to do"; any change goes through
    // the pinned path below, which re-reads what it writes.
    bool already_right(Walk& walk, int dirfd, const char* name) {
      int rc = read_value(dirfd, name, /*follow=*/false, kAccessAcl);
      if (rc == -ENODATA) return !walk.editor_.adds_entries();
      if (rc < 0 || !decode(value, access)) return false;
      return !walk.editor_.edit_access(access, false, scratch_report);
    }

    // Whether `name` still needs the pinned path (the cheap check, when it is
    // worth doing, did not settle it). Only for names listed as regular
    // files: the check reads a name's own ACL and cannot tell a directory,
    // which must be entered even when its own ACL is right.
    bool needs_pinned_path(Walk& walk, int dirfd, const std::string& name) {
      if (walk.use_fast_check_ && fast_pause == 0) {
        if (already_right(walk, dirfd, name.c_str())) {
          fast_misses = 0;
          fast_rounds = 0;
          ++report.unchanged;
          return false;
        }
        // Mostly-fresh trees: stop paying for the check for a while, longer
        // each time it keeps failing.
        if (++fast_misses >= 16) {
          fast_pause = std::min<unsigned>(4096, 64u << std::min(6u, fast_rounds++));
          fast_misses = 0;
        }
      } else if (fast_pause > 0) {
        --fast_pause;
      }
      return true;
    }

    // Counts the refusals every open of a listed name can meet; false for
    // any other error.
    bool note_refusal(int error) {
      switch (error) {
        case ENOENT: ++report.vanished; return true;
        case ELOOP: note_symlink_at_open(); return true;  // swapped for a symlink
        case EXDEV: ++report.skipped_mounts; return true;
        default: return false;
      }
    }

    // A symlink where the listing showed another type (or none), met by the
    // open and not followed.
    void note_symlink_at_open() {
      ++report.skipped_symlinks;
      ++report.symlinks_at_open;
    }

    // Pins each name that the cheap check did not settle, in batches of
    // BatchIo::kMaxBatch. Names listed as regular files are opened
    // O_RDONLY|O_NONBLOCK when the walk runs through its nodev view
    // (doc/ACL.md, "Safety of the walk"), and handed to process_read_batch:
    // their ACL is then read and written through that descriptor. Everything
    // else, and every name that such an open refuses for another reason than
    // the ones all opens meet (EACCES: a device node on the nodev view;
    // EAGAIN: a lease), is opened O_PATH instead (process_pinned).
    void process_files(Walk& walk, const std::shared_ptr<DirHandle>& dir, const std::vector<std::string>& names,
                       bool listed_regular) {
      int dirfd = dir->fd.get();
      bool for_reading = listed_regular && walk.through_view();
      // Where a batch reads the ACLs through io_uring anyway, reading them by
      // name first costs more than it saves.
      bool name_check = !(for_reading && names.size() > 1 && io.uses_io_uring());
      // Files an earlier grant verified cost a statx by name, not a read;
      // the others are read through a descriptor, which a walk keeping what
      // it verified needs anyway.
      bool take_verified = listed_regular && walk.known_ != nullptr;
      if (take_verified || walk.recording_) name_check = false;
      pending.clear();
      auto flush = [&] {
        if (take_verified) take_verified_files(walk, dirfd, pending);
        if (pending.empty()) return;
        if (!for_reading) {
          pin_with_o_path(walk, dir, pending);
          pending.clear();
          return;
        }
        pending_names.clear();
        for (const std::string* name : pending) pending_names.push_back(name->c_str());
        retry.clear();
        {
          std::span<int> fds(fds_, pending.size());
          io.open(dirfd, pending_names, walk.read_how_, fds);
          CloseBatch closer{io, fds};
          for (std::size_t i = 0; i < pending.size(); ++i) {
            if (fds[i] < 0 && !note_refusal(-fds[i])) retry.push_back(pending[i]);
          }
          process_read_batch(walk, dir, pending, fds);
        }
        pending.clear();
        if (!retry.empty()) pin_with_o_path(walk, dir, retry);
      };
      for (const std::string& name : names) {
        // A name of unknown type (no d_type from the filesystem) is always
        // pinned: it may be a directory, and the pinned path learns its type.
        if (listed_regular && name_check && !needs_pinned_path(walk, dirfd, name)) continue;
        pending.push_back(&name);
        if (pending.size() == BatchIo::kMaxBatch) flush();
      }
      flush();
    }

    // The file statx describes as a VerifiedFiles entry for its ctime
    // alone: a regular file with one link on the tree's filesystem (a grant
    // edits no other), or none.
    std::optional<VerifiedFile> verified_file(const Walk& walk, const struct statx& sx) const {
      if ((sx.stx_mask & kVerifyMask) != kVerifyMask || !S_ISREG(sx.stx_mode) || sx.stx_nlink != 1 ||
          makedev(sx.stx_dev_major, sx.stx_dev_minor) != walk.root_dev_) {
        return std::nullopt;
      }
      std::int64_t ctime = ctime_ns(sx);
      return VerifiedFile{sx.stx_ino, ctime - 1, ctime + 1};
    }

    static std::int64_t ctime_ns(const struct statx& sx) {
      return sx.stx_ctime.tv_sec * 1'000'000'000LL + sx.stx_ctime.tv_nsec;
    }

    // drop_verified() while it finds some: a batch where it finds none (a
    // tree changed all over since the last grant, e.g. its ACLs removed)
    // stops it for the next 1, 2, 4 ... 64 batches, so that such a tree
    // costs few statx calls in vain.
    void take_verified_files(Walk& walk, int dirfd, std::vector<const std::string*>& names) {
      if (verified_pause > 0) {
        --verified_pause;
        return;
      }
      std::size_t before = names.size();
      drop_verified(walk, dirfd, names);
      if (names.size() < before || before == 0) {
        verified_misses = 0;
      } else {
        verified_pause = 1u << std::min(6u, verified_misses++);
      }
    }

    // Takes out of `names` (at most BatchIo::kMaxBatch, listed as regular
    // files) those that statx by name, never following a symlink, shows as
    // the last grant verified them: nothing has changed their ACL, mode,
    // owner or links since, so they are still right (verified_files.h).
    // Nothing is written on this account: whatever does not match goes the
    // usual way.
    void drop_verified(Walk& walk, int dirfd, std::vector<const std::string*>& names) {
      for (std::size_t i = 0; i < names.size(); ++i) {
        io.stat_at(dirfd, names[i]->c_str(), kVerifyMask, &stats_[i], &stat_results_[i]);
      }
      io.run();
      std::size_t kept = 0;
      for (std::size_t i = 0; i < names.size(); ++i) {
        std::optional<VerifiedFile> file = stat_results_[i] == 0 ? verified_file(walk, stats_[i]) : std::nullopt;
        std::optional<std::size_t> index = file ? walk.known_->index_of(file->inode, last_known_index) : std::nullopt;
        if (index) last_known_index = *index;
        if (index && walk.known_->files()[*index].holds(ctime_ns(stats_[i]))) {
          ++report.unchanged;
          ++report.unchanged_as_verified;
          if (known_taken.empty()) known_taken.resize((walk.known_->size() + 63) / 64);
          known_taken[*index / 64] |= std::uint64_t{1} << (*index % 64);
          continue;
        }
        names[kept++] = names[i];
      }
      names.resize(kept);
    }

    // At most BatchIo::kMaxBatch names.
    void pin_with_o_path(Walk& walk, const std::shared_ptr<DirHandle>& dir,
                         const std::vector<const std::string*>& names) {
      path_names.clear();
      for (const std::string* name : names) path_names.push_back(name->c_str());
      std::span<int> fds(path_fds_, names.size());
      io.open(dir->fd.get(), path_names, walk.path_how_, fds);
      CloseBatch closer{io, fds};
      for (std::size_t i = 0; i < names.size(); ++i) {
        if (fds[i] >= 0) {
          process_pinned(walk, dir, *names[i], fds[i], /*o_path=*/true);
        } else if (!note_refusal(-fds[i])) {
          note_error(*dir, *names[i], "open", -fds[i]);
        }
      }
    }

    // The files of one batch, each pinned by a descriptor opened for reading
    // (fds[i] < 0: not opened, left out). What process_pinned does to one
    // file, done a step at a time for all of them, each step one batch of
    // requests on the descriptors (BatchIo): read the access ACLs; leave a
    // file whose ACL already is what the edit makes (nothing is written, so
    // neither its type nor its owner matters) unless the edit also looks at
    // its mode and owner; statx the rest and check them as process_pinned
    // does; write the ACLs that change. A file whose ACL could not be read
    // in one go (too large for the buffer, or an error) goes through
    // process_pinned, which reads it again and says what failed.
    void process_read_batch(Walk& walk, const std::shared_ptr<DirHandle>& dir,
                            std::span<const std::string* const> names, std::span<const int> fds) {
      const Editor& editor = walk.editor_;
      const std::size_t count = names.size();
      for (std::size_t i = 0; i < count; ++i) {
        if (fds[i] >= 0) io.get_xattr(fds[i], kAccessAcl, acl_buffers_[i], kBatchValueBuffer, &acl_sizes_[i]);
      }
      io.run();

      for (std::size_t i = 0; i < count; ++i) {
        needs_check_[i] = false;
        verify_[i] = false;
        if (fds[i] < 0) continue;
        int size = acl_sizes_[i];
        if (size < 0 && size != -ENODATA) {
          process_pinned(walk, dir, *names[i], fds[i], /*o_path=*/false);
          continue;
        }
        if (!editor.clears_setid_bits()) {
          // The ACL alone decides that nothing changes (an edit made only to
          // decide is not reported).
          if (size == -ENODATA ? !editor.adds_entries()
                               : decode(std::string_view(acl_buffers_[i], static_cast<std::size_t>(size)), access) &&
                                     !editor.edit_access(access, false, scratch_report)) {
            ++report.unchanged;
            verify_[i] = walk.recording_;
            continue;
          }
        }
        needs_check_[i] = true;
        io.stat(fds[i], kStatxMask, &stats_[i], &stat_results_[i]);
      }
      io.run();

      for (std::size_t i = 0; i < count; ++i) {
        write_results_[i] = kNotAsked;
        if (!needs_check_[i]) continue;
        if (stat_results_[i] < 0) {
          note_error(*dir, *names[i], "statx", -stat_results_[i]);
          continue;
        }
        struct stat st = stat_from(stats_[i]);
        if (!admit(walk, dir, *names[i], st) || !clear_setid_bits(walk, *dir, *names[i], fds[i], /*o_path=*/false, st))
          continue;
        int size = acl_sizes_[i];
        if (size >= 0) value.assign(acl_buffers_[i], static_cast<std::size_t>(size));
        Edit edited = edit(walk, *dir, *names[i], size >= 0 ? 0 : size, st);
        if (edited == Edit::unchanged && walk.recording_) {
          // stats_[i] was taken after the read.
          if (std::optional<VerifiedFile> file = verified_file(walk, stats_[i])) verified_[verified_count++] = *file;
        }
        if (edited != Edit::changed) continue;
        if (walk.options_.dry_run) {
          ++report.changed;
          continue;
        }
        // Written as it is even where the edit leaves the ACL minimal: the
        // kernel then stores it as the mode alone, as removing it would.
        write_values_[i].clear();
        encode(access, write_values_[i]);
        io.set_xattr(fds[i], kAccessAcl, write_values_[i], &write_results_[i]);
      }
      io.run();

      for (std::size_t i = 0; i < count; ++i) {
        int rc = write_results_[i];
        if (rc == kNotAsked) continue;
        if (rc == 0) {
          ++report.changed;
          // stats_[i] was taken before the write.
          if (walk.recording_) {
            if (std::optional<VerifiedFile> file = verified_file(walk, stats_[i])) {
              file->ctime_after_ns = file->ctime_before_ns - 1;
              file->ctime_before_ns = VerifiedFiles::Builder::kUntilTheEnd;
              verified_[verified_count++] = *file;
              wrote = true;
            }
          }
        } else if (rc == -ENOENT) {
          ++report.vanished;
        } else {
          note_error(*dir, *names[i], "set ACL", -rc);
        }
      }
      if (walk.recording_) record_verified(walk, fds.first(count));
    }

    // Records the files of the batch found right by their read (marked in
    // verify_) by the inode and ctime a statx shows after it. A change by
    // someone else between the two (or, for a file written, during the
    // rest of the walk) is taken for the walk's own: only the file's owner
    // (or root) can change its ACL or mode, and it could as well do so
    // right after the walk, so this gives no one more than they have
    // (doc/ACL.md, "Files a grant verified").
    void record_verified(const Walk& walk, std::span<const int> fds) {
      for (std::size_t i = 0; i < fds.size(); ++i) {
        if (verify_[i]) io.stat(fds[i], kVerifyMask, &stats_[i], &stat_results_[i]);
      }
      io.run();
      for (std::size_t i = 0; i < fds.size(); ++i) {
        if (!verify_[i] || stat_results_[i] != 0) continue;
        if (std::optional<VerifiedFile> file = verified_file(walk, stats_[i])) verified_[verified_count++] = *file;
      }
      if (verified_count != 0) {
        walk.found_->add(std::span<const VerifiedFile>(verified_, verified_count));
        verified_count = 0;
        verified_more = true;
      }
    }

    // Whether a pinned non-directory that `st` describes may be edited;
    // otherwise counts why not (a directory is queued to be walked).
    bool admit(Walk& walk, const std::shared_ptr<DirHandle>& dir, const std::string& name, const struct stat& st) {
      if (S_ISDIR(st.st_mode)) {
        // Was a file when listed (or the filesystem gave no type): walk it as
        // a directory, opened again by name without following symlinks.
        walk.push_subdirs(dir, {name});
        return false;
      }
      if (S_ISLNK(st.st_mode)) {
        note_symlink_at_open();
        return false;
      }
      if (!S_ISREG(st.st_mode) && walk.editor_.adds_entries()) {
        // A grant gives special files nothing; a removal edits them. Listed
        // as such they are pinned O_PATH; one swapped in under a regular
        // file's name can only be a FIFO here (a socket refuses the O_RDONLY
        // open, a device the nodev view's), edited through that descriptor.
        ++report.skipped_special;
        return false;
      }
      // A second link may be an outside file brought into the tree (by a
      // writer inside it, e.g. the VM itself): a grant must not give it an
      // entry. A walk that only removes entries acts on it all the same:
      // removing a UID's own entries, and shrinking the mask to the smallest
      // that serves the remaining entries, only ever narrows access, and
      // skipping it would leave the entry behind once its record is gone.
      if (st.st_nlink > 1 && walk.editor_.adds_entries()) {
        ++report.skipped_hardlinks;
        if (report.hardlinks.size() < kMaxSkippedPaths) report.hardlinks.push_back(dir->path(name));
        return false;
      }
      if (!walk.editor_.accepts_owner(st.st_uid, walk.root_owner_)) {
        note_foreign(*dir, name);
        return false;
      }
      return true;
    }

    // Clears the set-ID bits the edit asks to clear on the file pinned as
    // `fd` (see process_pinned for o_path), and takes them out of st.st_mode;
    // false after noting a failure.
    bool clear_setid_bits(Walk& walk, const DirHandle& dir, const std::string& name, int fd, bool o_path,
                          struct stat& st) {
      mode_t setid = S_ISREG(st.st_mode) ? walk.editor_.setid_bits_to_clear(st) & st.st_mode : 0;
      if (setid == 0) return true;
      // The same permission bits: on a file with an ACL they are its mask
      // and owner and other entries, which this leaves as they are (so an
      // ACL read before still holds).
      mode_t mode = st.st_mode & 07777 & ~setid;
      if (!walk.options_.dry_run) {
        int rc = o_path ? ::fchmodat(walk.proc_fd_.get(), fd_name(fd).data(), mode, 0) : ::fchmod(fd, mode);
        if (rc != 0) {
          note_error(dir, name, "clear set-ID bits", errno);
          return false;
        }
      }
      st.st_mode &= ~setid;
      ++report.setid_cleared;
      return true;
    }

    enum class Edit { changed, unchanged, failed };

    // Edits the access ACL read from a pinned file (read: 0, the ACL in
    // `value`; -ENODATA: none; other -errno: the read failed) into `access`;
    // counts the file as unchanged or failed if it is not changed.
    Edit edit(Walk& walk, const DirHandle& dir, const std::string& name, int read, const struct stat& st) {
      if (read == -ENODATA) {
        if (!walk.editor_.adds_entries()) {
          ++report.unchanged;
          return Edit::unchanged;
        }
        from_mode(st.st_mode, access);
      } else if (read < 0 || !decode(value, access)) {
        note_error(dir, name, "read ACL", read < 0 ? -read : EINVAL);
        return Edit::failed;
      }
      if (!walk.editor_.edit_access(access, false, report)) {
        ++report.unchanged;
        return Edit::unchanged;
      }
      return Edit::changed;
    }

    // A descriptor's name in /proc/self/fd.
    static std::array<char, 16> fd_name(int fd) {
      std::array<char, 16> name{};
      std::snprintf(name.data(), name.size(), "%d", fd);
      return name;
    }

    // `fd` pins the object listed as `name`: opened O_RDONLY (o_path false:
    // its ACL is read and written through it) or O_PATH (through
    // /proc/self/fd/N, since the xattr calls refuse O_PATH descriptors). Every
    // step acts on this one inode, which is checked first. The caller closes it.
    void process_pinned(Walk& walk, const std::shared_ptr<DirHandle>& dir, const std::string& name, int fd,
                        bool o_path) {
      struct stat st;
      if (::fstat(fd, &st) < 0) {
        note_error(*dir, name, "fstat", errno);
        return;
      }
      if (!admit(walk, dir, name, st) || !clear_setid_bits(walk, *dir, name, fd, o_path, st)) return;
      int proc = walk.proc_fd_.get();
      std::array<char, 16> proc_name = fd_name(fd);
      int rc = o_path ? read_value(proc, proc_name.data(), /*follow=*/true, kAccessAcl) : read_fd_value(fd, kAccessAcl);
      if (edit(walk, *dir, name, rc, st) != Edit::changed) return;
      if (!walk.options_.dry_run) {
        if (o_path) {
          value.clear();
          encode(access, value);
          rc = set_xattr_at(proc, proc_name.data(), /*follow=*/true, kAccessAcl, value.data(), value.size());
        } else {
          rc = store_access_acl(fd, access, st.st_mode);
        }
        if (rc < 0) {
          if (rc == -ENOENT) {
            ++report.vanished;
          } else {
            note_error(*dir, name, "set ACL", -rc);
          }
          return;
        }
      }
      ++report.changed;
    }

    void open_and_process(Walk& walk, const Task& task) {
      int fd = open_beneath(task.parent->fd.get(), task.name.c_str(), O_RDONLY | O_DIRECTORY,
                            walk.options_.cross_mounts);
      if (fd < 0) {
        if (note_refusal(-fd)) return;
        if (fd == -ENOTDIR) {
          process_files(walk, task.parent, {task.name}, /*listed_regular=*/false);
        } else {
          note_error(*task.parent, task.name, "open", -fd);
        }
        return;
      }
      auto dir = std::make_shared<DirHandle>();
      dir->fd = UniqueFd(fd);
      dir->place = ShownPath::child(task.parent->place, task.name);
      process_dir(walk, dir, false);
    }

    Worker() {
      for (unsigned i = 0; i < BatchIo::kMaxBatch; ++i) acl_buffers_[i] = acl_values_.data() + i * kBatchValueBuffer;
    }
    Worker(Worker&&) = delete;  // acl_buffers_ points into acl_values_

    Report scratch_report;  // edits made only to decide are not reported
    BatchIo io;
    // Scratch space of process_files, pin_with_o_path and
    // process_read_batch, kept between calls.
    std::vector<const std::string*> pending, retry;
    std::vector<const char*> pending_names, path_names;
    int fds_[BatchIo::kMaxBatch];
    int path_fds_[BatchIo::kMaxBatch];
    // process_read_batch's, one of each per file of the batch.
    static constexpr int kNotAsked = INT_MIN;  // a result no request was made for
    bool needs_check_[BatchIo::kMaxBatch];
    bool verify_[BatchIo::kMaxBatch];  // found right by its read: record_verified()
    int acl_sizes_[BatchIo::kMaxBatch];
    int stat_results_[BatchIo::kMaxBatch];
    int write_results_[BatchIo::kMaxBatch];
    struct statx stats_[BatchIo::kMaxBatch];
    std::vector<char> acl_values_ = std::vector<char>(BatchIo::kMaxBatch * kBatchValueBuffer);
    char* acl_buffers_[BatchIo::kMaxBatch];
    std::string write_values_[BatchIo::kMaxBatch];
  };

  // Whether the directory `st` describes is met for the first time in this
  // walk; later meetings leave it alone. A writer renaming inside the tree
  // (the VM, in a tree it may write) can lead two names to one directory
  // while the walk goes by, and two workers editing its ACLs at once would
  // each act on what it read before the other wrote: one drops the default
  // ACL a grant made and then its mark, the other, finding no mark, takes
  // the default ACL it read for the owner's own rule and writes it back.
  bool first_visit(const struct stat& st) {
    std::lock_guard lock(mutex_);
    return visited_.emplace(st.st_dev, st.st_ino).second;
  }

  void push_subdirs(const std::shared_ptr<DirHandle>& parent, std::vector<std::string> names) {
    if (names.empty()) return;
    std::lock_guard lock(mutex_);
    for (std::string& name : names) tasks_.push_back(Task{parent, std::move(name), nullptr, {}, false});
    wakeup_.notify_all();
  }

  void push_files(const std::shared_ptr<DirHandle>& dir, std::vector<std::string> files, bool listed_regular) {
    std::lock_guard lock(mutex_);
    tasks_.push_back(Task{nullptr, {}, dir, std::move(files), listed_regular});
    wakeup_.notify_all();
  }

  void loop(Worker& worker) {
    for (;;) {
      Task task;
      {
        std::unique_lock lock(mutex_);
        wakeup_.wait(lock, [this] { return !tasks_.empty() || busy_ == 0 || error_; });
        if (error_ || tasks_.empty()) return;
        // Last in, first out: depth first, so few directories stay open.
        task = std::move(tasks_.back());
        tasks_.pop_back();
        ++busy_;
      }
      try {
        if (task.dir) {
          worker.process_files(*this, task.dir, task.files, task.listed_regular);
        } else {
          worker.open_and_process(*this, task);
        }
      } catch (...) {
        std::lock_guard lock(mutex_);
        if (!error_) error_ = std::current_exception();
      }
      task = Task{};  // drop the directory references outside the lock
      std::lock_guard lock(mutex_);
      --busy_;
      if (busy_ == 0 || error_) wakeup_.notify_all();
    }
  }

  const Editor& editor_;
  const WalkOptions& options_;
  uid_t root_owner_ = 0;  // set by the root's processing, before other threads start
  dev_t root_dev_ = 0;    // likewise
  // The files an earlier grant verified (Verified::known), if this walk may
  // take them as right.
  const VerifiedFiles* known_ = nullptr;
  bool recording_ = false;  // the files verified are kept (Verified::found)
  std::unique_ptr<VerifiedFiles::Builder> found_;  // while recording_
  UniqueFd proc_fd_;
  bool use_fast_check_ = false;
  // How non-directories are pinned: O_PATH, or opened for reading (only
  // through the nodev view, only names listed as regular files).
  open_how path_how_{};
  open_how read_how_{};
  NodevView view_;  // keeps the view's mounts together while the walk runs
  // Whether the walk runs through the view (its root directory was taken
  // from view_.dir).
  bool through_view() const { return static_cast<bool>(view_.tree); }

  std::mutex mutex_;
  std::condition_variable wakeup_;
  std::vector<Task> tasks_;
  std::set<std::pair<dev_t, ino_t>> visited_;  // directories met so far (first_visit)
  int busy_ = 0;
  std::exception_ptr error_;
};

}  // namespace

namespace {

// A directory whose subdirectories are still queued keeps its descriptor
// open (they are opened relative to it, never by path), so a tree that
// branches at every level of a deep chain needs a descriptor per level: a
// VM can build one in a read-write share, and under the usual limit of 1024
// the walk failed there, leaving the UID's entries (and set-ID files) below
// that depth to every later revoke and sweep. The walk runs with up to
// kMostDescriptors (root may raise the hard limit that far, within
// fs.nr_open), and the limit is put back afterwards, before anything is
// started that would inherit it. Bounded: each descriptor pins kernel
// memory the VM is not charged for, and some hosts set fs.nr_open to a
// billion. The limit is the process's: one walk at a time per process (as
// every caller runs them), or the first to end would put back the limit
// under the other.
constexpr rlim_t kMostDescriptors = rlim_t{1} << 20;

class RaisedFileLimit {
 public:
  RaisedFileLimit() {
    if (::getrlimit(RLIMIT_NOFILE, &saved_) != 0) return;
    const rlim_t most = most_descriptors();
    if (saved_.rlim_cur >= most) return;
    rlimit raised = saved_;
    raised.rlim_cur = most;
    raised.rlim_max = std::max(saved_.rlim_max, most);
    // Without CAP_SYS_RESOURCE only the soft limit rises, to the hard one.
    if (::setrlimit(RLIMIT_NOFILE, &raised) != 0) {
      raised.rlim_max = saved_.rlim_max;
      raised.rlim_cur = std::min(most, saved_.rlim_max);
      if (::setrlimit(RLIMIT_NOFILE, &raised) != 0) return;
    }
    raised_ = true;
  }
  ~RaisedFileLimit() {
    if (raised_) ::setrlimit(RLIMIT_NOFILE, &saved_);
  }
  RaisedFileLimit(const RaisedFileLimit&) = delete;
  RaisedFileLimit& operator=(const RaisedFileLimit&) = delete;

 private:
  // kMostDescriptors within fs.nr_open, read once per process: a sandbox's
  // start walks its grants, and needs the answer again at its end.
  static rlim_t most_descriptors() {
    static const rlim_t most = [] {
      rlim_t nr_open = 0;
      try {
        std::optional<std::string> text = read_small_file("/proc/sys/fs/nr_open");
        if (text && std::from_chars(text->data(), text->data() + text->size(), nr_open).ec == std::errc())
          return std::min(kMostDescriptors, nr_open);
      } catch (const std::exception&) {
      }
      return kMostDescriptors;
    }();
    return most;
  }

  rlimit saved_{};
  bool raised_ = false;
};

}  // namespace

Report walk_tree(int root_fd, const std::string& display_root, const Editor& editor, const WalkOptions& options,
                 Verified* verified) {
  RaisedFileLimit file_limit;
  Walk walk(editor, options);
  return walk.run(root_fd, display_root, verified);
}

void force_unknown_d_type(bool on) { unknown_d_type_forced.store(on, std::memory_order_relaxed); }

}  // namespace vmwarden::acl::detail
