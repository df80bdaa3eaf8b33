// Symlink-safe POSIX ACL grant / revoke / sweep over a directory tree, for the
// per-VM UIDs handed out by UidRegistry (see doc/ACL.md).
//
// Every walk is fd-relative and never follows a symlink; it stays on the
// tree's mount unless asked; a grant skips (and reports) non-directories with
// more than one link, since a hard link is how a writer inside the tree would
// bring in an outside file (revoke and sweep act on them: removing entries
// only ever narrows access); and an entry that vanishes under it is normal.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "acl-manager/uid_registry.h"
#include "common/unique_fd.h"

namespace vmwarden::acl {

struct WalkOptions {
  bool cross_mounts = false;  // descend into other mounts below the tree
  unsigned threads = 0;       // 0: one per CPU the process may run on
  bool dry_run = false;       // decide and count, write nothing
};

struct Report {
  std::uint64_t changed = 0;            // objects whose ACL was (or, dry run, would be) rewritten
  std::uint64_t unchanged = 0;          // already right
  // Of unchanged: regular files a statx showed as the last grant of the
  // tree left them (doc/ACL.md, "Files a grant verified"), their ACL unread.
  std::uint64_t unchanged_as_verified = 0;
  std::uint64_t skipped_hardlinks = 0;  // grants: non-directories with st_nlink > 1
  std::uint64_t skipped_foreign = 0;    // grants: owned by neither the tree's owner nor a VM (not entered)
  std::uint64_t skipped_symlinks = 0;
  // Of skipped_symlinks, those met by the open of a name not listed as a
  // symlink (swapped in while the walk ran, or of a type the filesystem did
  // not give) and refused there (ELOOP, or pinned O_PATH|O_NOFOLLOW): never
  // followed. The others were listed as symlinks and never opened.
  std::uint64_t symlinks_at_open = 0;
  std::uint64_t skipped_special = 0;    // fifos, sockets, devices
  std::uint64_t skipped_mounts = 0;     // mount points not crossed
  std::uint64_t vanished = 0;           // gone or replaced while the walk ran
  std::uint64_t failed = 0;             // objects whose ACL could not be read or written
  std::uint64_t narrowed = 0;           // grants given less than asked by the mask rule (doc/ACL.md)
  std::uint64_t setid_cleared = 0;      // revoke, sweep: files of a removed UID whose set-ID bits were cleared
  // The paths in hardlinks, foreign, errors and moved are printable()
  // (common/printable.h): a name in a tree is its writer's choice.
  std::vector<std::string> hardlinks;   // their paths (the first 100)
  std::vector<std::string> foreign;     // the third party's objects' paths (the first 100)
  std::vector<std::string> errors;      // the first 20 failures, "PATH: why"
  std::map<uid_t, std::uint64_t> removed;  // sweep: objects each UID's entries were removed from
  // revoke, sweep: where directories granted under the path are now, found
  // by the record's file handles after a rename, and walked there too
  std::vector<std::string> moved;
  // revoke: the UID was leased, and its grant record was kept, marked
  // revoked (GrantRecord::revoked), rather than dropped
  bool record_kept_revoked = false;

