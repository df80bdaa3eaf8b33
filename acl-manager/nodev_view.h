// The tree as seen through a private, detached copy of its mounts with nodev
// set, so that the walk can open regular files for reading (and act on them
// through that descriptor, without /proc/self/fd) with the kernel refusing
// to open any device node that a writer renames in under a file's name.
// Internal to acl-manager; doc/ACL.md explains why this is safe.
#pragma once

#include <string>
#include <string_view>

#include "common/unique_fd.h"

namespace vmwarden::acl::detail {

struct NodevView {
  // The open_tree descriptor: keeps the copy's mounts attached to each other
  // while the walk runs (closing it dissolves the copy).
  UniqueFd tree;
  // The directory, O_RDONLY|O_DIRECTORY, opened through the copy.
  UniqueFd dir;
  explicit operator bool() const { return static_cast<bool>(dir); }
};

// The directory open as `dir_fd`, seen through a detached recursive copy of
// its mounts (open_tree(OPEN_TREE_CLONE|AT_RECURSIVE)) on which every mount is
// nodev. Empty when no such view can be had (no CAP_SYS_ADMIN, kernel or
// seccomp refusing the mount API, an unbindable mount below the directory,
// which the copy would leave out) or when force_no_nodev_view is on: the walk
// then pins every file with O_PATH.
NodevView open_nodev_view(int dir_fd);

// Behave as when no view can be had (on), or try again (off): for tests of
// the O_PATH path.
void force_no_nodev_view(bool on);

}  // namespace vmwarden::acl::detail
