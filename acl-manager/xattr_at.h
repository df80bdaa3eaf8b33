// getxattrat/setxattrat (Linux 6.13+) with a fallback through /proc/self/fd
// for older kernels. Both forms name the object relative to a directory fd, so
// no path from the walk's root is ever resolved again. Internal to acl-manager.
#pragma once

#include <sys/types.h>

#include <cstddef>

namespace vmwarden::acl::detail {

inline constexpr const char* kAccessAcl = "system.posix_acl_access";
inline constexpr const char* kDefaultAcl = "system.posix_acl_default";

// Each returns the syscall's result, or -errno. With follow=false a symlink
// named by `name` is never followed (the kernel then fails on the link itself).
ssize_t get_xattr_at(int dirfd, const char* name, bool follow, const char* attribute, void* buffer, std::size_t size);
int set_xattr_at(int dirfd, const char* name, bool follow, const char* attribute, const void* value, std::size_t size);

// Whether the running kernel has the *xattrat calls (checked once).
bool have_xattrat();
// Behave as on a kernel without them (on), or check again (off): for tests
// of the fallback.
void force_xattrat_fallback(bool on);

}  // namespace vmwarden::acl::detail
