#include "acl-manager/acl.h"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/acl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <acl/libacl.h>

#include <algorithm>
#include <charconv>
#include <exception>
#include <mutex>
#include <set>
#include <utility>

#include <fmt/core.h>

#include "acl-manager/acl_entries.h"
#include "acl-manager/tree_root.h"
#include "acl-manager/walk.h"
#include "acl-manager/xattr_at.h"
#include "common/error.h"
#include "common/printable.h"
#include "common/log.h"

namespace vmwarden::acl {

using detail::Editor;
using detail::Entries;

namespace {

// A path in a message: names in a tree are whatever a VM (or whoever can
// rename in the tree's parent) chose, terminal escapes included.
std::string shown(const std::filesystem::path& path) { return printable(path.native()); }

// A numeric id in an ACL entry ("" for the owner's or owning group's own).
std::optional<uid_t> parse_id(std::string_view text) {
  uid_t id = 0;
  auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), id);
  if (text.empty() || error != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return id;
}

}  // namespace

Report& Report::operator+=(const Report& other) {
  changed += other.changed;
  unchanged += other.unchanged;
  unchanged_as_verified += other.unchanged_as_verified;
  skipped_hardlinks += other.skipped_hardlinks;
  skipped_foreign += other.skipped_foreign;
  skipped_symlinks += other.skipped_symlinks;
  symlinks_at_open += other.symlinks_at_open;
  skipped_special += other.skipped_special;
  skipped_mounts += other.skipped_mounts;
  vanished += other.vanished;
  failed += other.failed;
  narrowed += other.narrowed;
  setid_cleared += other.setid_cleared;
  for (const std::string& path : other.hardlinks) {
    if (hardlinks.size() < 100) hardlinks.push_back(path);
  }
  for (const std::string& path : other.foreign) {
    if (foreign.size() < 100) foreign.push_back(path);
  }
  for (const std::string& error : other.errors) {
    if (errors.size() < 20) errors.push_back(error);
  }
  for (auto [uid, count] : other.removed) removed[uid] += count;
  moved.insert(moved.end(), other.moved.begin(), other.moved.end());
  record_kept_revoked = record_kept_revoked || other.record_kept_revoked;
  return *this;
}

std::string Report::summary() const {
  std::string text = fmt::format("{} changed, {} unchanged", changed, unchanged);
  if (unchanged_as_verified != 0) text += fmt::format(" ({} as the last grant left them)", unchanged_as_verified);
  auto add = [&text](std::uint64_t count, std::string_view what) {
    if (count != 0) text += fmt::format(", {} {}", count, what);
  };
  add(skipped_hardlinks, "hard-linked skipped");
  add(skipped_foreign, "owned by a third party skipped");
  add(skipped_symlinks, "symlinks skipped");
  add(skipped_special, "special files skipped");
  add(skipped_mounts, "mount points not crossed");
  add(vanished, "vanished");
  add(narrowed, "narrowed by the mask rule");
  add(setid_cleared, "files cleared of set-ID bits");
  add(failed, "failed");
  return text;
}

namespace {

class GrantEditor final : public Editor {
 public:
  GrantEditor(uid_t uid, Access access, UidRange managed)
      : uid_(uid), writable_(access == Access::rw), managed_(managed) {}

  bool edit_access(Entries& access, bool is_directory, Report& report) const override {
    return set(access, detail::requested_perm(writable_, is_directory, access), report);
  }

  bool edit_default(Entries& entries, bool& present, const Entries& access, Report& report) const override {
    bool created = false;
    if (!present) {
      // Like setfacl -d -m: a new default ACL starts from the directory's
      // owner, group and other permissions.
      entries.clear();
      for (const detail::Entry& entry : access) {
        if (entry.tag == detail::kUserObj || entry.tag == detail::kGroupObj || entry.tag == detail::kOther) {
          entries.push_back(entry);
        }
      }
      present = true;
      created = true;
    }
    // New files get rwX masked by their creation mode, so a later file is
    // readable (and, for rw, writable) by the UID.
    bool changed = set(entries, detail::kRead | (writable_ ? detail::kWrite : 0) | detail::kExecute, report);
    return changed || created;
  }

  bool adds_entries() const override { return true; }
  bool removes_entries_of(uid_t) const override { return false; }
  bool clears_setid_bits() const override { return false; }
  mode_t setid_bits_to_clear(const struct stat&) const override { return 0; }

  // An object of a third party's in the tree was most likely moved in by
  // someone who can write there (a rename needs no access to the object
  // itself): granting it would hand the VM what its owner never shared.
  // Only the tree's owner's objects and VMs' own (any UID of the managed
  // range: what this VM, or an earlier single-use UID, wrote there) are
  // granted.
  bool accepts_owner(uid_t owner, uid_t root_owner) const override {
    return owner == root_owner || managed_.contains(owner);
  }

 private:
  bool set(Entries& entries, std::uint16_t perm, Report& report) const {
    bool changed = detail::set_user(entries, uid_, perm);
    if (changed && detail::grantable(entries, uid_, perm) != perm) ++report.narrowed;
    return changed;
  }

  uid_t uid_;
  bool writable_;
  UidRange managed_;
};

// Removes the entries of every UID `remove` selects (named users, and named
// groups of the same id: a VM's gid is its uid), from access and default
// ACLs; a default ACL left without named entries is removed (where the walk
// knows a grant made it).
class RemoveEditor final : public Editor {
 public:
  explicit RemoveEditor(std::function<bool(uid_t)> remove) : remove_(std::move(remove)) {}

