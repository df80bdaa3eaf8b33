// The set of files a grant verified: a lookup from any starting point finds
// exactly what a binary search finds, and a set is loaded back only whole,
// unchanged and of the scope asked for.

#include <gtest/gtest.h>

#include <algorithm>
#include <random>

#include "acl-manager/verified_files.h"
#include "tests/support/support.h"

namespace vmwarden::acl::detail {
namespace {

VerifiedScope scope_of(std::uint64_t uid) { return VerifiedScope{uid, 0, 2049, 12, 0, 1879048192, 1879113727}; }

std::vector<VerifiedFile> random_files(std::mt19937_64& random, std::size_t count) {
  std::vector<VerifiedFile> files;
  for (std::size_t i = 0; i < count; ++i) {
    // Few distinct inodes: the same inode with other ctimes, as after changes.
    files.push_back(VerifiedFile{random() % (count + 1), static_cast<std::int64_t>(random() % 4)});
  }
  return files;
}

TEST(VerifiedFiles, ALookupFromAnyStartFindsWhatABinarySearchFinds) {
  std::mt19937_64 random(7);
  for (std::size_t count : {0u, 1u, 2u, 3u, 17u, 1000u}) {
    VerifiedFiles set(scope_of(1), random_files(random, count));
    std::span<const VerifiedFile> files = set.files();
    ASSERT_TRUE(std::is_sorted(files.begin(), files.end()));
    ASSERT_EQ(std::adjacent_find(files.begin(), files.end()), files.end()) << "not unique";
    for (int probe = 0; probe < 5000; ++probe) {
      VerifiedFile wanted{random() % (count + 2), static_cast<std::int64_t>(random() % 5)};
      std::size_t near = count == 0 ? random() % 3 : random() % (count + 2);
      auto it = std::lower_bound(files.begin(), files.end(), wanted);
      std::optional<std::size_t> expected;
      if (it != files.end() && *it == wanted) expected = static_cast<std::size_t>(it - files.begin());
      ASSERT_EQ(set.index_of(wanted, near), expected)
          << "count " << count << ", inode " << wanted.inode << ", ctime " << wanted.ctime_ns << ", from " << near;
    }
  }
}

TEST(VerifiedFiles, ASetIsLoadedBackOnlyWholeAndOfItsScope) {
  testing::TempDir temp;
  std::filesystem::path file = temp / "verified/1879048192/key";
  std::mt19937_64 random(11);
  VerifiedFiles saved(scope_of(1879048192), random_files(random, 300));
  saved.save(file);
  VerifiedFiles loaded = VerifiedFiles::load(file, scope_of(1879048192));
  ASSERT_EQ(loaded.size(), saved.size());
  EXPECT_TRUE(std::equal(loaded.files().begin(), loaded.files().end(), saved.files().begin()));
  EXPECT_TRUE(VerifiedFiles::load(file, scope_of(1879048193)).empty()) << "taken for another UID";
  VerifiedScope other_access = scope_of(1879048192);
  other_access.writable = 1;
  EXPECT_TRUE(VerifiedFiles::load(file, other_access).empty()) << "taken for other access";
  EXPECT_TRUE(VerifiedFiles::load(temp / "missing", scope_of(1879048192)).empty());

  std::string content = testing::read_file(file);
  auto load_changed = [&](std::string changed) {
    testing::write_file(file, changed);
    return VerifiedFiles::load(file, scope_of(1879048192)).size();
  };
  EXPECT_EQ(load_changed(content), saved.size()) << "the control";
  EXPECT_EQ(load_changed(content.substr(0, content.size() - 16)), 0u) << "cut short by a whole entry";
  EXPECT_EQ(load_changed(content.substr(0, content.size() - 1)), 0u) << "cut short";
  EXPECT_EQ(load_changed(content + std::string(16, '\0')), 0u) << "longer than its count";
  std::string magic = content;
  magic[0] = 'X';
  EXPECT_EQ(load_changed(magic), 0u) << "another magic";
  // The first two entries swapped: not sorted, so not written by save().
  std::string unsorted = content;
  std::swap_ranges(unsorted.begin() + 72, unsorted.begin() + 88, unsorted.begin() + 88);
  EXPECT_EQ(load_changed(unsorted), 0u) << "not sorted";
}

}  // namespace
}  // namespace vmwarden::acl::detail