  Report& operator+=(const Report& other);
  std::string summary() const;  // one line: "12 changed, 3 unchanged, ..."
};

// Gives `uid` u:UID:r-X (ro) or u:UID:rwX (rw) on every directory and regular
// file under `tree`, and the same as a default entry on every directory. The
// grant record is written first, so a crash mid-walk leaves it for revoke and
// sweep. For an alias, the files the walk left right are kept
// (verified_files.h) for the next grant of the tree, which leaves those
// unchanged since unread.
// UsageError (nothing changed) for a relative or missing path, a path with a
// symlink in it, a root whose filesystem has no POSIX ACLs, a UID outside
// the range or not allocated.
Report grant(UidRegistry& registry, uid_t uid, const std::filesystem::path& tree, Access access,
             const WalkOptions& options = {});

// The checks grant() makes of a tree before it changes anything (an
// absolute path without "..", no symlink on the way, an existing directory
// whose filesystem has POSIX ACLs), for callers that must refuse a tree
// before they lease a UID. Returns the tree as grant() records it; throws
// UsageError.
std::filesystem::path checked_tree(const std::filesystem::path& tree);

// Removes `uid`'s access and default entries under `tree`, then its grant
// record; while the UID is leased (its sandbox may run, and move directories
// out of the walk's way and back), the record is kept instead, marked
// revoked, for the sweep to walk the tree again once the lease is gone.
// Crosses mounts if asked or if the grant record says so. On a tree
// whose filesystem has no POSIX ACLs, only the record is dropped. A
// directory the record names (by file handle) that is no longer at `tree`,
// renamed away since its grant, is found where it is now and revoked there
// too (Report::moved); so is the directory when `tree` itself no longer
// opens (gone, or a symlink in its place), which otherwise is a UsageError.
Report revoke(UidRegistry& registry, uid_t uid, const std::filesystem::path& tree, const WalkOptions& options = {});

// Takes out of `uid`'s grant record for `tree`, without walking anything,
// the recorded directories whose filesystem is not mounted here (gone for
// good, on which revoke and sweep otherwise keep failing), and drops the
// record if nothing else is left of it. UsageError (nothing changed) if
// there is no such record, if the UID is leased, if a recorded directory's
// fate is unknown for another reason, or if none is out of reach (revoke
// instead). Returns how many directories were taken out.
std::size_t forget(UidRegistry& registry, uid_t uid, const std::filesystem::path& tree);

struct SweepReport {
  struct Tree {
    std::filesystem::path path;
    // The path does not exist (ENOENT), and no directory its records name
    // was found elsewhere or is of unknown fate: nothing granted as it is
    // left (its dead UIDs' records are dropped). A path that cannot be
    // opened for another reason (no ACL support), or is something else now
    // while a record knows the tree by its path alone, and a recorded
    // directory whose fate is unknown (its filesystem not mounted here)
    // count in report.failed and keep the records. Directories found
    // elsewhere are in report.moved.
    bool missing = false;
    Report report;
  };
  std::vector<Tree> trees;
  std::vector<uid_t> released;          // dead single-use UIDs returned to the pool (dry run: that would be)
  std::uint64_t records_removed = 0;    // (dry run: that would be)
  // Grant record files of no use (DamagedGrantRecord::why, printable()):
  // failures. Their tree is unknown, so their UIDs are never released.
  std::vector<std::string> damaged_records;
};

// In every recorded tree, removes the entries (named user and group) of UIDs
// in the managed range that the registry handed out and that are neither
// leased nor an alias with a grant record for that tree; then drops
// the records of dead UIDs and releases dead single-use UIDs. A tree that
// cannot be opened or walked is reported and skipped, the others are swept.
// A damaged record (see DamagedGrantRecord) is reported, and keeps its UID
// allocated.
SweepReport sweep(UidRegistry& registry, bool dry_run = false);

// getfacl-style text for one path (refused if it or any directory on the way
// is a symlink), with the registry's names for managed UIDs when a registry is given.
std::string show(const std::filesystem::path& path, const UidRegistry* registry = nullptr);

// What ScopedGrants::grant() did, and the tree's root as the grant opened
// it (a directory descriptor, close-on-exec, never reached through a
// symlink). A caller that hands the tree on (a mount, a Landlock rule) uses
// this rather than the path: whoever can write the tree's parent may have
// put something else under that name since.
struct Granted {
  Report report;
  UniqueFd root;
};

// Grants made through this object are revoked when it goes out of scope (for
// single-use UIDs: the outer process revokes them at VM exit), through the
// directory each grant opened, wherever it has been renamed to since.
class ScopedGrants {
 public:
  ScopedGrants(UidRegistry& registry, uid_t uid) : registry_(&registry), uid_(uid) {}
  ScopedGrants(ScopedGrants&& other) noexcept;
  ScopedGrants& operator=(ScopedGrants&&) = delete;
  ScopedGrants(const ScopedGrants&) = delete;
  ScopedGrants& operator=(const ScopedGrants&) = delete;
  ~ScopedGrants();

  Granted grant(const std::filesystem::path& tree, Access access, const WalkOptions& options = {});
  // Revokes everything granted so far; throws on failure.
  void revoke_all();
  // The same, logging a failure as a warning (sweep finishes the job); the
  // destructor does this.
  void revoke_all_or_warn() noexcept;
  // Keeps the grants (e.g. for an alias) and forgets them.
  void dismiss() noexcept { trees_.clear(); }

 private:
  struct GrantedTree {
    std::filesystem::path tree;
    WalkOptions options;
    UniqueFd root;  // as the grant opened it; empty if the grant failed before
  };
  UidRegistry* registry_;
  uid_t uid_;
  std::vector<GrantedTree> trees_;
};

}  // namespace vmwarden::acl
