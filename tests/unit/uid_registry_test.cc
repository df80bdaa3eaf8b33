// The UID registry: range, exclusions, aliases, single-use reuse order,
// leases, grant records, crash leftovers and bad input.

#include <fmt/core.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <functional>
#include <pwd.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>

#include "acl-manager/uid_registry.h"
#include "common/error.h"
#include "common/uid_alias.h"
#include "tests/support/support.h"

namespace vmwarden::acl {
namespace {

using testing::TempDir;

constexpr uid_t kFirst = 1879048192;

struct Fixture {
  TempDir temp{"vmwarden-registry"};
  Locations locations{temp / "config", temp / "state", temp / "run"};
  RegistryOptions options(uid_t first, uid_t last) const {
    RegistryOptions o;
    o.range = UidRange{first, last};
    o.subordinate_id_files = {temp / "subuid", temp / "subgid"};
    return o;
  }
};

TEST(UidRegistry, DefaultRangeAndConfigFile) {
  Fixture f;
  EXPECT_EQ(UidRegistry(f.locations).range().to_string(), "1879048192-1879113727");
  std::filesystem::create_directories(f.locations.config_dir);
  testing::write_file(f.locations.config_dir / "uid-range", "# vmwarden UIDs\n 200000000-200000099\n");
  EXPECT_EQ(UidRegistry(f.locations).range().to_string(), "200000000-200000099");
  testing::write_file(f.locations.config_dir / "uid-range", "100-oops\n");
  EXPECT_THROW(UidRegistry{f.locations}, UsageError);
  EXPECT_THROW(parse_uid_range("0-10"), UsageError);
  EXPECT_THROW(parse_uid_range("20-10"), UsageError);
  EXPECT_THROW(parse_uid_range("1-4294967294"), UsageError);
  // The limits vmwarden-uid(1) gives, at their edges.
  EXPECT_EQ(parse_uid_range("1-2147483647").to_string(), "1-2147483647");
  EXPECT_THROW(parse_uid_range("1-2147483648"), UsageError);
}

TEST(UidRegistry, AliasesAreStableAndDistinct) {
  Fixture f;
  uid_t work = UidRegistry(f.locations, f.options(kFirst, kFirst + 9)).allocate_alias("work");
  UidRegistry registry(f.locations, f.options(kFirst, kFirst + 9));
  EXPECT_EQ(registry.allocate_alias("work"), work);
  uid_t files = registry.allocate_alias("files");
  EXPECT_NE(files, work);
  EXPECT_EQ(registry.resolve("work"), work);
  EXPECT_EQ(registry.resolve(std::to_string(files)), files);
  EXPECT_EQ(testing::read_file(f.locations.state_dir / "uids/allocated" / std::to_string(work)), "alias work\n");
}

// An alias or UID as typed is echoed escaped: an ESC in it never reaches
// the terminal raw.
TEST(UidRegistry, ABadAliasIsEchoedEscaped) {
  Fixture f;
  UidRegistry registry(f.locations, f.options(kFirst, kFirst + 9));
  for (auto attempt : {std::function<void()>([&] { registry.allocate_alias("a\x1b[31m"); }),
                       std::function<void()>([&] { registry.resolve("a\x1b[31m"); })}) {
    try {
      attempt();
      ADD_FAILURE() << "accepted";
    } catch (const UsageError& e) {
      std::string what = e.what();
      EXPECT_EQ(what.find('\x1b'), std::string::npos) << what;
      EXPECT_NE(what.find("a\\x1b[31m"), std::string::npos) << what;
    }
  }
}

// UIDs allocated before the range moved stay valid: they can still be named
// and released, while a number outside the range that is not allocated is
// refused as before.
TEST(UidRegistry, AUidAllocatedBeforeTheRangeMovedCanStillBeReleased) {
  Fixture f;
  uid_t old_uid = UidRegistry(f.locations, f.options(kFirst, kFirst + 9)).allocate_alias("old");
  UidRegistry moved(f.locations, f.options(kFirst + 100, kFirst + 109));
  EXPECT_EQ(moved.resolve(std::to_string(old_uid)), old_uid);
  EXPECT_THROW(moved.resolve(std::to_string(old_uid + 1)), UsageError);
  moved.release(old_uid);
  EXPECT_FALSE(moved.find(old_uid)->allocated);
  EXPECT_THROW(moved.release(old_uid), UsageError) << "released already, and outside the range";
}

TEST(UidRegistry, ASubordinateIdFileThatCannotBeReadFailsTheAllocation) {
  Fixture f;
  std::filesystem::create_directory(f.temp / "subuid");
  UidRegistry registry(f.locations, f.options(kFirst, kFirst + 9));
  try {
    registry.allocate_single_use();
    ADD_FAILURE() << "a UID was handed out without the subordinate ranges";
  } catch (const std::runtime_error& e) {
    EXPECT_THAT(e.what(), ::testing::HasSubstr((f.temp / "subuid").string() + ": a directory; expected a regular file"));
  }
  EXPECT_TRUE(registry.list().empty());
}

TEST(UidRegistry, NeverHandsOutSubordinateOrPasswdIds) {
  Fixture f;
  testing::write_file(f.temp / "subuid", fmt::format("someone:{}:3\n", kFirst));
  testing::write_file(f.temp / "subgid", fmt::format("someone:{}:2\n", kFirst + 3));
  UidRegistry registry(f.locations, f.options(kFirst, kFirst + 9));
  EXPECT_EQ(registry.allocate_single_use(), kFirst + 5);

  // A range holding only users from the passwd database has nothing to give.
  struct passwd* daemon_user = ::getpwnam("daemon");
  ASSERT_NE(daemon_user, nullptr);
  UidRegistry users(f.locations, f.options(daemon_user->pw_uid, daemon_user->pw_uid));
  try {
    users.allocate_single_use();
    ADD_FAILURE() << "the daemon user's UID was handed out";
  } catch (const std::runtime_error& e) {
    EXPECT_THAT(e.what(), ::testing::HasSubstr("no free UID in the range")) << "failed for another reason";
    EXPECT_THAT(e.what(), ::testing::HasSubstr(": 0 allocated, 1 never handed out (known to the user or group database"));
    EXPECT_THAT(e.what(), ::testing::Not(::testing::HasSubstr("acl sweep"))) << "a sweep cannot help here";
  }
}

TEST(UidRegistry, AccountChecksAreAskedInBatchesAndKeptForAWhile) {
  Fixture f;
  UidRegistry registry(f.locations, f.options(kFirst, kFirst + 99));
  EXPECT_EQ(registry.allocate_single_use(), kFirst);
  // The answer covers the next UIDs too, so the next allocations ask nothing.
  std::filesystem::path vetted = f.locations.state_dir / "uids" / "vetted";
  std::string content = testing::read_file(vetted);
  EXPECT_NE(content.find(fmt::format(" {} {}\n", kFirst, kFirst + 63)), std::string::npos) << content;

  // A fresh answer is trusted: a UID it names as known is skipped ...
  auto now = static_cast<long long>(::time(nullptr));
  testing::write_file(vetted, fmt::format("{} {} {}\n{}\n", now, kFirst + 1, kFirst + 9, kFirst + 1));
  EXPECT_EQ(registry.allocate_single_use(), kFirst + 2);
  // ... an old one is asked again (and this UID is known to nobody).
  testing::write_file(vetted, fmt::format("{} {} {}\n{}\n", now - 3600, kFirst + 1, kFirst + 9, kFirst + 1));
  EXPECT_EQ(registry.allocate_single_use(), kFirst + 1);
  // Damage is only a cache miss.
  testing::write_file(vetted, "garbage");
  EXPECT_EQ(registry.allocate_single_use(), kFirst + 3);
}

TEST(UidRegistry, SingleUseReuseIsLeastRecentlyReleasedFirst) {
  Fixture f;
  UidRegistry registry(f.locations, f.options(kFirst, kFirst + 3));
  std::vector<uid_t> uids;
  for (int i = 0; i < 4; ++i) uids.push_back(registry.allocate_single_use());
  EXPECT_EQ(uids, (std::vector<uid_t>{kFirst, kFirst + 1, kFirst + 2, kFirst + 3}));
  EXPECT_THROW(registry.allocate_single_use(), std::runtime_error) << "the range is exhausted";
  for (uid_t uid : {kFirst + 2, kFirst, kFirst + 3, kFirst + 1}) registry.release(uid);
  // kFirst + 3 has a grant record left: it is skipped until the record goes.
  registry.add_grant_record(GrantRecord{kFirst + 3, "/srv/x", Access::ro, false});
  EXPECT_EQ(registry.allocate_single_use(), kFirst + 2);
  EXPECT_EQ(registry.allocate_single_use(), kFirst);
  EXPECT_EQ(registry.allocate_single_use(), kFirst + 1);
  EXPECT_THROW(registry.allocate_single_use(), std::runtime_error);
  registry.remove_grant_record(kFirst + 3, "/srv/x");
  EXPECT_EQ(registry.allocate_single_use(), kFirst + 3);
}

// A kill -9 while a grant record is written leaves its temporary file in
// grants/UID/. It records nothing: it must not keep the UID out of the pool,
// nor count as a record; the next sweep removes it, and the next allocation
// those of the caches in uids/.
TEST(UidRegistry, TemporaryFilesOfWritesCutShortKeepNoUidOut) {
  Fixture f;
  UidRegistry registry(f.locations, f.options(kFirst, kFirst));
  uid_t uid = registry.allocate_single_use();
  ASSERT_EQ(uid, kFirst);
  std::filesystem::path grants = f.locations.state_dir / "grants" / std::to_string(uid);
  std::filesystem::create_directories(grants);
  testing::write_file(grants / ".tmp-4242-9f", "path /srv/x\naccess rw\n");
  std::filesystem::path cache_leftover = f.locations.state_dir / "uids/.tmp-4242-a0";
  testing::write_file(cache_leftover, "0 1 2\n");
  ASSERT_TRUE(registry.find(uid));
  EXPECT_EQ(registry.find(uid)->grant_records, 0u);
  EXPECT_TRUE(registry.grant_records(uid).empty());

  registry.release(uid);
  EXPECT_EQ(registry.allocate_single_use(), uid) << "the only UID of the range is free again";
  EXPECT_FALSE(std::filesystem::exists(cache_leftover));
  registry.remove_grant_leftovers();
  EXPECT_FALSE(std::filesystem::exists(grants));
}

// What a power failure can leave of the records written without fsync and
// rename: a single-use allocation lost (the UID looks never used) or cut
// short (empty).
TEST(UidRegistry, PowerFailureRemnantsOfSingleUseRecordsAreSafe) {
  Fixture f;
  UidRegistry registry(f.locations, f.options(kFirst, kFirst + 9));
  // kFirst's allocation was lost after it was granted a tree: its grant
  // record keeps it from being handed out again.
  registry.add_grant_record(GrantRecord{kFirst, "/srv/x", Access::rw, false});
  uid_t next = registry.allocate_single_use();
  EXPECT_EQ(next, kFirst + 1);
  // An allocation cut short reads as single-use, without alias: still taken.
  testing::write_file(f.locations.state_dir / "uids/allocated" / std::to_string(kFirst + 2), "singl");
  testing::write_file(f.locations.state_dir / "uids/allocated" / std::to_string(kFirst + 3), "");
  EXPECT_EQ(registry.allocate_single_use(), kFirst + 4);
  ASSERT_TRUE(registry.find(kFirst + 2));
  EXPECT_TRUE(registry.find(kFirst + 2)->allocated);
  EXPECT_EQ(registry.find(kFirst + 3)->alias, "");
  // A release is recorded as released/SEQ-UID with SEQ the release time.
  registry.release(next);
  auto released = testing::directory_names(f.locations.state_dir / "uids/released");
  ASSERT_EQ(released.size(), 1u);
  EXPECT_EQ(released[0].size(), 21 + std::to_string(next).size()) << released[0];
  EXPECT_TRUE(released[0].ends_with("-" + std::to_string(next))) << released[0];
  EXPECT_FALSE(std::filesystem::exists(f.locations.state_dir / "uids/allocated" / std::to_string(next)))
      << "the allocation record became the release record";

  // A lease whose allocation record was lost is still released: the release
  // record is then created, and the UID is free again.
  {
    UidLease lease = registry.lease_single_use();
    ASSERT_TRUE(std::filesystem::remove(f.locations.state_dir / "uids/allocated" / std::to_string(lease.uid())));
    uid_t lost = lease.uid();
    lease.release();
    released = testing::directory_names(f.locations.state_dir / "uids/released");
    EXPECT_EQ(std::count_if(released.begin(), released.end(),
                            [&](const std::string& name) { return name.ends_with("-" + std::to_string(lost)); }),
              1)
        << "released records: " << released.size();
    ASSERT_TRUE(registry.find(lost));
    EXPECT_FALSE(registry.find(lost)->allocated);
  }
}

// uids/never-used spares single-use leases the listing of released/. Lost,
// it is computed again; left lower than the truth (a power failure), it can
// only make a released UID come back early, never hand out an allocated one
// or one with grant records.
TEST(UidRegistry, TheHighWaterMarkIsACacheThatNeverHandsOutAUsedUid) {
  Fixture f;
  UidRegistry registry(f.locations, f.options(kFirst, kFirst + 9));
  std::filesystem::path mark = f.locations.state_dir / "uids/never-used";
  uid_t a = registry.allocate_single_use();
  uid_t b = registry.allocate_single_use();
  registry.release(a);
  EXPECT_EQ(testing::read_file(mark), fmt::format("{:010} {:010} {:011}\n", kFirst, kFirst + 9, kFirst + 2));
  {
    UidLease lease = registry.lease_single_use();
    EXPECT_EQ(lease.uid(), kFirst + 2) << "never used first, the released one waits";
  }
  std::filesystem::remove(mark);
  EXPECT_EQ(registry.lease_single_use().uid(), kFirst + 3) << "computed again from the full listing";
  EXPECT_EQ(testing::read_file(mark), fmt::format("{:010} {:010} {:011}\n", kFirst, kFirst + 9, kFirst + 4));
  // Stale: says nothing from kFirst up was used. b is still allocated and
  // kFirst + 4 has a grant record: neither is handed out.
  registry.add_grant_record(GrantRecord{kFirst + 4, "/srv/x", Access::ro, false});
  testing::write_file(mark, fmt::format("{:010} {:010} {:011}\n", kFirst, kFirst + 9, kFirst));
  UidLease early = registry.lease_single_use();
  EXPECT_EQ(early.uid(), a) << "the released UID comes back early, which is all a stale mark can do";
  UidLease next = registry.lease_single_use();
  EXPECT_NE(next.uid(), b);
  EXPECT_NE(next.uid(), kFirst + 4);
  // A mark of another range is ignored.
  testing::write_file(mark, "0000000001 0000000009 00000000001\n");
  EXPECT_EQ(registry.lease_single_use().uid(), kFirst + 5);
}

TEST(UidRegistry, AnUnchangedGrantRecordIsNotRewritten) {
  Fixture f;
  UidRegistry registry(f.locations, f.options(kFirst, kFirst + 9));
  registry.add_grant_record(GrantRecord{kFirst, "/srv/x", Access::ro, false});
  std::filesystem::path record;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(f.locations.state_dir / "grants"))
    if (entry.is_regular_file() && entry.path().parent_path().filename() == std::to_string(kFirst))
      record = entry.path();
  ASSERT_FALSE(record.empty());
  struct stat before {};
  ASSERT_EQ(::stat(record.c_str(), &before), 0);
  registry.add_grant_record(GrantRecord{kFirst, "/srv/x", Access::ro, false});
  struct stat same {};
  ASSERT_EQ(::stat(record.c_str(), &same), 0);
  EXPECT_EQ(same.st_ino, before.st_ino) << "rewritten (a rename would give a new inode)";
  // A change of access is written.
  registry.add_grant_record(GrantRecord{kFirst, "/srv/x", Access::rw, false});
  struct stat changed {};
  ASSERT_EQ(::stat(record.c_str(), &changed), 0);
  EXPECT_NE(changed.st_ino, before.st_ino);
  EXPECT_EQ(registry.grant_records(kFirst).at(0).access, Access::rw);
}

// The directories a record names by file handle survive the text form
// byte for byte; a damaged root line is left out, and the rest of the
// record still reads.
TEST(UidRegistry, GrantRecordsKeepTheirRootsAndSkipDamagedRootLines) {
  Fixture f;
  UidRegistry registry(f.locations, f.options(kFirst, kFirst + 9));
  GrantRecord record{kFirst, "/srv/x", Access::rw, true};
  record.by_path = true;
  record.roots.push_back(RecordedRoot{makedev(254, 0), 1234567, "ext4", "fsid:1a2b3c4d5e6f7788", "", 1,
                                      std::string("\x00\x01\xfe\xff", 4)});
  record.roots.push_back(RecordedRoot{makedev(0, 45), 2, "tmpfs", "uuid:00112233445566778899aabbccddeeff",
                                      "62485ee1-b3ab-4b41-9fe1-374a28f002ad", 0x81, std::string(8, '\x7f')});
  registry.add_grant_record(record);
  std::vector<GrantRecord> read = registry.grant_records(kFirst);
  ASSERT_EQ(read.size(), 1u);
  EXPECT_EQ(read[0].roots, record.roots);
  EXPECT_TRUE(read[0].cross_mounts);
  EXPECT_TRUE(read[0].by_path);
  // Kept once set, as cross_mounts is.
  GrantRecord again = record;
  again.by_path = false;
  registry.add_grant_record(again);
  EXPECT_TRUE(registry.grant_records(kFirst).at(0).by_path);

  std::filesystem::path dir = f.locations.state_dir / "grants" / std::to_string(kFirst);
  std::filesystem::path file = std::filesystem::directory_iterator(dir)->path();
  std::string text = testing::read_file(file);
  EXPECT_NE(text.find("root 254:0 1234567 ext4 fsid:1a2b3c4d5e6f7788 - 1 0001feff\n"), std::string::npos) << text;
  testing::write_file(file, text +
                                "root 254:0 99 ext4 fsid:1 - 1 abc\n"     // odd length
                                "root 254 99 ext4 fsid:1 - 1 ab\n"        // no minor
                                "root 1:2 3 ext4 fsid:1 - 4 zz\n"         // not hex
                                "root 1:2 -3 ext4 fsid:1 - 4 ab\n"        // negative
                                "root 1:2 3 ext4 fsid:1 - -4 ab\n"
                                "root 1:2 3 ext4 1 - 4 ab\n"              // an id of no kind
                                "root 1:2 3 ext4 fsid: - 4 ab\n"          // an empty id
                                "root 1:2 3 ext4 fsid:1 4 ab\n"           // a field short
                                "root 1:2 3 ext4 fsid:1 - 4 ab extra\n"   // one too many
                                "root 1:2 3 ext4 fsid:1 - 80000000 ab\n");  // type beyond int
  read = registry.grant_records(kFirst);
  ASSERT_EQ(read.size(), 1u);
  EXPECT_EQ(read[0].roots, record.roots);
  EXPECT_EQ(read[0].tree, "/srv/x");
  // The same directory whatever device number its filesystem has now.
  RecordedRoot renumbered = record.roots[0];
  renumbered.device = makedev(8, 1);
  EXPECT_TRUE(renumbered.same_directory(record.roots[0]));
  renumbered.fs_id = "uuid:01";
  EXPECT_FALSE(renumbered.same_directory(record.roots[0]));
}

TEST(UidRegistry, NeverUsedUidsComeBeforeReleasedOnes) {
  Fixture f;
  UidRegistry registry(f.locations, f.options(kFirst, kFirst + 9));
  uid_t first = registry.allocate_single_use();
  registry.release(first);
  EXPECT_EQ(registry.allocate_single_use(), kFirst + 1);
}

TEST(UidRegistry, LeasesLockAndSingleUseLeasesReleaseOnDestruction) {
  Fixture f;
  UidRegistry registry(f.locations, f.options(kFirst, kFirst + 9));
  uid_t uid;
  {
    UidLease lease = registry.lease_single_use();
    uid = lease.uid();
    EXPECT_TRUE(lease.single_use());
    EXPECT_TRUE(registry.is_leased(uid));
    EXPECT_THROW(registry.release(uid), std::runtime_error) << "a leased UID cannot be released";
    UidLease moved = std::move(lease);
    EXPECT_TRUE(registry.is_leased(uid));
  }
  EXPECT_FALSE(registry.is_leased(uid));
  auto info = registry.find(uid);
  ASSERT_TRUE(info);
  EXPECT_FALSE(info->allocated) << "destroying a single-use lease returns the UID";

  UidLease work = registry.lease_alias("work");
  EXPECT_THROW(registry.lease_alias("work"), std::runtime_error) << "one holder at a time";
  uid_t work_uid = work.uid();
  work.release();
  EXPECT_FALSE(registry.is_leased(work_uid));
  EXPECT_TRUE(registry.find(work_uid)->allocated) << "an alias outlives its lease";
}

TEST(UidRegistry, ALeaseDiesWithItsProcess) {
  Fixture f;
  UidRegistry registry(f.locations, f.options(kFirst, kFirst + 9));
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  pid_t child = ::fork();
  if (child == 0) {
    UidLease lease = registry.lease_single_use();
    char byte = 1;
    (void)!::write(ready[1], &byte, 1);
    ::pause();
    ::_exit(0);
  }
  char byte;
  ASSERT_EQ(::read(ready[0], &byte, 1), 1);
  EXPECT_TRUE(registry.is_leased(kFirst));
  auto infos = registry.list();
  ASSERT_EQ(infos.size(), 1u);
  EXPECT_EQ(infos[0].leased_by, child);
  testing::kill_process(child, SIGKILL);
  ::waitpid(child, nullptr, 0);
  ::close(ready[0]);
  ::close(ready[1]);
  EXPECT_FALSE(registry.is_leased(kFirst));
  EXPECT_TRUE(registry.find(kFirst)->allocated) << "still allocated until released or swept";
}

TEST(UidRegistry, CrashLeftoversAreIgnoredAndCleaned) {
  Fixture f;
  UidRegistry registry(f.locations, f.options(kFirst, kFirst + 9));
  uid_t a = registry.allocate_single_use();
  registry.release(a);
  uid_t b = registry.allocate_single_use();
  std::filesystem::path uids = f.locations.state_dir / "uids";
  // An interrupted write, and a release that stopped before removing the
  // allocation (so it did not happen).
  testing::write_file(uids / "allocated/.tmp-1-abc", "single-use\n");
  testing::write_file(uids / fmt::format("released/000000000099-{}", b), "");
  auto infos = registry.list(true);
  ASSERT_EQ(infos.size(), 2u);
  EXPECT_TRUE(registry.find(b)->allocated);
  EXPECT_EQ(registry.allocate_single_use(), kFirst + 2);
  EXPECT_FALSE(std::filesystem::exists(uids / "allocated/.tmp-1-abc"));
  EXPECT_FALSE(std::filesystem::exists(uids / fmt::format("released/000000000099-{}", b)));
}

// acl sweep lists the allocations, walks for a long time, then releases
// the dead single-use UIDs it listed. A UID released and allocated again
// meanwhile (here as an alias: the range has one UID) is another
// allocation, which release_as_seen() leaves alone.
TEST(UidRegistry, ReleaseAsSeenLeavesAUidAllocatedAgainMeanwhile) {
  Fixture f;
  UidRegistry registry(f.locations, f.options(kFirst, kFirst));
  uid_t uid = registry.allocate_single_use();
  std::optional<UidInfo> seen = registry.find(uid);
  ASSERT_TRUE(seen);
  registry.release(uid);
  ASSERT_EQ(registry.allocate_alias("foo"), uid);
  try {
    registry.release_as_seen(*seen);
    ADD_FAILURE() << "the alias's UID was released";
  } catch (const std::runtime_error& e) {
    EXPECT_THAT(e.what(), ::testing::HasSubstr("allocated again meanwhile, as alias foo"));
  }
  EXPECT_EQ(registry.find_alias("foo"), uid);
  // Released and allocated again as single-use: a new record too.
  registry.release(uid);
  ASSERT_EQ(registry.allocate_single_use(), uid);
  EXPECT_THROW(registry.release_as_seen(*seen), std::runtime_error);
  EXPECT_TRUE(registry.find(uid)->allocated);
  // Unchanged: released.
  seen = registry.find(uid);
  registry.release_as_seen(*seen);
  EXPECT_FALSE(registry.find(uid)->allocated);
  EXPECT_THROW(registry.release_as_seen(*seen), std::runtime_error) << "released already";
}

// A FIFO in place of a state file is refused or skipped, never waited for
// (the alarm ends a hang).
TEST(UidRegistry, AFifoInPlaceOfAStateFileIsNotWaitedFor) {
  Fixture f;
  ::alarm(20);
  UidRegistry registry(f.locations, f.options(kFirst, kFirst + 9));
  uid_t work = registry.allocate_alias("work");
  std::filesystem::path uids = f.locations.state_dir / "uids";
  std::filesystem::path fifo = uids / "allocated" / std::to_string(kFirst + 5);
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0644), 0);
  std::optional<UidInfo> info = registry.find(kFirst + 5);
  ASSERT_TRUE(info);
  EXPECT_THAT(info->damage, ::testing::HasSubstr(fifo.string() + ": a FIFO; expected a regular file holding"));
  EXPECT_EQ(registry.allocate_alias("work"), work);
  for (const char* cache : {"never-used", "vetted"}) {
    std::filesystem::remove(uids / cache);
    ASSERT_EQ(::mkfifo((uids / cache).c_str(), 0644), 0);
  }
  EXPECT_EQ(registry.allocate_single_use(), kFirst + 1);
  // The mark, computed again, is past the highest allocation (the FIFO's).
  EXPECT_EQ(registry.lease_single_use().uid(), kFirst + 6);
  std::filesystem::path lease = f.locations.runtime_dir / "_uid-leases" / std::to_string(work);
  ASSERT_EQ(::mkfifo(lease.c_str(), 0644), 0);
  try {
    registry.list();
    ADD_FAILURE() << "a FIFO lease was taken for a lease";
  } catch (const std::runtime_error& e) {
    EXPECT_THAT(e.what(), ::testing::HasSubstr(lease.string() + ": a FIFO; expected a regular file"));
  }
  EXPECT_THROW(registry.lease_alias("work"), std::runtime_error);
  ::alarm(0);
}

