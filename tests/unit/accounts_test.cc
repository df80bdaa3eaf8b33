// Host account lookups that work in the static binary (no in-process NSS).

#include "common/accounts.h"

#include <grp.h>
#include <gtest/gtest.h>
#include <pwd.h>

#include <fcntl.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <string>

#include "common/error.h"
#include "tests/support/support.h"

namespace vmwarden {
namespace {

TEST(Accounts, FindsUsersAndGroupsByNameInTheFiles) {
  auto root = find_user_in_files("root");
  ASSERT_TRUE(root.has_value());
  EXPECT_EQ(root->uid, 0u);
  EXPECT_EQ(root->gid, 0u);
  EXPECT_EQ(find_group_in_files("root"), gid_t{0});
  EXPECT_FALSE(find_user_in_files("no-such-user-vmwarden").has_value());
  EXPECT_FALSE(find_group_in_files("no-such-group-vmwarden").has_value());
}

TEST(Accounts, KnownIdsIncludeEveryUserAndGroupOfTheFiles) {
  EXPECT_TRUE(id_known_to_system(0));
  // A group id that no user has is known too: per-VM UIDs double as GIDs.
  FILE* file = std::fopen("/etc/group", "re");
  ASSERT_NE(file, nullptr);
  while (group* entry = ::fgetgrent(file)) EXPECT_TRUE(id_known_to_system(entry->gr_gid)) << entry->gr_name;
  std::fclose(file);
}

TEST(Accounts, AnIdNoDatabaseHasIsFree) {
  // In the registry's default range, where no system puts accounts.
  EXPECT_FALSE(id_known_to_system(1879113000u));
}

// In a child with a private mount namespace, `source` is bind-mounted over
// /etc/passwd, the child becomes `uid`, and the lookup of root must throw a
// SystemError with `expected_errno` for /etc/passwd; the child exits 0 when
// it does. Nothing of the host is touched: the mount dies with the child.
int lookup_with_passwd_replaced(const char* source, uid_t uid, int expected_errno) {
  pid_t child = fork();
  if (child < 0) return -1;
  if (child == 0) {
    if (unshare(CLONE_NEWNS) != 0 || mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0 ||
        mount(source, "/etc/passwd", nullptr, MS_BIND, nullptr) != 0)
      _exit(10);
    if (uid != 0 && (setresgid(uid, uid, uid) != 0 || setgroups(0, nullptr) != 0 || setresuid(uid, uid, uid) != 0))
      _exit(11);
    try {
      find_user_in_files("root");
      _exit(12);  // "no error": an unreadable file taken for an empty one
    } catch (const SystemError& e) {
      if (e.code() != expected_errno) {
        std::fprintf(stderr, "wrong error: %s\n", e.what());
        _exit(13);
      }
      if (std::string(e.what()).find("/etc/passwd") == std::string::npos) _exit(14);
      _exit(0);
    } catch (...) {
      _exit(15);
    }
  }
  int status = 0;
  if (waitpid(child, &status, 0) != child) return -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

// A passwd file the process cannot open is an error, not "no such user":
// a UID that exists could otherwise be handed out as a free one.
TEST(Accounts, AnUnreadablePasswdFileIsAnError) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root (mount namespace)";
  testing::TempDir dir("vmwarden-passwd");
  std::filesystem::permissions(dir.path(), std::filesystem::perms(0755));  // nobody reaches the file...
  testing::write_file(dir / "passwd", "root:x:0:0::/root:/bin/sh\n", 0600);  // ...and cannot open it
  EXPECT_EQ(lookup_with_passwd_replaced((dir / "passwd").c_str(), 65534, EACCES), 0);
}

// The same for a file that opens but fails to read (here a process's own
// memory file, which fails with EIO at offset 0).
TEST(Accounts, APasswdFileThatFailsToReadIsAnError) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root (mount namespace)";
  EXPECT_EQ(lookup_with_passwd_replaced("/proc/self/mem", 0, EIO), 0);
}

}  // namespace
}  // namespace vmwarden