  bool edit_access(Entries& access, bool, Report& report) const override { return remove(access, report); }

  bool edit_default(Entries& entries, bool& present, const Entries&, Report& report) const override {
    if (!present || !remove(entries, report)) return false;
    if (detail::is_minimal(entries)) present = false;
    return true;
  }

  bool adds_entries() const override { return false; }
  bool removes_entries_of(uid_t uid) const override { return remove_(uid); }
  // Removing entries only narrows access, whoever owns the object.
  bool accepts_owner(uid_t, uid_t) const override { return true; }

  // A set-user-ID file of a UID whose access goes (one a VM made in a
  // read-write share) would let whoever runs it act as that UID later: as
  // the next VM given the UID, if it is a single-use one. Set-group-ID
  // likewise for the UID's group (a VM's gid is its uid).
  bool clears_setid_bits() const override { return true; }
  mode_t setid_bits_to_clear(const struct stat& st) const override {
    return (remove_(st.st_uid) ? S_ISUID : 0) | (remove_(st.st_gid) ? S_ISGID : 0);
  }

 private:
  bool remove(Entries& entries, Report& report) const {
    bool any = false;
    // Named groups too: a VM's gid is its uid, and it may have given its
    // own group access to its files, which the UID's next holder would have.
    for (const detail::Entry& entry : entries) {
      if ((entry.tag == detail::kUser || entry.tag == detail::kGroup) && remove_(entry.id)) {
        any = true;
        ++report.removed[entry.id];
      }
    }
    if (!any) return false;
    return detail::remove_users_and_groups(entries, remove_);
  }

