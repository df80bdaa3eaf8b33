// For the escape tests only: apply a confinement with some of its steps
// left out, to show that an attack the full confinement stops succeeds
// without the step that stops it.
#pragma once

#include "supervisor/confinement.h"

namespace vmwarden::supervisor {

enum ConfinementStep : unsigned {
  step_identity = 1u << 0,      // setgroups, setresgid, setresuid
  step_capabilities = 1u << 1,  // the four sets, bounding set, securebits
  step_no_new_privs = 1u << 2,
  step_landlock = 1u << 3,
  step_seccomp = 1u << 4,
  step_user_namespace = 1u << 5,
};

// apply_confinement() without the steps in `omitted` (a ConfinementStep mask).
void apply_confinement_except(const Confinement& confinement, unsigned omitted);

}  // namespace vmwarden::supervisor
