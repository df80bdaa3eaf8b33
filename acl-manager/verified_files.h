// What a grant's walk found right, kept for the next grant of the same tree:
// each regular file it left with the UID's entry, by inode number and ctime
// as statx saw them after the walk's own read or write. Every change to a
// file's ACL, mode, owner or link count sets its ctime (and, once statx has
// read it, to a value it never had before: multigrain timestamps), so a file
// showing the same inode and ctime is still as the walk left it, and the
// next grant's walk leaves it alone after one statx by name instead of
// reading its ACL (doc/ACL.md, "Files a grant verified"). It never decides
// that a file is to be changed: a file that does not match is checked as
// any other. Internal to acl-manager.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <vector>

namespace vmwarden::acl::detail {

// Whose grant on which directory a set belongs to: a set is used only by a
// grant of the same UID and access on the same directory (device and inode),
// owned by the same UID (the walk's owner rule depends on it), with the same
// managed range.
struct VerifiedScope {
  std::uint64_t uid = 0;
  std::uint64_t writable = 0;
  std::uint64_t device = 0;
  std::uint64_t root_inode = 0;
  std::uint64_t root_owner = 0;
  std::uint64_t range_first = 0;
  std::uint64_t range_last = 0;
  bool operator==(const VerifiedScope&) const = default;
};

struct VerifiedFile {
  std::uint64_t inode = 0;
  std::int64_t ctime_ns = 0;  // ctime in nanoseconds since the epoch
  auto operator<=>(const VerifiedFile&) const = default;
};

class VerifiedFiles {
 public:
  VerifiedFiles();
  VerifiedFiles(VerifiedScope scope, std::vector<VerifiedFile> files);
  ~VerifiedFiles();
  VerifiedFiles(VerifiedFiles&&) noexcept;
  VerifiedFiles& operator=(VerifiedFiles&&) noexcept;

  // The set kept in `file` if it is there, whole, and of `scope`; an empty
  // one otherwise (absent, unreadable, damaged, of another grant: the walk
  // then checks every file, as it always may).
  static VerifiedFiles load(const std::filesystem::path& file, const VerifiedScope& scope);
  // Replaces `file` atomically (rename), without fsync: losing it in a crash
  // costs the next grant a full check, nothing else. Creates its directory.
  void save(const std::filesystem::path& file) const;

  // Where `file` is in files(), if it is; searched outwards from `near`
  // (the index found last: a directory's files have nearby inode numbers,
  // and a search that stays in a few pages of the set is the faster one).
  std::optional<std::size_t> index_of(const VerifiedFile& file, std::size_t near = 0) const;
  std::span<const VerifiedFile> files() const { return files_; }
  bool empty() const { return files_.empty(); }
  std::size_t size() const { return files_.size(); }
  const VerifiedScope& scope() const { return scope_; }

 private:
  struct Mapping;
  VerifiedScope scope_;
  // Sorted, unique: in `owned`, or in the loaded file, mapped (copying
  // 1.6 MB for a tree of 100,000 files cost a few ms in page faults).
  std::span<const VerifiedFile> files_;
  std::vector<VerifiedFile> owned_;
  std::unique_ptr<Mapping> mapping_;
};

}  // namespace vmwarden::acl::detail
