// Identity and capabilities of a service (libcap). Internal to the
// supervisor; apply_confinement() calls these in the order it documents.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace vmwarden::supervisor {

// "cap_sys_chroot" for CAP_SYS_CHROOT; "cap_N" for a number libcap does not name.
std::string capability_name(int capability);
std::optional<int> capability_from_name(std::string_view name);
// The capabilities the running kernel knows (0 .. CAP_LAST_CAP).
int capability_count();
// Throws UsageError for a number outside 0 .. CAP_LAST_CAP of this kernel.
void validate_capabilities(const std::vector<int>& capabilities);

// Drops supplementary groups, then sets the real, effective and saved gid
// and uid. The permitted set survives (PR_SET_KEEPCAPS) so that
// restrict_capabilities() can still shape the sets and the bounding set.
void switch_identity(uid_t uid, gid_t gid);

// Leaves exactly `keep` in the permitted, effective, inheritable and ambient
// sets (ambient: so they survive execve of an ordinary binary), removes
// every other capability from the bounding set, and locks the securebits so
// that uid 0 and set-user-ID-root binaries grant nothing (SECBIT_NOROOT) and
// the ambient set cannot grow. Needs CAP_SETPCAP in the permitted set.
void restrict_capabilities(const std::vector<int>& keep);

}  // namespace vmwarden::supervisor
