// The exit status and the output the guest reports: read from a share the
// VM's UID can write, so everything the guest could put there instead is
// tried.

#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <future>
#include <string>
#include <thread>

#include "common/unique_fd.h"
#include "tests/support/support.h"
#include "vm-launcher/guest_manifest.h"
#include "vm-launcher/guest_report.h"

namespace vmwarden::vm {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

class GuestReportTest : public ::testing::Test {
 protected:
  testing::TempDir dir_{"vmwarden-guest-report"};
  fs::path report_ = dir_ / "report";
  fs::path status_ = report_ / "exit-status";
  void SetUp() override { fs::create_directory(report_); }
};

TEST_F(GuestReportTest, ReadsTheStatusTheAgentWrites) {
  // The last three: read to the line's end, not cut short by the read,
  // leading zeros and all.
  for (auto [text, status] : {std::pair{"7\n", 7}, {"0\n", 0}, {"255", 255}, {"0000000013\n", 13},
                              {"00000000042\n", 42}, {"000000000000042", 42}}) {
    testing::write_file(status_, text);
    EXPECT_EQ(read_reported_exit_status(report_), status) << '"' << text << '"';
  }
}

TEST_F(GuestReportTest, NoneWhenAbsentOrNotAStatus) {
  EXPECT_EQ(read_reported_exit_status(report_), std::nullopt);
  EXPECT_EQ(read_reported_exit_status(dir_ / "no-such-dir"), std::nullopt);
  for (const char* text : {"", "\n", "256\n", "-1\n", "7 and more\n", "x\n", "99999999999999999999\n", " 7\n",
                           "0000000000000007\n", "00000000000000007"}) {
    testing::write_file(status_, text);
    EXPECT_EQ(read_reported_exit_status(report_), std::nullopt) << '"' << text << '"';
  }
}

// A symlink to a host file that starts with a number: not followed.
TEST_F(GuestReportTest, DoesNotFollowASymlink) {
  testing::write_file(dir_ / "host-file", "42\n");
  fs::create_symlink(dir_ / "host-file", status_);
  EXPECT_EQ(read_reported_exit_status(report_), std::nullopt);
  // Nor when the report directory itself is the symlink.
  fs::path elsewhere = dir_ / "elsewhere";
  fs::create_directory(elsewhere);
  testing::write_file(elsewhere / "exit-status", "42\n");
  fs::create_directory_symlink(elsewhere, dir_ / "report-link");
  EXPECT_EQ(read_reported_exit_status(dir_ / "report-link"), std::nullopt);
}

// A FIFO with no writer would block a plain open for ever; a directory is
// what an agent's rename would then fail on.
TEST_F(GuestReportTest, NeitherAFifoNorADirectoryIsWaitedOnOrRead) {
  ASSERT_EQ(::mkfifo(status_.c_str(), 0644), 0);
  auto reading = std::async(std::launch::async, [&] { return read_reported_exit_status(report_); });
  if (reading.wait_for(10s) != std::future_status::ready) {
    // Unblock the reader so that the test ends, then fail.
    int writer = ::open(status_.c_str(), O_WRONLY | O_CLOEXEC);
    if (writer >= 0) ::close(writer);
    FAIL() << "blocked on a FIFO";
  }
  EXPECT_EQ(reading.get(), std::nullopt);
  fs::remove(status_);
  fs::create_directory(status_);
  EXPECT_EQ(read_reported_exit_status(report_), std::nullopt);
}

// The demo's KEY=VALUE report, which the guest writes: not through a
// symlink, not waited on as a FIFO, values made printable.
TEST_F(GuestReportTest, KeyValuesAreReadAsUntrusted) {
  fs::path file = report_ / "report.txt";
  testing::write_file(file, "uid=1234\nnoise\nro_read=ok \x1b[31mred\xc2\x9b" "0m\n");
  auto values = read_key_values(file);
  EXPECT_EQ(values.size(), 2u);
  EXPECT_EQ(values["uid"], "1234");
  EXPECT_EQ(values["ro_read"], "ok \\x1b[31mred\\xc2\\x9b0m");

  testing::write_file(dir_ / "host-secret", "uid=0\n");
  fs::remove(file);
  fs::create_symlink(dir_ / "host-secret", file);
  EXPECT_TRUE(read_key_values(file).empty()) << "followed a symlink";

  fs::remove(file);
  ASSERT_EQ(::mkfifo(file.c_str(), 0600), 0);
  auto start = std::chrono::steady_clock::now();
  EXPECT_TRUE(read_key_values(file).empty());
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5)) << "waited on a FIFO";
  EXPECT_TRUE(read_key_values(report_ / "missing.txt").empty());
}


// report/output, relayed as it grows: read into a pipe here.
class OutputRelayTest : public GuestReportTest {
 protected:
  fs::path output_ = report_ / "output";

  // What the relay copied from report/ while `meanwhile` ran, to its end.
  template <typename Meanwhile>
  std::string relayed(Meanwhile&& meanwhile) {
    int ends[2];
    EXPECT_EQ(::pipe2(ends, O_CLOEXEC), 0);
    UniqueFd read_end(ends[0]), write_end(ends[1]);
    // Read on a thread while the relay writes: the pipe holds 64 KiB.
    std::future<std::string> got = std::async(std::launch::async, [fd = read_end.get()] {
      std::string text;
      char buffer[65536];
      for (ssize_t n; (n = ::read(fd, buffer, sizeof buffer)) > 0;) text.append(buffer, static_cast<std::size_t>(n));
      return text;
    });
    {
      OutputRelay relay(report_, write_end.get());
      meanwhile();
    }
    write_end.reset();
    return got.get();
  }
};

