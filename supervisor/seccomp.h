// seccomp: the named syscall profiles a service can be given, and loading
// one. Internal to the supervisor (and its tests and audit).
#pragma once

#include <seccomp.h>

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

// A filter built in memory; load() installs it on the calling thread.
class SeccompFilter {
 public:
  explicit SeccompFilter(const SeccompPolicy& policy);  // throws UsageError, SystemError
  ~SeccompFilter();
  SeccompFilter(const SeccompFilter&) = delete;
  SeccompFilter& operator=(const SeccompFilter&) = delete;

  void load();
  // The BPF program, e.g. for tests or `seccomp-tools`-style inspection.
  void export_bpf(int fd) const;
  bool empty() const { return ctx_ == nullptr; }

 private:
  scmp_filter_ctx ctx_ = nullptr;
};

}  // namespace vmwarden::supervisor
