// seccomp: the named syscall profiles a service can be given, and loading
// one. Internal to the supervisor (and its tests and audit).
#pragma once

#include <linux/filter.h>

#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "supervisor/confinement.h"

namespace vmwarden::supervisor {

enum class SeccompKind {
  none,        // no filter at all (flagged by the audit)
  deny_list,   // everything allowed except the listed syscalls
  allow_list,  // nothing allowed except the listed syscalls
};

// A profile as it resolves on the running architecture.
struct SeccompProfileInfo {
  std::string name;
  SeccompKind kind = SeccompKind::none;
  std::string summary;
  // The syscalls the profile names on this architecture (those the
  // architecture lacks, e.g. iopl on arm64, are left out), sorted.
  std::vector<std::string> syscalls;
  // Syscalls refused only with certain arguments ("clone: CLONE_NEW* flags").
  std::vector<std::string> argument_filters;
  // Syscalls answered ENOSYS whatever the action, so that libraries fall
  // back to an older call (clone3 -> clone) instead of the process dying.
  std::vector<std::string> enosys;
};

std::vector<std::string> seccomp_profile_names();
// Throws UsageError naming the known profiles (and the closest one).
SeccompProfileInfo describe_seccomp_profile(std::string_view name);

// The BPF program of `policy` on the native architecture, compiled with
// libseccomp. Run at build time by seccomp_generate, which stores every
// profile's program in the binary; at run time only the test that those
// programs are current calls it. Throws UsageError for an unknown profile.
std::vector<sock_filter> compile_seccomp_program(const SeccompPolicy& policy);

// A profile's program as compiled at build time: no libseccomp work (about
// a millisecond per service) happens between fork and exec.
class SeccompFilter {
 public:
  explicit SeccompFilter(const SeccompPolicy& policy);  // throws UsageError

  // Installs the filter on the calling thread; no_new_privs must be set.
  void load() const;
  std::span<const sock_filter> program() const { return program_; }
  bool empty() const { return program_.empty(); }

 private:
  std::span<const sock_filter> program_;
};

}  // namespace vmwarden::supervisor
