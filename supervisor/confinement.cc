// Confinement applied in a service's child between fork and exec: the
// identity part; Landlock/seccomp/capabilities are applied here too once
// those land.
//
// Order, and why:
//   1. setgroups, setresgid, setresuid: drop every supplementary group, then
//      the gid while still privileged, then the uid (after which no more
//      identity changes are possible for a non-root uid).
//   2. PR_SET_NO_NEW_PRIVS: execve can never raise privileges again (setuid
//      binaries, file capabilities).
//   3. PR_SET_PDEATHSIG(SIGKILL), after the last credential change because a
//      uid/gid change clears it, then a re-check that the parent is still the
//      one we were forked from: if it died before the prctl the signal would
//      never come.

#include "supervisor/confinement.h"

#include <grp.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <string>

#include "common/error.h"

namespace vmwarden::supervisor {
namespace {

constexpr long kLandlockCreateRuleset = 444;
constexpr unsigned kLandlockCreateRulesetVersion = 1U << 0;

std::optional<int> g_abi_override;

int detect_landlock_abi() {
  long abi = ::syscall(kLandlockCreateRuleset, nullptr, 0, kLandlockCreateRulesetVersion);
  // ENOSYS: not built into the kernel; EOPNOTSUPP: disabled at boot.
  return abi < 0 ? 0 : static_cast<int>(abi);
}

}  // namespace

int landlock_abi() {
  if (g_abi_override) return *g_abi_override;
  static const int abi = detect_landlock_abi();
  return abi;
}

void override_landlock_abi_for_testing(std::optional<int> abi) { g_abi_override = abi; }

std::vector<std::string> check_confinement(const Confinement&) { return {}; }

void apply_confinement(const Confinement& confinement) {
  pid_t parent = ::getppid();
  check(::setgroups(0, nullptr), "setgroups", "(clear supplementary groups)");
  if (::setresgid(confinement.gid, confinement.gid, confinement.gid) < 0) {
    throw_errno("setresgid", std::to_string(confinement.gid));
  }
  if (::setresuid(confinement.uid, confinement.uid, confinement.uid) < 0) {
    throw_errno("setresuid", std::to_string(confinement.uid));
  }
  check(::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl", "PR_SET_NO_NEW_PRIVS");
  check(::prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0), "prctl", "PR_SET_PDEATHSIG");
  if (::getppid() != parent) {
    throw SystemError(ESRCH, "parent check", "the warden exited while the service was starting");
  }
}

}  // namespace vmwarden::supervisor
