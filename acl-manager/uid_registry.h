// The per-VM UID registry: aliases (persistent named UIDs), single-use UIDs,
// leases and grant records. All state is plain files under
// STATE_DIR/uids and STATE_DIR/grants, leases are flock'ed files under
// RUNTIME_DIR/_uid-leases; doc/ACL.md describes the layout and the rules.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/locations.h"
#include "common/unique_fd.h"

namespace vmwarden::acl {

enum class Access { ro, rw };
std::string_view to_string(Access access);

struct UidRange {
  uid_t first = 0;
  uid_t last = 0;
  bool contains(uid_t uid) const { return uid >= first && uid <= last; }
  std::string to_string() const;  // "FIRST-LAST"
};

// 0x70000000 + 64 Ki: above the nspawn container range, below 2^31, far from
// login users (1000-60000), DynamicUser (61184-65519) and useradd's subordinate
// ranges (100000 upwards).
inline constexpr UidRange kDefaultUidRange{1879048192u, 1879048192u + 65535u};

// Parses "FIRST-LAST" (decimal). Throws UsageError saying what is wrong.
UidRange parse_uid_range(std::string_view text);

struct RegistryOptions {
  // Unset: CONFIG_DIR/uid-range if that file exists, else kDefaultUidRange.
  std::optional<UidRange> range;
  // UIDs inside any range listed here (subuid(5) format) are never handed out.
  std::vector<std::filesystem::path> subordinate_id_files{"/etc/subuid", "/etc/subgid"};
};

// Which file recorded an allocation: a release and a new allocation of the
// same UID always make a new one (a new inode, a new change time).
struct AllocationRecord {
  dev_t device = 0;
  ino_t inode = 0;
  std::int64_t changed_ns = 0;  // st_ctim
  bool operator==(const AllocationRecord&) const = default;
};

struct UidInfo {
  uid_t uid = 0;
  std::string alias;               // empty: single-use (or a damaged record naming no valid alias)
  bool allocated = false;          // false: released (only listed with include_released)
  std::uint64_t released_seq = 0;  // order of release, for released UIDs
  std::optional<pid_t> leased_by;  // the pid holding the lease
  std::size_t grant_records = 0;
  // Not empty: the allocation record is damaged, and says why (its
  // content is not "alias NAME" nor "single-use", or another record names
  // the same alias, or it cannot be read). Such a UID is never handed out,
  // leased, nor released (but by hand, see doc/ACL.md).
  std::string damage;
  AllocationRecord record;  // allocated UIDs: the record file as listed
};

// A directory granted under a record's path, as the kernel can find it
// again wherever it is renamed to on its filesystem: its file handle
// (name_to_handle_at(2)), and which filesystem decodes it.
struct RecordedRoot {
  dev_t device = 0;     // as it was at the grant (for messages)
  ino_t inode = 0;      // likewise
  std::string fs_type;  // "ext4" (for ext2 and ext3 too), "tmpfs", "xfs", "btrfs", "f2fs", "bcachefs"
  std::string fs_id;    // "uuid:HEX" (FS_IOC_GETFSUUID) or "fsid:HEX" (statfs f_fsid)
  std::string boot;     // tmpfs: the boot it was granted in (a tmpfs does not outlive it); else empty
  int handle_type = 0;
  std::string handle;  // the handle's bytes
  bool operator==(const RecordedRoot&) const = default;
  // The same directory: the same handle on the same filesystem, whatever
  // device number the filesystem has had since.
  bool same_directory(const RecordedRoot& other) const {
    return fs_type == other.fs_type && fs_id == other.fs_id && handle_type == other.handle_type &&
           handle == other.handle;
  }
};

struct GrantRecord {
  uid_t uid = 0;
  std::filesystem::path tree;
  Access access = Access::ro;
  bool cross_mounts = false;
  // The directories granted as `tree`: usually one, more if the path was
  // given to another directory while the first kept its entries.
  std::vector<RecordedRoot> roots;
  // Some grant of `tree` found no handle for its directory (a filesystem
  // without usable ones): that directory is known by the path alone, so
  // the path failing to open does not show that nothing is left. Kept once
  // set, as cross_mounts is. (A record with no roots is known by its path
  // alone too.)
  bool by_path = false;
  // Revoked while the UID was leased: its sandbox may have moved
  // directories out of the walk's way and back. The record grants nothing
  // any more (the sweep keeps no entry of the UID for it), and stays so that
  // the sweep walks the tree again once the UID has no lease, then drops it.
  // A grant of the tree makes it a grant again.
  bool revoked = false;
};

// A file in grants/UID that is not a record vmwarden can use: it cannot
// be read, has no "path /absolute/tree" line, or is not named by its
// path's key (a copy). Its tree is unknown, so the UID's entries there
// cannot be found: sweep reports it and never releases the UID.
struct DamagedGrantRecord {
  uid_t uid = 0;
  // "FILE[:LINE]: what is wrong; what would be right", printable().
  std::string why;
};

struct GrantRecordScan {
  std::vector<GrantRecord> records;
  std::vector<DamagedGrantRecord> damaged;
};

class UidRegistry;

// A held UID: a flock on RUNTIME_DIR/_uid-leases/UID that the kernel drops
// when the holder dies, however it dies. Move-only. Destroying or release()ing
// the lease of a single-use UID returns the UID to the pool.
class UidLease {
 public:
  UidLease(UidLease&& other) noexcept = default;
  UidLease& operator=(UidLease&& other) noexcept;
  UidLease(const UidLease&) = delete;
  UidLease& operator=(const UidLease&) = delete;
  ~UidLease();

