// The set of files a grant verified: a lookup from any starting point finds
// exactly what a binary search finds, a ctime holds only strictly between
// its entry's bounds, and a set is loaded back only whole, unchanged and of
// the scope asked for.

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <random>

#include "acl-manager/verified_files.h"
#include "tests/support/support.h"

namespace vmwarden::acl::detail {
namespace {

VerifiedScope scope_of(std::uint64_t uid) { return VerifiedScope{uid, 0, 2049, 12, 0, 1879048192, 1879113727}; }

std::vector<VerifiedFile> random_files(std::mt19937_64& random, std::size_t count) {
  std::vector<VerifiedFile> files;
  for (std::size_t i = 0; i < count; ++i) {
    // Some inodes twice (a file met twice in a walk): one entry is kept.
    auto after = static_cast<std::int64_t>(random() % 4);
    files.push_back(VerifiedFile{random() % (count + 1), after, after + 1 + static_cast<std::int64_t>(random() % 3)});
  }
  return files;
}

TEST(VerifiedFiles, ALookupFromAnyStartFindsWhatABinarySearchFinds) {
  std::mt19937_64 random(7);
  for (std::size_t count : {0u, 1u, 2u, 3u, 17u, 1000u}) {
    VerifiedFiles set(scope_of(1), random_files(random, count));
    std::span<const VerifiedFile> files = set.files();
    auto by_inode = [](const VerifiedFile& a, const VerifiedFile& b) { return a.inode < b.inode; };
    ASSERT_TRUE(std::is_sorted(files.begin(), files.end(), by_inode));
    ASSERT_EQ(std::adjacent_find(files.begin(), files.end(),
                                 [](const VerifiedFile& a, const VerifiedFile& b) { return a.inode == b.inode; }),
              files.end())
        << "an inode twice";
    for (int probe = 0; probe < 5000; ++probe) {
      std::uint64_t wanted = random() % (count + 2);
      std::size_t near = count == 0 ? random() % 3 : random() % (count + 2);
      auto it = std::lower_bound(files.begin(), files.end(), VerifiedFile{wanted, 0, 0}, by_inode);
      std::optional<std::size_t> expected;
      if (it != files.end() && it->inode == wanted) expected = static_cast<std::size_t>(it - files.begin());
      ASSERT_EQ(set.index_of(wanted, near), expected) << "count " << count << ", inode " << wanted << ", from " << near;
    }
  }
}

TEST(VerifiedFiles, ACtimeHoldsOnlyStrictlyBetweenTheBounds) {
  VerifiedFile exact{5, 99, 101};
  EXPECT_TRUE(exact.holds(100));
  EXPECT_FALSE(exact.holds(99));
  EXPECT_FALSE(exact.holds(101));
  VerifiedFile written{5, 1000, 2000};
  EXPECT_FALSE(written.holds(1000)) << "the ctime before the write";
  EXPECT_TRUE(written.holds(1001));
  EXPECT_TRUE(written.holds(1999));
  EXPECT_FALSE(written.holds(2000)) << "a change at the end of the walk's clock tick or later";
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
  EXPECT_LT(saved.size(), 300u) << "inodes met twice were not made one";
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
  EXPECT_EQ(load_changed(content.substr(0, content.size() - 24)), 0u) << "cut short by a whole entry";
  EXPECT_EQ(load_changed(content.substr(0, content.size() - 1)), 0u) << "cut short";
  EXPECT_EQ(load_changed(content + std::string(24, '\0')), 0u) << "longer than its count";
  std::string magic = content;
  magic[0] = 'X';
  EXPECT_EQ(load_changed(magic), 0u) << "another magic";
  // The first two entries swapped: not sorted, so not written by save().
  std::string unsorted = content;
  std::swap_ranges(unsorted.begin() + 72, unsorted.begin() + 96, unsorted.begin() + 96);
  EXPECT_EQ(load_changed(unsorted), 0u) << "not sorted";
  // An entry whose range holds no ctime.
  std::string empty_range = content;
  std::int64_t bound = 7;
  std::memcpy(empty_range.data() + 72 + 8, &bound, sizeof bound);
  std::memcpy(empty_range.data() + 72 + 16, &bound, sizeof bound);
  EXPECT_EQ(load_changed(empty_range), 0u) << "an empty range";
}

}  // namespace
}  // namespace vmwarden::acl::detail
