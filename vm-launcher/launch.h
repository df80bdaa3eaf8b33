// Launching a definition: everything the outer process will do for it is
// decided first, as a LaunchPlan (what `vmwarden audit` prints), and only then
// acted on (what `vmwarden supervise` runs). The plan combines the other
// components: the UID registry and ACL grants (acl-manager), the services and
// their confinement (supervisor), the VMM backend and one virtiofsd per share.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "acl-manager/acl.h"
#include "acl-manager/uid_registry.h"
#include "common/locations.h"
#include "supervisor/sandbox.h"
#include "vm-launcher/definition.h"

namespace vmwarden::vm {

struct LaunchOptions {
  Locations locations;
  // Started by s6-supervise: prove it (supervise/lock), and report readiness
  // on the service directory's notification-fd.
  bool under_s6 = false;
  // Readiness outside s6 (`--notify-fd`).
  std::optional<int> notify_fd;
  // Runs once the VM's UID is leased, before anything is planned or granted:
  // `vmwarden run` writes the guest's manifest, which names the UID, there.
  std::function<void(uid_t)> prepare;
  // A directory of vmwarden's own inside the state directory that shares
  // may lie in (`vmwarden run`'s run directory; see checked_share() in
  // vm-launcher/share_check.h).
  std::filesystem::path own_state_subdir;
};

// An ACL grant the outer process makes before the sandbox starts, so that the
// VM's UID can reach a share (or a disk) through the host's permission checks.
struct GrantPlan {
  std::filesystem::path tree;
  acl::Access access = acl::Access::ro;
};

struct LaunchPlan {
  std::string uid_alias;  // empty: a single-use UID, released (and its grants revoked) at exit
  uid_t uid = 0;
  std::vector<GrantPlan> grants;
  supervisor::SandboxSpec sandbox;
};

// The plan for running `definition` as `uid`. Pure: reads the host (which
// VMM binaries exist, /dev/kvm) but changes nothing. Throws UsageError for
// what the definition asks that cannot be done here.
LaunchPlan plan_launch(const Definition& definition, uid_t uid, const LaunchOptions& options);

// A plain command's standard descriptors (a definition's, `vmwarden
// exec`'s): under s6 its stdout and stderr are vmwarden's log, where what it
// writes must not read as vmwarden's own lines, so the warden logs each of
// its lines after "command fd N: "; otherwise they are vmwarden's own. A
// terminal among them is replaced by a pty of its own, never the caller's
// terminal (whose modes, foreground process group and window size it could
// change, and whose process group kill(0) would reach).
void give_standard_descriptors(supervisor::ServiceSpec& service, bool under_s6);

// Checks every service's confinement against the running kernel (see
// supervisor::check_confinement): throws PermanentError for an unmet
// `landlock = "required"`, and returns what `best-effort` will drop.
std::vector<std::string> check_plan(const LaunchPlan& plan);

// Sorts plan.grants and plan.sandbox.mounts outer trees first (stable):
// where one share lies inside another, the last grant decides the entries
// there and the last mount is what shows, and both must be the inner
// share's own. plan_launch() does it; other planners call it once done.
void order_outer_first(LaunchPlan& plan);

// Grants each of plan.grants through `grants` (in order; one report each)
// and points the sandbox at the directories those grants opened: a mount
// of a granted tree becomes a detached copy of it, made now, and a Landlock
// rule naming one is made from its descriptor. From the grant on, nothing
// looks a share up by its path again (doc/SECURITY.md).
std::vector<acl::Report> grant_shares(LaunchPlan& plan, acl::ScopedGrants& grants);

// Leases the VM's UID, plans, checks, grants, runs the sandbox, and on every
// exit path revokes a single-use UID's grants and releases it. Returns the
// sandbox's exit status.
int launch(const Definition& definition, const LaunchOptions& options);

}  // namespace vmwarden::vm
