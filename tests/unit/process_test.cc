// run_program's child gets stdin, stdout and stderr and nothing else of
// its caller: no inherited descriptor, no blocked signal.

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>

#include "common/process.h"
#include "common/unique_fd.h"

namespace vmwarden {
namespace {

TEST(RunProgram, TheChildInheritsNoDescriptorAndNoBlockedSignal) {
  // A descriptor without close-on-exec, as a caller may hold one (s6's
  // notification fd), and a blocked signal, as the warden has.
  // Numbered well above what ls itself opens.
  UniqueFd null_fd(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  ASSERT_TRUE(null_fd);
  UniqueFd inherited(::fcntl(null_fd.get(), F_DUPFD, 50));
  ASSERT_TRUE(inherited);
  ASSERT_EQ(::fcntl(inherited.get(), F_GETFD), 0) << "not close-on-exec";
  sigset_t blocked, old;
  sigemptyset(&blocked);
  sigaddset(&blocked, SIGUSR1);
  ASSERT_EQ(::sigprocmask(SIG_BLOCK, &blocked, &old), 0);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  // Each program looks at itself (a shell in between might reset its mask).
  ProgramResult fds = run_program({"/bin/ls", "/proc/self/fd"}, {}, deadline);
  ProgramResult status = run_program({"/bin/grep", "^SigBlk:", "/proc/self/status"}, {}, deadline);
  ASSERT_EQ(::sigprocmask(SIG_SETMASK, &old, nullptr), 0);
  ASSERT_TRUE(fds.success()) << fds.describe();
  ASSERT_TRUE(status.success()) << status.describe();
  // ls's own listing: 0, 1, 2 and the directory it reads.
  EXPECT_EQ(fds.output.find(std::to_string(inherited.get())), std::string::npos)
      << "the caller's descriptor reached the child:\n" << fds.output;
  EXPECT_EQ(std::count(fds.output.begin(), fds.output.end(), '\n'), 4) << fds.output;
  EXPECT_EQ(status.output, "SigBlk:\t0000000000000000\n");
}

}  // namespace
}  // namespace vmwarden
