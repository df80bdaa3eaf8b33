// Errors carry the failed operation and the path it was applied to, so that a
// message like "openat /var/lib/vmwarden/uids: Permission denied" reaches the
// user unchanged from the syscall that failed.
#pragma once

#include <cerrno>
#include <stdexcept>
#include <string>
#include <string_view>

namespace vmwarden {

// A syscall or library call failed.
class SystemError : public std::runtime_error {
 public:
  SystemError(int error_number, std::string_view operation, std::string_view path = {});
  int code() const noexcept { return code_; }

 private:
  int code_;
};

// The user asked for something invalid (a flag, a definition, a path): exit 2,
// and nothing has been changed.
class UsageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Retrying cannot help (for s6: exit 125, do not restart).
class PermanentError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

[[noreturn]] void throw_errno(std::string_view operation, std::string_view path = {});
[[noreturn]] void throw_system_error(int error_number, std::string_view operation,
                                     std::string_view path = {});

// Returns rc unless it is negative, in which case errno describes the failure.
template <typename T>
T check(T rc, std::string_view operation, std::string_view path = {}) {
  if (rc < 0) throw_errno(operation, path);
  return rc;
}

// For calls that return -errno instead of setting errno (libseccomp, libcap's
// newer calls).
inline int check_negative_errno(int rc, std::string_view operation, std::string_view path = {}) {
  if (rc < 0) throw_system_error(-rc, operation, path);
  return rc;
}

}  // namespace vmwarden