  std::function<bool(uid_t)> remove_;
};

// The tree's path does not exist (ENOENT): the only failure to open a tree
// that lets sweep drop its records. A symlink or a non-directory in its place
// may be the tree moved aside, its entries still there.
class MissingTree : public UsageError {
 public:
  using UsageError::UsageError;
};

// Opens a tree's root: absolute, no symlink anywhere on the way, a directory.
UniqueFd open_tree(const std::filesystem::path& tree) {
  if (!tree.is_absolute()) {
    throw UsageError(fmt::format("\"{}\" is a relative path; give the tree as an absolute path", shown(tree)));
  }
  if (tree.native().find('\n') != std::string::npos) {
    throw UsageError("a tree path must not contain a newline");
  }
  UniqueFd root = detail::open_directory_without_symlinks(tree);
  if (root) return root;
  int error = errno;
  switch (error) {
    case ENOENT: throw MissingTree(fmt::format("{}: no such directory", shown(tree)));
    case ENOTDIR:
    case ELOOP: {
      struct stat st;
      if (error == ENOTDIR && (::lstat(tree.c_str(), &st) != 0 || !S_ISLNK(st.st_mode))) {
        throw UsageError(fmt::format("{}: not a directory (grants apply to directory trees)", shown(tree)));
      }
      std::error_code ec;
      auto resolved = std::filesystem::canonical(tree, ec);
      throw UsageError(fmt::format("{}: the path goes through a symlink, which is never followed{}", shown(tree),
                                   ec ? std::string() : fmt::format("; its resolved form is {}", shown(resolved))));
    }
    default: throw_system_error(error, "open", shown(tree));
  }
}

// The tree's spelling as recorded: "." and repeated slashes dropped. A ".."
// is refused, not folded away: the kernel resolves "a/link/../b" through
// the link, so its text and the directory it names can differ.
std::filesystem::path normal_tree(const std::filesystem::path& tree) {
  for (const std::filesystem::path& part : tree) {
    if (part == "..")
      throw UsageError(fmt::format("{}: a tree path must not contain \"..\"; give the directory's own path",
                                   shown(tree)));
  }
  std::filesystem::path normal = tree.lexically_normal();
  std::string text = normal.string();
  if (text.size() > 1 && text.back() == '/') text.pop_back();
  return text;
}

// Whether the filesystem of the directory open as `fd` supports POSIX ACLs
// (reading its access ACL does not fail with EOPNOTSUPP); other failures
// to read it throw.
bool supports_acls(int fd, const std::filesystem::path& tree) {
  if (::fgetxattr(fd, detail::kAccessAcl, nullptr, 0) >= 0 || errno == ENODATA || errno == ERANGE) return true;
  if (errno == EOPNOTSUPP) return false;
  throw_errno("read ACL of", shown(tree));
}

// Before a grant writes its record: a root that cannot carry ACLs (/proc,
// sysfs) or cannot be listed would fail the walk at once, and its record
// would then be left for revoke and sweep to trip over. Bad input changes
// nothing.
void require_grantable_root(int fd, const std::filesystem::path& tree) {
  if (!supports_acls(fd, tree)) {
    throw UsageError(fmt::format("{}: its filesystem does not support POSIX ACLs", shown(tree)));
  }
  // Listed through a descriptor of its own, leaving fd's position alone.
  UniqueFd dir(::openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dir) throw_errno("open", shown(tree));
  alignas(8) char entries[1024];
  if (syscall(SYS_getdents64, dir.get(), entries, sizeof entries) < 0) throw_errno("list", shown(tree));
}

// Whether `inner` lies strictly below `outer` (both as normal_tree gives them).
bool strictly_below(const std::filesystem::path& inner, const std::filesystem::path& outer) {
  const std::string& a = inner.native();
  const std::string& b = outer.native();
  if (b == "/") return a.size() > 1;
  return a.size() > b.size() && a.compare(0, b.size(), b) == 0 && a[b.size()] == '/';
}

// Grants of one UID on nested trees share the objects of the inner one: the
// last walk decides their entries, and revoking either takes them away.
// Said, not refused: nesting can be what the administrator meant.
void warn_of_nested_records(const std::vector<GrantRecord>& records, uid_t uid, const std::filesystem::path& tree,
                            std::string_view doing) {
  for (const GrantRecord& record : records) {
    if (record.revoked) continue;  // grants nothing
    if (strictly_below(tree, record.tree)) {
      log::warning("{} {} for UID {}: it lies inside {}, granted {} to the same UID; the entries below {} are this "
                   "walk's, and revoking either tree removes them",
                   doing, shown(tree), uid, shown(record.tree), to_string(record.access), shown(tree));
    } else if (strictly_below(record.tree, tree)) {
      log::warning("{} {} for UID {}: it holds {}, granted {} to the same UID; this walk changes the entries there "
                   "too, and that record stays",
                   doing, shown(tree), uid, shown(record.tree), to_string(record.access));
    }
  }
}

void require_in_range(const UidRegistry& registry, uid_t uid) {
  if (!registry.range().contains(uid)) {
    throw UsageError(fmt::format("UID {} is outside the managed range {}", uid, registry.range().to_string()));
  }
}

// The roots a grant records for `tree`: the directory it opened, and the
// ones an earlier grant of the same UID recorded under that path that are
// not known to be gone. Those keep that grant's entries, and the record is
// how revoke and sweep find them. An unchanged list (an alias re-granted at
// every start) leaves the record as it was.
std::vector<RecordedRoot> roots_to_record(const std::vector<GrantRecord>& records, const std::filesystem::path& tree,
                                          const std::optional<RecordedRoot>& opened) {
  std::vector<RecordedRoot> roots;
  if (opened) roots.push_back(*opened);
  for (const GrantRecord& record : records) {
    if (record.tree != tree) continue;
    for (const RecordedRoot& earlier : record.roots) {
      // The directory granted now, already recorded: kept as it is now
      // (its filesystem's device number may have changed).
      if (opened && earlier.same_directory(*opened)) continue;
      try {
        if (detail::reopen_root(earlier, tree).state == detail::ReopenedRoot::State::gone) continue;
      } catch (const std::exception& e) {
        log::warning("granting {}: {}; its earlier directory stays in the record", shown(tree), printable(e.what()));
      }
      roots.push_back(earlier);
    }
  }
  return roots;
}

struct MovedRoot {
  RecordedRoot recorded;
  detail::ReopenedRoot now;
};

struct MovedRoots {
  std::vector<MovedRoot> found;
  // Recorded directories whose filesystem is not mounted here: their fate
  // is unknown (what `acl forget` takes out of a record).
  std::vector<RecordedRoot> absent;
  // Messages for those and for the other directories whose fate is unknown
  // (the kernel refused to open them, or a mount that may be theirs cannot
  // be reached).
  std::vector<std::string> unknown;
  bool any_unknown_but_absent = false;
};

// The directories recorded for `tree`, other than the one open as `at_path`
// (none: the path did not open), opened where they are now. Those known to
// be gone are left out; those that cannot be looked for are in `unknown`,
// and do not stop the others.
MovedRoots reopen_moved(const std::vector<RecordedRoot>& recorded, const std::filesystem::path& tree,
                        const UniqueFd& at_path) {
  MovedRoots moved;
  if (recorded.empty()) return moved;
  std::optional<RecordedRoot> here;
  std::set<std::pair<dev_t, ino_t>> walked;  // live directories, so none is walked twice
  struct stat st;
  if (at_path && ::fstat(at_path.get(), &st) == 0) {
    walked.emplace(st.st_dev, st.st_ino);
    try {
      here = detail::record_root(at_path.get(), tree);
    } catch (const std::exception&) {
      // Then each recorded directory is opened to tell.
    }
  }
  std::vector<RecordedRoot> tried;
  for (const RecordedRoot& root : recorded) {
    // The same directory twice (two UIDs' records), or the directory at the
    // path (compared by handle: an inode number alone is reused at once).
    auto same = [&](const RecordedRoot& other) { return root.same_directory(other); };
    if ((here && same(*here)) || std::any_of(tried.begin(), tried.end(), same)) continue;
    tried.push_back(root);
    try {
      detail::ReopenedRoot now = detail::reopen_root(root, tree);
      using State = detail::ReopenedRoot::State;
      if (now.state == State::absent || now.state == State::unknown) {
        moved.unknown.push_back(fmt::format(
            "{}: the directory granted under this path (inode {}) cannot be looked for: {}; the record is kept{}",
            shown(tree), root.inode, printable(now.why),
            now.state == State::absent ? " (mount its filesystem and run this again; if it is gone for good, "
                                         "`vmwarden acl forget` takes it out of the record)"
                                       : ""));
        if (now.state == State::absent) {
          moved.absent.push_back(root);
        } else {
          moved.any_unknown_but_absent = true;
        }
        continue;
      }
      if (now.state == State::gone) continue;
      if (::fstat(now.dir.get(), &st) != 0 || !walked.emplace(st.st_dev, st.st_ino).second) continue;
      moved.found.push_back({root, std::move(now)});
    } catch (const std::exception& e) {
      moved.unknown.push_back(printable(e.what()));
      moved.any_unknown_but_absent = true;
    }
  }
  return moved;
}

std::string message_of(const std::exception_ptr& error) {
  try {
    std::rethrow_exception(error);
  } catch (const std::exception& e) {
    return e.what();
  }
}

}  // namespace