  uid_t uid() const { return uid_; }
  const std::string& alias() const { return alias_; }
  bool single_use() const { return alias_.empty(); }
  explicit operator bool() const { return static_cast<bool>(lock_); }

  // Ends the lease now (throws on failure; the destructor only logs).
  void release();

 private:
  friend class UidRegistry;
  UidLease(Locations locations, uid_t uid, std::string alias, UniqueFd lock)
      : locations_(std::move(locations)), uid_(uid), alias_(std::move(alias)), lock_(std::move(lock)) {}

  Locations locations_;
  uid_t uid_ = 0;
  std::string alias_;
  UniqueFd lock_;
};

class UidRegistry {
 public:
  // Reads the range (see RegistryOptions); creates nothing until first used.
  explicit UidRegistry(const Locations& locations, RegistryOptions options = {});

  const UidRange& range() const { return range_; }
  const Locations& locations() const { return locations_; }

  // For a VM with [uid] alias = NAME: the alias's UID (allocated on first use),
  // leased. Fails if another live process holds it.
  UidLease lease_alias(std::string_view alias);
  // For a transient VM: a fresh single-use UID, leased.
  UidLease lease_single_use();

  // Without a lease (the CLI): the alias's UID, allocated on first use.
  uid_t allocate_alias(std::string_view alias);
  // Without a lease: a single-use UID. Nothing holds it, so the next sweep
  // releases it unless `uid release` comes first.
  uid_t allocate_single_use();
  // Returns an allocated UID to the pool (one allocated before the range
  // moved too). UsageError if it is not allocated; fails if it is leased or
  // its record is damaged.
  void release(uid_t uid);
  // For acl sweep, which decides from a list() taken long before: releases
  // `seen.uid` only if, under the registry's lock, its allocation is still
  // the single-use record `seen` describes (the same file, not damaged) and
  // nothing holds its lease. Otherwise changes nothing and throws saying
  // why (the UID was released and allocated again meanwhile, perhaps as an
  // alias).
  void release_as_seen(const UidInfo& seen);