// Records nobody wrote as vmwarden writes them are damaged: kept out of the
// pool, never used as an alias nor released (but by hand), listed as such,
// and warned about once per process.
TEST(UidRegistry, DamagedAllocationRecordsAreLeftAlone) {
  Fixture f;
  UidRegistry registry(f.locations, f.options(kFirst, kFirst + 9));
  registry.allocate_alias("work");
  std::filesystem::path allocated = f.locations.state_dir / "uids/allocated";
  auto record = [&](uid_t uid) { return allocated / std::to_string(uid); };
  // Outside the range: never used as the alias.
  testing::write_file(record(0), "alias work3\n");
  EXPECT_THROW(registry.allocate_alias("work3"), std::runtime_error);
  EXPECT_THROW(registry.lease_alias("work3"), std::runtime_error);
  EXPECT_THROW(registry.find_alias("work3"), std::runtime_error);
  // Garbage, a control character, a second line, a repeated alias.
  testing::write_file(record(kFirst + 1), "garbage\n");
  testing::write_file(record(kFirst + 2), "alias x\x1b[31m\n");
  testing::write_file(record(kFirst + 3), "alias x\nsingle-use");
  testing::write_file(record(kFirst + 4), "alias work\n");
  ::testing::internal::CaptureStderr();
  std::vector<UidInfo> infos = registry.list();
  registry.list();
  std::string warnings = ::testing::internal::GetCapturedStderr();
  for (uid_t uid : {kFirst + 1, kFirst + 2, kFirst + 3}) {
    auto it = std::find_if(infos.begin(), infos.end(), [&](const UidInfo& i) { return i.uid == uid; });
    ASSERT_NE(it, infos.end());
    EXPECT_THAT(it->damage, ::testing::HasSubstr(record(uid).string() + ": expected \"alias NAME\""));
    EXPECT_EQ(it->alias, "");
    EXPECT_THROW(registry.release(uid), std::runtime_error);
    // Nor is it granted anything (the grant records first, then walks).
    EXPECT_THROW(registry.record_grant(GrantRecord{uid, f.locations.state_dir, Access::ro, false}), std::runtime_error);
  }
  EXPECT_EQ(std::count(warnings.begin(), warnings.end(), '\n'), 5) << "once per damaged record:\n" << warnings;
  EXPECT_TRUE(registry.grant_records().empty());
  EXPECT_EQ(warnings.find('\x1b'), std::string::npos) << "escaped";
  EXPECT_THAT(warnings, ::testing::HasSubstr("found \"alias x\\x0asingle-use\""));
  EXPECT_THAT(registry.find(kFirst)->damage, ::testing::HasSubstr("is recorded in " + record(kFirst + 4).string()));
  EXPECT_THROW(registry.allocate_alias("work"), std::runtime_error);
  EXPECT_THROW(registry.resolve("work"), std::runtime_error);
  EXPECT_THROW(registry.release(kFirst + 4), std::runtime_error) << "which one is the alias's is a guess";
  // Handed out around them; a crash remnant of a single-use record is fine.
  testing::write_file(record(kFirst + 5), "single-");
  EXPECT_EQ(registry.allocate_single_use(), kFirst + 6);
  EXPECT_EQ(registry.find(kFirst + 5)->damage, "");
  // What acl sweep would release: not a damaged record.
  UidInfo seen = *registry.find(kFirst + 1);
  EXPECT_THROW(registry.release_as_seen(seen), std::runtime_error);
  seen.damage.clear();
  EXPECT_THROW(registry.release_as_seen(seen), std::runtime_error) << "damaged now, whatever the caller saw";
  EXPECT_TRUE(std::filesystem::exists(record(kFirst + 1)));
}

