// `vmwarden audit`: what launch() (and `vmwarden exec`) will do for a
// LaunchPlan, step by step with the capability each step needs, before any
// of it is done. Pure: describing a plan leases, grants and changes nothing.
#pragma once

#include <string>
#include <vector>

#include "common/locations.h"
#include "supervisor/sandbox_audit.h"
#include "vm-launcher/launch.h"

namespace vmwarden::vm {

enum class UidSource {
  single_use,  // leased at start, released (its grants revoked) at exit
  alias,       // the alias's UID, leased while the sandbox runs
  given,       // `vmwarden exec --uid` (not 0): no lease, no grants
};

struct LaunchAuditOptions {
  std::string title;  // "definition work", "vmwarden exec"
  Locations locations;
  UidSource uid_source = UidSource::single_use;
  // plan.uid is only a stand-in, shown as "<single-use UID>" (allocated at
  // start) or "<UID of alias "NAME">" (allocated on first start).
  bool uid_is_placeholder = false;
  std::string uid_range;  // "FIRST-LAST", for a single-use UID
  // The single-use UID is shown as root in a user namespace of the
  // command's own (`vmwarden exec --uid 0`).
  bool shown_as_root = false;
  // launch() checks, as the VM's uid, that each share's parent is searchable
  // (a command's: it uses its shares at their own paths) and that each of
  // `files_read_as_uid` (the kernel, initramfs and disks) can be opened as
  // the VMM will.
  bool checks_shares = false;
  std::vector<std::filesystem::path> files_read_as_uid;
  // What will make the start fail although the plan could be made (e.g. a
  // file the definition names is missing); shown as warnings.
  std::vector<std::string> refusals;
  // The caller's own steps around launch() (`vmwarden run`): before it,
  // at its `prepare` hook (right after the lease), and once it returned.
  std::vector<supervisor::PrivilegedStep> steps_before, steps_at_prepare, steps_after;
};

supervisor::SandboxAudit launch_audit(const LaunchPlan& plan, const LaunchAuditOptions& options);

}  // namespace vmwarden::vm
