#include "acl-manager/xattr_at.h"

#include <fcntl.h>
#include <linux/types.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>

namespace vmwarden::acl::detail {
namespace {

// From the kernel's uapi (include/uapi/linux/xattr.h, 6.13) and
// arch/x86/entry/syscalls/syscall_64.tbl; bookworm's headers predate them.
struct XattrArgs {
  __aligned_u64 value;
  __u32 size;
  __u32 flags;
};
#if defined(__x86_64__)
constexpr long kSysSetxattrat = 463;
constexpr long kSysGetxattrat = 464;
#elif defined(__aarch64__)
constexpr long kSysSetxattrat = 463;
constexpr long kSysGetxattrat = 464;
#else
constexpr long kSysSetxattrat = -1;
constexpr long kSysGetxattrat = -1;
#endif

// 1 unknown, 2 available, 0 missing.
std::atomic<int> xattrat_state{kSysSetxattrat < 0 ? 0 : 1};

void note_enosys() { xattrat_state.store(0, std::memory_order_relaxed); }

bool try_xattrat() { return xattrat_state.load(std::memory_order_relaxed) != 0; }

// "/proc/self/fd/DIRFD/NAME": the kernel resolves the directory from the fd,
// then only NAME inside it.
void proc_path(char (&out)[4200], int dirfd, const char* name) {
  std::snprintf(out, sizeof out, "/proc/self/fd/%d/%s", dirfd, name);
}

}  // namespace

bool have_xattrat() {
  if (xattrat_state.load() == 1) {
    char buffer[8];
    get_xattr_at(AT_FDCWD, "/", true, kAccessAcl, buffer, sizeof buffer);
  }
  return xattrat_state.load() == 2;
}

void force_xattrat_fallback(bool on) {
  xattrat_state.store(on || kSysSetxattrat < 0 ? 0 : 1, std::memory_order_relaxed);
}

ssize_t get_xattr_at(int dirfd, const char* name, bool follow, const char* attribute, void* buffer, std::size_t size) {
  if (try_xattrat()) {
    XattrArgs args{reinterpret_cast<__u64>(buffer), static_cast<__u32>(size), 0};
    long rc = syscall(kSysGetxattrat, dirfd, name, follow ? 0 : AT_SYMLINK_NOFOLLOW, attribute, &args, sizeof args);
    if (rc >= 0) {
      xattrat_state.store(2, std::memory_order_relaxed);
      return rc;
    }
    if (errno != ENOSYS) {
      xattrat_state.store(2, std::memory_order_relaxed);
      return -errno;
    }
    note_enosys();
  }
  char path[4200];
  if (dirfd == AT_FDCWD) {
    std::snprintf(path, sizeof path, "%s", name);
  } else {
    proc_path(path, dirfd, name);
  }
  ssize_t rc = follow ? ::getxattr(path, attribute, buffer, size) : ::lgetxattr(path, attribute, buffer, size);
  return rc < 0 ? -errno : rc;
}

int set_xattr_at(int dirfd, const char* name, bool follow, const char* attribute, const void* value, std::size_t size) {
  if (try_xattrat()) {
    XattrArgs args{reinterpret_cast<__u64>(value), static_cast<__u32>(size), 0};
    long rc = syscall(kSysSetxattrat, dirfd, name, follow ? 0 : AT_SYMLINK_NOFOLLOW, attribute, &args, sizeof args);
    if (rc == 0) return 0;
    if (errno != ENOSYS) return -errno;
    note_enosys();
  }
  char path[4200];
  proc_path(path, dirfd, name);
  int rc = follow ? ::setxattr(path, attribute, value, size, 0) : ::lsetxattr(path, attribute, value, size, 0);
  return rc < 0 ? -errno : 0;
}

}  // namespace vmwarden::acl::detail
