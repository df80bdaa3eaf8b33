// The nodev view of a tree: the same directory, devices refused, O_PATH
// still allowed; and the mountinfo check that keeps the walk off it when the
// copy would leave out an unbindable mount; the mount points of a device;
// the mounts listed, with the directory each shows, and the mount of a path.

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "acl-manager/nodev_view.h"
#include "common/error.h"
#include "common/mountinfo.h"
#include "common/unique_fd.h"
#include "tests/support/support.h"

namespace vmwarden::acl::detail {
namespace {

TEST(NodevView, UnbindableMountsAtOrBelowThePathAreFound) {
  const char* mountinfo =
      "22 27 0:21 / /proc rw,relatime shared:12 - proc proc rw\n"
      "30 27 0:30 / /srv/tree/a\\040b rw unbindable - tmpfs tmpfs rw\n"
      "31 27 0:31 / /srv/treetop rw unbindable - tmpfs tmpfs rw\n"
      "32 27 0:32 / /srv/other rw master:3 unbindable - tmpfs tmpfs rw\n"
      "33 27 0:33 / /srv/shared rw shared:4 - tmpfs unbindable rw\n";
  EXPECT_TRUE(has_unbindable_mount_at_or_below(mountinfo, "/srv/tree"));
  EXPECT_TRUE(has_unbindable_mount_at_or_below(mountinfo, "/srv/tree/a b"));
  EXPECT_FALSE(has_unbindable_mount_at_or_below(mountinfo, "/srv/tree/a")) << "a\\040b is \"a b\", not below a";
  EXPECT_TRUE(has_unbindable_mount_at_or_below(mountinfo, "/srv/treetop"));
  EXPECT_TRUE(has_unbindable_mount_at_or_below(mountinfo, "/srv/other/"));
  EXPECT_FALSE(has_unbindable_mount_at_or_below(mountinfo, "/srv/other/x"));
  EXPECT_FALSE(has_unbindable_mount_at_or_below(mountinfo, "/srv/shared")) << "\"unbindable\" after the - is a source";
  EXPECT_FALSE(has_unbindable_mount_at_or_below(mountinfo, "/proc"));
  EXPECT_FALSE(has_unbindable_mount_at_or_below(mountinfo, "/var"));
  EXPECT_TRUE(has_unbindable_mount_at_or_below(mountinfo, "/"));
  EXPECT_FALSE(has_unbindable_mount_at_or_below("", "/"));
}

TEST(Mountinfo, AtOrBelowComparesWholeComponents) {
  EXPECT_TRUE(at_or_below("/run/vm/mnt/data", "/run/vm"));
  EXPECT_TRUE(at_or_below("/run/vm", "/run/vm/"));
  EXPECT_TRUE(at_or_below("/run/vm/", "/run/vm"));
  EXPECT_TRUE(at_or_below("/anything", "/"));
  EXPECT_FALSE(at_or_below("/run/vm2", "/run/vm"));
  EXPECT_FALSE(at_or_below("/run", "/run/vm"));
}

TEST(Mountinfo, MountsOfATypeListWritableMountsOfARootFirstAndIdmappedLast) {
  const char* mountinfo =
      "27 1 254:0 /srv /home/a\\040b rw,relatime - ext4 /dev/vda rw\n"
      "26 1 254:0 / /mnt/ro ro,relatime - ext4 /dev/vda rw\n"
      "28 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw\n"
      "29 27 254:1 / /boot rw - ext2 /dev/vdb rw\n"
      "30 28 254:2 / /mnt/again rw master:4 - ext4 /dev/vdc rw\n"
      "32 28 254:0 / /mnt/mapped rw,idmapped - ext4 /dev/vda rw\n"
      "31 28 0:254 / /mnt/other rw - tmpfs ext4 rw\n";
  auto paths = [](const std::vector<MountPoint>& points) {
    std::vector<std::string> out;
    for (const MountPoint& point : points) out.push_back(point.path);
    return out;
  };
  std::vector<MountPoint> ext4 = mount_points_of_type(mountinfo, "ext4");
  EXPECT_EQ(paths(ext4), (std::vector<std::string>{"/", "/mnt/again", "/mnt/ro", "/home/a b", "/mnt/mapped"}));
  ASSERT_EQ(ext4.size(), 5u);
  EXPECT_EQ(ext4[1].id, 30);
  EXPECT_FALSE(ext4[1].idmapped);
  EXPECT_TRUE(ext4[4].idmapped) << "idmapped mounts come last, marked";
  EXPECT_EQ(paths(mount_points_of_type(mountinfo, "ext2")), (std::vector<std::string>{"/boot"}));
  EXPECT_TRUE(mount_points_of_type(mountinfo, "xfs").empty());
  EXPECT_EQ(mount_points_of_type(mountinfo, "tmpfs").size(), 1u) << "the type, not the source";
}

// Each mount's id, parent, device and the directory of its filesystem it
// shows (a bind mount's source), unescaped: what tells a bind mount of a
// directory from another directory with the same name.
TEST(Mountinfo, ListedMountsCarryTheDirectoryTheyShow) {
  const char* mountinfo =
      "28 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw\n"
      "40 28 254:0 /var/lib/vm\\040state/uids /srv/a\\040b rw,idmapped - ext4 /dev/vda rw\n"
      "41 40 0:52 / /srv/a\\040b/t rw - tmpfs tmpfs rw\n";
  std::vector<MountPoint> mounts = list_mounts(mountinfo);
  ASSERT_EQ(mounts.size(), 3u);
  EXPECT_EQ(mounts[0].root, "/");
  EXPECT_EQ(mounts[1].id, 40);
  EXPECT_EQ(mounts[1].parent, 28);
  EXPECT_EQ(mounts[1].device, makedev(254, 0));
  EXPECT_EQ(mounts[1].root, "/var/lib/vm state/uids");
  EXPECT_EQ(mounts[1].path, "/srv/a b");
  EXPECT_TRUE(mounts[1].idmapped);
  EXPECT_EQ(mounts[2].parent, 40);
  EXPECT_EQ(mounts[2].device, makedev(0, 52));
  EXPECT_TRUE(list_mounts("").empty());
}

// The mount a path is on, as mountinfo numbers it.
TEST(Mountinfo, TheMountOfAPathIsTheOneMountinfoListsThere) {
  int id = mount_id_of_path("/proc/self");
  bool found = false;
  for (const MountPoint& mount : list_mounts(read_mountinfo()))
    found = found || (mount.id == id && mount.path == "/proc");
  EXPECT_TRUE(found) << "mount " << id;
  EXPECT_THROW(mount_id_of_path("/nonexistent/vmwarden"), SystemError);
}

TEST(NodevView, SameDirectoryDevicesRefused) {
  testing::TempDir temp;
  testing::write_file(temp / "file", "x");
  UniqueFd dir(::open(temp.path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  ASSERT_TRUE(dir);
  NodevView view = open_nodev_view(dir.get());
  if (!view) GTEST_SKIP() << "no nodev view here (not root, or the mount API is refused)";

  struct stat a, b;
  ASSERT_EQ(::fstat(dir.get(), &a), 0);
  ASSERT_EQ(::fstat(view.dir.get(), &b), 0);
  EXPECT_EQ(a.st_dev, b.st_dev);
  EXPECT_EQ(a.st_ino, b.st_ino);
  UniqueFd file(::openat(view.dir.get(), "file", O_RDONLY | O_NONBLOCK | O_CLOEXEC));
  EXPECT_TRUE(file) << "regular files open for reading";

  // /dev/null's numbers: opening it outside the view works, through it the
  // kernel refuses before the driver is reached; O_PATH still works.
  if (::mknodat(dir.get(), "null", S_IFCHR | 0666, makedev(1, 3)) != 0) GTEST_SKIP() << "mknod: not root";
  UniqueFd outside(::openat(dir.get(), "null", O_RDONLY | O_NONBLOCK | O_CLOEXEC));
  if (!outside) GTEST_SKIP() << "the test directory's own mount is nodev";
  errno = 0;
  UniqueFd inside(::openat(view.dir.get(), "null", O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC));
  EXPECT_FALSE(inside);
  EXPECT_EQ(errno, EACCES);
  UniqueFd path(::openat(view.dir.get(), "null", O_PATH | O_NOFOLLOW | O_CLOEXEC));
  ASSERT_TRUE(path);
  ASSERT_EQ(::fstat(path.get(), &b), 0);
  EXPECT_TRUE(S_ISCHR(b.st_mode));
}

TEST(NodevView, ForcedOffGivesNone) {
  testing::TempDir temp;
  UniqueFd dir(::open(temp.path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  ASSERT_TRUE(dir);
  force_no_nodev_view(true);
  EXPECT_FALSE(open_nodev_view(dir.get()));
  force_no_nodev_view(false);
}

}  // namespace
}  // namespace vmwarden::acl::detail