std::filesystem::path checked_tree(const std::filesystem::path& tree_arg) {
  std::filesystem::path tree = normal_tree(tree_arg);
  UniqueFd root = open_tree(tree);
  require_grantable_root(root.get(), tree);
  return tree;
}

namespace {

Granted grant_tree(UidRegistry& registry, uid_t uid, const std::filesystem::path& tree_arg, Access access,
                   const WalkOptions& options) {
  require_in_range(registry, uid);
  std::filesystem::path tree = normal_tree(tree_arg);
  UniqueFd root = open_tree(tree);
  require_grantable_root(root.get(), tree);
  auto require_allocated = [&] {
    std::optional<UidInfo> info = registry.find(uid);
    if (!info || !info->allocated)
      throw UsageError(fmt::format("UID {} is not allocated (`vmwarden uid alloc` hands one out)", uid));
    return *info;
  };
  // Only an alias is granted the same tree again: a single-use UID's
  // grants end with its VM, so it keeps no set of verified files.
  const bool alias = !require_allocated().alias.empty();
  UniqueFd lock = registry.lock_acl_changes();
  std::vector<GrantRecord> records = registry.grant_records(uid);
  warn_of_nested_records(records, uid, tree, "granting");
  if (options.dry_run) {
    require_allocated();
  } else {
    GrantRecord record{uid, tree, access, options.cross_mounts};
    std::optional<RecordedRoot> opened = detail::record_root(root.get(), tree);
    record.roots = roots_to_record(records, tree, opened);
    record.by_path = !opened;
    // Checks the allocation and records under the registry's lock: a UID
    // released after that has a record, and is not handed out again before
    // a sweep (which waits for this walk) has removed its entries.
    registry.record_grant(record);
  }
  GrantEditor editor(uid, access, registry.range());
  if (!alias) return {detail::walk_tree(root.get(), shown(tree), editor, options), std::move(root)};
  detail::Verified verified;
  std::filesystem::path verified_path = registry.verified_files_path(uid, tree);
  struct stat root_stat;
  check(::fstat(root.get(), &root_stat), "fstat", tree.string());
  detail::VerifiedScope scope{uid,
                              access == Access::rw,
                              root_stat.st_dev,
                              root_stat.st_ino,
                              root_stat.st_uid,
                              registry.range().first,
                              registry.range().last};
  verified.known = detail::VerifiedFiles::load(verified_path, scope);
  Report report = detail::walk_tree(root.get(), shown(tree), editor, options, &verified);
  // Under the lock, like the walk. Not saved, the set only costs the next
  // grant a full check: said, not failed.
  if (verified.recorded) {
    try {
      verified.found.save(verified_path);
    } catch (const std::exception& e) {
      log::warning("granting {}: the files verified were not kept for the next grant: {}", shown(tree),
                   printable(e.what()));
    }
  }
  return {std::move(report), std::move(root)};
}

}  // namespace

Report grant(UidRegistry& registry, uid_t uid, const std::filesystem::path& tree, Access access,
             const WalkOptions& options) {
  return grant_tree(registry, uid, tree, access, options).report;
}

