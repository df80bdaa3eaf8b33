// What may be a share: a directory the VM's UID is granted, and that the
// sandbox mounts with the mounts below it. Refused before anything is
// leased or granted (launch(), `vmwarden exec` and `run`), and reported by
// `vmwarden check` and `audit`.
#pragma once

#include <filesystem>
#include <optional>
#include <string>

#include "common/locations.h"

namespace vmwarden::vm {

// acl::checked_tree() (what a grant would refuse: a symlink or ".." on the
// way, not a directory, no POSIX ACLs), "/", and a tree with an unbindable
// mount at or below it (supervisor::require_copyable_mounts()). Also a
// tree that holds, or lies in, the UID registry, the grant records or the
// runs under the state directory, the runtime or the config directory:
// those would be the VM's. Compared as their paths resolve, and by
// identity: which filesystem (mountinfo's MAJ:MIN) and which directory in
// it the share shows, and each mount below it that its copy takes along,
// against where each location is (or, not made yet, will be), so that a
// bind mount of one of them elsewhere, or of a directory holding one, is
// refused too. `own_state_subdir`, a run's own directory, may hold shares.
// Returns the tree as its grant will record it; throws UsageError.
std::filesystem::path checked_share(const std::filesystem::path& tree, const Locations& locations,
                                    const std::filesystem::path& own_state_subdir = {});

// Why checked_share() refuses `tree`, or nothing: for `vmwarden check` and
// `audit`, which report a refusal rather than stop at it. What cannot be
// checked (a directory the caller may not list) is said as such.
std::optional<std::string> share_refusal(const std::filesystem::path& tree, const Locations& locations);

}  // namespace vmwarden::vm
