// check_confinement() and apply_confinement(): the one place where the order
// of a service's confinement steps is written down.
#include "supervisor/confinement.h"

#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <fmt/format.h>

#include "common/error.h"
#include "supervisor/caps.h"
#include "supervisor/confinement_testing.h"
#include "supervisor/landlock.h"
#include "supervisor/namespaces.h"
#include "supervisor/seccomp.h"

namespace vmwarden::supervisor {

std::vector<std::string> check_confinement(const Confinement& confinement) {
  // The host's uid 0 needs no capability to connect to root's sockets
  // (connect() on a pathname socket is outside Landlock's rules up to ABI
  // 7), to write root-owned sysctls and sysfs settings, or to change root's
  // files under a write rule. `uid` is always the host's: root of a user
  // namespace of the service's own (UserNamespace::root) is an unprivileged
  // uid mapped onto 0.
  if (confinement.uid == 0)
    throw PermanentError(
        "a service never runs as the host's uid 0: give it a UID of its own, or run it as root of a user namespace "
        "of its own (vmwarden exec --uid 0)");
  // Nor with its group 0, which opens root's group-accessible files and
  // sockets (a 0660 root:root socket, root-group-writable sysfs files).
  if (confinement.gid == 0)
    throw PermanentError("a service never runs with the host's gid 0: give it a group of its own");
  validate_capabilities(confinement.keep_capabilities);
  describe_seccomp_profile(confinement.seccomp.profile);  // throws for an unknown name
  LandlockPlan plan = plan_landlock(confinement.landlock, landlock_abi());
  std::vector<std::string> warnings;
  for (const std::string& dropped : plan.dropped)
    warnings.push_back(fmt::format("landlock = \"best-effort\": dropped {}", dropped));
  return warnings;
}

void apply_confinement(const Confinement& confinement) { apply_confinement_except(confinement, 0); }

void load_seccomp_policy(const SeccompPolicy& policy) { SeccompFilter(policy).load(); }

void apply_confinement_except(const Confinement& confinement, unsigned omitted) {
  auto wanted = [omitted](ConfinementStep step) { return (omitted & step) == 0; };

  // 0. Who the parent is, before anything can make us miss its death.
  const pid_t parent = ::getppid();

  // 1. Everything that can fail for a reason other than the kernel refusing
  //    a step is done first, while nothing has changed yet: the Landlock plan
  //    (a `required` policy the ABI cannot meet throws here), the seccomp
  //    program (compiled at build time, only looked up here), and the
  //    ruleset with a rule per path. The paths are
  //    opened with the supervisor's credentials: the rules only say where the
  //    service may act, its own uid still has to pass the permission checks.
  validate_capabilities(confinement.keep_capabilities);
  LandlockPlan plan = plan_landlock(confinement.landlock, landlock_abi());
  SeccompFilter filter(wanted(step_seccomp) ? confinement.seccomp : SeccompPolicy{.profile = "none"});
  UniqueFd ruleset;
  if (wanted(step_landlock)) ruleset = create_landlock_ruleset(plan);

  // 2. Identity: no supplementary groups, then gid, then uid (after the uid
  //    change CAP_SETGID would be gone from the effective set). The permitted
  //    set is kept across the switch for step 3.
  if (wanted(step_identity)) switch_identity(confinement.uid, confinement.gid);

  // 2a. A user namespace of its own, entered as the new uid so that the
  //     namespace belongs to it: every capability step 3 keeps is then a
  //     capability over that namespace only (files owned by uid:gid), never
  //     over the host's. Mapped onto 0, uid is root in there only: the host
  //     still checks uid, and step 3 leaves it no capability in either.
  if (confinement.user_namespace != UserNamespace::host && wanted(step_user_namespace)) {
    bool as_root = confinement.user_namespace == UserNamespace::root;
    enter_user_namespace(confinement.uid, confinement.gid, as_root ? 0 : confinement.uid,
                         as_root ? 0 : confinement.gid);
  }

  // 3. Capabilities: only keep_capabilities remain, in every set including
  //    ambient (so they survive execve); the bounding set loses the rest;
  //    securebits locked so that uid 0 and set-user-ID-root binaries grant
  //    nothing. After the uid switch, because setresuid from 0 would clear
  //    the ambient set again.
  if (wanted(step_capabilities)) restrict_capabilities(confinement.keep_capabilities);

  // 4. no_new_privs: execve can no longer grant privileges (set-user-ID
  //    bits, file capabilities). Landlock and seccomp need it to be set by a
  //    process without CAP_SYS_ADMIN, so it comes before them.
  if (wanted(step_no_new_privs))
    check(::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(PR_SET_NO_NEW_PRIVS)");

  // 5. Parent death: the credential changes above cleared any earlier
  //    PDEATHSIG, so it is set now, after the last of them, and the parent
  //    checked: if it died in between, the signal will never come.
  check(::prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0), "prctl(PR_SET_PDEATHSIG)");
  if (::getppid() != parent)
    throw SystemError(ESRCH, fmt::format("parent {} exited while the service was being confined", parent));

  // 6. Landlock: filesystem rules, TCP bind/connect denied, signal and
  //    abstract-socket scopes. After no_new_privs (needed without
  //    CAP_SYS_ADMIN) and after the steps above, which open nothing.
  if (ruleset) {
    landlock_restrict_self(ruleset.get());
    ruleset.reset();
  }

  // 7. seccomp last: the filter then need not allow the setup syscalls above
  //    (setresuid, capset, prctl, landlock_*), only execve and what follows.
  filter.load();
}

}  // namespace vmwarden::supervisor