TEST_F(OutputRelayTest, CopiesTheFileAsItGrowsAndWhatIsLeftAtTheEnd) {
  std::string text = relayed([&] {
    std::this_thread::sleep_for(100ms);
    testing::write_file(output_, "first\n");
    std::this_thread::sleep_for(200ms);
    UniqueFd file(::open(output_.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC));
    ASSERT_TRUE(file);
    ASSERT_EQ(::write(file.get(), "second\n", 7), 7);
  });
  EXPECT_EQ(text, "first\nsecond\n");
  EXPECT_EQ(relayed([] {}), "first\nsecond\n") << "a file there from the start";
}

TEST_F(OutputRelayTest, NeitherASymlinkNorAFifoIsFollowedOrWaitedOn) {
  testing::write_file(dir_ / "secret", "not the guest's\n");
  fs::create_symlink(dir_ / "secret", output_);
  EXPECT_EQ(relayed([] {}), "");
  fs::remove(output_);
  ASSERT_EQ(::mkfifo(output_.c_str(), 0644), 0);
  auto done = std::async(std::launch::async, [&] { return relayed([] {}); });
  ASSERT_EQ(done.wait_for(10s), std::future_status::ready) << "waited on a FIFO";
  EXPECT_EQ(done.get(), "");
}

// Said on stderr: the agent's count of what it dropped is on the guest's
// console, which the caller does not see.
TEST_F(OutputRelayTest, CopiesNoMoreThanTheLimitAndSaysSo) {
  {
    UniqueFd file(::open(output_.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
    ASSERT_TRUE(file);
    ASSERT_EQ(::ftruncate(file.get(), static_cast<off_t>(guest::kOutputLimit) + 4096), 0);
  }
  ::testing::internal::CaptureStderr();
  std::size_t size = relayed([] {}).size();
  std::string said = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(size, guest::kOutputLimit);
  EXPECT_NE(said.find("reached 64 MiB"), std::string::npos) << said;
}

// Whatever else the guest puts in the file's place, or does to it while it
// is read: nothing hangs, nothing past what is there or past the limit.
TEST_F(OutputRelayTest, ADirectoryATruncationOrARenameOverIsNoHarm) {
  fs::create_directory(output_);
  EXPECT_EQ(relayed([] {}), "");
  fs::remove(output_);
  std::string text = relayed([&] {
    testing::write_file(output_, "0123456789\n");
    std::this_thread::sleep_for(500ms);
    fs::resize_file(output_, 0);  // what was read stays read; what comes later, past it, is copied
    std::this_thread::sleep_for(500ms);
    testing::write_file(output_, "abcdefghijkl\n");
    std::this_thread::sleep_for(500ms);
    testing::write_file(dir_ / "other", "another file\n");
    fs::rename(dir_ / "other", output_);  // the file opened is the one relayed
  });
  EXPECT_EQ(text, "0123456789\nl\n");
}

// A caller's standard output is not all written (a full disk): said on
// stderr, and finish() says so too, for the run's exit status.
TEST_F(OutputRelayTest, AWriteErrorIsSaidAndReported) {
  testing::write_file(output_, "lost\n");
  UniqueFd full(::open("/dev/full", O_WRONLY | O_CLOEXEC));
  ASSERT_TRUE(full);
  ::testing::internal::CaptureStderr();
  bool relayed;
  {
    OutputRelay relay(report_, full.get());
    relayed = relay.finish();
  }
  std::string said = ::testing::internal::GetCapturedStderr();
  EXPECT_FALSE(relayed);
  EXPECT_NE(said.find("No space left on device"), std::string::npos) << said;

  int ends[2];
  ASSERT_EQ(::pipe2(ends, O_CLOEXEC), 0);
  UniqueFd read_end(ends[0]), write_end(ends[1]);
  OutputRelay fine(report_, write_end.get());
  EXPECT_TRUE(fine.finish());
  EXPECT_TRUE(fine.finish()) << "asked again";
}

// A standard output that another program made non-blocking (it shares the
// open file): the relay waits for room rather than giving up.
TEST_F(OutputRelayTest, WaitsForRoomOnANonBlockingOutput) {
  std::string text(1 << 20, 'x');
  testing::write_file(output_, text);
  int ends[2];
  ASSERT_EQ(::pipe2(ends, O_CLOEXEC | O_NONBLOCK), 0);
  UniqueFd read_end(ends[0]), write_end(ends[1]);
  std::future<std::string> got = std::async(std::launch::async, [fd = read_end.get()] {
    std::this_thread::sleep_for(300ms);  // the pipe is full by then
    std::string read;
    pollfd ready{fd, POLLIN, 0};
    char buffer[65536];
    while (::poll(&ready, 1, -1) == 1) {
      ssize_t n = ::read(fd, buffer, sizeof buffer);
      if (n <= 0 && !(n < 0 && errno == EAGAIN)) break;
      if (n > 0) read.append(buffer, static_cast<std::size_t>(n));
    }
    return read;
  });
  bool relayed;
  {
    OutputRelay relay(report_, write_end.get());
    relayed = relay.finish();
  }
  write_end.reset();
  EXPECT_TRUE(relayed);
  EXPECT_EQ(got.get().size(), text.size());
}

}  // namespace
}  // namespace vmwarden::vm
