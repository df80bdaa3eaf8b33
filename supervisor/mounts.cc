// The sandbox's mount layout. The warden's namespace is a private copy of
// the host's with its own /proc; each service gets a further copy with its
// own /tmp and /dev/shm so that services cannot meet through shared scratch
// space (or leave files there for each other). A single service needs no
// copy: the scratch space is mounted in the warden's namespace instead.

#include "supervisor/mounts.h"

#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>

#include <string>

#include "common/error.h"

namespace vmwarden::supervisor {
namespace {

// Large enough for sockets, lock files and small scratch files; small enough
// that a runaway service cannot eat the host's memory through tmpfs.
constexpr const char* kScratchOptions = "mode=1777,size=64m,nr_inodes=16k";

void mount_scratch_tmpfs(const char* target) {
  check(::mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV, kScratchOptions), "mount tmpfs on", target);
}

void bind_mount(const BindMount& bind) {
  std::string source = bind.source.string();
  std::string target = bind.target.string();
  check(::mount(source.c_str(), target.c_str(), nullptr, MS_BIND | MS_REC, nullptr), "bind mount " + source + " on",
        target);
  if (bind.readonly) {
    // mount_setattr() with AT_RECURSIVE makes the submounts read-only too,
    // which a classic MS_REMOUNT|MS_BIND|MS_RDONLY would leave writable.
    mount_attr attr{};
    attr.attr_set = MOUNT_ATTR_RDONLY;
    check(::mount_setattr(AT_FDCWD, target.c_str(), AT_RECURSIVE, &attr, sizeof attr), "make read-only (recursively)",
          target);
  }
}

void mount_scratch() {
  mount_scratch_tmpfs("/tmp");
  mount_scratch_tmpfs("/dev/shm");
}

}  // namespace

bool services_have_own_mount_namespaces(const SandboxSpec& spec) { return spec.services.size() > 1; }

void setup_warden_mounts(const SandboxSpec& spec) {
  // Private first: nothing mounted below may propagate back to the host.
  check(::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr), "make mount propagation private on", "/");
  check(::mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr), "mount proc on", "/proc");
  for (const BindMount& bind : spec.mounts) bind_mount(bind);
  if (!services_have_own_mount_namespaces(spec)) mount_scratch();
}

void setup_service_mounts() {
  // Propagation is already private in the warden's namespace, and a new
  // namespace copies that.
  check(::unshare(CLONE_NEWNS), "unshare", "(mount namespace of a service)");
  mount_scratch();
}

}  // namespace vmwarden::supervisor
