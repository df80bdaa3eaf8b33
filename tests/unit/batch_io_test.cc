// Batched O_PATH opens give exactly what openat2 gives, with io_uring and
// without, including its refusals (symlinks, missing names); queued
// attribute requests give what their syscalls give (a statx by name never
// follows a symlink), and a ring that fails loses none of them.

#include <dirent.h>
#include <fcntl.h>
#include <seccomp.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "acl-manager/batch_io.h"
#include "common/unique_fd.h"
#include "tests/support/support.h"

namespace vmwarden::acl::detail {
namespace {

void check_batch(BatchIo& opener) {
  testing::TempDir temp;
  testing::write_file(temp / "file", "x");
  std::filesystem::create_directory(temp / "dir");
  std::filesystem::create_symlink(temp / "file", temp / "link");
  UniqueFd dirfd(::open(temp.path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  ASSERT_TRUE(dirfd);

  open_how how{};
  how.flags = O_PATH | O_NOFOLLOW | O_CLOEXEC;
  how.resolve = RESOLVE_NO_SYMLINKS;
  const char* names[] = {"file", "missing", "dir", "link", "dir/../file"};
  int fds[5];
  opener.open(dirfd.get(), names, how, fds);
  struct stat st;
  ASSERT_GE(fds[0], 0);
  ASSERT_EQ(::fstat(fds[0], &st), 0);
  EXPECT_TRUE(S_ISREG(st.st_mode));
  EXPECT_EQ(fds[1], -ENOENT);
  ASSERT_GE(fds[2], 0);
  ASSERT_EQ(::fstat(fds[2], &st), 0);
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  // O_PATH|O_NOFOLLOW on a symlink: openat2 with RESOLVE_NO_SYMLINKS refuses
  // or returns the link itself, never its target.
  if (fds[3] >= 0) {
    ASSERT_EQ(::fstat(fds[3], &st), 0);
    EXPECT_TRUE(S_ISLNK(st.st_mode));
  } else {
    EXPECT_EQ(fds[3], -ELOOP);
  }
  ASSERT_GE(fds[4], 0) << "a multi-component name resolves as openat2 would";
  opener.close(fds);
  for (int fd : fds) {
    if (fd >= 0) {
      EXPECT_EQ(::fcntl(fd, F_GETFD), -1) << "fd " << fd << " left open";
    }
  }

  // A full batch.
  std::vector<std::string> many;
  for (unsigned i = 0; i < BatchIo::kMaxBatch; ++i) many.push_back("file");
  std::vector<const char*> many_names;
  for (const std::string& name : many) many_names.push_back(name.c_str());
  std::vector<int> many_fds(many.size());
  opener.open(dirfd.get(), many_names, how, many_fds);
  for (int fd : many_fds) EXPECT_GE(fd, 0);
  opener.close(many_fds);
  for (int fd : many_fds) EXPECT_EQ(::fcntl(fd, F_GETFD), -1);
}

// Queued requests on one file, as many as a run takes: each result is what
// the syscall gives (checked against it), including refusals.
void check_requests(BatchIo& io) {
  testing::TempDir temp;
  testing::write_file(temp / "file", "x");
  UniqueFd fd(::open((temp / "file").c_str(), O_RDONLY | O_CLOEXEC));
  ASSERT_TRUE(fd);
  if (::fsetxattr(fd.get(), "user.kept", "hello", 5, 0) != 0) GTEST_SKIP() << "no user.* xattrs here";
  struct stat st;
  ASSERT_EQ(::fstat(fd.get(), &st), 0);
  UniqueFd closed(::dup(fd.get()));
  int not_open = closed.get();
  closed.reset();

  constexpr unsigned kRounds = BatchIo::kMaxQueued / 8;
  struct Round {
    char value[16], small[2], missing[16];
    int value_size, small_size, missing_size, set_result, stat_result, bad_result, set_bad_result, stat_bad_result;
    struct statx stats, bad_stats;
  };
  std::vector<Round> rounds(kRounds);
  for (Round& r : rounds) {
    io.get_xattr(fd.get(), "user.kept", r.value, sizeof r.value, &r.value_size);
    io.get_xattr(fd.get(), "user.kept", r.small, sizeof r.small, &r.small_size);
    io.get_xattr(fd.get(), "user.missing", r.missing, sizeof r.missing, &r.missing_size);
    io.set_xattr(fd.get(), "user.written", "world", &r.set_result);
    io.stat(fd.get(), STATX_TYPE | STATX_INO | STATX_NLINK, &r.stats, &r.stat_result);
    io.get_xattr(not_open, "user.kept", r.value, sizeof r.value, &r.bad_result);
    io.set_xattr(not_open, "user.written", "world", &r.set_bad_result);
    io.stat(not_open, STATX_INO, &r.bad_stats, &r.stat_bad_result);
  }
  io.run();
  for (const Round& r : rounds) {
    ASSERT_EQ(r.value_size, 5);
    EXPECT_EQ(std::string_view(r.value, 5), "hello");
    EXPECT_EQ(r.small_size, -ERANGE);
    EXPECT_EQ(r.missing_size, -ENODATA);
    EXPECT_EQ(r.set_result, 0);
    ASSERT_EQ(r.stat_result, 0);
    EXPECT_EQ(r.stats.stx_ino, st.st_ino);
    EXPECT_TRUE(S_ISREG(r.stats.stx_mode));
    EXPECT_EQ(r.stats.stx_nlink, 1u);
    EXPECT_EQ(r.bad_result, -EBADF);
    EXPECT_EQ(r.set_bad_result, -EBADF);
    EXPECT_EQ(r.stat_bad_result, -EBADF);
  }
  char written[16];
  EXPECT_EQ(::fgetxattr(fd.get(), "user.written", written, sizeof written), 5);
  EXPECT_EQ(std::string_view(written, 5), "world");

  // By name in a directory: a symlink is the link itself, never its target.
  testing::write_file(temp / "other", "y");
  std::filesystem::create_symlink("other", temp / "link");
  UniqueFd dirfd(::open(temp.path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  ASSERT_TRUE(dirfd);
  struct stat other_st;
  ASSERT_EQ(::stat((temp / "other").c_str(), &other_st), 0);
  struct statx file_stats[kRounds], link_stats[kRounds], missing_stats[kRounds];
  int file_results[kRounds], link_results[kRounds], missing_results[kRounds];
  constexpr unsigned kMask = STATX_TYPE | STATX_INO | STATX_CTIME;
  for (unsigned i = 0; i < kRounds; ++i) {
    io.stat_at(dirfd.get(), "file", kMask, &file_stats[i], &file_results[i]);
    io.stat_at(dirfd.get(), "link", kMask, &link_stats[i], &link_results[i]);
    io.stat_at(dirfd.get(), "missing", kMask, &missing_stats[i], &missing_results[i]);
  }
  io.run();
  for (unsigned i = 0; i < kRounds; ++i) {
    ASSERT_EQ(file_results[i], 0);
    EXPECT_EQ(file_stats[i].stx_ino, st.st_ino);
    EXPECT_TRUE(S_ISREG(file_stats[i].stx_mode));
    ASSERT_EQ(link_results[i], 0);
    EXPECT_TRUE(S_ISLNK(link_stats[i].stx_mode)) << "the symlink was followed";
    EXPECT_NE(link_stats[i].stx_ino, other_st.st_ino);
    EXPECT_EQ(missing_results[i], -ENOENT);
  }

  // A run with one request, and one with none.
  int size = 0;
  char value[16];
  io.get_xattr(fd.get(), "user.written", value, sizeof value, &size);
  io.run();
  EXPECT_EQ(size, 5);
  io.run();
}

TEST(BatchIo, WithIoUringWhereTheKernelAllowsIt) {
  BatchIo opener;
  std::printf("io_uring %s\n", opener.uses_io_uring() ? "in use" : "unavailable: fallback tested twice");
  check_batch(opener);
  check_requests(opener);
}

// Where the kernel offers io_uring to root, the walk must be using it: a
// ring that silently failed to set up would only show as a slower walk.
TEST(BatchIo, TheRingIsUsedWhereTheKernelOffersIt) {
  std::string disabled = "0";
  if (std::filesystem::exists("/proc/sys/kernel/io_uring_disabled"))
    disabled = testing::read_file("/proc/sys/kernel/io_uring_disabled").substr(0, 1);
  if (::geteuid() != 0 || disabled == "2") GTEST_SKIP() << "io_uring is not offered to this process";
  BatchIo opener;
  EXPECT_TRUE(opener.uses_io_uring());
}

TEST(BatchIo, WithoutIoUring) {
  BatchIo opener(/*use_io_uring=*/false);
  EXPECT_FALSE(opener.uses_io_uring());
  check_batch(opener);
  check_requests(opener);
}

int open_descriptor_count() {
  int count = 0;
  DIR* dir = ::opendir("/proc/self/fd");
  if (dir == nullptr) return -1;
  while (dirent* entry = ::readdir(dir))
    if (entry->d_name[0] != '.') ++count;
  ::closedir(dir);
  return count - 1;  // the directory's own descriptor
}

// Runs in a child, which exits with the number of the first check that
// failed (0: all held; 77: no io_uring here).
int ring_failure_in_child() {
  testing::TempDir temp;
  testing::write_file(temp / "file", "x");
  UniqueFd dirfd(::open(temp.path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dirfd) return 1;
  open_how how{};
  how.flags = O_PATH | O_NOFOLLOW | O_CLOEXEC;
  how.resolve = RESOLVE_NO_SYMLINKS;
  const char* names[] = {"file", "missing", "file", "file"};
  int first[4], second[4];

  BatchIo closer, opener;
  if (!closer.uses_io_uring() || !opener.uses_io_uring()) return 77;
  closer.open(dirfd.get(), names, how, first);
  if (first[0] < 0 || first[1] != -ENOENT) return 2;
  int before = open_descriptor_count();

  // From here on every io_uring_enter fails, as on a ring that broke.
  scmp_filter_ctx filter = seccomp_init(SCMP_ACT_ALLOW);
  if (filter == nullptr || seccomp_rule_add(filter, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(io_uring_enter), 0) != 0 ||
      seccomp_load(filter) != 0)
    return 3;
  seccomp_release(filter);

  // A batch close whose submission fails closes each descriptor itself, once.
  closer.close(first);
  for (int fd : first)
    if (fd >= 0 && ::fcntl(fd, F_GETFD) != -1) return 4;
  if (open_descriptor_count() != before - 3) return 5;

  // A batch open whose submission fails gives what openat2 gives, one by one.
  opener.open(dirfd.get(), names, how, second);
  struct stat st;
  if (second[0] < 0 || ::fstat(second[0], &st) != 0 || !S_ISREG(st.st_mode)) return 6;
  if (second[1] != -ENOENT || second[2] < 0 || second[3] < 0) return 7;
  if (open_descriptor_count() != before) return 8;  // three opened, none leaked
  opener.close(second);
  if (open_descriptor_count() != before - 3) return 9;

  // Queued requests whose submission fails are made one by one.
  BatchIo requester;
  UniqueFd file(::openat(dirfd.get(), "file", O_RDONLY | O_CLOEXEC));
  if (!file || ::fsetxattr(file.get(), "user.kept", "hi", 2, 0) != 0) return 0;  // no user.* xattrs: done
  char values[4][8];
  int sizes[4], set_result = 1;
  for (int i = 0; i < 4; ++i) requester.get_xattr(file.get(), "user.kept", values[i], sizeof values[i], &sizes[i]);
  requester.set_xattr(file.get(), "user.written", "yes", &set_result);
  requester.run();
  for (int size : sizes)
    if (size != 2) return 10;
  if (set_result != 0 || ::fgetxattr(file.get(), "user.written", values[0], sizeof values[0]) != 3) return 11;
  return 0;
}

TEST(BatchIo, ARingThatFailsFallsBackWithoutLosingOrLeakingDescriptors) {
  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) ::_exit(ring_failure_in_child());
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status)) << "the child died of signal " << WTERMSIG(status);
  if (WEXITSTATUS(status) == 77) GTEST_SKIP() << "io_uring is not available here";
  EXPECT_EQ(WEXITSTATUS(status), 0) << "check " << WEXITSTATUS(status) << " failed (see the child's code)";
}

// A submission the kernel takes only in part: a name it cannot read (here
// an address in an inaccessible page) fails as the ring prepares it, and
// the kernel stops there, leaving the requests after it unsubmitted. What
// the ring opened before the failure is closed again, every name gets
// openat2's own answer, and no descriptor is lost or leaked.
TEST(BatchIo, ASubmissionTakenInPartFallsBackWithoutLosingOrLeakingDescriptors) {
  testing::TempDir temp;
  testing::write_file(temp / "file", "x");
  UniqueFd dirfd(::open(temp.path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  ASSERT_TRUE(dirfd);
  BatchIo opener;
  if (!opener.uses_io_uring()) GTEST_SKIP() << "io_uring is not available here";
  long page = ::sysconf(_SC_PAGESIZE);
  void* unreadable = ::mmap(nullptr, page, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(unreadable, MAP_FAILED);
  open_how how{};
  how.flags = O_PATH | O_NOFOLLOW | O_CLOEXEC;
  how.resolve = RESOLVE_NO_SYMLINKS;
  const char* names[] = {"file", "file", static_cast<const char*>(unreadable), "file", "file"};
  int fds[5];
  int before = open_descriptor_count();
  opener.open(dirfd.get(), names, how, fds);
  EXPECT_EQ(fds[2], -EFAULT);
  struct stat st;
  for (int i : {0, 1, 3, 4}) {
    ASSERT_GE(fds[i], 0) << "name " << i;
    ASSERT_EQ(::fstat(fds[i], &st), 0);
    EXPECT_TRUE(S_ISREG(st.st_mode));
  }
  EXPECT_EQ(open_descriptor_count(), before + 4) << "the ring's own opens were closed, none leaked";
  opener.close(fds);
  EXPECT_EQ(open_descriptor_count(), before);
  // The ring is not used again: the requests it never took are still queued.
  opener.open(dirfd.get(), std::span<const char* const>(names, 2), how, std::span<int>(fds, 2));
  EXPECT_GE(fds[0], 0);
  EXPECT_GE(fds[1], 0);
  opener.close(std::span<const int>(fds, 2));
  EXPECT_EQ(open_descriptor_count(), before);
  ::munmap(unreadable, page);
}

}  // namespace
}  // namespace vmwarden::acl::detail
