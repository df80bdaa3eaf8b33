// Crash-safe small files and flock helpers for the registry. Every record is
// written to a temporary file, fsync'ed, renamed into place and its directory
// fsync'ed: after a crash at any instant it is either wholly there or absent.
// Internal to acl-manager.
#pragma once

#include <sys/stat.h>

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/unique_fd.h"

namespace vmwarden::acl::detail {

// Makes dir's entries (names created, renamed or removed in it) durable.
void fsync_dir(const std::filesystem::path& dir);

// mkdir -p with `mode` for the directories it creates.
void make_directories(const std::filesystem::path& path, mode_t mode);

// Atomically replaces dir/name with `content`. Not `durable`: still atomic
// (rename), but without the two fsyncs, for a record whose loss in a crash
// is harmless (see the callers).
void write_atomically(const std::filesystem::path& dir, std::string_view name, std::string_view content,
                      bool durable = true);
// Creates dir/name, which must not exist yet, with `content`: one file
// creation instead of write_atomically's create and rename. A crash can
// leave it empty or partly written, so only for records that mean the same
// in every such state (see the callers). `durable`: then fsyncs the file and
// the directory.
void create_exclusively(const std::filesystem::path& dir, std::string_view name, std::string_view content,
                        bool durable);
// Renames from_dir/from_name to to_dir/to_name, which must not exist yet:
// one atomic step, after a crash either name is there and never both.
// Returns false (and changes nothing) when from_dir/from_name is absent.
// `durable`: then fsyncs both directories.
bool move_exclusively(const std::filesystem::path& from_dir, std::string_view from_name,
                      const std::filesystem::path& to_dir, std::string_view to_name, bool durable);
// Removes dir/name (absent is fine) and, if `durable`, makes the removal durable.
void remove_durably(const std::filesystem::path& dir, std::string_view name, bool durable = true);

// The content of the regular file at path (absent: nullopt), at most 1 MiB.
// It is opened non-blocking, so a FIFO in its place cannot hang the caller
// (perhaps under a lock), and not through a final symlink unless `follow`.
// Anything but a regular file (a directory, a symlink, a FIFO, a device)
// and a larger file are errors naming the path, what is there and what
// belongs there: "PATH: a FIFO; expected a regular file holding HOLDING".
// `info`: set to the file's stat when it is read.
std::optional<std::string> read_small_file(const std::filesystem::path& path, std::string_view holding = {},
                                           bool follow = false, struct stat* info = nullptr);
// Names in dir (absent dir: none), without "." and "..".
std::vector<std::string> list_names(const std::filesystem::path& dir);

// Opens (creating) path and takes an exclusive flock; blocks unless `wait` is
// false, in which case an empty fd means somebody else holds it.
UniqueFd lock_file(const std::filesystem::path& path, bool wait = true);

// Leftover temporary files of an interrupted write.
bool is_temporary(std::string_view name);

}  // namespace vmwarden::acl::detail
