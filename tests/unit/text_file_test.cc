// write_text_file(): the mode asked for whatever the umask, and nothing
// written through a symlink or into anything but a regular file.
#include "common/text_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "common/error.h"
#include "common/unique_fd.h"
#include "tests/support/support.h"

namespace vmwarden {
namespace {

namespace fs = std::filesystem;

mode_t mode_of(const fs::path& path) {
  struct stat st {};
  EXPECT_EQ(::lstat(path.c_str(), &st), 0) << path;
  return st.st_mode & 07777;
}

TEST(TextFile, HasTheModeAskedForWhateverTheUmask) {
  testing::TempDir dir;
  mode_t saved = ::umask(077);
  write_text_file(dir / "new", "text\n", 0644);
  testing::write_file(dir / "old", "a longer text than the new one\n", 0600);
  write_text_file(dir / "old", "short\n", 0755);
  ::umask(saved);
  EXPECT_EQ(mode_of(dir / "new"), 0644u);
  EXPECT_EQ(testing::read_file(dir / "new"), "text\n");
  EXPECT_EQ(mode_of(dir / "old"), 0755u);
  EXPECT_EQ(testing::read_file(dir / "old"), "short\n");
}

// Whoever could write the directory could have put a symlink or a FIFO
// where the file goes: root writes through neither, and does not hang.
TEST(TextFile, RefusesASymlinkOrAFifoAndChangesNothing) {
  testing::TempDir dir;
  testing::write_file(dir / "target", "keep\n", 0600);
  fs::create_symlink(dir / "target", dir / "link");
  EXPECT_THROW(write_text_file(dir / "link", "overwritten\n", 0644), SystemError);
  EXPECT_EQ(testing::read_file(dir / "target"), "keep\n");
  EXPECT_EQ(mode_of(dir / "target"), 0600u);

  ASSERT_EQ(::mkfifo((dir / "fifo").c_str(), 0600), 0);
  // No reader: refused at once (a blocking open would wait for one).
  EXPECT_THROW(write_text_file(dir / "fifo", "text\n", 0644), SystemError);
  // A reader: refused all the same, nothing written to it.
  UniqueFd reader(::open((dir / "fifo").c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC));
  ASSERT_TRUE(reader);
  EXPECT_THROW(write_text_file(dir / "fifo", "text\n", 0644), SystemError);
  char byte;
  EXPECT_EQ(::read(reader.get(), &byte, 1), 0) << "written into the FIFO";
  EXPECT_EQ(mode_of(dir / "fifo"), 0600u);
}

}  // namespace
}  // namespace vmwarden
