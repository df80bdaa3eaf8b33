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

// getent loads NSS modules and needs no privilege: it runs as nobody, with
// no capability and no_new_privs. In a child with a private mount namespace,
// a script bind-mounted over /usr/bin/getent records how it was run.
TEST(Accounts, GetentRunsAsNobodyWithoutCapabilities) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root (mount namespace)";
  if (::access("/usr/bin/getent", X_OK) != 0) GTEST_SKIP() << "no /usr/bin/getent to stand in for";
  testing::TempDir dir("vmwarden-getent");
  std::filesystem::permissions(dir.path(), std::filesystem::perms(0755));
  std::filesystem::path record = dir / "record", script = dir / "getent";
  testing::write_file(record, "", 0644);
  ASSERT_EQ(::chown(record.c_str(), 65534, 65534), 0);  // nobody appends to it, and nothing else
  // $$ is the shell that was exec'd as getent; it answers "no such key".
  testing::write_file(script,
                      "#!/bin/sh\n{ echo \"database $1\"; grep -E '^(Uid|Gid|Groups|CapInh|CapPrm|CapEff|CapBnd|CapAmb|"
                      "NoNewPrivs):' /proc/$$/status; } >> " + record.string() + "\nexit 2\n",
                      0755);
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    if (unshare(CLONE_NEWNS) != 0 || mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0 ||
        mount(script.c_str(), "/usr/bin/getent", nullptr, MS_BIND, nullptr) != 0)
      _exit(10);
    try {
      // Exit 2 from both runs is a clear "unknown".
      _exit(ids_known_to_system({1879113000u}).empty() ? 0 : 11);
    } catch (...) {
      _exit(12);
    }
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
  std::string seen = testing::read_file(record);
  for (const char* expected :
       {"database passwd\n", "database group\n", "Uid:\t65534\t65534\t65534\t65534\n",
        "Gid:\t65534\t65534\t65534\t65534\n", "CapInh:\t0000000000000000\n", "CapPrm:\t0000000000000000\n",
        "CapEff:\t0000000000000000\n", "CapBnd:\t0000000000000000\n", "CapAmb:\t0000000000000000\n",
        "NoNewPrivs:\t1\n"})
    EXPECT_NE(seen.find(expected), std::string::npos) << "no \"" << expected << "\" in what getent saw:\n" << seen;
  // Both runs alike, and no supplementary group ("Groups:" then nothing).
  EXPECT_EQ(seen.find("Uid:\t0"), std::string::npos) << seen;
  EXPECT_EQ(seen.find("NoNewPrivs:\t0"), std::string::npos) << seen;
  for (size_t at = seen.find("Groups:"); at != std::string::npos; at = seen.find("Groups:", at + 1))
    EXPECT_EQ(seen.substr(at, seen.find('\n', at) - at).find_first_of("0123456789"), std::string::npos) << seen;
}

}  // namespace
}  // namespace vmwarden
