#include "acl-manager/uid_registry.h"

#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <limits>
#include <map>
#include <sstream>
#include <stdexcept>

#include <fmt/core.h>
#include <fmt/format.h>

#include "acl-manager/state_dirs.h"
#include "acl-manager/store.h"
#include "common/accounts.h"
#include "common/error.h"
#include "common/file_kind.h"
#include "common/printable.h"
#include "common/log.h"
#include "common/suggest.h"
#include "common/uid_alias.h"

namespace vmwarden::acl {

using detail::check_state_directory;
using detail::Link;
using detail::list_names;
using detail::lock_file;
using detail::make_directories;
using detail::make_state_directory;
using detail::read_small_file;
using detail::remove_durably;
using detail::warn_once;
using detail::write_atomically;

namespace {

struct Paths {
  std::filesystem::path uids, allocated, released, registry_lock, grants, grants_lock, verified, leases;

  explicit Paths(const Locations& locations)
      : uids(locations.state_dir / "uids"),
        allocated(uids / "allocated"),
        released(uids / "released"),
        registry_lock(uids / "lock"),
        grants(locations.state_dir / "grants"),
        grants_lock(grants / "lock"),
        verified(locations.state_dir / "verified"),
        leases(locations.runtime_dir / "_uid-leases") {}

  std::filesystem::path lease(uid_t uid) const { return leases / std::to_string(uid); }
  std::filesystem::path grants_of(uid_t uid) const { return grants / std::to_string(uid); }
  std::filesystem::path verified_of(uid_t uid) const { return verified / std::to_string(uid); }
};

template <typename T>
std::optional<T> parse_number(std::string_view text, int base = 10) {
  T value{};
  if (text.empty() || text.size() > 20) return std::nullopt;
  auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value, base);
  if (error != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return value;
}

// A directory entry names a UID only as its decimal digits, without a
// sign, spaces or leading zeros: from_chars reads "01879048204" as
// 1879048204, but everything else opens allocated/1879048204.
std::optional<uid_t> uid_named(std::string_view name) {
  auto uid = parse_number<uid_t>(name);
  if (!uid || std::to_string(*uid) != name) return std::nullopt;
  return uid;
}

std::string_view trim(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t' || text.front() == '\n')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t' || text.back() == '\n')) text.remove_suffix(1);
  return text;
}

// 64-bit FNV-1a: stable across builds, which std::hash is not.
std::string tree_key(const std::filesystem::path& tree) {
  std::uint64_t hash = 0xcbf29ce484222325ull;
  for (unsigned char c : tree.string()) {
    hash ^= c;
    hash *= 0x100000001b3ull;
  }
  return fmt::format("{:016x}", hash);
}

// SEQ is the release time in nanoseconds since the epoch, 20 digits wide so
// that `ls` lists the records in release order.
std::string released_name(std::uint64_t seq, uid_t uid) { return fmt::format("{:020}-{}", seq, uid); }

// The UID as uid_named() takes it: the same UID under another spelling is
// not a record. SEQ only orders the records, its width matters not.
bool parse_released_name(std::string_view name, std::uint64_t& seq, uid_t& uid) {
  auto dash = name.find('-');
  if (dash == std::string_view::npos) return false;
  auto s = parse_number<std::uint64_t>(name.substr(0, dash));
  auto u = uid_named(name.substr(dash + 1));
  if (!s || !u) return false;
  seq = *s;
  uid = *u;
  return true;
}

void warn_not_an_entry(const std::filesystem::path& file, std::string_view named) {
  warn_once(fmt::format("{}: not a registry entry ({}); ignored", printable(file.string()), named));
}

constexpr std::string_view kLeaseContent = "the lease holder's \"pid N\"";
constexpr std::string_view kAllocationContent =
    "\"alias NAME\" (NAME: [a-z][a-z0-9_.-]{0,63}) or \"single-use\"";

// allocated/UID's content: "" for a single-use UID, the alias's name, or
// nullopt when it is neither (damage).
std::optional<std::string> parse_allocation(std::string_view content) {
  // A single-use record is created in place: a crash can leave any prefix
  // of it, even an empty file, which means the same.
  if (std::string_view("single-use\n").starts_with(content)) return std::string();
  std::string_view text = content;
  if (text.ends_with('\n')) text.remove_suffix(1);
  if (text.starts_with("alias ") && valid_uid_alias(text.substr(6))) return std::string(text.substr(6));
  return std::nullopt;
}

std::optional<pid_t> lease_holder_pid(const Paths& paths, uid_t uid) {
  auto content = read_small_file(paths.lease(uid), kLeaseContent);
  if (!content) return std::nullopt;
  std::string_view text = trim(*content);
  if (text.starts_with("pid ")) text.remove_prefix(4);
  return parse_number<pid_t>(text);
}

bool lease_is_held(const Paths& paths, uid_t uid) {
  UniqueFd fd(::open(paths.lease(uid).c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK));
  if (!fd) {
    if (errno == ENOENT) return false;
    throw_errno("open", paths.lease(uid).string());
  }
  // Opened non-blocking: a FIFO there must not hang the caller.
  detail::require_regular_file(fd.get(), paths.lease(uid), kLeaseContent);
  if (::flock(fd.get(), LOCK_SH | LOCK_NB) == 0) return false;
  if (errno == EWOULDBLOCK) return true;
  throw_errno("flock", paths.lease(uid).string());
}

// The release's place in the reuse order: the time, taken under the
// registry lock, so that no directory listing is needed at release. A clock
// set back can only change which released UID is reused first.
std::uint64_t release_seq() {
  timespec now{};
  ::clock_gettime(CLOCK_REALTIME, &now);
  return static_cast<std::uint64_t>(now.tv_sec) * 1'000'000'000u + static_cast<std::uint64_t>(now.tv_nsec);
}

// Under the registry lock: the allocation record becomes the release record
// in one rename, so after a crash the UID is either allocated or released,
// never both nor neither (a rename creates no inode and frees none, which
// makes it the cheapest step too). An allocation record lost in a power
// failure leaves nothing to rename: the release record is created instead.
// A single-use UID's release at the end of its lease need not be durable: if
// a crash loses it, the UID is found allocated and unleased, and the next
// sweep releases it.
void release_locked(const Paths& paths, uid_t uid, bool durable) {
  make_state_directory(paths.released, 0755, Link::refuse);
  std::string released = released_name(release_seq(), uid);
  if (!detail::move_exclusively(paths.allocated, std::to_string(uid), paths.released, released, durable)) {
    // Empty: a crash leaves it whole or absent.
    detail::create_exclusively(paths.released, released, "", durable);
  }
  ::unlink(paths.lease(uid).c_str());
}