namespace {

// Revokes under the directory open as `root`, recorded as `tree`, and
// under each directory the record names that is elsewhere now. `root` is
// empty when `tree` did not open (`unopened` says why, and is thrown if
// the record names no directory that is still there, or may be).
// `uid_may_run`: the UID's sandbox may still run, so the record is kept,
// marked revoked, rather than dropped (GrantRecord::revoked).
Report revoke_tree(UidRegistry& registry, uid_t uid, const std::filesystem::path& tree, const UniqueFd& root,
                   const WalkOptions& asked, bool uid_may_run, const std::exception_ptr& unopened = nullptr) {
  // Where no grant was ever recorded (no grants/ yet) and the path does not
  // open, the revoke is refused below: it must leave the state directory as
  // it was, so the lock, which creates grants/, is only taken if it exists
  // or a walk is coming.
  UniqueFd lock = registry.lock_acl_changes(/*create=*/static_cast<bool>(root));
  // No lock: no grants/ when it was looked for, so no record to act on (one
  // a first grant makes now must not be read, let alone dropped, unlocked).
  if (!lock && unopened) std::rethrow_exception(unopened);
  // A grant made with --cross-mounts left entries below other mounts: revoke
  // goes there too, asked or not.
  WalkOptions options = asked;
  GrantRecordScan scan = registry.scan_grant_records(uid);
  std::vector<GrantRecord>& records = scan.records;
  // Said, not refused: the tree asked for is revoked all the same.
  for (const DamagedGrantRecord& damaged : scan.damaged) {
    log::warning("UID {} has a damaged grant record, whose tree keeps its entries until it is mended (see "
                 "doc/ACL.md): {}",
                 uid, damaged.why);
  }
  std::vector<RecordedRoot> recorded;
  std::optional<GrantRecord> own_record;
  bool has_record = false, by_path = false;
  for (const GrantRecord& record : records) {
    if (record.tree != tree) continue;
    has_record = true;
    own_record = record;
    if (record.cross_mounts) options.cross_mounts = true;
    recorded = record.roots;
    by_path = record.by_path || record.roots.empty();
  }
  MovedRoots moved = reopen_moved(recorded, tree, root);
  bool missing = false;
  if (!root) {
    try {
      std::rethrow_exception(unopened);
    } catch (const MissingTree&) {
      missing = true;
    } catch (...) {
    }
  }
  if (!root && moved.found.empty() && moved.unknown.empty()) {
    // Nothing granted as the path is left: the path is gone or something
    // else, and every directory the record names is known to be gone. A
    // record that knows the tree by its path is dropped only if the path
    // is gone; without a record, it is the user's mistake.
    if (!has_record || (by_path && !missing)) std::rethrow_exception(unopened);
    log::warning("{}; nothing granted as it is left, and its grant record is {}", printable(message_of(unopened)),
                 options.dry_run ? "kept (dry run)" : "dropped");
    if (!options.dry_run) registry.remove_grant_record(uid, tree);
    return Report{};
  }
  if (!root) {
    log::warning("{}; revoking the directory granted as {} where it is now", printable(message_of(unopened)),
                 shown(tree));
  }
  warn_of_nested_records(records, uid, tree, "revoking");
  RemoveEditor editor([uid](uid_t id) { return id == uid; });
  Report report;
  for (const std::string& why : moved.unknown) {
    ++report.failed;
    report.errors.push_back(printable(why));
  }
  if (!root && by_path && !missing) {
    // Something else is at the path of a tree the record knows by its
    // path: the tree may be that moved aside, its entries out of reach.
    ++report.failed;
    report.errors.push_back(printable(message_of(unopened)) + "; the record knows the tree by its path, and is kept");
  }
  // Where the path's filesystem has no POSIX ACLs, no entry can be there (a
  // record from before grant checked this), and no VM was ever given the
  // tree (a grant refuses it): nothing to walk at the path.
  if (root && supports_acls(root.get(), tree)) report += detail::walk_tree(root.get(), shown(tree), editor, options);
  for (const MovedRoot& elsewhere : moved.found) {
    warn_of_nested_records(records, uid, elsewhere.now.where, "revoking");
    report += detail::walk_tree(elsewhere.now.dir.get(), elsewhere.now.where, editor, options);
    report.moved.push_back(elsewhere.now.where);
  }
  if (report.failed == 0 && own_record && uid_may_run) {
    // What the sandbox moved out of the walk's way and back in keeps its
    // entries: the sweep walks the tree again once the UID has no lease.
    report.record_kept_revoked = true;
    own_record->revoked = true;
    if (!options.dry_run) registry.add_grant_record(*own_record);
  } else if (!options.dry_run && report.failed == 0) {
    registry.remove_grant_record(uid, tree);
  }
  return report;
}

Report revoke_path(UidRegistry& registry, uid_t uid, const std::filesystem::path& tree_arg, const WalkOptions& options,
                   bool uid_may_run) {
  require_in_range(registry, uid);
  std::filesystem::path tree = normal_tree(tree_arg);
  UniqueFd root;
  std::exception_ptr unopened;
  try {
    root = open_tree(tree);
  } catch (const UsageError&) {
    // Gone, or a symlink or a file in its place: the directory that was
    // granted may have been renamed, which its record can find.
    unopened = std::current_exception();
  }
  return revoke_tree(registry, uid, tree, root, options, uid_may_run, unopened);
}

}  // namespace

Report revoke(UidRegistry& registry, uid_t uid, const std::filesystem::path& tree, const WalkOptions& options) {
  return revoke_path(registry, uid, tree, options, registry.is_leased(uid));
}

std::size_t forget(UidRegistry& registry, uid_t uid, const std::filesystem::path& tree_arg) {
  require_in_range(registry, uid);
  std::filesystem::path tree = normal_tree(tree_arg);
  // Not created: without grants/ there is no record, and the refusal below
  // changes nothing.
  UniqueFd lock = registry.lock_acl_changes(/*create=*/false);
  std::optional<GrantRecord> found;
  GrantRecordScan scan = registry.scan_grant_records(uid);
  for (const GrantRecord& record : scan.records) {
    if (record.tree == tree) found = record;
  }
  if (!found) {
    // A damaged record may be the one meant: said, since forget cannot read
    // it (a human mends or removes it).
    std::string damaged;
    for (const DamagedGrantRecord& record : scan.damaged) damaged += "; damaged: " + record.why;
    throw UsageError(fmt::format("UID {} has no grant record for {} (`vmwarden uid list` counts each UID's records){}",
                                 uid, shown(tree), damaged));
  }
  if (registry.is_leased(uid)) {
    throw UsageError(fmt::format("UID {} is leased by a running sandbox, whose exit revokes its grants; stop it "
                                 "first",
                                 uid));
  }
  UniqueFd root;
  bool path_missing = false;
  try {
    root = open_tree(tree);
  } catch (const MissingTree&) {
    path_missing = true;
  } catch (const UsageError&) {
  }
  MovedRoots moved = reopen_moved(found->roots, tree, root);
  if (moved.any_unknown_but_absent) {
    std::string message = fmt::format("cannot tell what is left of the grant of {} to UID {}", shown(tree), uid);
    for (const std::string& why : moved.unknown) message += "; " + printable(why);
    throw UsageError(message);
  }
  if (moved.absent.empty()) {
    throw UsageError(fmt::format(
        "nothing the grant record of {} for UID {} names is out of reach: `vmwarden acl revoke --uid {} {}` removes "
        "what is left and the record{}",
        shown(tree), uid, uid, shown(tree),
        found->by_path || found->roots.empty()
            ? " (the record knows the tree by its path: if something else is there now, put the tree back or "
              "remove what took its place)"
            : ""));
  }
  // Only the directories whose filesystem is not mounted here leave the
  // record; whatever else it covers is left for revoke and sweep.
  GrantRecord kept = *found;
  std::erase_if(kept.roots, [&](const RecordedRoot& candidate) {
    return std::any_of(moved.absent.begin(), moved.absent.end(),
                       [&](const RecordedRoot& absent) { return absent.same_directory(candidate); });
  });
  // Rewritten in place (one atomic rename), never removed and written
  // again: a crash in between would lose what the record still covers.
  if (!kept.roots.empty() || (kept.by_path && !path_missing)) {
    registry.add_grant_record(kept);
  } else {
    registry.remove_grant_record(uid, tree);
  }
  return moved.absent.size();
}