  // The alias's UID; nullopt if it has none. Throws, as lease_alias() and
  // allocate_alias() do, if its record is damaged or outside the range:
  // `audit` and the checks before a lease refuse it as the lease would.
  std::optional<uid_t> find_alias(std::string_view alias) const;
  std::optional<UidInfo> find(uid_t uid) const;
  // Allocated now (inside the range or, from before the range changed, outside it).
  bool is_allocated(uid_t uid) const;
  std::vector<UidInfo> list(bool include_released = false) const;
  bool is_leased(uid_t uid) const;

  // Resolves a --uid argument: a number in the range (or an allocated one
  // from before the range moved) or an existing alias.
  // UsageError otherwise.
  uid_t resolve(std::string_view uid_or_alias) const;

  // The records that can be used; damaged ones are left out (see
  // scan_grant_records, which says what they are).
  std::vector<GrantRecord> grant_records() const;
  std::vector<GrantRecord> grant_records(uid_t uid) const;
  // The same, with the damaged records beside them, never skipped silently.
  GrantRecordScan scan_grant_records() const;
  GrantRecordScan scan_grant_records(uid_t uid) const;
  void add_grant_record(const GrantRecord& record);
  // add_grant_record for a grant: the UID must be allocated, which is checked
  // under the registry's lock, so that no release (and no reuse of the UID)
  // comes between the check and the record. UsageError if it is not.
  void record_grant(const GrantRecord& record);
  // Removes the record, and the files the tree's grants verified.
  void remove_grant_record(uid_t uid, const std::filesystem::path& tree);
  // Where grants of `tree` to `uid` keep the files they verified
  // (verified_files.h): STATE_DIR/verified/UID/KEY, KEY as the record's.
  std::filesystem::path verified_files_path(uid_t uid, const std::filesystem::path& tree) const;
  // Removes what writes of grant records cut short by a crash left in
  // grants/UID/, and grants/UID/ itself when it holds no record.
  void remove_grant_leftovers();

  // The flock serialising every ACL change (grant, revoke, sweep), so that
  // two walks never interleave their read-modify-write on one object.
  // create=false: where no grant was ever recorded, create nothing and
  // return an empty fd (a dry run's view).
  UniqueFd lock_acl_changes(bool create = true) const;

 private:
  struct Allocation;
  struct Snapshot;
  UniqueFd lock_registry(bool create = true) const;
  // `with_released` false: the allocations only (see pick_never_used).
  Snapshot load(bool with_released = true) const;
  void recover(const Snapshot& snapshot) const;
  // allocated/UID as load() takes it; nullopt when it is gone.
  static std::optional<Allocation> read_allocation(const std::filesystem::path& file);
  // alias_uid() on a fresh load, under the lock; a refusal is thrown.
  std::optional<uid_t> known_alias(std::string_view alias, bool in_range_only) const;
  // The alias's UID in `snapshot`, nullopt if it has none. `refusal` says
  // why it must not be used when its record is damaged or (if
  // `in_range_only`) it lies outside the range.
  std::optional<uid_t> alias_uid(const Snapshot& snapshot, std::string_view alias, bool in_range_only,
                                 std::string& refusal) const;
  void refuse_if_leased(uid_t uid) const;
  // Above the high-water mark, without listing released/; nullopt when the
  // mark is missing or the range above it is used up.
  std::optional<uid_t> pick_never_used(const Snapshot& allocations) const;
  uid_t pick_single_use(const Snapshot& snapshot) const;
  // `picked`: a UID pick_single_use() already chose under the same lock.
  uid_t allocate_locked(std::string_view alias, Snapshot& snapshot, std::optional<uid_t> picked = std::nullopt);
  UniqueFd take_lease(uid_t uid) const;
  bool lease_held(uid_t uid) const;
  bool never_hand_out(uid_t uid) const;
  // Known to the user or group databases (answers cached in STATE_DIR/uids/vetted).
  bool known_to_system(uid_t uid) const;
  void remove_leftovers_of(const std::filesystem::path& grants_of_uid);

  Locations locations_;
  RegistryOptions options_;
  UidRange range_;
  std::string range_origin_;  // where range_ comes from, for messages
  friend class UidLease;
};

}  // namespace vmwarden::acl