std::vector<std::pair<uid_t, uid_t>> read_subordinate_ranges(const std::vector<std::filesystem::path>& files) {
  std::vector<std::pair<uid_t, uid_t>> ranges;
  for (const auto& file : files) {
    // A missing file lists no range; one that cannot be read fails the
    // allocation, as an unreadable passwd database does, rather than count
    // as empty and let a subordinate ID be handed out.
    std::optional<std::string> content = read_small_file(file, "subordinate id ranges", /*follow=*/true);
    if (!content) continue;
    std::string_view rest = *content;
    while (!rest.empty()) {
      auto end = rest.find('\n');
      std::string_view line = rest.substr(0, end);
      rest = end == std::string_view::npos ? std::string_view() : rest.substr(end + 1);
      line = trim(line);
      if (line.empty() || line.front() == '#') continue;
      auto first_colon = line.find(':');
      auto second_colon = line.find(':', first_colon + 1);
      if (first_colon == std::string_view::npos || second_colon == std::string_view::npos) continue;
      auto start = parse_number<std::uint64_t>(line.substr(first_colon + 1, second_colon - first_colon - 1));
      auto count = parse_number<std::uint64_t>(line.substr(second_colon + 1));
      if (!start || !count || *count == 0) continue;
      std::uint64_t last = std::min<std::uint64_t>(*start + *count - 1, std::numeric_limits<uid_t>::max());
      ranges.emplace_back(static_cast<uid_t>(std::min<std::uint64_t>(*start, last)), static_cast<uid_t>(last));
    }
  }
  return ranges;
}

}  // namespace

std::string_view to_string(Access access) { return access == Access::rw ? "rw" : "ro"; }

std::string UidRange::to_string() const { return fmt::format("{}-{}", first, last); }

UidRange parse_uid_range(std::string_view text) {
  text = trim(text);
  auto dash = text.find('-');
  std::optional<std::uint64_t> first, last;
  if (dash != std::string_view::npos) {
    first = parse_number<std::uint64_t>(trim(text.substr(0, dash)));
    last = parse_number<std::uint64_t>(trim(text.substr(dash + 1)));
  }
  if (!first || !last) {
    throw UsageError(fmt::format("invalid UID range \"{}\": expected FIRST-LAST in decimal, e.g. {}",
                                 printable(text), kDefaultUidRange.to_string()));
  }
  if (*first == 0 || *last < *first || *last > 0x7fffffffu) {
    throw UsageError(
        fmt::format("invalid UID range \"{}\": need 0 < FIRST <= LAST <= 2147483647", printable(text)));
  }
  return UidRange{static_cast<uid_t>(*first), static_cast<uid_t>(*last)};
}

namespace {

// CONFIG_DIR/uid-range: one line FIRST-LAST, and comments. A mistake is
// reported at FILE:LINE:COL, as a definition's are.
UidRange read_range_file(const std::filesystem::path& file, std::string_view content) {
  std::optional<UidRange> range;
  std::size_t range_line = 0;
  std::size_t number = 0;
  for (std::string_view rest = content; !rest.empty();) {
    auto end = rest.find('\n');
    std::string_view raw = rest.substr(0, end);
    rest = end == std::string_view::npos ? std::string_view() : rest.substr(end + 1);
    ++number;
    std::string_view line = trim(raw);
    if (line.empty() || line.front() == '#') continue;
    std::string where = fmt::format("{}:{}:{}", file.string(), number, line.data() - raw.data() + 1);
    if (range) {
      throw UsageError(fmt::format("{}: a second range \"{}\": the file holds one FIRST-LAST, given on line {}", where,
                                   printable(line), range_line));
    }
    try {
      range = parse_uid_range(line);
      range_line = number;
    } catch (const UsageError& e) {
      throw UsageError(fmt::format("{}: {}", where, e.what()));
    }
  }
  if (!range) {
    throw UsageError(fmt::format("{}: holds no UID range: expected a line FIRST-LAST in decimal, e.g. {}",
                                 file.string(), kDefaultUidRange.to_string()));
  }
  return *range;
}

}  // namespace

// ---- UidLease ----

UidLease& UidLease::operator=(UidLease&& other) noexcept {
  if (this != &other) {
    try {
      release();
    } catch (const std::exception& e) {
      log::warning("releasing UID {}: {}", uid_, e.what());
    }
    locations_ = std::move(other.locations_);
    uid_ = other.uid_;
    alias_ = std::move(other.alias_);
    lock_ = std::move(other.lock_);
  }
  return *this;
}

UidLease::~UidLease() {
  try {
    release();
  } catch (const std::exception& e) {
    log::warning("releasing UID {}: {} (acl sweep will release it)", uid_, e.what());
  }
}

void UidLease::release() {
  if (!lock_) return;
  Paths paths(locations_);
  {
    UniqueFd registry = lock_file(paths.registry_lock);
    if (single_use()) {
      release_locked(paths, uid_, /*durable=*/false);
    } else {
      ::unlink(paths.lease(uid_).c_str());
    }
  }
  lock_.reset();
}

// ---- UidRegistry ----

struct UidRegistry::Allocation {
  std::string alias;   // "" for single-use
  std::string damage;  // not empty: why the record is not trusted
  AllocationRecord record;
};

struct UidRegistry::Snapshot {
  std::map<uid_t, Allocation> allocated;
  std::map<uid_t, std::uint64_t> released;  // uid -> latest release seq
  std::vector<std::string> stale;           // released/ names to delete
  std::vector<std::string> temporaries;     // in uids/, allocated/ and released/
};

UidRegistry::UidRegistry(const Locations& locations, RegistryOptions options)
    : locations_(locations), options_(std::move(options)) {
  detail::require_short_names(locations_.state_dir, "the state directory");
  detail::require_short_names(locations_.runtime_dir, "the runtime directory");
  detail::require_short_names(locations_.config_dir, "the configuration directory");
  std::filesystem::path file = locations_.config_dir / "uid-range";
  if (options_.range) {
    range_ = *options_.range;
    range_origin_ = "given by the caller";
  } else {
    // A directory there reads as EISDIR, which would say nothing of what
    // belongs there.
    struct stat st {};
    if (::stat(file.c_str(), &st) == 0 && !S_ISREG(st.st_mode))
      throw UsageError(fmt::format("{} is not a regular file: it should hold the UID range as FIRST-LAST, e.g. {}",
                                   printable(file.string()), kDefaultUidRange.to_string()));
    // Followed if a symlink: root's configuration directory, which NixOS
    // and configuration management fill with links.
    std::optional<std::string> content = read_small_file(file, "the UID range", /*follow=*/true);
    if (content) {
      range_ = read_range_file(file, *content);
      range_origin_ = fmt::format("set in {}", file.string());
    } else {
      range_ = kDefaultUidRange;
      range_origin_ = fmt::format("the default; {} changes it", file.string());
    }
  }
}

