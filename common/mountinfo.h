// /proc/self/mountinfo, as far as the components need it: whether a
// recursive copy of a directory's mounts (open_tree(OPEN_TREE_CLONE |
// AT_RECURSIVE)) would leave one out, and where a filesystem is mounted.
#pragma once

#include <sys/types.h>

#include <string>
#include <string_view>
#include <vector>

namespace vmwarden {

// This process's /proc/self/mountinfo, whole. Throws SystemError.
std::string read_mountinfo();

// Whether mountinfo text lists an unbindable mount at `path` or below it. A
// recursive copy leaves such mounts out, and shows the directories they
// cover instead. `path` is absolute, as the kernel prints mount points
// (relative to this process's root).
bool has_unbindable_mount_at_or_below(std::string_view mountinfo, std::string_view path);

// The mount points of filesystems of type `fs_type` ("ext4"): mounts of a
// filesystem's root directory first (a bind mount of a subdirectory shows
// less of it), writable ones before read-only ones; idmapped mounts (which
// would change the ids read and written through them) left out. Unescaped,
// as the kernel prints them.
struct MountPoint {
  std::string path;  // unescaped
  dev_t device = 0;  // MAJ:MIN, as stat reports the filesystem's
};
std::vector<MountPoint> mount_points_of_type(std::string_view mountinfo, std::string_view fs_type);

// The filesystem type of the mount with ID `mount_id` (mountinfo's first
// field, as name_to_handle_at(2) gives it); empty if it is not listed.
std::string filesystem_type_of_mount(std::string_view mountinfo, int mount_id);

}  // namespace vmwarden
