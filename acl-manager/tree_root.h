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

// The directory open as `dir_fd` (known as `tree`), for its grant record.
// Empty where its filesystem gives out no file handles, which leaves the
// record to its path.
std::optional<RecordedRoot> record_root(int dir_fd, const std::filesystem::path& tree);

struct ReopenedRoot {
  UniqueFd dir;       // O_RDONLY|O_DIRECTORY; empty: the directory is gone
  std::string where;  // its path now, as the kernel shows it (for messages)
};

// Opens the recorded directory again through a mount of its filesystem
// listed in /proc/self/mountinfo (needs CAP_DAC_READ_SEARCH). Empty when it
// was removed or no mount of its filesystem can be opened here. Throws
// SystemError for any other failure.
ReopenedRoot reopen_root(const RecordedRoot& root);

}  // namespace vmwarden::acl::detail