UniqueFd UidRegistry::lock_registry(bool create) const {
  Paths paths(locations_);
  // Every use of the registry passes here first: its directories are
  // checked before a record in them is read or written (see state_dirs.h).
  // Once they are root's alone, nobody else can swap one between the check
  // and the use.
  if (create) {
    make_state_directory(locations_.state_dir, 0755, Link::follow);
    make_state_directory(paths.uids, 0755, Link::refuse);
  } else {
    check_state_directory(locations_.state_dir, Link::follow);
    // Reading a registry that does not exist yet must not create it.
    if (!check_state_directory(paths.uids, Link::refuse)) return UniqueFd();
  }
  make_state_directory(paths.allocated, 0755, Link::refuse);
  make_state_directory(paths.released, 0755, Link::refuse);
  // The leases are read under this lock too.
  if (check_state_directory(locations_.runtime_dir, Link::follow)) check_state_directory(paths.leases, Link::refuse);
  return lock_file(paths.registry_lock);
}

UniqueFd UidRegistry::lock_acl_changes(bool create) const {
  Paths paths(locations_);
  // The grant records are root's as the registry is (state_dirs.h).
  if (!create) {
    if (!check_state_directory(locations_.state_dir, Link::follow) ||
        !check_state_directory(paths.grants, Link::refuse))
      return UniqueFd();
  } else {
    make_state_directory(locations_.state_dir, 0755, Link::follow);
    make_state_directory(paths.grants, 0755, Link::refuse);
  }
  return lock_file(paths.grants_lock);
}

UidRegistry::Snapshot UidRegistry::load(bool with_released) const {
  Paths paths(locations_);
  Snapshot snapshot;
  // The caches in uids/ (vetted, never-used) are written atomically too.
  for (const std::string& name : list_names(paths.uids)) {
    if (detail::is_temporary(name)) snapshot.temporaries.push_back((paths.uids / name).string());
  }
  // A damaged record keeps its UID out of the pool, and is otherwise left
  // alone for a human to look at: never guessed at, handed out, leased or
  // released (doc/ACL.md).
  std::map<std::string, std::vector<uid_t>> by_alias;
  for (const std::string& name : list_names(paths.allocated)) {
    std::filesystem::path file = paths.allocated / name;
    if (detail::is_temporary(name)) {
      snapshot.temporaries.push_back(file.string());
      continue;
    }
    auto uid = uid_named(name);
    if (!uid) {
      warn_not_an_entry(file, "an allocation is named by its UID in decimal");
      continue;
    }
    std::optional<Allocation> allocation = read_allocation(file);
    if (!allocation) continue;
    if (allocation->damage.empty() && !allocation->alias.empty()) by_alias[allocation->alias].push_back(*uid);
    snapshot.allocated.emplace(*uid, std::move(*allocation));
  }
  // One alias, one UID: which of two records is the alias's is a guess.
  for (const auto& [alias, uids] : by_alias) {
    if (uids.size() < 2) continue;
    for (uid_t uid : uids) {
      std::vector<std::string> others;
      for (uid_t other : uids)
        if (other != uid) others.push_back((paths.allocated / std::to_string(other)).string());
      snapshot.allocated[uid].damage =
          fmt::format("{}: \"alias {}\" is recorded in {} too, and an alias has one UID",
                      (paths.allocated / std::to_string(uid)).string(), alias, fmt::join(others, " and "));
    }
  }
  for (const auto& [uid, allocation] : snapshot.allocated) {
    if (!allocation.damage.empty())
      warn_once(fmt::format("{}; UID {} is kept out of the pool and left alone until that is mended by hand",
                            allocation.damage, uid));
  }
  if (!with_released) return snapshot;
  std::map<uid_t, std::string> latest_name;
  for (const std::string& name : list_names(paths.released)) {
    if (detail::is_temporary(name)) {
      snapshot.temporaries.push_back((paths.released / name).string());
      continue;
    }
    std::uint64_t seq;
    uid_t uid;
    if (!parse_released_name(name, seq, uid)) {
      warn_not_an_entry(paths.released / name, "a release is named SEQ-UID, both in decimal");
      continue;
    }
    if (snapshot.allocated.count(uid)) {
      snapshot.stale.push_back(name);
      continue;
    }
    auto [it, inserted] = snapshot.released.emplace(uid, seq);
    if (!inserted) {
      if (seq > it->second) {
        snapshot.stale.push_back(latest_name[uid]);
        it->second = seq;
      } else {
        snapshot.stale.push_back(name);
        continue;
      }
    }
    latest_name[uid] = name;
  }
  return snapshot;
}