SweepReport sweep(UidRegistry& registry, bool dry_run) {
  UniqueFd lock = registry.lock_acl_changes(/*create=*/!dry_run);
  SweepReport result;

  std::set<uid_t> leased;
  std::map<uid_t, UidInfo> allocated;  // as listed: release_as_seen() checks it is still so
  // Every id the registry ever handed out (allocated, released, or named
  // by a record): only theirs are a VM's. An id of the range that is a
  // host account or group (never handed out) keeps its entries.
  std::set<uid_t> handed_out;
  for (const UidInfo& info : registry.list(/*include_released=*/true)) {
    handed_out.insert(info.uid);
    if (!info.allocated) continue;
    allocated.emplace(info.uid, info);
    if (info.leased_by) leased.insert(info.uid);
  }
  GrantRecordScan scan = registry.scan_grant_records();
  std::vector<GrantRecord>& records = scan.records;
  for (const GrantRecord& record : records) handed_out.insert(record.uid);
  for (const DamagedGrantRecord& damaged : scan.damaged) {
    handed_out.insert(damaged.uid);
    result.damaged_records.push_back(damaged.why);
  }
  const UidRange range = registry.range();
  auto is_live_alias = [&](uid_t uid) {
    auto it = allocated.find(uid);
    return it != allocated.end() && (!it->second.alias.empty() || !it->second.damage.empty());
  };
  auto is_dead = [&](uid_t uid) {
    return range.contains(uid) && handed_out.count(uid) && !leased.count(uid) && !is_live_alias(uid);
  };
  // A record whose UID loses its entries in the record's directories (and
  // the record itself, once they are gone): a dead UID's, or one revoked
  // while its UID was leased, now that it is not.
  auto is_spent = [&](const GrantRecord& record) {
    return is_dead(record.uid) || (record.revoked && range.contains(record.uid) && !leased.count(record.uid));
  };
  // An alias keeps its entries in a tree it holds a record for (not one
  // revoked), and also in one nested with such a tree either way: its
  // entries there (and its files' set-ID bits) may be what that record
  // granted.
  auto keeps = [&](const GrantRecord& record, const std::filesystem::path& tree) {
    return !record.revoked && is_live_alias(record.uid) &&
           (record.tree == tree || strictly_below(record.tree, tree) || strictly_below(tree, record.tree));
  };

  struct RecordedTree {
    bool cross_mounts = false;
    bool by_path_alone = false;  // a record names no directory by handle
    // Each recorded directory, with the UIDs whose spent records name it.
    std::vector<std::pair<RecordedRoot, std::set<uid_t>>> roots;
  };
  std::map<std::filesystem::path, RecordedTree> trees;
  for (const GrantRecord& record : records) {
    RecordedTree& tree = trees[record.tree];
    tree.cross_mounts = tree.cross_mounts || record.cross_mounts;
    tree.by_path_alone = tree.by_path_alone || record.by_path || record.roots.empty();
    for (const RecordedRoot& root : record.roots) {
      auto it = std::find_if(tree.roots.begin(), tree.roots.end(),
                             [&](const auto& known) { return known.first.same_directory(root); });
      if (it == tree.roots.end()) it = tree.roots.insert(tree.roots.end(), {root, {}});
      if (is_spent(record)) it->second.insert(record.uid);
    }
  }

  for (const auto& [tree, recorded] : trees) {
    std::set<uid_t> kept;
    for (const GrantRecord& record : records) {
      if (keeps(record, tree)) kept.insert(record.uid);
    }
    SweepReport::Tree entry;
    entry.path = tree;
    // One tree's failure (a symlink in its place, a filesystem without ACLs,
    // an unreadable root) keeps its records and does not stop the others.
    try {
      UniqueFd root;
      std::string unopened;
      bool path_missing = false;
      try {
        root = open_tree(tree);
      } catch (const MissingTree& e) {
        path_missing = true;
        unopened = e.what();
      } catch (const UsageError& e) {
        unopened = e.what();
      }
      // Only directories a dead UID's record names are looked for: the
      // others' entries stay wherever those directories are now.
      std::vector<RecordedRoot> of_the_dead;
      for (const auto& [directory, uids] : recorded.roots) {
        if (!uids.empty()) of_the_dead.push_back(directory);
      }
      MovedRoots moved = reopen_moved(of_the_dead, tree, root);
      for (const std::string& why : moved.unknown) {
        ++entry.report.failed;
        entry.report.errors.push_back(printable(why));
      }
      WalkOptions options{.cross_mounts = recorded.cross_mounts, .dry_run = dry_run};
      if (root) {
        RemoveEditor editor([&](uid_t uid) {
          return range.contains(uid) && handed_out.count(uid) && !leased.count(uid) && !kept.count(uid);
        });
        entry.report += detail::walk_tree(root.get(), shown(tree), editor, options);
      }
      // A directory renamed away may now lie in another UID's granted tree,
      // which no record here speaks for: only the UIDs whose spent records
      // name that directory lose their entries there, and an alias not
      // where a record of its own that is not revoked covers it now.
      for (const MovedRoot& elsewhere : moved.found) {
        auto it = std::find_if(recorded.roots.begin(), recorded.roots.end(),
                               [&](const auto& known) { return known.first.same_directory(elsewhere.recorded); });
        std::set<uid_t> removed_there = it->second;
        for (const GrantRecord& record : records) {
          if (keeps(record, elsewhere.now.where)) removed_there.erase(record.uid);
        }
        RemoveEditor editor([&](uid_t uid) { return removed_there.count(uid) != 0; });
        entry.report += detail::walk_tree(elsewhere.now.dir.get(), elsewhere.now.where, editor, options);
        entry.report.moved.push_back(elsewhere.now.where);
      }
      if (!root) {
        // What is at the path now was never granted, unless a record knows
        // the tree by its path alone: then a symlink or a file there may be
        // the tree moved aside, its entries out of reach.
        if (!path_missing && recorded.by_path_alone) {
          ++entry.report.failed;
          entry.report.errors.push_back(printable(unopened));
        } else if (path_missing && moved.found.empty() && moved.unknown.empty()) {
          entry.missing = true;
          log::warning("sweep: {}", printable(unopened));
        }
      }
    } catch (const std::exception& e) {
      ++entry.report.failed;
      entry.report.errors.push_back(printable(e.what()));
    }
    result.trees.push_back(std::move(entry));
  }

  // The entries are gone from every recorded tree that could be walked without
  // failures: drop the records of dead UIDs there, then release dead
  // single-use UIDs that have no records left. A dry run counts what it
  // would drop and release.
  std::set<std::filesystem::path> clean;
  for (const SweepReport::Tree& tree : result.trees) {
    if (tree.report.failed == 0) clean.insert(tree.path);
  }
  std::map<uid_t, std::size_t> records_left;
  for (const GrantRecord& record : records) {
    if (is_spent(record) && clean.count(record.tree)) {
      if (!dry_run) registry.remove_grant_record(record.uid, record.tree);
      ++result.records_removed;
    } else {
      ++records_left[record.uid];
    }
  }
  // A damaged record's tree is unknown, its entries there out of reach: its
  // UID is never released (nor, with a record file left, handed out again).
  for (const DamagedGrantRecord& damaged : scan.damaged) ++records_left[damaged.uid];
  if (!dry_run) registry.remove_grant_leftovers();
  for (const auto& [uid, seen] : allocated) {
    if (!seen.alias.empty() || !seen.damage.empty() || leased.count(uid) || !range.contains(uid)) continue;
    // `records` was read under the lock that every grant takes: none came since.
    if (records_left.count(uid)) continue;
    try {
      if (!dry_run) registry.release_as_seen(seen);
      result.released.push_back(uid);
    } catch (const std::exception& e) {
      log::info("sweep: UID {} kept: {}", uid, printable(e.what()));
    }
  }
  return result;
}

