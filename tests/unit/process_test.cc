// run_program's child gets stdin, stdout and stderr and nothing else of
// its caller: no inherited descriptor, no blocked signal; and
// run_program_unprivileged's child no privilege either.

#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <string>
#include <vector>

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

// run_program_unprivileged: nobody, no supplementary group, every
// capability set empty (the bounding set too), no_new_privs.
TEST(RunProgram, AnUnprivilegedProgramRunsAsNobodyWithoutCapabilities) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root (to become nobody)";
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  ProgramResult status = run_program_unprivileged(
      {"/bin/grep", "-E", "^(Uid|Gid|Groups|CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs):", "/proc/self/status"},
      {}, deadline);
  ASSERT_TRUE(status.success()) << status.describe();
  std::string none = "\t0000000000000000\n";
  EXPECT_EQ(status.output, "Uid:\t65534\t65534\t65534\t65534\nGid:\t65534\t65534\t65534\t65534\nGroups:\t \n"
                           "CapInh:" + none + "CapPrm:" + none + "CapEff:" + none + "CapBnd:" + none +
                           "CapAmb:" + none + "NoNewPrivs:\t1\n");
  // The control: the caller itself is root with capabilities.
  ProgramResult as_caller = run_program({"/bin/grep", "^CapEff:", "/proc/self/status"}, {}, deadline);
  EXPECT_NE(as_caller.output, "CapEff:" + none);
}

// A step between fork and exec that fails is told in the output, not only
// as exit status 127: here the child's open of /dev/null, with no
// descriptor number left below the limit (the pipe took the last two).
TEST(RunProgram, AChildThatFailsBeforeExecSaysWhy) {
  rlimit saved{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &saved), 0);
  // Every number up to the highest open one taken, so that the limit
  // leaves exactly the pipe's two.
  int highest = 2;
  for (const auto& entry : std::filesystem::directory_iterator("/proc/self/fd"))
    highest = std::max(highest, std::stoi(entry.path().filename().string()));
  std::vector<UniqueFd> fillers;
  for (;;) {
    UniqueFd filler(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    ASSERT_TRUE(filler);
    if (filler.get() > highest) break;
    fillers.push_back(std::move(filler));
  }
  rlimit tight = saved;
  tight.rlim_cur = static_cast<rlim_t>(highest) + 1 + 2;
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &tight), 0);
  ProgramResult result =
      run_program({"/bin/true"}, {}, std::chrono::steady_clock::now() + std::chrono::seconds(20));
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &saved), 0);
  EXPECT_EQ(result.exit_code, 127) << result.describe();
  EXPECT_EQ(result.output, "/bin/true: open /dev/null: Too many open files\n");
}

}  // namespace
}  // namespace vmwarden
