// Host account lookups that work in the static binary (no in-process NSS).

#include "common/accounts.h"

#include <grp.h>
#include <gtest/gtest.h>
#include <pwd.h>

#include <cstdio>

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

}  // namespace
}  // namespace vmwarden