std::string show(const std::filesystem::path& path, const UidRegistry* registry) {
  if (!path.is_absolute()) {
    throw UsageError(fmt::format("\"{}\" is a relative path; give an absolute path", printable(path.native())));
  }
  // Pinned O_PATH without following any symlink, anywhere on the path, then
  // read through /proc/self/fd/N: what is checked is what is read.
  open_how how{};
  how.flags = O_PATH | O_NOFOLLOW | O_CLOEXEC;
  how.resolve = RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
  long opened = syscall(SYS_openat2, AT_FDCWD, path.c_str(), &how, sizeof how);
  if (opened < 0) {
    if (errno == ENOENT) throw UsageError(fmt::format("{}: no such file or directory", printable(path.native())));
    if (errno == ELOOP) {
      throw UsageError(fmt::format("{}: the path goes through a symlink (ACLs are never read through one)",
                                   printable(path.native())));
    }
    throw_errno("open", printable(path.native()));
  }
  UniqueFd pinned(static_cast<int>(opened));
  struct stat st;
  check(::fstat(pinned.get(), &st), "fstat", printable(path.native()));
  if (S_ISLNK(st.st_mode)) throw UsageError(fmt::format("{}: a symlink (ACLs are never read through one)", printable(path.native())));
  std::string proc_path = fmt::format("/proc/self/fd/{}", pinned.get());

  std::map<uid_t, std::string> names;
  if (registry != nullptr) {
    for (const UidInfo& info : registry->list(true)) {
      std::string name = info.alias.empty() ? "single-use" : "alias " + info.alias;
      if (!info.allocated) name = "released";
      if (info.leased_by) name += fmt::format(", leased by pid {}", *info.leased_by);
      names[info.uid] = name;
    }
  }
  // Quoted as getfacl quotes it, so that the text still goes back through
  // `setfacl --restore`; escaped, since a name in a tree is a VM's choice.
  std::string out =
      fmt::format("# file: {}\n# owner: {}\n# group: {}\n", octal_escaped(path.native()), st.st_uid, st.st_gid);
  auto append = [&](acl_type_t type, std::string_view prefix) {
    acl_t acl = acl_get_file(proc_path.c_str(), type);
    if (acl == nullptr && errno == EOPNOTSUPP)
      throw UsageError(fmt::format("{}: its filesystem does not support POSIX ACLs", shown(path)));
    if (acl == nullptr) throw_errno("read ACL of", shown(path));
    char* text = acl_to_any_text(acl, nullptr, '\n', TEXT_NUMERIC_IDS | TEXT_SOME_EFFECTIVE | TEXT_SMART_INDENT);
    acl_free(acl);
    if (text == nullptr) throw_errno("acl_to_any_text", shown(path));
    std::string_view rest = text;
    while (!rest.empty()) {
      auto end = rest.find('\n');
      std::string line(rest.substr(0, end));
      rest = end == std::string_view::npos ? std::string_view() : rest.substr(end + 1);
      if (line.empty()) continue;
      out += prefix;
      out += line;
      // Named groups too: a VM's gid is its uid.
      for (std::string_view tag : {"user:", "group:"}) {
        if (!line.starts_with(tag)) continue;
        std::size_t colon = line.find(':', tag.size());
        std::optional<uid_t> id = parse_id(std::string_view(line).substr(tag.size(), colon - tag.size()));
        if (auto it = id ? names.find(*id) : names.end(); it != names.end()) out += "\t# vmwarden: " + it->second;
      }
      out += '\n';
    }
    acl_free(text);
  };
  append(ACL_TYPE_ACCESS, "");
  if (S_ISDIR(st.st_mode)) append(ACL_TYPE_DEFAULT, "default:");
  return out;
}