// Only the decimal UID names a record: "0UID" is not UID's.
TEST(UidRegistry, OnlyCanonicalNamesAreRecords) {
  Fixture f;
  UidRegistry registry(f.locations, f.options(kFirst, kFirst + 9));
  registry.allocate_alias("work");
  std::filesystem::path allocated = f.locations.state_dir / "uids/allocated";
  for (std::string name : {"0" + std::to_string(kFirst + 1), "+" + std::to_string(kFirst + 2),
                           std::to_string(kFirst + 3) + " "})
    testing::write_file(allocated / name, "single-use\n");
  testing::write_file(f.locations.state_dir / "uids/released" / ("1-0" + std::to_string(kFirst)), "");
  ::testing::internal::CaptureStderr();
  EXPECT_EQ(registry.list(true).size(), 1u);
  EXPECT_THROW(registry.release(kFirst + 1), UsageError) << "not allocated";
  std::string warnings = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(std::count(warnings.begin(), warnings.end(), '\n'), 4) << warnings;
  EXPECT_THAT(warnings, ::testing::HasSubstr("0" + std::to_string(kFirst + 1) + ": not a registry entry"));
}

// The caches are misses whatever keeps them from being read, and are
// replaced where they would be written anyway.
TEST(UidRegistry, CachesThatCannotBeReadAreMisses) {
  Fixture f;
  UidRegistry registry(f.locations, f.options(kFirst, kFirst + 9));
  std::filesystem::path uids = f.locations.state_dir / "uids";
  EXPECT_EQ(registry.allocate_single_use(), kFirst);
  for (const char* cache : {"never-used", "vetted"}) {
    std::filesystem::remove(uids / cache);
    std::filesystem::create_directories(uids / cache / "x");
  }
  EXPECT_EQ(registry.allocate_single_use(), kFirst + 1) << "a directory: carries on without the cache";
  for (const char* cache : {"never-used", "vetted"}) {
    std::filesystem::remove_all(uids / cache);
    std::filesystem::create_symlink("/etc/passwd", uids / cache);
  }
  EXPECT_EQ(registry.allocate_single_use(), kFirst + 2);
  for (const char* cache : {"never-used", "vetted"})
    EXPECT_TRUE(std::filesystem::is_regular_file(std::filesystem::symlink_status(uids / cache))) << cache;
}

