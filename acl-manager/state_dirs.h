// The directories and small files root keeps its records in (the UID
// registry now, the grant records later), checked before they are trusted.
// A record in a directory another user can write is that user's to forge:
// an alias pointing at UID 0, a lease file that is a FIFO, a symlink that
// sends root's writes into the user's own directory. So each directory is
// checked once before it is used: a directory, owned by root, writable by
// root alone; and each file is read only if it is a regular file.
// Internal to acl-manager.
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

namespace vmwarden::acl::detail {

enum class Link {
  // STATE_DIR and RUNTIME_DIR themselves: the administrator's choice, which
  // may be a symlink (to another disk, say); what it resolves to is checked.
  follow,
  // A directory vmwarden creates inside them: a symlink there was put there
  // by someone else, and is refused.
  refuse,
};

// Checks `dir` where it exists: a directory (after resolving it, with
// Link::follow), owned by root (or by the user running vmwarden, who owns
// its own state anyway), not writable by group or other. Returns false when
// it does not exist; throws a std::runtime_error naming the directory, its
// owner and mode and what would be right otherwise.
bool check_state_directory(const std::filesystem::path& dir, Link link);

// Creates `dir` with `mode` unless it exists, then checks it as above. With
// Link::follow the missing parents are created too (as mkdir -p); with
// Link::refuse the parent must exist and have been checked, so that nobody
// else can swap the new directory between its mkdir and its check.
void make_state_directory(const std::filesystem::path& dir, mode_t mode, Link link);

// Refuses (UsageError) a path with a component longer than a file name may
// be (NAME_MAX, 255 bytes), which every call on it would fail with
// ENAMETOOLONG: `what` says where the path comes from.
void require_short_names(const std::filesystem::path& path, std::string_view what);

// "a regular file holding HOLDING" ("a regular file" without HOLDING).
std::string expected_file(std::string_view holding);

// Throws "PATH: a FIFO; expected a regular file holding HOLDING" unless
// `st` is a regular file's.
void require_regular_file(const struct stat& st, const std::filesystem::path& path, std::string_view holding);
// The same for the file open as `fd` (opened non-blocking, so that a FIFO
// there did not hang the open).
void require_regular_file(int fd, const std::filesystem::path& path, std::string_view holding);

// Logs `message` as a warning the first time this process asks, not again:
// one command reads the registry several times, and one damaged file is
// one warning.
void warn_once(const std::string& message);

}  // namespace vmwarden::acl::detail
