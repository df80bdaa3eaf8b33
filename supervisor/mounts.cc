// The sandbox's mount layout. The warden's namespace is a private copy of
// the host's with its own /proc; each service gets a further copy with its
// own /tmp and /dev/shm so that services cannot meet through shared scratch
// space (or leave files there for each other), and with every mount
// read-only but at its write rules.

#include "supervisor/mounts.h"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <string>

#include <fmt/core.h>

#include "common/error.h"
#include "common/log.h"
#include "common/mountinfo.h"

namespace vmwarden::supervisor {
namespace {

// Large enough for sockets, lock files and small scratch files; small enough
// that a runaway service cannot eat the host's memory through tmpfs.
constexpr const char* kScratchOptions = "mode=1777,size=64m,nr_inodes=16k";

// noexec: Landlock's execute rules stop execve() of what a service writes
// there, but not the dynamic loader mapping it (ld.so FILE); the kernel
// refuses PROT_EXEC mappings from a noexec mount.
void mount_scratch_tmpfs(const char* target) {
  check(::mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, kScratchOptions), "mount tmpfs on",
        target);
}

// Holds the mount points of BindMounts without a target; read-only once
// they are made, so a few inodes suffice.
constexpr const char* kPrivateMountsOptions = "mode=0755,size=16k,nr_inodes=128";

std::filesystem::path private_mounts_dir(const SandboxSpec& spec) { return spec.runtime_dir / "mnt"; }

// mount_setattr() with AT_RECURSIVE makes the submounts read-only too, which
// a classic MS_REMOUNT|MS_BIND|MS_RDONLY would leave writable.
void make_read_only(int dirfd, const char* path, unsigned flags, const std::string& what) {
  mount_attr attr{};
  attr.attr_set = MOUNT_ATTR_RDONLY;
  check(::mount_setattr(dirfd, path, flags, &attr, sizeof attr), "make read-only", what);
}

void bind_mount(const BindMount& bind, const std::filesystem::path& target_path) {
  std::string source = bind.source.string();
  std::string target = target_path.string();
  check(::mount(source.c_str(), target.c_str(), nullptr, MS_BIND | MS_REC, nullptr), "bind mount " + source + " on",
        target);
  if (bind.readonly) make_read_only(AT_FDCWD, target.c_str(), AT_RECURSIVE, target + " (recursively)");
}

// The directory a copy goes on, never through a symlink. Named like the
// source, it must still be the directory that was copied: a writer of its
// parent may have renamed it away and put something else there since.
UniqueFd open_mount_target(const BindMount& bind, const std::filesystem::path& target) {
  open_how how{};
  how.flags = O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC;
  how.resolve = RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
  UniqueFd where(static_cast<int>(::syscall(SYS_openat2, AT_FDCWD, target.c_str(), &how, sizeof how)));
  bool named_like_source = target == bind.source;
  auto replaced = [&](std::string_view how_now) {
    return PermanentError(fmt::format("{} {} since it was checked (and granted): renamed away, or replaced by "
                                      "something else; not starting. Keep shares where only their owner and root "
                                      "can write the directory above them",
                                      target.string(), how_now));
  };
  if (!where) {
    if (named_like_source && (errno == ELOOP || errno == ENOTDIR || errno == ENOENT))
      throw replaced(errno == ENOENT ? "is gone" : "now goes through a symlink or is no longer a directory");
    throw_errno("open the mount point", target.string());
  }
  if (named_like_source) {
    struct stat now {}, copied {};
    check(::fstat(where.get(), &now), "fstat", target.string());
    check(::fstat(bind.source_copy->get(), &copied), "fstat the copy of", bind.source.string());
    if (now.st_dev != copied.st_dev || now.st_ino != copied.st_ino) throw replaced("is another directory");
  }
  return where;
}

// Attaches the caller's copy of the source's mounts: no lookup of the
// source's path is involved, so what is mounted is what was checked.
// (Nested targets: the outer comes first in the spec, and the inner
// target is then looked up through the outer copy.)
void attach_copy(const BindMount& bind, const std::filesystem::path& target) {
  int copy = bind.source_copy->get();
  if (bind.readonly)
    make_read_only(copy, "", AT_EMPTY_PATH | AT_RECURSIVE, "the copy of " + bind.source.string() + " (recursively)");
  UniqueFd where = open_mount_target(bind, target);
  check(::move_mount(copy, "", where.get(), "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH),
        "mount the copy of " + bind.source.string() + " on", target.string());
}

// The mount points for BindMounts without a target, on a tmpfs of the
// warden's own: root's, and read-only once they are made (see
// private_mount_point() for who else could change the way to them).
void make_private_mount_points(const SandboxSpec& spec) {
  std::filesystem::path dir = private_mounts_dir(spec);
  check(::mkdir(dir.c_str(), 0755), "mkdir", dir.string());
  check(::mount("tmpfs", dir.c_str(), "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, kPrivateMountsOptions),
        "mount tmpfs on", dir.string());
  for (const BindMount& bind : spec.mounts) {
    if (!bind.target.empty()) continue;
    std::filesystem::path point = private_mount_point(spec, bind.name);
    check(::mkdir(point.c_str(), 0755), "mkdir", point.string());
  }
}

void mount_scratch() {
  mount_scratch_tmpfs("/tmp");
  mount_scratch_tmpfs("/dev/shm");
}

bool on_scratch(const std::filesystem::path& path) {
  std::string normal = path.lexically_normal().native();
  return at_or_below(normal, "/tmp") || at_or_below(normal, "/dev/shm");
}

// A detached copy of the mounts at `at` (open_tree), flags and all.
UniqueFd copy_of_mounts_at(const UniqueFd& at, const std::filesystem::path& path) {
  UniqueFd copy(::open_tree(at.get(), "", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_EMPTY_PATH | AT_RECURSIVE));
  if (!copy) throw_errno("copy the mounts (open_tree) at", path.native());
  return copy;
}

// Every mount read-only, but a copy of the mounts at each write rule, taken
// before, put back on top: as writable as on the host (a rule on a
// read-only mount stays read-only), with what lies below them as it was.
void make_read_only_but(const std::vector<PathRule>& writable) {
  struct Kept {
    UniqueFd at;
    UniqueFd copy;
  };
  std::vector<Kept> kept;
  kept.reserve(writable.size());
  for (const PathRule& rule : writable) {
    // Looked up as the Landlock rule is (which follows symlinks, as a
    // definition's disk path does); a pinned rule must still name the
    // directory that was pinned.
    UniqueFd at(check(::open(rule.path.c_str(), O_PATH | O_CLOEXEC), "open the write rule", rule.path.native()));
    if (rule.pinned) {
      struct stat now {}, pinned {};
      check(::fstat(at.get(), &now), "fstat", rule.path.native());
      check(::fstat(rule.pinned->get(), &pinned), "fstat the pinned", rule.path.native());
      if (now.st_dev != pinned.st_dev || now.st_ino != pinned.st_ino)
        throw PermanentError(fmt::format("{} is another directory than the one checked (and granted): renamed away "
                                         "or replaced since; not starting",
                                         rule.path.string()));
    }
    UniqueFd copy = copy_of_mounts_at(at, rule.path);
    kept.push_back({std::move(at), std::move(copy)});
  }
  make_read_only(AT_FDCWD, "/", AT_RECURSIVE, "/ (recursively, in the service's mount namespace)");
  // But the sandbox's own proc, its top mount: the child writes its user
  // namespace's maps there (/proc/self/setgroups, uid_map), and proc itself
  // refuses chmod and chown, and has no extended attributes.
  mount_attr proc_writable{};
  proc_writable.attr_clr = MOUNT_ATTR_RDONLY;
  check(::mount_setattr(AT_FDCWD, "/proc", 0, &proc_writable, sizeof proc_writable), "keep writable", "/proc");
  for (std::size_t i = 0; i < kept.size(); ++i) {
    check(::move_mount(kept[i].copy.get(), "", kept[i].at.get(), "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH),
          "mount writable again", writable[i].path.native());
  }
}

// An empty tmpfs over `dir` with a copy of the mounts at each of `keep`
// (paths below it) in its place, then read-only: the copies keep what they
// were. Made in `dir`'s stead, the way to them is the same.
void cover_runtime_dir(const std::filesystem::path& dir, const std::vector<std::filesystem::path>& keep) {
  struct Kept {
    std::filesystem::path relative;
    bool directory;
    UniqueFd copy;
  };
  std::vector<Kept> copies;
  for (const std::filesystem::path& path : keep) {
    UniqueFd at(check(::open(path.c_str(), O_PATH | O_CLOEXEC), "open", path.native()));
    struct stat st {};
    check(::fstat(at.get(), &st), "fstat", path.native());
    copies.push_back({path.lexically_normal().lexically_relative(dir.lexically_normal()), S_ISDIR(st.st_mode),
                      copy_of_mounts_at(at, path)});
  }
  check(::mount("tmpfs", dir.c_str(), "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, kPrivateMountsOptions),
        "mount tmpfs on", dir.native());
  for (Kept& kept : copies) {
    std::filesystem::path target = dir;
    for (auto part = kept.relative.begin(); part != kept.relative.end(); ++part) {
      target /= *part;
      bool last = std::next(part) == kept.relative.end();
      if (last && !kept.directory) {
        UniqueFd file(::open(target.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
        if (!file) throw_errno("create", target.native());
      } else if (::mkdir(target.c_str(), 0755) == 0) {
        // Whatever root's umask: the service (virtiofsd, as the VM's UID)
        // goes through it to its share's copy.
        check(::chmod(target.c_str(), 0755), "chmod", target.native());
      } else if (errno != EEXIST) {
        throw_errno("mkdir", target.native());
      }
    }
    check(::move_mount(kept.copy.get(), "", AT_FDCWD, target.c_str(), MOVE_MOUNT_F_EMPTY_PATH),
          "mount the copy of the mounts at", target.native());
  }
  make_read_only(AT_FDCWD, dir.c_str(), 0, dir.native() + " (the tmpfs covering it)");
}

}  // namespace

std::filesystem::path private_mount_point(const SandboxSpec& spec, std::string_view name) {
  bool ok = !name.empty() && name.size() <= 64;
  for (char c : name) ok = ok && (std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-');
  if (!ok) throw UsageError(fmt::format("mount name \"{}\" must be 1 to 64 characters from A-Z a-z 0-9 _ -", name));
  return private_mounts_dir(spec) / std::string(name);
}

void require_copyable_mounts(const std::filesystem::path& dir) {
  if (has_unbindable_mount_at_or_below(read_mountinfo(), dir.native()))
    throw UsageError(fmt::format("{} has an unbindable mount at or below it, which a copy of its mounts would leave "
                                 "out (showing the directory it covers instead); share a directory without one",
                                 dir.string()));
}

UniqueFd detached_copy(int dir_fd, const std::filesystem::path& path) {
  require_copyable_mounts(path);
  UniqueFd copy(::open_tree(dir_fd, "", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_EMPTY_PATH | AT_RECURSIVE));
  if (!copy) throw_errno("copy the mounts (open_tree) of", path.string());
  // A copy keeps the peer groups of the host's mounts it was made from, and
  // the warden's MS_PRIVATE on / (made before the copy is attached) never
  // reaches it: without this, a mount or unmount in the sandbox below the
  // share would reach the host, and a mount the host makes below a
  // read-only share later would appear in the sandbox, writable.
  mount_attr attr{};
  attr.propagation = MS_PRIVATE;
  check(::mount_setattr(copy.get(), "", AT_EMPTY_PATH | AT_RECURSIVE, &attr, sizeof attr),
        "make private (recursively) the copy of the mounts of", path.string());
  // The mounts below the share are read-only in the sandbox: the grant
  // walks the share's own mount only (and the revoke with it), so nothing
  // the VM could leave on them (a set-user-ID file of its UID) would be
  // found again. Shown, so that nothing a mount hides on the host (the
  // directory under it) comes to light. The share's own mount keeps what
  // it is on the host.
  struct statvfs top {};
  check(::fstatvfs(copy.get(), &top), "statvfs", path.string());
  mount_attr readonly{};
  readonly.attr_set = MOUNT_ATTR_RDONLY;
  check(::mount_setattr(copy.get(), "", AT_EMPTY_PATH | AT_RECURSIVE, &readonly, sizeof readonly),
        "make read-only the mounts below", path.string());
  if ((top.f_flag & ST_RDONLY) == 0) {
    mount_attr writable{};
    writable.attr_clr = MOUNT_ATTR_RDONLY;
    check(::mount_setattr(copy.get(), "", AT_EMPTY_PATH, &writable, sizeof writable), "keep writable the copy of",
          path.string());
  }
  return copy;
}

bool services_have_own_mount_namespaces(const SandboxSpec& spec) { return spec.services.size() > 1; }

bool has_private_mount_points(const SandboxSpec& spec) {
  for (const BindMount& bind : spec.mounts) {
    if (bind.target.empty()) return true;
  }
  return false;
}

void setup_warden_mounts(const SandboxSpec& spec) {
  // Private first: nothing mounted below may propagate back to the host.
  check(::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr), "make mount propagation private on", "/");
  // hidepid=invisible: a service sees only the processes it may ptrace-read,
  // which Landlock limits to its own domain, not the warden (root) nor the
  // other services.
  check(::mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, "hidepid=invisible"), "mount proc on",
        "/proc");
  bool private_points = has_private_mount_points(spec);
  if (private_points) make_private_mount_points(spec);
  for (const BindMount& bind : spec.mounts) {
    std::filesystem::path target = bind.target.empty() ? private_mount_point(spec, bind.name) : bind.target;
    if (bind.source_copy) {
      attach_copy(bind, target);
    } else if (bind.target.empty()) {
      // Such a mount exists to hold what the caller checked: looking its
      // source up by name here would defeat it.
      throw PermanentError(fmt::format("the mount of {} on {} comes without the copy made when it was checked",
                                       bind.source.string(), target.string()));
    } else {
      bind_mount(bind, target);
    }
  }
  if (private_points) {
    std::string dir = private_mounts_dir(spec).string();
    make_read_only(AT_FDCWD, dir.c_str(), 0, dir);
  }
}

void unmount_runtime_dir_mounts(const SandboxSpec& spec) noexcept {
  std::vector<std::string> mounted;
  if (has_private_mount_points(spec)) mounted.push_back(private_mounts_dir(spec).string());
  if (!services_have_own_mount_namespaces(spec)) mounted.push_back(spec.runtime_dir.string());
  for (const std::string& dir : mounted) {
    // Until nothing is mounted there (EINVAL; also when the warden failed
    // before it mounted anything).
    for (int stacked = 0; stacked < 16; ++stacked) {
      if (::umount2(dir.c_str(), MNT_DETACH | UMOUNT_NOFOLLOW) == 0) continue;
      if (errno != EINVAL && errno != ENOENT) log::warning("unmount {}: {}", dir, std::strerror(errno));
      break;
    }
  }
}

ServiceMounts service_mounts(const SandboxSpec& spec, const ServiceSpec& service) {
  ServiceMounts mounts;
  mounts.own_namespace = services_have_own_mount_namespaces(spec);
  const LandlockPolicy& landlock = service.confinement.landlock;
  // Without Landlock no rule says what the service may reach, nor write: it
  // sees the warden's mounts as they are.
  if (landlock.mode == LandlockMode::off) return mounts;
  mounts.read_only_elsewhere = true;
  struct stat root {};
  check(::stat("/", &root), "stat", "/");
  for (const PathRule& rule : landlock.paths) {
    // bind() of a unix socket needs a writable mount as much as a write does.
    if (!(rule.rights.write || rule.rights.make_socket) || on_scratch(rule.path)) continue;
    struct stat st {};
    bool exists = ::stat(rule.path.c_str(), &st) == 0;
    if (exists && (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode))) continue;
    // A write rule on / (`exec --rw /`) leaves nothing to make read-only,
    // and a copy put back on / would lie above the root, unseen.
    if (exists && st.st_dev == root.st_dev && st.st_ino == root.st_ino) {
      mounts.read_only_elsewhere = false;
      mounts.writable.clear();
      break;
    }
    mounts.writable.push_back(rule);
  }
  // A rule below another one needs no copy of its own: the other's copy
  // holds its mounts as they are (and a copy put back below one put back
  // above would be hidden, yet still a mount point there).
  // ("/x", "/x/" and "/x/." are one path; of equal ones the first stays.)
  auto normal = [](const std::filesystem::path& path) {
    std::string text = path.lexically_normal().native();
    while (text.size() > 1 && text.back() == '/') text.pop_back();
    return text;
  };
  std::vector<PathRule> outermost;
  for (std::size_t i = 0; i < mounts.writable.size(); ++i) {
    std::string path = normal(mounts.writable[i].path);
    bool covered = false;
    for (std::size_t j = 0; j < mounts.writable.size() && !covered; ++j) {
      std::string other = normal(mounts.writable[j].path);
      covered = j != i && at_or_below(path, other) && (path != other || j < i);
    }
    if (!covered) outermost.push_back(mounts.writable[i]);
  }
  mounts.writable = std::move(outermost);
  std::string runtime_dir = spec.runtime_dir.lexically_normal().native();
  bool reaches_runtime_dir = std::any_of(landlock.paths.begin(), landlock.paths.end(), [&](const PathRule& rule) {
    return at_or_below(runtime_dir, rule.path.lexically_normal().native());
  });
  if (!reaches_runtime_dir) {
    mounts.covered_runtime_dir = spec.runtime_dir;
    for (const PathRule& rule : landlock.paths) {
      if (at_or_below(rule.path.lexically_normal().native(), runtime_dir)) mounts.uncovered.push_back(rule.path);
    }
  }
  for (const BindMount& bind : spec.mounts) {
    if (!bind.target.empty()) continue;
    std::filesystem::path point = private_mount_point(spec, bind.name);
    bool reached = std::any_of(landlock.paths.begin(), landlock.paths.end(), [&](const PathRule& rule) {
      return at_or_below(rule.path.lexically_normal().native(), point.native());
    });
    if (!reached) mounts.hidden.push_back(point);
  }
  return mounts;
}

void setup_service_mounts(const ServiceMounts& mounts) {
  // Propagation is already private in the warden's namespace, and a new
  // namespace copies that.
  if (mounts.own_namespace) check(::unshare(CLONE_NEWNS), "unshare", "(mount namespace of a service)");
  // Hidden first, so that no copy kept writable brings them back.
  for (const std::filesystem::path& point : mounts.hidden)
    check(::umount2(point.c_str(), MNT_DETACH | UMOUNT_NOFOLLOW), "unmount in the service's namespace", point.native());
  if (mounts.covered_runtime_dir) cover_runtime_dir(*mounts.covered_runtime_dir, mounts.uncovered);
  if (mounts.read_only_elsewhere) make_read_only_but(mounts.writable);
  // Mounted after: writable.
  mount_scratch();
}

}  // namespace vmwarden::supervisor