TEST(UidRegistry, StateDirectoriesMustBeRootsAlone) {
  Fixture f;
  UidRegistry registry(f.locations, f.options(kFirst, kFirst + 9));
  std::filesystem::create_directories(f.locations.state_dir);
  ASSERT_EQ(::chmod(f.locations.state_dir.c_str(), 01777), 0);
  try {
    registry.allocate_alias("work");
    ADD_FAILURE() << "a world-writable state directory was used";
  } catch (const std::runtime_error& e) {
    EXPECT_THAT(e.what(), ::testing::HasSubstr(f.locations.state_dir.string() + " is owned by uid 0 with mode 1777"));
  }
  EXPECT_THROW(registry.list(), std::runtime_error) << "reading too";
  ASSERT_EQ(::chmod(f.locations.state_dir.c_str(), 0755), 0);
  // uids/ a symlink to a directory someone else fills.
  std::filesystem::path elsewhere = f.temp / "elsewhere";
  std::filesystem::create_directories(elsewhere / "allocated");
  testing::write_file(elsewhere / "allocated/1000", "alias work\n");
  std::filesystem::create_symlink(elsewhere, f.locations.state_dir / "uids");
  try {
    registry.allocate_alias("work");
    ADD_FAILURE() << "a symlinked uids/ was followed";
  } catch (const std::runtime_error& e) {
    EXPECT_THAT(e.what(), ::testing::HasSubstr("uids is a symlink, expected a directory"));
  }
  EXPECT_EQ(testing::directory_names(elsewhere / "allocated"), std::vector<std::string>{"1000"});
  std::filesystem::remove(f.locations.state_dir / "uids");
  EXPECT_EQ(registry.allocate_alias("work"), kFirst);
  // A group-writable allocated/, a foreign-owned leases directory.
  ASSERT_EQ(::chmod((f.locations.state_dir / "uids/allocated").c_str(), 0775), 0);
  EXPECT_THROW(registry.allocate_alias("work"), std::runtime_error);
  ASSERT_EQ(::chmod((f.locations.state_dir / "uids/allocated").c_str(), 0755), 0);
  std::filesystem::path leases = f.locations.runtime_dir / "_uid-leases";
  std::filesystem::create_directories(leases);
  ASSERT_EQ(::chown(leases.c_str(), 65534, 65534), 0);
  EXPECT_THROW(registry.lease_alias("work"), std::runtime_error);
  EXPECT_THROW(registry.list(), std::runtime_error);
  ASSERT_EQ(::chown(leases.c_str(), 0, 0), 0);
  EXPECT_EQ(registry.lease_alias("work").uid(), kFirst);
  // STATE_DIR itself may be a symlink (to root's directory elsewhere).
  Locations linked = f.locations;
  linked.state_dir = f.temp / "state-link";
  std::filesystem::create_symlink(f.locations.state_dir, linked.state_dir);
  EXPECT_EQ(UidRegistry(linked, f.options(kFirst, kFirst + 9)).allocate_alias("work"), kFirst);
}

