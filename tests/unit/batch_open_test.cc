// Batched O_PATH opens give exactly what openat2 gives, with io_uring and
// without, including its refusals (symlinks, missing names).

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "acl-manager/batch_open.h"
#include "common/unique_fd.h"
#include "tests/support/support.h"

namespace vmwarden::acl::detail {
namespace {

void check_batch(BatchOpen& opener) {
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
  for (unsigned i = 0; i < BatchOpen::kMaxBatch; ++i) many.push_back("file");
  std::vector<const char*> many_names;
  for (const std::string& name : many) many_names.push_back(name.c_str());
  std::vector<int> many_fds(many.size());
  opener.open(dirfd.get(), many_names, how, many_fds);
  for (int fd : many_fds) EXPECT_GE(fd, 0);
  opener.close(many_fds);
  for (int fd : many_fds) EXPECT_EQ(::fcntl(fd, F_GETFD), -1);
}

TEST(BatchOpen, WithIoUringWhereTheKernelAllowsIt) {
  BatchOpen opener;
  std::printf("io_uring %s\n", opener.uses_io_uring() ? "in use" : "unavailable: fallback tested twice");
  check_batch(opener);
}

TEST(BatchOpen, WithoutIoUring) {
  BatchOpen opener(/*use_io_uring=*/false);
  EXPECT_FALSE(opener.uses_io_uring());
  check_batch(opener);
}

}  // namespace
}  // namespace vmwarden::acl::detail