ScopedGrants::ScopedGrants(ScopedGrants&& other) noexcept
    : registry_(other.registry_), uid_(other.uid_), trees_(std::move(other.trees_)) {
  other.trees_.clear();
}

ScopedGrants::~ScopedGrants() { revoke_all_or_warn(); }

void ScopedGrants::revoke_all_or_warn() noexcept {
  try {
    revoke_all();
  } catch (const std::exception& e) {
    log::warning("revoking the grants of UID {}: {} (acl sweep will remove them)", uid_, printable(e.what()));
  }
}

Granted ScopedGrants::grant(const std::filesystem::path& tree, Access access, const WalkOptions& options) {
  // Remembered first: a grant that fails halfway is still revoked (by its
  // path, then; once granted, through the directory the grant opened).
  trees_.push_back({tree, options, {}});
  Granted granted;
  try {
    granted = grant_tree(*registry_, uid_, tree, access, options);
  } catch (...) {
    // Refused before its record was written (a symlink in the path, a UID
    // not allocated, ...), nothing was changed: a revoke by path would only
    // fail the same way and warn of grants that were never made.
    // Kept when that cannot be told.
    bool recorded = true;
    try {
      std::filesystem::path normal = normal_tree(tree);
      std::vector<GrantRecord> records = registry_->grant_records(uid_);
      recorded = std::any_of(records.begin(), records.end(), [&](const GrantRecord& r) { return r.tree == normal; });
    } catch (const std::exception&) {
    }
    if (!recorded) trees_.pop_back();
    throw;
  }
  // Its own copy, rewound at revoke (the walk listed it to its end).
  trees_.back().root = UniqueFd(::fcntl(granted.root.get(), F_DUPFD_CLOEXEC, 3));
  if (!trees_.back().root) throw_errno("dup", shown(tree));
  return granted;
}

void ScopedGrants::revoke_all() {
  // Every tree is revoked, whatever fails on another: one failure must not
  // leave the rest granted. A failed tree keeps its grant record, so sweep
  // finishes it later; it is not tried again here.
  std::vector<std::string> failures;
  while (!trees_.empty()) {
    GrantedTree granted = std::move(trees_.back());
    trees_.pop_back();
    const std::filesystem::path& tree = granted.tree;
    try {
      // Through the directory the grant opened: renamed away meanwhile, it
      // is still found, and nothing put under its name is walked instead.
      if (granted.root && ::lseek(granted.root.get(), 0, SEEK_SET) < 0) throw_errno("rewind", shown(tree));
      // Its sandbox has ended: the lease this holds is nobody's running.
      Report report = granted.root ? revoke_tree(*registry_, uid_, normal_tree(tree), granted.root, granted.options,
                                                 /*uid_may_run=*/false)
                                   : revoke_path(*registry_, uid_, tree, granted.options, /*uid_may_run=*/false);
      if (report.failed != 0) failures.push_back(fmt::format("{}: {}", shown(tree), report.summary()));
    } catch (const MissingTree&) {
      // The tree is gone: nothing left to revoke there.
    } catch (const std::exception& e) {
      failures.push_back(fmt::format("{}: {}", shown(tree), printable(e.what())));
    }
  }
  if (failures.empty()) return;
  std::string message = fmt::format("revoking the grants of UID {} failed in {} tree(s)", uid_, failures.size());
  for (const std::string& failure : failures) message += "; " + failure;
  throw std::runtime_error(message);
}

}  // namespace vmwarden::acl