TEST(UidRegistry, TheRangeFileMayBeASymlinkAndMistakesHaveALine) {
  Fixture f;
  std::filesystem::create_directories(f.locations.config_dir);
  std::filesystem::path file = f.locations.config_dir / "uid-range";
  testing::write_file(f.temp / "range", "1879048192-1879048200\n");
  std::filesystem::create_symlink(f.temp / "range", file);
  EXPECT_EQ(UidRegistry(f.locations).range().to_string(), "1879048192-1879048200");
  testing::write_file(f.temp / "range", "# two\n1879048192-1879048200\n  1879048300-1879048400\n");
  try {
    UidRegistry registry(f.locations);
    ADD_FAILURE() << "two ranges accepted";
  } catch (const UsageError& e) {
    EXPECT_THAT(e.what(), ::testing::HasSubstr(file.string() + ":3:3: a second range \"1879048300-1879048400\""));
  }
  testing::write_file(f.temp / "range", "\n 100-oops\n");
  try {
    UidRegistry registry(f.locations);
    ADD_FAILURE() << "a bad range accepted";
  } catch (const UsageError& e) {
    EXPECT_THAT(e.what(), ::testing::HasSubstr(file.string() + ":2:2: invalid UID range \"100-oops\""));
  }
  // A name longer than a file name can be is bad input, not a failure.
  Locations long_name = f.locations;
  long_name.state_dir = f.temp / std::string(256, 'a');
  EXPECT_THROW(UidRegistry(long_name, f.options(kFirst, kFirst)), UsageError);
}

