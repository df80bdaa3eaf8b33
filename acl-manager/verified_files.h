// What a grant's walk found right, kept for the next grant of the same tree:
// each regular file it left with the UID's entry, by inode number and the
// ctimes it had while so. Every change to a file's ACL, mode, owner or link
// count sets its ctime (and, once statx has read it, to a value it never
// had before: multigrain timestamps), so a file showing such a ctime is
// still as the walk left it, and the next grant's walk leaves it alone after
// one statx by name instead of reading its ACL (doc/ACL.md, "Files a grant
// verified"). It never decides that a file is to be changed: a file that
// does not match is checked as any other. Internal to acl-manager.
#pragma once

#include <sys/types.h>

#include <atomic>
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

// A file as a grant's walk left it: its inode, and the ctimes (nanoseconds
// since the epoch) strictly between which it is still so. A file the walk
// found right: exactly the ctime statx showed. A file it wrote: after the
// ctime statx showed before the write, before the coarse clock at the end
// of the walk (every change made after that has a ctime no lower).
struct VerifiedFile {
  std::uint64_t inode = 0;
  std::int64_t ctime_after_ns = 0;
  std::int64_t ctime_before_ns = 0;
  bool holds(std::int64_t ctime_ns) const { return ctime_after_ns < ctime_ns && ctime_ns < ctime_before_ns; }
  bool operator==(const VerifiedFile&) const = default;
};

class VerifiedFiles {
 public:
  VerifiedFiles();
  // The set of `files` (in any order; one entry kept per inode).
  VerifiedFiles(const VerifiedScope& scope, std::span<const VerifiedFile> files);
  ~VerifiedFiles();
  VerifiedFiles(VerifiedFiles&&) noexcept;
  VerifiedFiles& operator=(VerifiedFiles&&) noexcept;

  // The set kept in `file` if it is there, whole, and of `scope`; an empty
  // one of `scope` otherwise (absent, unreadable, damaged, of another grant:
  // the walk then checks every file, as it always may).
  static VerifiedFiles load(const std::filesystem::path& file, const VerifiedScope& scope);
  // Replaces `file` atomically (rename), without fsync: losing it in a crash
  // costs the next grant a full check, nothing else. Creates its directory.
  void save(const std::filesystem::path& file) const;

  // Where the file of `inode` is in files(), if it is; searched outwards
  // from `near` (the index found last: a directory's files have nearby
  // inode numbers, and a search that stays in a few pages of the set is the
  // faster one).
  std::optional<std::size_t> index_of(std::uint64_t inode, std::size_t near = 0) const;
  std::span<const VerifiedFile> files() const { return files_; }
  bool empty() const { return files_.empty(); }
  std::size_t size() const { return files_.size(); }
  const VerifiedScope& scope() const { return scope_; }

  class Builder;

 private:
  struct Buffer;
  // Sorts the first `count` entries of `buffer` by inode and keeps one per
  // inode (a file met twice in one walk, renamed while it ran, has two
  // entries, each true), writes the header before them; the count kept.
  static std::size_t finish(Buffer& buffer, std::size_t count, const VerifiedScope& scope);
  VerifiedScope scope_;
  // The file's bytes, header first, in memory mapped from the file or made
  // by a Builder: a set of 100,000 files is 2.4 MB, and on the machines
  // vmwarden targets a page fault costs microseconds, so neither loading
  // nor keeping a set copies it. Sorted by inode, one entry per inode.
  std::unique_ptr<Buffer> buffer_;
  std::span<const VerifiedFile> files_;
};

// Collects the files a walk verified, from its threads at once, into one
// buffer laid out as the set's file (room for the header first), and makes
// the set of them once the walk is done. The buffer's address space is
// taken at once (nothing is copied as it grows) and its memory asked for
// in huge pages.
class VerifiedFiles::Builder {
 public:
  // The bound of a file the walk wrote: given the walk's end in build().
  static constexpr std::int64_t kUntilTheEnd = INT64_MAX;

  Builder();
  ~Builder();
  Builder(const Builder&) = delete;
  Builder& operator=(const Builder&) = delete;

  // From any thread. False once more files came than a set holds (16 Mi):
  // the walk then keeps none.
  bool add(std::span<const VerifiedFile> files);
  // After the last add(): the set, its files bounded by kUntilTheEnd given
  // `end_ns` (those whose ctime before the write was not below it left
  // out); none if add() ever failed. Once only.
  std::optional<VerifiedFiles> build(const VerifiedScope& scope, std::int64_t end_ns);

 private:
  std::unique_ptr<Buffer> buffer_;
  std::size_t capacity_ = 0;
  std::atomic<std::size_t> used_{0};
  std::atomic<bool> full_{false};
};

}  // namespace vmwarden::acl::detail
