// The warden: PID 1 of the sandbox's PID namespace.
#pragma once

#include <signal.h>

#include "supervisor/runtime_dir.h"
#include "supervisor/sandbox.h"

namespace vmwarden::supervisor {

// The signal the kernel sends the warden when the outer dies
// (PR_SET_PDEATHSIG). PID 1 drops signals it has no handler for, so the
// warden installs one; it also watches the outer's pidfd, which covers an
// outer that died before the prctl.
inline constexpr int kOuterDeathSignal = SIGUSR1;

// Runs in the child of clone_into_namespaces(). The signals in
// warden_signals() must already be blocked (by the outer, before the clone)
// so that none sent before the warden is ready is lost. Never returns: exits
// with the sandbox's exit status.
[[noreturn]] void run_warden(const SandboxSpec& spec, int outer_pidfd, RuntimeDir& runtime_dir);

// SIGTERM, SIGINT, SIGHUP (stop requests), SIGCHLD, kOuterDeathSignal.
sigset_t warden_signals();

// In the warden, where those signals are blocked: a stop request or the
// outer's death is pending (not yet read from the signalfd).
bool stop_signal_pending();

}  // namespace vmwarden::supervisor
