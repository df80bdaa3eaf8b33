// The binary form of POSIX ACL xattrs (system.posix_acl_access/default) and
// the edits vmwarden makes to them. Working on the kernel's own format lets
// the walk read, decide and write each entry with one xattr call each way and
// no libacl allocations. Internal to acl-manager.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace vmwarden::acl::detail {

enum Tag : std::uint16_t {
  kUserObj = 0x01,
  kUser = 0x02,
  kGroupObj = 0x04,
  kGroup = 0x08,
  kMask = 0x10,
  kOther = 0x20,
};

inline constexpr std::uint32_t kNoId = 0xffffffffu;
inline constexpr std::uint16_t kRead = 4, kWrite = 2, kExecute = 1;

struct Entry {
  std::uint16_t tag = 0;
  std::uint16_t perm = 0;
  std::uint32_t id = kNoId;
  friend bool operator==(const Entry&, const Entry&) = default;
};

using Entries = std::vector<Entry>;

// Parses an xattr value. False when it is not a well-formed version-2 ACL
// (the kernel never returns one, but a corrupt value must not be "fixed").
bool decode(std::string_view value, Entries& out);
// Appends the xattr value for `entries` (sorted, as the kernel requires) to out.
void encode(const Entries& entries, std::string& out);

// The three entries equivalent to a file mode without an ACL.
Entries from_mode(mode_t mode);
// The same into `out`, reusing its storage (the walk does this per file).
void from_mode(mode_t mode, Entries& out);

// Sorts by tag, then id: the order the kernel accepts.
void sort_entries(Entries& entries);

// The permissions "rX" / "rwX" mean for this object: X is execute for
// directories, and for files only when someone may already execute it.
std::uint16_t requested_perm(bool writable, bool is_directory, const Entries& access);

// Gives `uid` the entry `perm`, subject to the mask rule: the mask never lets
// through a bit that some other group-class entry (owning group, named user
// or group) holds but the mask withholds today. Such bits (left by a chmod
// that narrowed the mask) are withheld from `uid` too; bits nobody else holds
// widen the mask. No other entry is modified, so what each of them can
// effectively do stays what it was. Returns whether anything changed.
bool set_user(Entries& entries, std::uint32_t uid, std::uint16_t perm);
// The part of `perm` that set_user would give `uid` on these entries.
std::uint16_t grantable(const Entries& entries, std::uint32_t uid, std::uint16_t perm);

// Removes the named-user entries whose id matches, then recomputes the mask as
// the union of what the remaining group-class entries can effectively do (the
// smallest mask that serves them). With no named entries left and an owning
// group inside the mask, the mask goes too. No other entry is modified.
// Returns whether anything changed.
bool remove_users(Entries& entries, const std::function<bool(std::uint32_t)>& matches);
// The same for named-user and named-group entries whose id matches (a VM's
// gid is its uid).
bool remove_users_and_groups(Entries& entries, const std::function<bool(std::uint32_t)>& matches);

// True when only the owner/group/other entries remain (an ACL the kernel
// stores as plain mode bits).
bool is_minimal(const Entries& entries);

// Whether any named user or named group entry is present.
bool has_named_entries(const Entries& entries);

// Whether `entries` is minimal and grants exactly the permission bits of
// `mode`: storing it then leaves the object as it would be with no ACL xattr
// at all and its mode unchanged.
bool is_minimal_for_mode(const Entries& entries, mode_t mode);

// "u:1000:r-x,..." for messages and tests.
std::string to_text(const Entries& entries);

}  // namespace vmwarden::acl::detail