TEST(UidRegistry, BadInputIsRefusedAndChangesNothing) {
  Fixture f;
  UidRegistry registry(f.locations, f.options(kFirst, kFirst + 9));
  registry.allocate_alias("work");
  auto before = registry.list(true);
  EXPECT_THROW(registry.resolve("wrok"), UsageError);
  try {
    registry.resolve("wrok");
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("did you mean \"work\""), std::string::npos) << e.what();
  }
  EXPECT_THROW(registry.resolve("5"), UsageError);
  EXPECT_THROW(registry.resolve("99999999999"), UsageError);
  EXPECT_THROW(registry.release(5), UsageError);
  EXPECT_THROW(registry.release(kFirst + 5), UsageError) << "not allocated";
  EXPECT_THROW(registry.allocate_alias("Bad/Name"), UsageError);
  EXPECT_THROW(registry.allocate_alias(""), UsageError);
  // An alias starting with a digit could never be named: resolve() reads it
  // as a UID number.
  EXPECT_THROW(registry.allocate_alias("1abc"), UsageError);
  EXPECT_THROW(registry.lease_alias(std::to_string(kFirst + 7)), UsageError);
  EXPECT_FALSE(valid_uid_alias("1abc"));
  EXPECT_TRUE(valid_uid_alias("a1"));
  EXPECT_EQ(registry.list(true).size(), before.size());
}

}  // namespace
}  // namespace vmwarden::acl
