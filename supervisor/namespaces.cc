// The warden is created with a single clone3() so that it is PID 1 of its
// namespace from its first instruction and the outer never leaves the host
// namespaces. CLONE_PIDFD hands the outer a pidfd with no pid-reuse race.

#include "supervisor/namespaces.h"

#include <linux/sched.h>
#include <sched.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/utsname.h>

#include <cstdint>
#include <cstdio>

#include <fmt/core.h>

#include "common/error.h"
#include "common/log.h"

namespace vmwarden::supervisor {

ClonedProcess clone_into_namespaces(bool private_network) {
  // The cgroup namespace costs next to nothing and hides the host's cgroup
  // paths from /proc/self/cgroup inside the sandbox.
  uint64_t flags = CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWCGROUP | CLONE_PIDFD;
  if (private_network) flags |= CLONE_NEWNET;
  int pidfd = -1;
  clone_args args{};
  args.flags = flags;
  args.pidfd = reinterpret_cast<uintptr_t>(&pidfd);
  args.exit_signal = SIGCHLD;
  long pid = ::syscall(SYS_clone3, &args, sizeof args);
  check(pid, "clone3", "(new PID, mount, IPC, UTS, cgroup and network namespaces)");
  ClonedProcess result;
  result.pid = static_cast<pid_t>(pid);
  if (pid != 0) result.pidfd = UniqueFd(pidfd);
  return result;
}

namespace {

// No allocation: this runs in a service's child, which shares the warden's
// memory until exec.
void write_proc_file(const char* path, const char* text, size_t length) {
  int fd = ::open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) throw_errno("open", path);
  ssize_t written = ::write(fd, text, length);
  int saved = errno;
  ::close(fd);
  if (written != static_cast<ssize_t>(length)) throw_system_error(written < 0 ? saved : EIO, "write", path);
}

}  // namespace

int kill_rest_of_namespace(int sig) {
  // From any other PID, kill(-1) reaches every process the caller may
  // signal, beyond the namespace: for the root warden, the whole host's.
  if (::getpid() != 1) {
    errno = EPERM;
    return -1;
  }
  return ::kill(-1, sig);
}

void enter_user_namespace(uid_t uid, gid_t gid, uid_t inside_uid, gid_t inside_gid) {
  check(::unshare(CLONE_NEWUSER), "unshare", "(user namespace)");
  // The uid switch made the process non-dumpable, which leaves its /proc
  // files owned by root and the id maps unwritable. Exec resets it anyway.
  check(::prctl(PR_SET_DUMPABLE, 1, 0, 0, 0), "prctl(PR_SET_DUMPABLE)");
  // An unprivileged writer may map its own ids only, and gid_map only once
  // setgroups is denied (which also keeps the empty group list for good).
  char map[48];
  write_proc_file("/proc/self/setgroups", "deny", 4);
  int length = std::snprintf(map, sizeof map, "%u %u 1\n", inside_uid, uid);
  write_proc_file("/proc/self/uid_map", map, static_cast<size_t>(length));
  length = std::snprintf(map, sizeof map, "%u %u 1\n", inside_gid, gid);
  write_proc_file("/proc/self/gid_map", map, static_cast<size_t>(length));
}

namespace {

// Whether the running kernel's release is below major.minor.
bool kernel_older_than(int major, int minor) {
  struct utsname name {};
  if (::uname(&name) != 0) return true;
  int running_major = 0, running_minor = 0;
  if (std::sscanf(name.release, "%d.%d", &running_major, &running_minor) != 2) return true;
  return running_major < major || (running_major == major && running_minor < minor);
}

}  // namespace

bool forbid_executable_memfds() {
  constexpr const char* kSetting = "/proc/sys/vm/memfd_noexec";
  UniqueFd setting(::open(kSetting, O_WRONLY | O_CLOEXEC));
  if (!setting) {
    if (errno == ENOENT) return false;
    throw_errno("open", kSetting);
  }
  // Before Linux 6.6, 2 also refused a memfd made without MFD_NOEXEC_SEAL,
  // which VMMs make for guest memory (and the value could only be raised,
  // so there is no trying 2 first): there 1 (made without execute
  // permission unless MFD_EXEC asks for it) is the most that lets a VM start.
  std::string value = fmt::format("{}\n", memfd_noexec_value());
  if (::write(setting.get(), value.data(), value.size()) != static_cast<ssize_t>(value.size()))
    throw_errno(fmt::format("write {} to", value[0]), kSetting);
  if (value[0] == '1')
    log::debug("vm.memfd_noexec = 1 (2 refuses plain memfds before Linux 6.6): MFD_EXEC still makes one executable");
  return true;
}

int memfd_noexec_value() { return kernel_older_than(6, 6) ? 1 : 2; }

}  // namespace vmwarden::supervisor