std::optional<UidRegistry::Allocation> UidRegistry::read_allocation(const std::filesystem::path& file) {
  Allocation allocation;
  try {
    struct stat st {};
    std::optional<std::string> content = read_small_file(file, kAllocationContent, /*follow=*/false, &st);
    if (!content) return std::nullopt;
    allocation.record = {st.st_dev, st.st_ino, std::int64_t{st.st_ctim.tv_sec} * 1'000'000'000 + st.st_ctim.tv_nsec};
    if (std::optional<std::string> alias = parse_allocation(*content)) {
      allocation.alias = std::move(*alias);
    } else {
      std::string_view shown = std::string_view(*content).substr(0, 80);
      allocation.damage = fmt::format("{}: expected {}, found \"{}\"{}", printable(file.string()), kAllocationContent,
                                      printable(shown), content->size() > shown.size() ? "..." : "");
    }
  } catch (const std::exception& e) {
    // Unreadable (a FIFO, a directory, no permission): damaged too, so that
    // the other records can still be used.
    allocation.damage = e.what();
  }
  return allocation;
}

std::optional<uid_t> UidRegistry::alias_uid(const Snapshot& snapshot, std::string_view alias, bool in_range_only,
                                            std::string& refusal) const {
  for (const auto& [uid, allocation] : snapshot.allocated) {
    if (allocation.alias != alias) continue;
    if (!allocation.damage.empty()) {
      refusal = fmt::format("alias {} cannot be used: {}", alias, allocation.damage);
    } else if (in_range_only && !range_.contains(uid)) {
      refusal = fmt::format(
          "alias {} has UID {}, outside the managed range {} ({}): vmwarden does not run it there; if the range "
          "moved, `vmwarden uid release {}` lets the alias have a UID in the range (grant its trees again then)",
          alias, uid, range_.to_string(), range_origin_, uid);
    }
    return uid;
  }
  return std::nullopt;
}

void UidRegistry::recover(const Snapshot& snapshot) const {
  Paths paths(locations_);
  for (const std::string& path : snapshot.temporaries) ::unlink(path.c_str());
  for (const std::string& name : snapshot.stale) remove_durably(paths.released, name);
}

bool UidRegistry::never_hand_out(uid_t uid) const {
  if (uid == 0 || uid == 65534 || uid == 65535 || uid == static_cast<uid_t>(-1)) return true;
  for (auto [first, last] : read_subordinate_ranges(options_.subordinate_id_files)) {
    if (uid >= first && uid <= last) return true;
  }
  return known_to_system(uid);
}

namespace {

// How long an answer of the user and group databases is trusted, and how
// many UIDs are asked about at once. Asking costs two getent runs (tens of
// milliseconds, most of a sandbox's start); the next single-use UIDs are the
// ones after the one wanted now, so a batch serves many allocations. An
// account added to an NSS source within the lifetime can be missed, as it
// can be right after any check.
constexpr std::int64_t kVettingLifetimeSeconds = 600;
constexpr uid_t kVettingBatch = 64;

// The caches in uids/ (vetted, never-used): whatever keeps one from being
// read (not a regular file, unreadable) is a miss, as damage is.
std::optional<std::string> read_cache(const std::filesystem::path& file, std::string_view holding) {
  try {
    return read_small_file(file, holding);
  } catch (const std::exception& e) {
    log::debug("cache miss: {}", e.what());
    return std::nullopt;
  }
}

// Replaces a cache whole (a rename also replaces a FIFO or a symlink there).
// One that cannot be kept (a directory in its place) costs time, not
// correctness: the command carries on without it.
void replace_cache(const std::filesystem::path& file, std::string_view text, bool durable) {
  try {
    write_atomically(file.parent_path(), file.filename().string(), text, durable);
  } catch (const std::exception& e) {
    warn_once(fmt::format("cannot keep the cache {}: {}; carrying on without it (remove what is there)",
                          file.string(), e.what()));
  }
}

// STATE_DIR/uids/vetted: "TIME FIRST LAST" and the known ids among
// FIRST..LAST, as the databases answered at TIME. A cache: lost or damaged,
// it is asked again.
struct Vetting {
  std::int64_t at = 0;
  uid_t first = 1, last = 0;
  std::vector<uid_t> known;
};

Vetting read_vetting(const std::filesystem::path& file) {
  Vetting vetting;
  std::optional<std::string> content = read_cache(file, "an account check");
  if (!content) return {};
  std::istringstream in(*content);
  if (!(in >> vetting.at >> vetting.first >> vetting.last)) return {};
  for (uid_t id; in >> id;) vetting.known.push_back(id);
  return vetting;
}

// STATE_DIR/uids/never-used: "FIRST LAST NEXT": within the range FIRST-LAST,
// no UID from NEXT up has ever been allocated. It spares a single-use
// allocation the listing of released/, which grows towards one entry per
// UID of the range. Rewritten in place, without fsync: a power failure can
// leave an older, lower NEXT, and then a released UID may be reused before
// its turn (each candidate is still checked against allocations and grant
// records). Missing or damaged, it is computed again from a full listing.
struct NeverUsed {
  UidRange range;
  std::uint64_t next = 0;
};

std::optional<NeverUsed> read_never_used(const std::filesystem::path& file) {
  std::optional<std::string> content = read_cache(file, "the never-used mark");
  if (!content) return std::nullopt;
  std::istringstream in(*content);
  NeverUsed mark;
  if (!(in >> mark.range.first >> mark.range.last >> mark.next)) return std::nullopt;
  return mark;
}

void write_never_used(const std::filesystem::path& file, const NeverUsed& mark) {
  // Fixed width, so that rewriting in place never leaves a longer tail.
  std::string text = fmt::format("{:010} {:010} {:011}\n", mark.range.first, mark.range.last, mark.next);
  // Non-blocking: a FIFO there (no reader: ENXIO) must not hang the
  // allocation.
  UniqueFd fd(::open(file.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, 0644));
  struct stat st {};
  if (fd && ::fstat(fd.get(), &st) == 0 && S_ISREG(st.st_mode) &&
      ::pwrite(fd.get(), text.data(), text.size(), 0) == static_cast<ssize_t>(text.size()))
    return;
  // Not a regular file there (a FIFO, a symlink, a directory), or a failed
  // write: replaced whole instead.
  fd.reset();
  replace_cache(file, text, /*durable=*/false);
}

}  // namespace

bool UidRegistry::known_to_system(uid_t uid) const {
  std::filesystem::path file = Paths(locations_).uids / "vetted";
  std::int64_t now = ::time(nullptr);
  Vetting vetting = read_vetting(file);
  if (uid >= vetting.first && uid <= vetting.last && now >= vetting.at &&
      now - vetting.at < kVettingLifetimeSeconds) {
    return std::find(vetting.known.begin(), vetting.known.end(), uid) != vetting.known.end();
  }
  vetting = Vetting{.at = now, .first = uid, .last = uid};
  if (range_.contains(uid)) vetting.last = static_cast<uid_t>(std::min<std::uint64_t>(range_.last, std::uint64_t{uid} + kVettingBatch - 1));
  std::vector<unsigned> ids;
  for (std::uint64_t id = vetting.first; id <= vetting.last; ++id) ids.push_back(static_cast<unsigned>(id));
  for (unsigned id : ids_known_to_system(ids)) vetting.known.push_back(static_cast<uid_t>(id));
  std::string text = fmt::format("{} {} {}\n", vetting.at, vetting.first, vetting.last);
  for (uid_t id : vetting.known) text += fmt::format("{}\n", id);
  replace_cache(file, text, /*durable=*/true);
  return std::find(vetting.known.begin(), vetting.known.end(), uid) != vetting.known.end();
}

namespace {

// The grant records in grants/UID: not the temporary file of a write that a
// crash cut short, which records nothing (and must not keep the UID out of
// the pool for good).
// What is at grants/UID, never followed: nullopt if nothing.
std::optional<mode_t> records_dir_mode(const std::filesystem::path& dir) {
  struct stat st {};
  if (::lstat(dir.c_str(), &st) == 0) return st.st_mode;
  if (errno == ENOENT) return std::nullopt;
  throw_errno("lstat", dir.string());
}

// grants/UID that is not a directory (a file, a symlink: damaged, see
// scan_records_of) counts as one record: its UID is kept out of the pool
// until someone looks, and the commands that count go on.
std::size_t record_count(const std::filesystem::path& dir) {
  std::optional<mode_t> mode = records_dir_mode(dir);
  if (!mode) return 0;
  if (!S_ISDIR(*mode)) return 1;
  std::vector<std::string> names = list_names(dir);
  return static_cast<std::size_t>(
      std::count_if(names.begin(), names.end(), [](const std::string& name) { return !detail::is_temporary(name); }));
}

}  // namespace

std::optional<uid_t> UidRegistry::pick_never_used(const Snapshot& allocations) const {
  Paths paths(locations_);
  std::optional<NeverUsed> mark = read_never_used(paths.uids / "never-used");
  if (!mark || mark->range.first != range_.first || mark->range.last != range_.last) return std::nullopt;
  for (std::uint64_t uid = std::max<std::uint64_t>(mark->next, range_.first); uid <= range_.last; ++uid) {
    auto u = static_cast<uid_t>(uid);
    if (allocations.allocated.count(u)) continue;
    if (record_count(paths.grants_of(u)) != 0) continue;
    if (never_hand_out(u)) continue;
    return u;
  }
  return std::nullopt;
}

uid_t UidRegistry::pick_single_use(const Snapshot& snapshot) const {
  // Never used before: the lowest such UID. One whose allocation record was
  // lost in a power failure looks never used; if it was granted anything,
  // its durable grant records keep it out until a sweep has removed them.
  Paths paths(locations_);
  std::size_t allocated = 0, with_records = 0, reserved = 0;
  // Neither allocated nor released: whether it may be handed out, counting
  // why not for the message below.
  auto available = [&](uid_t u) {
    if (record_count(paths.grants_of(u)) != 0) {
      ++with_records;
      return false;
    }
    if (never_hand_out(u)) {
      ++reserved;
      return false;
    }
    return true;
  };
  for (std::uint64_t uid = range_.first; uid <= range_.last; ++uid) {
    auto u = static_cast<uid_t>(uid);
    if (snapshot.allocated.count(u)) {
      ++allocated;
      continue;
    }
    if (!snapshot.released.count(u) && available(u)) return u;
  }
  // Otherwise the least recently released one without grant records.
  std::vector<std::pair<std::uint64_t, uid_t>> order;
  for (auto [uid, seq] : snapshot.released) {
    if (range_.contains(uid)) order.emplace_back(seq, uid);
  }
  std::sort(order.begin(), order.end());
  for (auto [seq, uid] : order) {
    if (available(uid)) return uid;
  }
  std::string text = fmt::format("no free UID in the range {} ({}): {} allocated", range_.to_string(), range_origin_,
                                 allocated);
  if (with_records != 0) {
    text += fmt::format(", {} not allocated but still with grant records (`vmwarden acl sweep` removes the "
                        "records of dead UIDs)",
                        with_records);
  }
  if (reserved != 0) {
    text += fmt::format(", {} never handed out (known to the user or group database, in a subordinate ID range, "
                        "or reserved)",
                        reserved);
  }
  throw std::runtime_error(text);
}

uid_t UidRegistry::allocate_locked(std::string_view alias, Snapshot& snapshot, std::optional<uid_t> picked) {
  Paths paths(locations_);
  if (!alias.empty()) {
    std::string refusal;
    std::optional<uid_t> known = alias_uid(snapshot, alias, /*in_range_only=*/true, refusal);
    if (!refusal.empty()) throw std::runtime_error(refusal);
    if (known) return *known;
  }
  uid_t uid = picked ? *picked : pick_single_use(snapshot);
  std::string content = alias.empty() ? "single-use\n" : fmt::format("alias {}\n", alias);
  // An alias must keep its UID across crashes. A single-use allocation lost
  // in a crash is harmless: its lease died with it, and any ACL it was
  // granted has a durable grant record, which keeps the UID from being
  // handed out again until a sweep has removed those entries.
  // A single-use record is created in place: cut short by a crash, it reads
  // as allocated without an alias, i.e. single-use, which it is.
  if (alias.empty())
    detail::create_exclusively(paths.allocated, std::to_string(uid), content, /*durable=*/false);
  else
    write_atomically(paths.allocated, std::to_string(uid), content, /*durable=*/true);
  snapshot.allocated.emplace(uid, Allocation{.alias = std::string(alias)});
  std::filesystem::path mark_file = paths.uids / "never-used";
  std::optional<NeverUsed> mark = read_never_used(mark_file);
  if (!mark || mark->range.first != range_.first || mark->range.last != range_.last) {
    // Computed from the full snapshot, which the callers that have no mark
    // loaded: one past the highest UID of the range ever allocated.
    NeverUsed fresh{range_, range_.first};
    for (const auto& [known, allocation] : snapshot.allocated)
      if (range_.contains(known)) fresh.next = std::max<std::uint64_t>(fresh.next, std::uint64_t{known} + 1);
    for (const auto& [known, seq] : snapshot.released)
      if (range_.contains(known)) fresh.next = std::max<std::uint64_t>(fresh.next, std::uint64_t{known} + 1);
    write_never_used(mark_file, fresh);
  } else if (uid >= mark->next) {
    mark->next = std::uint64_t{uid} + 1;
    write_never_used(mark_file, *mark);
  }
  if (snapshot.released.erase(uid)) {
    // The allocation is durable already; a crash here leaves a stale
    // released entry that load() ignores and recover() removes.
    for (const std::string& name : list_names(paths.released)) {
      std::uint64_t seq;
      uid_t released_uid;
      if (parse_released_name(name, seq, released_uid) && released_uid == uid)
        remove_durably(paths.released, name, /*durable=*/!alias.empty());
    }
  }
  return uid;
}

UniqueFd UidRegistry::take_lease(uid_t uid) const {
  Paths paths(locations_);
  make_state_directory(locations_.runtime_dir, 0755, Link::follow);
  make_state_directory(paths.leases, 0755, Link::refuse);
  UniqueFd fd = lock_file(paths.lease(uid), /*wait=*/false);
  if (fd) {
    detail::require_regular_file(fd.get(), paths.lease(uid), kLeaseContent);
  } else {
    auto pid = lease_holder_pid(paths, uid);
    throw std::runtime_error(fmt::format("UID {} is in use: its lease {} is held by {}", uid,
                                         paths.lease(uid).string(),
                                         pid ? fmt::format("pid {}", *pid) : std::string("another process")));
  }
  std::string content = fmt::format("pid {}\n", ::getpid());
  check(::ftruncate(fd.get(), 0), "truncate", paths.lease(uid).string());
  check(::pwrite(fd.get(), content.data(), content.size(), 0), "write", paths.lease(uid).string());
  return fd;
}

bool UidRegistry::lease_held(uid_t uid) const { return lease_is_held(Paths(locations_), uid); }

bool UidRegistry::is_leased(uid_t uid) const {
  UniqueFd lock = lock_registry(false);
  return lease_held(uid);
}

static void require_alias(std::string_view alias) {
  if (!valid_uid_alias(alias)) {
    throw UsageError(fmt::format("invalid alias \"{}\": use 1-64 characters from a-z, 0-9, '_', '.', '-', "
                                 "starting with a lowercase letter (a name starting with a digit is read as a UID)",
                                 printable(alias)));
  }
}

UidLease UidRegistry::lease_alias(std::string_view alias) {
  require_alias(alias);
  UniqueFd lock = lock_registry();
  Snapshot snapshot = load();
  recover(snapshot);
  uid_t uid = allocate_locked(alias, snapshot);
  return UidLease(locations_, uid, std::string(alias), take_lease(uid));
}

UidLease UidRegistry::lease_single_use() {
  UniqueFd lock = lock_registry();
  // The common case: a UID never used before, found without listing
  // released/; otherwise the full snapshot and the reuse order.
  Snapshot snapshot = load(/*with_released=*/false);
  std::optional<uid_t> never_used = pick_never_used(snapshot);
  if (!never_used) snapshot = load();
  recover(snapshot);
  uid_t uid = never_used ? *never_used : pick_single_use(snapshot);
  // Leased before it is published: the allocation is never visible unleased
  // while its holder lives.
  UniqueFd lease = take_lease(uid);
  allocate_locked("", snapshot, uid);
  return UidLease(locations_, uid, std::string(), std::move(lease));
}

uid_t UidRegistry::allocate_alias(std::string_view alias) {
  require_alias(alias);
  UniqueFd lock = lock_registry();
  Snapshot snapshot = load();
  recover(snapshot);
  return allocate_locked(alias, snapshot);
}

uid_t UidRegistry::allocate_single_use() {
  UniqueFd lock = lock_registry();
  Snapshot snapshot = load();
  recover(snapshot);
  return allocate_locked("", snapshot);
}

bool UidRegistry::is_allocated(uid_t uid) const {
  std::optional<UidInfo> info = find(uid);
  return info && info->allocated;
}

void UidRegistry::release(uid_t uid) {
  if (!range_.contains(uid) && !is_allocated(uid)) {
    throw UsageError(fmt::format("UID {} is outside the managed range {}", uid, range_.to_string()));
  }
  Paths paths(locations_);
  // No registry yet: nothing is allocated, and a refusal creates nothing.
  if (::access(paths.uids.c_str(), F_OK) != 0) throw UsageError(fmt::format("UID {} is not allocated", uid));
  UniqueFd lock = lock_registry();
  Snapshot snapshot = load();
  recover(snapshot);
  auto it = snapshot.allocated.find(uid);
  if (it == snapshot.allocated.end()) throw UsageError(fmt::format("UID {} is not allocated", uid));
  if (!it->second.damage.empty()) {
    throw std::runtime_error(fmt::format("UID {} is not released: {}; vmwarden leaves a damaged record alone "
                                         "(remove the file to free the UID, see doc/ACL.md)",
                                         uid, it->second.damage));
  }
  refuse_if_leased(uid);
  release_locked(paths, uid, /*durable=*/true);
}

void UidRegistry::refuse_if_leased(uid_t uid) const {
  if (!lease_held(uid)) return;
  auto pid = lease_holder_pid(Paths(locations_), uid);
  throw std::runtime_error(fmt::format("UID {} is leased by {}; stop its VM first", uid,
                                       pid ? fmt::format("pid {}", *pid) : std::string("another process")));
}

void UidRegistry::release_as_seen(const UidInfo& seen) {
  if (!seen.allocated || !seen.alias.empty() || !seen.damage.empty())
    throw std::runtime_error(fmt::format("UID {} was not listed as an allocated single-use UID", seen.uid));
  Paths paths(locations_);
  UniqueFd lock = lock_registry(/*create=*/false);
  std::filesystem::path file = paths.allocated / std::to_string(seen.uid);
  // This one record is enough: a single-use record names no alias that
  // another could duplicate.
  std::optional<Allocation> now;
  if (lock) now = read_allocation(file);
  if (!now) throw std::runtime_error(fmt::format("UID {} was released meanwhile", seen.uid));
  if (!now->damage.empty()) throw std::runtime_error(now->damage);
  if (now->record != seen.record || !now->alias.empty()) {
    throw std::runtime_error(fmt::format("{} is no longer the record listed earlier: UID {} was released and "
                                         "allocated again meanwhile{}",
                                         file.string(), seen.uid,
                                         now->alias.empty() ? "" : fmt::format(", as alias {}", now->alias)));
  }
  refuse_if_leased(seen.uid);
  release_locked(paths, seen.uid, /*durable=*/true);
}

std::optional<uid_t> UidRegistry::find_alias(std::string_view alias) const {
  // A single-use UID is recorded with an empty alias: only a real alias
  // may name one.
  if (!valid_uid_alias(alias)) return std::nullopt;
  return known_alias(alias, /*in_range_only=*/true);
}

std::optional<uid_t> UidRegistry::known_alias(std::string_view alias, bool in_range_only) const {
  UniqueFd lock = lock_registry(false);
  std::string refusal;
  std::optional<uid_t> uid = alias_uid(load(/*with_released=*/false), alias, in_range_only, refusal);
  if (!refusal.empty()) throw std::runtime_error(refusal);
  return uid;
}

std::vector<UidInfo> UidRegistry::list(bool include_released) const {
  Paths paths(locations_);
  UniqueFd lock = lock_registry(false);
  Snapshot snapshot = load();
  std::vector<UidInfo> infos;
  for (const auto& [uid, allocation] : snapshot.allocated) {
    UidInfo info;
    info.uid = uid;
    info.alias = allocation.alias;
    info.damage = allocation.damage;
    info.record = allocation.record;
    info.allocated = true;
    if (lease_held(uid)) info.leased_by = lease_holder_pid(paths, uid).value_or(0);
    info.grant_records = record_count(paths.grants_of(uid));
    infos.push_back(std::move(info));
  }
  if (include_released) {
    for (const auto& [uid, seq] : snapshot.released) {
      UidInfo info;
      info.uid = uid;
      info.released_seq = seq;
      info.grant_records = record_count(paths.grants_of(uid));
      infos.push_back(std::move(info));
    }
  }
  return infos;
}

std::optional<UidInfo> UidRegistry::find(uid_t uid) const {
  for (UidInfo& info : list(true)) {
    if (info.uid == uid) return info;
  }
  return std::nullopt;
}

uid_t UidRegistry::resolve(std::string_view text) const {
  if (!text.empty() && text.front() >= '0' && text.front() <= '9') {
    auto uid = parse_number<uid_t>(text);
    if (!uid) throw UsageError(fmt::format("invalid UID \"{}\": expected a number or an alias", printable(text)));
    // One allocated before the range last changed stays nameable (to be
    // released; grants check the range themselves).
    if (!range_.contains(*uid) && !is_allocated(*uid)) {
      throw UsageError(
          fmt::format("UID {} is outside the managed range {} ({})", *uid, range_.to_string(), range_origin_));
    }
    return *uid;
  }
  if (!valid_uid_alias(text)) {
    throw UsageError(fmt::format("invalid UID \"{}\": give a UID number in the managed range {} or an alias "
                                 "(a-z first, then a-z, 0-9, '_', '.', '-')",
                                 printable(text), range_.to_string()));
  }
  // Named by its alias, a UID outside the range stays nameable as it is by
  // number; a damaged record is refused, saying why.
  if (std::optional<uid_t> uid = known_alias(text, /*in_range_only=*/false)) return *uid;
  std::vector<std::string> aliases;
  for (const UidInfo& info : list()) {
    if (!info.alias.empty()) aliases.push_back(info.alias);
  }
  std::vector<std::string_view> views(aliases.begin(), aliases.end());
  std::string message = fmt::format("unknown alias \"{}\"", text);
  if (auto guess = closest_match(text, views)) {
    message += fmt::format("; did you mean \"{}\"?", *guess);
  } else if (aliases.empty()) {
    message += " (no aliases are allocated; `vmwarden uid alloc --alias NAME` makes one)";
  }
  throw UsageError(message);
}

namespace {

// A grant record's file: "path TREE", "access ro|rw", "mounts one|cross",
// "by-path yes" if some grant of TREE had no handle (else no such line),
// "revoked yes" if it was revoked while the UID was leased (else no such line),
// and for each directory granted as TREE "root MAJ:MIN INODE FS-TYPE FS-ID
// BOOT HANDLE-TYPE HANDLE" (BOOT "-" but on a tmpfs; the handle's type and
// bytes in hex), a line each. Parsed and written only here; a root line
// that does not parse is left out, with a warning (the record then knows
// that directory by its path alone).
std::optional<RecordedRoot> parse_root(std::string_view text) {
  std::vector<std::string_view> fields;
  while (!text.empty()) {
    std::size_t space = text.find(' ');
    fields.push_back(text.substr(0, space));
    text = space == std::string_view::npos ? std::string_view() : text.substr(space + 1);
  }
  if (fields.size() != 7) return std::nullopt;
  std::size_t colon = fields[0].find(':');
  if (colon == std::string_view::npos) return std::nullopt;
  auto major_number = parse_number<unsigned>(fields[0].substr(0, colon));
  auto minor_number = parse_number<unsigned>(fields[0].substr(colon + 1));
  auto inode = parse_number<ino_t>(fields[1]);
  auto handle_type = parse_number<unsigned>(fields[5], 16);
  std::string_view fs_id = fields[3], hex = fields[6];
  bool id_ok = (fs_id.starts_with("uuid:") || fs_id.starts_with("fsid:")) && fs_id.size() > 5;
  if (!major_number || !minor_number || !inode || !handle_type || !id_ok || fields[2].empty() || hex.empty() ||
      hex.size() % 2 != 0 || hex.size() > 2 * MAX_HANDLE_SZ ||
      *handle_type > static_cast<unsigned>(std::numeric_limits<int>::max())) {
    return std::nullopt;
  }
  RecordedRoot root;
  root.device = makedev(*major_number, *minor_number);
  root.inode = *inode;
  root.fs_type = std::string(fields[2]);
  root.fs_id = std::string(fs_id);
  if (fields[4] != "-") root.boot = std::string(fields[4]);
  root.handle_type = static_cast<int>(*handle_type);
  for (std::size_t i = 0; i < hex.size(); i += 2) {
    auto byte = parse_number<unsigned>(hex.substr(i, 2), 16);
    if (!byte) return std::nullopt;
    root.handle += static_cast<char>(*byte);
  }
  return root;
}

std::string format_root(const RecordedRoot& root) {
  std::string hex;
  for (unsigned char byte : root.handle) hex += fmt::format("{:02x}", byte);
  return fmt::format("root {}:{} {} {} {} {} {:x} {}\n", major(root.device), minor(root.device), root.inode,
                     root.fs_type, root.fs_id, root.boot.empty() ? "-" : root.boot,
                     static_cast<unsigned>(root.handle_type), hex);
}

// `content` of `file` as a record. `damage` is set (and the record is of no
// use) when it names no tree: no "path" line, a second one, or a path that
// is not absolute; "FILE[:LINE]: what is wrong; what would be right".
GrantRecord parse_grant_record(uid_t uid, std::string_view content, const std::filesystem::path& file,
                               std::string& damage) {
  constexpr std::string_view kExpected = "expected \"path /absolute/tree\"";
  GrantRecord record;
  record.uid = uid;
  bool has_path = false;
  for (std::size_t number = 1; !content.empty() && damage.empty(); ++number) {
    auto end = content.find('\n');
    std::string_view line = content.substr(0, end);
    content = end == std::string_view::npos ? std::string_view() : content.substr(end + 1);
    if (line.starts_with("path ")) {
      std::string_view tree = line.substr(5);
      if (has_path) {
        damage = fmt::format("{}:{}: a second \"path\" line; {} once", file.string(), number, kExpected);
      } else if (!tree.starts_with('/') || tree.find('\0') != std::string_view::npos) {
        damage = fmt::format("{}:{}: \"{}\" is not an absolute path; {}", file.string(), number, line, kExpected);
      }
      record.tree = std::string(tree);
      has_path = true;
    }
    if (line == "access rw") record.access = Access::rw;
    if (line == "mounts cross") record.cross_mounts = true;
    if (line == "by-path yes") record.by_path = true;
    if (line == "revoked yes") record.revoked = true;
    if (line.starts_with("root ")) {
      if (auto root = parse_root(line.substr(5))) {
        record.roots.push_back(std::move(*root));
      } else {
        log::warning("{}:{}: a root line that does not parse is left out of the grant record of UID {}: {}",
                     printable(file.string()), number, uid, printable(line));
      }
    }
  }
  if (damage.empty() && !has_path) damage = fmt::format("{}: no \"path\" line; {}", file.string(), kExpected);
  return record;
}

std::string format_grant_record(const GrantRecord& record) {
  std::string text = fmt::format("path {}\naccess {}\nmounts {}\n", record.tree.string(), to_string(record.access),
                                 record.cross_mounts ? "cross" : "one");
  if (record.by_path) text += "by-path yes\n";
  if (record.revoked) text += "revoked yes\n";
  for (const RecordedRoot& root : record.roots) text += format_root(root);
  return text;
}

}  // namespace

namespace {

// The records in grants/UID, and the files there that are of no use as
// records (each said, never skipped: its tree's entries are unknown).
void scan_records_of(const std::filesystem::path& dir, uid_t uid, GrantRecordScan& scan) {
  auto damaged = [&](const std::string& why) { scan.damaged.push_back({uid, printable(why)}); };
  std::vector<std::string> names;
  try {
    std::optional<mode_t> mode = records_dir_mode(dir);
    if (!mode) return;
    // Not listed through a symlink: what it leads to is not root's record.
    if (!S_ISDIR(*mode)) {
      damaged(fmt::format("{}: {}; expected a directory of grant records", dir.string(), file_kind(*mode)));
      return;
    }
    names = list_names(dir);
  } catch (const std::exception& e) {
    damaged(fmt::format("{}; expected a directory of grant records", e.what()));
    return;
  }
  for (const std::string& name : names) {
    if (detail::is_temporary(name)) continue;
    std::filesystem::path file = dir / name;
    std::optional<std::string> content;
    try {
      content = read_small_file(file, "a grant record");
    } catch (const std::exception& e) {
      damaged(e.what());
      continue;
    }
    if (!content) continue;  // removed meanwhile
    std::string damage;
    GrantRecord record = parse_grant_record(uid, *content, file, damage);
    if (!damage.empty()) {
      damaged(damage);
      continue;
    }
    // A copy under another name (by hand) is not the record: a revoke or a
    // sweep removes tree_key(path) only, and would leave the copy forever.
    std::string key = tree_key(record.tree);
    if (name != key) {
      damaged(fmt::format("{}: the record of {} is kept as {}; remove this copy or rename it to {}", file.string(),
                          record.tree.string(), key, key));
      continue;
    }
    scan.records.push_back(std::move(record));
  }
}

}  // namespace

GrantRecordScan UidRegistry::scan_grant_records(uid_t uid) const {
  GrantRecordScan scan;
  scan_records_of(Paths(locations_).grants_of(uid), uid, scan);
  return scan;
}

GrantRecordScan UidRegistry::scan_grant_records() const {
  Paths paths(locations_);
  GrantRecordScan scan;
  for (const std::string& name : list_names(paths.grants)) {
    auto uid = uid_named(name);
    if (!uid) {
      if (name != "lock") warn_not_an_entry(paths.grants / name, "grant records are kept in grants/UID, UID in decimal");
      continue;
    }
    scan_records_of(paths.grants / name, *uid, scan);
  }
  return scan;
}

std::vector<GrantRecord> UidRegistry::grant_records(uid_t uid) const { return scan_grant_records(uid).records; }

std::vector<GrantRecord> UidRegistry::grant_records() const { return scan_grant_records().records; }

void UidRegistry::add_grant_record(const GrantRecord& record) {
  Paths paths(locations_);
  std::filesystem::path dir = paths.grants_of(record.uid);
  struct stat st;
  bool dir_is_new = ::lstat(dir.c_str(), &st) != 0;
  if (dir_is_new && errno != ENOENT) throw_errno("lstat", dir.string());
  make_directories(dir, 0755);
  // The record's own fsyncs make it durable within grants/UID; a new
  // grants/UID needs its entry in grants/ made durable too, or a crash could
  // lose the directory with the record in it.
  if (dir_is_new) detail::fsync_dir(paths.grants);
  std::string key = tree_key(record.tree);
  std::optional<std::string> old = read_small_file(dir / key, "a grant record");
  // Never downgraded from cross to one: a grant made with --cross-mounts left
  // entries below other mounts, and revoke and sweep must still reach them.
  GrantRecord updated = record;
  std::optional<GrantRecord> previous;
  std::string damage;  // a damaged record under this key is replaced by the new one
  if (old) previous = parse_grant_record(record.uid, *old, dir / key, damage);
  updated.cross_mounts = record.cross_mounts || (previous && previous->cross_mounts);
  updated.by_path = record.by_path || (previous && previous->by_path);
  if (!damage.empty()) {
    // What it said past the damage is lost: assume the most it could have
    // said, so that revoke and sweep still look everywhere (below other
    // mounts, and by the path), and keep the directories it did name.
    updated.cross_mounts = true;
    updated.by_path = true;
    if (previous) {
      for (const RecordedRoot& root : previous->roots) {
        bool known = std::any_of(updated.roots.begin(), updated.roots.end(),
                                 [&](const RecordedRoot& kept) { return kept.same_directory(root); });
        if (!known) updated.roots.push_back(root);
      }
    }
    log::warning("{}; replaced by the new grant's record, with mounts cross and by-path yes", damage);
  }
  std::string content = format_grant_record(updated);
  // An alias re-granted at every start finds its record as it was: no
  // rewrite, and none of the two fsyncs (about 10 ms each on a VM disk).
  if (old == content) return;
  write_atomically(dir, key, content);
}

void UidRegistry::record_grant(const GrantRecord& record) {
  UniqueFd lock = lock_registry(false);
  // The allocation record is there (allocated/UID, never a temporary's
  // name), and trusted: no need to read every allocation. A damaged one's
  // UID is left alone, as everywhere (doc/ACL.md, "Trust").
  std::filesystem::path file = Paths(locations_).allocated / std::to_string(record.uid);
  std::optional<Allocation> allocation;
  if (lock) allocation = read_allocation(file);
  if (!allocation) {
    throw UsageError(fmt::format("UID {} is not allocated (`vmwarden uid alloc` hands one out)", record.uid));
  }
  if (!allocation->damage.empty()) {
    throw std::runtime_error(fmt::format("UID {} is not granted anything: its allocation record is damaged: {}",
                                         record.uid, allocation->damage));
  }
  add_grant_record(record);
}

void UidRegistry::remove_grant_record(uid_t uid, const std::filesystem::path& tree) {
  Paths paths(locations_);
  std::filesystem::path dir = paths.grants_of(uid);
  remove_durably(dir, tree_key(tree));
  remove_leftovers_of(dir);
  // Neither durably nor failing the removal: a set that outlives its record
  // is never wrong (verified_files.h), and the next grant of the tree
  // replaces it.
  std::filesystem::path verified = paths.verified_of(uid);
  ::unlink((verified / tree_key(tree)).c_str());
  remove_leftovers_of(verified);
}

std::filesystem::path UidRegistry::verified_files_path(uid_t uid, const std::filesystem::path& tree) const {
  return Paths(locations_).verified_of(uid) / tree_key(tree);
}

void UidRegistry::remove_grant_leftovers() {
  Paths paths(locations_);
  for (const std::string& name : list_names(paths.grants)) {
    if (uid_named(name)) remove_leftovers_of(paths.grants / name);
  }
}

void UidRegistry::remove_leftovers_of(const std::filesystem::path& dir) {
  // Not a directory (damaged, reported by scan_records_of): left as it is.
  std::optional<mode_t> mode = records_dir_mode(dir);
  if (!mode || !S_ISDIR(*mode)) return;
  bool records_left = false;
  for (const std::string& name : list_names(dir)) {
    if (detail::is_temporary(name)) {
      ::unlink((dir / name).c_str());
    } else {
      records_left = true;
    }
  }
  if (!records_left) ::rmdir(dir.c_str());
}

}  // namespace vmwarden::acl
