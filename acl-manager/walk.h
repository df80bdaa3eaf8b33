// The parallel, fd-relative tree walk under every ACL change. Internal to
// acl-manager.
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <string>

#include "acl-manager/acl.h"
#include "acl-manager/acl_entries.h"
#include "acl-manager/verified_files.h"

namespace vmwarden::acl::detail {

// What one operation does to each object's ACLs. Called from several threads
// at once: implementations must be safe for that.
class Editor {
 public:
  virtual ~Editor() = default;
  // Edits an access ACL; returns whether it changed.
  virtual bool edit_access(Entries& access, bool is_directory, Report& report) const = 0;
  // Edits a directory's default ACL (`present` false: there is none, entries
  // empty; set it false to delete the default ACL, which the walk overrules
  // for one no grant made: see kGrantedDefaultMark in walk.cc).
  // `access` is the directory's access ACL as it will be. Returns whether it
  // changed.
  virtual bool edit_default(Entries& entries, bool& present, const Entries& access, Report& report) const = 0;
  // Whether an object with no ACL at all can need a change (only grants add).
  virtual bool adds_entries() const = 0;
  // Whether the entries of `uid` are among those removed (an object it owns
  // was made by the VM that held it).
  virtual bool removes_entries_of(uid_t uid) const = 0;
  // Whether setid_bits_to_clear() can be non-zero: the walk then learns
  // every regular file's owner and mode (no name-relative cheap check).
  virtual bool clears_setid_bits() const = 0;
  // The set-ID bits (S_ISUID, S_ISGID) to clear on a regular file with this
  // owner, group and mode, if it has them.
  virtual mode_t setid_bits_to_clear(const struct stat& st) const = 0;
  // Whether an object owned by `owner`, in a tree whose root `root_owner`
  // owns, may be edited. Grants say no to a third party's objects.
  virtual bool accepts_owner(uid_t owner, uid_t root_owner) const = 0;
};

// The regular files a grant found right (verified_files.h), for a walk of
// an editor that only adds entries.
struct Verified {
  // In: what an earlier grant of the tree verified. A listed regular file
  // that statx by name shows as recorded there (one link, on the tree's
  // filesystem, the same inode and ctime) is left alone, unread.
  VerifiedFiles known;
  // Out: the files this walk left right, in known's scope: found right, by
  // the ctime statx saw after its read; written, by the ctime before the
  // write and the walk's end (VerifiedFile). `recorded` says whether it
  // kept them: a walk through the nodev view, not a dry run, that verified
  // some file itself (one that found every file in `known` leaves it as
  // the set to keep).
  VerifiedFiles found;
  bool recorded = false;
};

// Walks the directory open as root_fd (which the caller opened without
// following symlinks), through a nodev view of it where one can be had
// (nodev_view.h). `display_root` prefixes paths in the report, which are
// printable (common/printable.h): it must be so already. Each
// directory is walked once, however many names lead to it during the walk.
Report walk_tree(int root_fd, const std::string& display_root, const Editor& editor, const WalkOptions& options,
                 Verified* verified = nullptr);

// For tests: while on, directory listings report DT_UNKNOWN for every entry,
// as on a filesystem that gives no d_type.
void force_unknown_d_type(bool on);

}  // namespace vmwarden::acl::detail
