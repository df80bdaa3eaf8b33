// A granted tree's root directory by its file handle: recorded with the
// grant, and opened again by revoke and sweep wherever the directory has
// been renamed to on its filesystem since. A path can be given to another
// directory; a handle names the one that was granted. Internal to
// acl-manager; doc/ACL.md explains when it is used.
#pragma once

#include <filesystem>
#include <optional>
#include <string>

#include "acl-manager/uid_registry.h"
#include "common/unique_fd.h"

namespace vmwarden::acl::detail {

// `path` opened O_RDONLY|O_DIRECTORY if no symlink is anywhere on the way
// (openat2 RESOLVE_NO_SYMLINKS); empty, with errno set, otherwise.
UniqueFd open_directory_without_symlinks(const std::filesystem::path& path);

// The directory open as `dir_fd` (known as `tree`), for its grant record.
// Empty, which leaves the record to its path, unless the directory is on a
// local filesystem of a kind listed in doc/ACL.md that has a non-zero id
// and gives out file handles.
std::optional<RecordedRoot> record_root(int dir_fd, const std::filesystem::path& tree);

struct ReopenedRoot {
  enum class State {
    found,    // `dir` is the recorded directory
    gone,     // its filesystem says it no longer exists (a stale handle, a tmpfs of an earlier boot)
    absent,   // no mount of its filesystem is listed in this mount namespace (unmounted,
              // unplugged), and every listed mount of its type is told apart: unknown
    unknown,  // a mount of its type cannot be told apart (covered by another, unopenable,
              // without an id, idmapped), or the handle opened something else: unknown
  };
  State state = State::absent;
  std::string why;    // absent, unknown: for messages
  UniqueFd dir;       // found: O_RDONLY|O_DIRECTORY
  std::string where;  // found: its path now, as the kernel shows it, printable() (for messages)
};

// Opens the recorded directory again (needs CAP_DAC_READ_SEARCH) through a
// mount of its filesystem: one of the recorded type (ext4 standing for
// ext2 and ext3 too) in /proc/self/mountinfo whose filesystem has the recorded id, so
// that no other filesystem is ever given the handle to decode. Throws
// SystemError when the kernel refuses for another reason than a stale
// handle.
ReopenedRoot reopen_root(const RecordedRoot& root, const std::filesystem::path& tree);

}  // namespace vmwarden::acl::detail
