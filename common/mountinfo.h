// /proc/self/mountinfo, as far as the components need it: whether a
// recursive copy of a directory's mounts (open_tree(OPEN_TREE_CLONE |
// AT_RECURSIVE)) would leave one out, where a filesystem is mounted, and
// which directory of which filesystem each mount shows.
#pragma once

#include <sys/types.h>

#include <filesystem>
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

// Whether `path` is `ancestor` or lies below it, comparing whole
// components ("/a/bc" is not below "/a/b"); a trailing '/' on either is
// ignored.
bool at_or_below(std::string_view path, std::string_view ancestor);

struct MountPoint {
  std::string path;  // unescaped, as the kernel prints it
  int id = 0;        // mountinfo's first field (fdinfo's mnt_id)
  int parent = 0;    // the id of the mount this one is mounted on
  dev_t device = 0;  // MAJ:MIN: the filesystem's st_dev (not a btrfs subvolume's)
  // The directory of the filesystem shown at `path`, from the filesystem's
  // own root ("/" for the whole of it; a bind mount's source; unescaped).
  std::string root;
  bool idmapped = false;
};

// The mounts of filesystems of type `fs_type` ("ext4"): mounts of a
// filesystem's root directory first (a bind mount of a subdirectory shows
// less of it), writable ones before read-only ones, idmapped ones (which
// change the ids read and written through them) last.
std::vector<MountPoint> mount_points_of_type(std::string_view mountinfo, std::string_view fs_type);

// Every mount that mountinfo text lists, in its order.
std::vector<MountPoint> list_mounts(std::string_view mountinfo);

// The id (mountinfo's first field) of the mount `path` is on, or of the
// mount at `path` where one is; a symlink at `path` is not followed.
// Throws SystemError.
int mount_id_of_path(const std::filesystem::path& path);

}  // namespace vmwarden
