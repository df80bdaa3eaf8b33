// Loading a seccomp profile: its BPF program was compiled at build time
// (seccomp_generate), so a service's confinement costs one syscall here.
#include <linux/seccomp.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <fmt/format.h>

#include "common/error.h"
#include "supervisor/seccomp.h"

namespace vmwarden::supervisor {
namespace {

struct PrecompiledProgram {
  std::string_view profile;
  SeccompAction action;
  std::span<const sock_filter> program;
};

#include "supervisor/seccomp_programs.inc"

}  // namespace

SeccompFilter::SeccompFilter(const SeccompPolicy& policy) {
  for (const PrecompiledProgram& precompiled : kPrecompiledPrograms) {
    if (precompiled.profile == policy.profile && precompiled.action == policy.action) {
      program_ = precompiled.program;
      return;
    }
  }
  // Not precompiled: "none", or an unknown name (which this throws for).
  if (describe_seccomp_profile(policy.profile).kind != SeccompKind::none)
    throw std::logic_error(fmt::format("seccomp profile {} has no precompiled program", policy.profile));
}

void SeccompFilter::load() const {
  if (program_.empty()) return;
  // The kernel copies the program and never writes to it.
  sock_fprog fprog{static_cast<unsigned short>(program_.size()), const_cast<sock_filter*>(program_.data())};
  check(::syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &fprog), "seccomp(SECCOMP_SET_MODE_FILTER)");
}

}  // namespace vmwarden::supervisor
