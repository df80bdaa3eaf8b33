// `vmwarden run` end to end: the real guest image with the guest agent,
// under QEMU with the real virtiofsd, through the real binary.

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <optional>
#include <sstream>
#include <string>
#include <thread>

#include <fmt/core.h>

#include "tests/e2e/image.h"
#include "tests/support/support.h"

namespace vmwarden {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;
using ::testing::HasSubstr;
using testing::CommandResult;
using testing::read_file;
using testing::run_command;
using testing::write_file;

class RunTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root";
    if (!fs::exists("/usr/bin/qemu-system-x86_64") || !fs::exists("/usr/lib/qemu/virtiofsd"))
      GTEST_SKIP() << "QEMU or virtiofsd is not installed";
    image_ = testing::guest_image();
    fs::permissions(root_, fs::perms(0711));
    for (const char* dir : {"state", "run", "config", "d", "ro", "hidden", "store/bin"}) fs::create_directories(root_ / dir);
    fs::permissions(root_ / "d", fs::perms(0700));  // reachable by the ACL grant only
    write_file(root_ / "ro/file", "read me\n");
    write_file(root_ / "hidden/secret", "not passed\n");
    write_file(root_ / "store/bin/hello", "#!/bin/sh\necho hello-from-the-store\n", 0755);
  }

  std::vector<std::string> run_argv(std::vector<std::string> flags, const std::vector<std::string>& command) const {
    std::vector<std::string> argv = {testing::vmwarden_binary(), "run", "--kernel", (image_ / "vmlinuz").string(),
                                     "--initramfs", (image_ / "initrd.img").string()};
    argv.insert(argv.end(), flags.begin(), flags.end());
    argv.push_back("--");
    argv.insert(argv.end(), command.begin(), command.end());
    return argv;
  }
  std::vector<std::string> run_argv(std::vector<std::string> flags, const std::string& script) const {
    return run_argv(std::move(flags), std::vector<std::string>{"sh", "-c", script});
  }

  std::map<std::string, std::string> env() const {
    return {{"VMWARDEN_CONFIG_DIR", (root_ / "config").string()},
            {"VMWARDEN_STATE_DIR", (root_ / "state").string()},
            {"VMWARDEN_RUNTIME_DIR", (root_ / "run").string()}};
  }

  template <typename Command>
  CommandResult run(std::vector<std::string> flags, const Command& command) {
    testing::CommandOptions options;
    options.extra_env = env();
    options.timeout = 180s;
    return run_command(run_argv(std::move(flags), command), options);
  }

  pid_t start(std::vector<std::string> flags, const std::string& script, const fs::path& log) {
    return start_argv(run_argv(std::move(flags), script), log);
  }
  pid_t start_argv(std::vector<std::string> argv, const fs::path& log) {
    int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    pid_t child = start_argv(std::move(argv), fd, fd);
    ::close(fd);
    return child;
  }
  // With `out` and `err` as its standard output and error.
  pid_t start_argv(std::vector<std::string> argv, int out, int err) {
    pid_t child = ::fork();
    if (child == 0) {
      // A failed assertion leaves the test early: the VM goes with the test
      // binary at the latest.
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      for (const auto& [key, value] : env()) ::setenv(key.c_str(), value.c_str(), 1);
      ::dup2(out, 1);
      ::dup2(err, 2);
      std::vector<char*> args;
      for (auto& arg : argv) args.push_back(arg.data());
      args.push_back(nullptr);
      ::execv(args[0], args.data());
      ::_exit(127);
    }
    return child;
  }

  // Whether `pid` exits within `timeout` (then reaped); it is left running
  // otherwise.
  static bool wait_exit_within(pid_t pid, std::chrono::milliseconds timeout) {
    for (auto deadline = Clock::now() + timeout; Clock::now() < deadline; std::this_thread::sleep_for(10ms)) {
      if (::waitpid(pid, nullptr, WNOHANG) == pid) return true;
    }
    return false;
  }

  static std::optional<int> wait_exit(pid_t pid, std::chrono::milliseconds timeout) {
    for (auto deadline = Clock::now() + timeout; Clock::now() < deadline; std::this_thread::sleep_for(10ms)) {
      int status = 0;
      if (::waitpid(pid, &status, WNOHANG) == pid) return WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status);
    }
    testing::kill_process(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
    return std::nullopt;
  }

  // Starts `argv`, sends `signal` to `vmwarden run` once the program has
  // touched `started`, and returns run's exit status.
  std::optional<int> stop_once_started(const std::vector<std::string>& argv, const fs::path& started, int signal) {
    pid_t pid = start_argv(argv, root_ / "log");
    if (!wait_for(started, 120s)) {
      ADD_FAILURE() << "the program did not start: " << read_file(root_ / "log");
      return wait_exit(pid, 0ms);
    }
    EXPECT_EQ(testing::kill_process(pid, signal), 0);
    return wait_exit(pid, 60s);
  }

  static bool wait_for(const fs::path& file, std::chrono::milliseconds timeout) {
    for (auto deadline = Clock::now() + timeout; Clock::now() < deadline; std::this_thread::sleep_for(20ms))
      if (fs::exists(file)) return true;
    return false;
  }

  testing::TempDir scratch_{"vmwarden-run"};
  fs::path root_ = scratch_.path();
  fs::path image_;
};

// The program's status, its uid without supplementary groups, and the
// environment it receives: an --env entry replaces the agent's of its name,
// the last of a name given twice.
TEST_F(RunTest, ExitsWithTheProgramsStatusAsTheVmUidAndLeavesNoGrant) {
  fs::path d = root_ / "d";
  auto start = Clock::now();
  CommandResult result = run({"--rw", d.string(), "--env", "HOME=/elsewhere", "--env", "A=1", "--env", "A=2"},
                             fmt::format("id -u > {0}/uid; id -G > {0}/groups; tr '\\0' '\\n' < /proc/$$/environ "
                                         "| grep -E '^(HOME|A)=' > {0}/environ; exit 7",
                                         d.string()));
  fmt::print("vmwarden run (rw dir, exit 7): {:.2f} s\n", std::chrono::duration<double>(Clock::now() - start).count());
  EXPECT_EQ(result.exit_code, 7) << result.err;
  uid_t uid = static_cast<uid_t>(std::stoul(read_file(d / "uid")));
  EXPECT_GE(uid, 1879048192u);
  struct stat st {};
  ASSERT_EQ(::stat((d / "uid").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, uid) << "owned by the VM's UID on the host";
  EXPECT_EQ(read_file(d / "groups"), fmt::format("{}\n", uid)) << "no supplementary groups";
  EXPECT_EQ(read_file(d / "environ"), "HOME=/elsewhere\nA=2\n");
  EXPECT_EQ(testing::acl_entries_naming(uid, d), "") << "grants revoked";
  EXPECT_TRUE(fs::is_empty(root_ / "state/runs")) << "the run's directory is gone";
}

// What the program writes on its standard output and error reaches `vmwarden
// run`'s standard output, in the order written, all of it (more than the
// pipe and the relay's buffers hold at once), and nothing of vmwarden's own
// log is mixed in; so does the agent's word when the program cannot start.
TEST_F(RunTest, TheProgramsOutputAndErrorsReachRunsStandardOutput) {
  CommandResult result = run({}, "echo first; echo second >&2; seq 1 30000; echo last; exit 5");
  EXPECT_EQ(result.exit_code, 5) << result.err;
  std::string expected = "first\nsecond\n";
  for (int i = 1; i <= 30000; ++i) expected += std::to_string(i) + "\n";
  expected += "last\n";
  EXPECT_EQ(result.out, expected) << result.err;
  EXPECT_THAT(result.err, ::testing::Not(HasSubstr("second"))) << result.err;

  CommandResult missing = run({}, std::vector<std::string>{"no-such-program"});
  EXPECT_EQ(missing.exit_code, 127) << missing.err;
  EXPECT_THAT(missing.out, HasSubstr("no-such-program: not found on PATH")) << missing.err;
}

// Bytes as written, NULs and all, to the last one written just before the
// exit (no newline after it); and a process the program leaves running
// with the output open holds neither the output nor the run (the agent
// cuts it a second after the program's end).
TEST_F(RunTest, TheOutputIsPassedByteForByteAndALeftoverDoesNotHoldTheRun) {
  CommandResult result = run({}, "printf 'a\\000b\\377\\n'; sleep 600 & printf 'the end'; exit 3");
  EXPECT_EQ(result.exit_code, 3) << result.err;
  EXPECT_EQ(result.out, std::string("a\0b\377\nthe end", 12)) << result.err;
}

// Nor does one that keeps writing: the agent waits for the end of the
// output while it comes, 10 s at most.
TEST_F(RunTest, ALeftoverThatKeepsWritingDoesNotHoldTheRun) {
  auto start = Clock::now();
  CommandResult result = run({}, "(while :; do echo more; sleep 0.05; done) & echo started; exit 6");
  EXPECT_EQ(result.exit_code, 6) << result.err;
  EXPECT_TRUE(result.out.starts_with("started\n")) << result.out;
  EXPECT_LT(Clock::now() - start, 90s) << "held by the leftover's output";
}

// Where the run's standard output cannot take it all, the run fails (the
// program's own failure stays): said on stderr for a full disk, silent for
// a reader that went away on purpose (`| head -1`); and nothing of the run
// is left holding its output or error once it has exited.
TEST_F(RunTest, OutputThatCannotBeWrittenFailsTheRun) {
  auto run_into = [&](int out, const std::string& script, std::string& err) {
    int ends[2];
    EXPECT_EQ(::pipe2(ends, O_CLOEXEC), 0);
    pid_t pid = start_argv(run_argv({}, script), out, ends[1]);
    ::close(ends[1]);
    // EOF once every holder of the write end is gone: vmwarden run, and
    // its relay of the output.
    err.clear();
    char buffer[4096];
    for (ssize_t n; (n = ::read(ends[0], buffer, sizeof buffer)) > 0;) err.append(buffer, static_cast<std::size_t>(n));
    ::close(ends[0]);
    return wait_exit(pid, 120s);
  };
  std::string err;
  int full = ::open("/dev/full", O_WRONLY | O_CLOEXEC);
  ASSERT_GE(full, 0);
  EXPECT_EQ(run_into(full, "echo lost", err), 1) << err;
  EXPECT_THAT(err, HasSubstr("write standard output: No space left on device")) << err;
  EXPECT_EQ(run_into(full, "echo lost; exit 4", err), 4) << err;
  ::close(full);

  int ends[2];
  ASSERT_EQ(::pipe2(ends, O_CLOEXEC), 0);
  // The reader takes the first line and goes: the program writes on.
  std::thread head([read_end = ends[0]] {
    char byte = 0;
    while (::read(read_end, &byte, 1) == 1 && byte != '\n') {
    }
    ::close(read_end);
  });
  auto status = run_into(ends[1], "echo first; sleep 1; seq 1 100000", err);
  ::close(ends[1]);
  head.join();
  EXPECT_EQ(status, 1) << err;
  EXPECT_THAT(err, ::testing::Not(HasSubstr("write standard output"))) << err;
  EXPECT_TRUE(fs::is_empty(root_ / "state/runs")) << err;
}

TEST_F(RunTest, RoIsReadOnlyStoreRunsByNameAndNothingElseIsVisible) {
  fs::path d = root_ / "d";
  CommandResult result = run(
      {"--rw", d.string(), "--ro", (root_ / "ro").string(), "--store", (root_ / "store").string()},
      fmt::format("cat {1}/file > {0}/read; (echo x > {1}/new) 2> {0}/rowrite || echo refused >> {0}/rowrite; "
                  "hello > {0}/store; ls {2} > {0}/hidden 2>&1 || echo invisible >> {0}/hidden; echo $PATH > {0}/path",
                  d.string(), (root_ / "ro").string(), (root_ / "hidden").string()));
  EXPECT_EQ(result.exit_code, 0) << result.err;
  EXPECT_EQ(read_file(d / "read"), "read me\n");
  EXPECT_THAT(read_file(d / "rowrite"), HasSubstr("refused"));
  EXPECT_THAT(read_file(d / "rowrite"), HasSubstr("Read-only file system"));
  EXPECT_FALSE(fs::exists(root_ / "ro/new"));
  EXPECT_EQ(read_file(d / "store"), "hello-from-the-store\n");
  EXPECT_THAT(read_file(d / "path"), ::testing::StartsWith((root_ / "store/bin").string() + ":"));
  EXPECT_THAT(read_file(d / "hidden"), HasSubstr("invisible"));
}

TEST_F(RunTest, SigintPowersTheGuestOffAndCleansUp) {
  fs::path d = root_ / "d";
  pid_t pid = start({"--rw", d.string()}, fmt::format("id -u > {0}/uid; touch {0}/started; sleep 1000", d.string()),
                    root_ / "log");
  ASSERT_TRUE(wait_for(d / "started", 120s)) << read_file(root_ / "log");
  uid_t uid = static_cast<uid_t>(std::stoul(read_file(d / "uid")));
  // Signals that ask nothing of vmwarden (s6-svc -q, -a, -2; Ctrl-\) leave
  // the run going: their default action would end it without its clean-up.
  for (int ignored : {SIGQUIT, SIGALRM, SIGUSR2}) ASSERT_EQ(testing::kill_process(pid, ignored), 0);
  EXPECT_FALSE(wait_exit_within(pid, 500ms)) << read_file(root_ / "log");
  ASSERT_EQ(testing::kill_process(pid, SIGINT), 0);
  auto status = wait_exit(pid, 60s);
  ASSERT_TRUE(status) << read_file(root_ / "log");
  EXPECT_EQ(*status, 128 + SIGTERM) << "the program got SIGTERM from the power button\n" << read_file(root_ / "log");
  EXPECT_EQ(testing::acl_entries_naming(uid, d), "");
  EXPECT_TRUE(fs::is_empty(root_ / "state/runs"));
}

// A program that takes its time after SIGTERM (longer than the init's
// default 3 s) still ends on its own and has its status reported, and it
// gets the stop once.
TEST_F(RunTest, AProgramThatTakesItsTimeToStopStillHasItsStatusReported) {
  fs::path d = root_ / "d";
  auto status = stop_once_started(
      run_argv({"--rw", d.string()}, fmt::format("trap 'echo term >> {0}/terms; sleep 5; exit 9' TERM; "
                                                 "touch {0}/started; while :; do sleep 0.2; done",
                                                 d.string())),
      d / "started", SIGTERM);
  ASSERT_TRUE(status) << read_file(root_ / "log");
  EXPECT_EQ(*status, 9) << read_file(root_ / "log");
  EXPECT_EQ(read_file(d / "terms"), "term\n");
  EXPECT_TRUE(fs::is_empty(root_ / "state/runs"));
}

// One that ignores SIGTERM is killed when its share of --timeout is over
// (here 7 s: 4 s), and that is reported too.
TEST_F(RunTest, AProgramThatIgnoresSigtermIsKilledAndReported) {
  fs::path d = root_ / "d";
  auto status = stop_once_started(
      run_argv({"--rw", d.string(), "--timeout", "7"},
               fmt::format("trap '' TERM; touch {0}/started; while :; do sleep 0.2; done", d.string())),
      d / "started", SIGTERM);
  ASSERT_TRUE(status) << read_file(root_ / "log");
  EXPECT_EQ(*status, 128 + SIGKILL) << "reported by the agent (no report would be 1)\n" << read_file(root_ / "log");
}

// The status reported is the one the agent saw: the program (and what it
// leaves running) cannot reach the report share, so it cannot write an
// exit-status of its own, nor block the agent's with a directory in the way.
TEST_F(RunTest, TheProgramCannotReportAStatusOfItsOwn) {
  fs::path d = root_ / "d";
  CommandResult result = run(
      {"--rw", d.string()},
      fmt::format("cd /run/vmwarden/report; (echo 0 > exit-status) 2> {0}/write; mkdir .exit-status 2> {0}/mkdir; "
                  "setsid sh -c 'while :; do echo 0 > /run/vmwarden/report/exit-status; sleep 0.05; done' "
                  "> /dev/null 2>&1 & kill -KILL $$",
                  d.string()));
  EXPECT_EQ(result.exit_code, 128 + SIGKILL) << "the agent's status, not the program's 0\n" << result.err;
  EXPECT_THAT(read_file(d / "write"), HasSubstr("Permission denied"));
  EXPECT_THAT(read_file(d / "mkdir"), HasSubstr("Permission denied"));
}

// A program that starts a session of its own (setsid forks when its caller
// leads a process group, and the parent's exit 0 would end the run) runs
// to its end and reports its own status.
TEST_F(RunTest, AProgramMayStartASessionOfItsOwn) {
  fs::path d = root_ / "d";
  CommandResult result = run({"--rw", d.string()},
                             std::vector<std::string>{"setsid", "sh", "-c",
                                                      fmt::format("sleep 1; echo done > {}/x; exit 7", d.string())});
  EXPECT_EQ(result.exit_code, 7) << result.err;
  EXPECT_EQ(read_file(d / "x"), "done\n");
}

// A stop the moment the guest is ready (before or while the agent starts
// the program) still ends in a status: 143, the program not started or
// ended by SIGTERM, never "no status reported" (the agent killed before its
// handlers were in place, or the press lost).
TEST_F(RunTest, AStopAsTheGuestBecomesReadyStillEndsInAStatus) {
  fs::path d = root_ / "d";
  pid_t pid = start({"--rw", d.string()}, fmt::format("touch {}/started; sleep 1000", d.string()), root_ / "log");
  auto ready = [&] {
    for (const auto& entry : fs::directory_iterator(root_ / "run")) {
      fs::path serial = entry.path() / "serial.log";
      std::error_code error;
      if (fs::exists(serial, error) && read_file(serial).find("vmwarden-guest: ready") != std::string::npos) return true;
    }
    return false;
  };
  bool seen = false;
  for (auto deadline = Clock::now() + 120s; !seen && Clock::now() < deadline; std::this_thread::sleep_for(2ms)) {
    try {
      seen = ready();
    } catch (const std::exception&) {
      // The run's directory came or went between the listing and the read.
    }
  }
  ASSERT_TRUE(seen) << read_file(root_ / "log");
  ASSERT_EQ(testing::kill_process(pid, SIGINT), 0);
  auto status = wait_exit(pid, 60s);
  ASSERT_TRUE(status) << read_file(root_ / "log");
  EXPECT_EQ(*status, 128 + SIGTERM) << read_file(root_ / "log");
}

// Out of the agent's process group, it still gets the stop: the agent
// passes SIGTERM on to a program that left the group the init signals.
TEST_F(RunTest, AProgramInASessionOfItsOwnStillGetsTheStop) {
  fs::path d = root_ / "d";
  std::vector<std::string> argv = run_argv(
      {"--rw", d.string()},
      std::vector<std::string>{"setsid", "sh", "-c",
                               fmt::format("trap 'echo term > {0}/x; exit 5' TERM; touch {0}/started; "
                                           "while :; do sleep 0.2; done",
                                           d.string())});
  auto status = stop_once_started(argv, d / "started", SIGINT);
  ASSERT_TRUE(status) << read_file(root_ / "log");
  EXPECT_EQ(*status, 5) << read_file(root_ / "log");
  EXPECT_EQ(read_file(d / "x"), "term\n");
}

// The program is looked up on PATH as the VM's UID, as execvp does: a
// directory of its name earlier on PATH is passed over.
TEST_F(RunTest, AProgramIsLookedUpPastADirectoryOfItsName) {
  fs::create_directories(root_ / "store/bin/true");
  CommandResult result = run({"--store", (root_ / "store").string()}, std::vector<std::string>{"true"});
  EXPECT_EQ(result.exit_code, 0) << result.err;
}

// Root's umask (077 here, as hardened hosts set it) narrows nothing the
// VM's UID must read: the guest agent reads the run's manifest through
// virtiofsd, which runs as that UID.
TEST_F(RunTest, RootsUmaskKeepsNothingFromTheGuest) {
  fs::path d = root_ / "d";
  std::vector<std::string> argv = {"/bin/sh", "-c", "umask 077; exec \"$0\" \"$@\""};
  for (std::string& arg : run_argv({"--rw", d.string()}, fmt::format("echo ran > {}/out", d.string())))
    argv.push_back(std::move(arg));
  testing::CommandOptions options;
  options.extra_env = env();
  options.timeout = 180s;
  CommandResult result = run_command(argv, options);
  EXPECT_EQ(result.exit_code, 0) << result.err;
  EXPECT_EQ(read_file(d / "out"), "ran\n") << result.err;
}

TEST_F(RunTest, AfterKill9ASweepRemovesTheGrants) {
  fs::path d = root_ / "d";
  pid_t pid = start({"--rw", d.string()}, fmt::format("id -u > {0}/uid; touch {0}/started; sleep 1000", d.string()),
                    root_ / "log");
  ASSERT_TRUE(wait_for(d / "started", 120s)) << read_file(root_ / "log");
  uid_t uid = static_cast<uid_t>(std::stoul(read_file(d / "uid")));
  ASSERT_EQ(testing::directory_names(root_ / "state" / "runs").size(), 1u);
  ASSERT_EQ(testing::kill_process(pid, SIGKILL), 0);
  ASSERT_TRUE(wait_exit(pid, 10s));
  EXPECT_NE(testing::acl_entries_naming(uid, d), "") << "a SIGKILLed run cannot clean up itself";
  EXPECT_EQ(testing::directory_names(root_ / "state" / "runs").size(), 1u) << "nor remove its directory";
  testing::CommandOptions options;
  options.extra_env = env();
  // The lease goes with the warden, which follows the outer within a second.
  CommandResult sweep;
  for (auto deadline = Clock::now() + 10s; Clock::now() < deadline; std::this_thread::sleep_for(100ms)) {
    sweep = run_command({testing::vmwarden_binary(), "acl", "sweep"}, options);
    if (testing::acl_entries_naming(uid, d).empty()) break;
  }
  EXPECT_EQ(sweep.exit_code, 0) << sweep.err;
  EXPECT_EQ(testing::acl_entries_naming(uid, d), "");
  // The run's directory (its report and config shares) goes too, once the
  // warden that held its lock is gone.
  for (auto deadline = Clock::now() + 10s; Clock::now() < deadline; std::this_thread::sleep_for(100ms)) {
    if (testing::directory_names(root_ / "state" / "runs").empty()) break;
    sweep = run_command({testing::vmwarden_binary(), "acl", "sweep"}, options);
  }
  EXPECT_EQ(testing::directory_names(root_ / "state" / "runs"), std::vector<std::string>{}) << sweep.out;
}

// Each run's scratch directory is its UID's own, and out of every other
// user's reach even when the program opens it up (chmod 0777 $HOME, which
// it may as the owner): the run's directory above it is root's 0700, and
// its name (the pid and 16 random bits) is soon guessed.
TEST_F(RunTest, TwoRunsGetDifferentUidsAndNoOtherUserReachesTheirScratch) {
  fs::create_directories(root_ / "d2");
  fs::permissions(root_ / "d2", fs::perms(0700));
  std::vector<fs::path> outs = {root_ / "d", root_ / "d2"};
  std::vector<pid_t> pids;
  for (size_t i = 0; i < 2; ++i)
    pids.push_back(start({"--rw", outs[i].string(), "--scratch"},
                         fmt::format("id -u > {0}/uid; echo $HOME > {0}/home; echo mine > $HOME/private; "
                                     "chmod 0777 $HOME; chmod 0666 $HOME/private; "
                                     "touch {0}/started; while [ ! -e {0}/go ]; do sleep 0.1; done",
                                     outs[i].string()),
                         root_ / fmt::format("log{}", i)));
  for (size_t i = 0; i < 2; ++i) ASSERT_TRUE(wait_for(outs[i] / "started", 120s)) << read_file(root_ / fmt::format("log{}", i));
  std::vector<uid_t> uids;
  std::vector<std::string> homes;
  for (const auto& out : outs) {
    uids.push_back(static_cast<uid_t>(std::stoul(read_file(out / "uid"))));
    std::string home = read_file(out / "home");
    homes.push_back(home.substr(0, home.size() - 1));
  }
  EXPECT_NE(uids[0], uids[1]);
  EXPECT_NE(homes[0], homes[1]);
  // The program did open it up, and wrote there (the test is not vacuous)...
  for (const auto& home : homes) {
    EXPECT_EQ(fs::status(home).permissions(), fs::perms::all) << home;
    EXPECT_EQ(read_file(fs::path(home) / "private"), "mine\n");
  }
  // ...yet neither the other VM's UID nor any other user reads or writes it.
  for (size_t i = 0; i < 2; ++i) {
    for (uid_t who : {uids[1 - i], static_cast<uid_t>(65534)}) {
      std::vector<std::string> as = {"setpriv", "--reuid", std::to_string(who), "--regid", std::to_string(who),
                                     "--clear-groups"};
      std::vector<std::string> peek = as, plant = as;
      peek.insert(peek.end(), {"cat", homes[i] + "/private"});
      plant.insert(plant.end(), {"sh", "-c", "echo planted > \"$0\"/planted", homes[i]});
      CommandResult peeked = run_command(peek), planted = run_command(plant);
      EXPECT_NE(peeked.exit_code, 0) << "uid " << who << " read " << homes[i];
      EXPECT_THAT(peeked.err, HasSubstr("Permission denied"));
      EXPECT_NE(planted.exit_code, 0) << "uid " << who << " wrote in " << homes[i];
    }
  }
  for (size_t i = 0; i < 2; ++i) write_file(outs[i] / "go", "");
  for (pid_t pid : pids) EXPECT_EQ(wait_exit(pid, 60s), 0);
  EXPECT_FALSE(fs::exists(homes[0]));
  EXPECT_FALSE(fs::exists(homes[1]));
}

// A guest whose root is hostile: its agent is a script that mounts the
// report share itself and writes there as the VM's UID (the only uid
// virtiofsd maps), as a guest whose kernel the program broke could. In
// place of the output a symlink to a host file, of the status a FIFO:
// neither followed, read nor waited on. The config share stays read-only
// however the guest mounts it. Then it ignores the power button: SIGINT
// stops it --timeout later. The run exits 1, says why, and leaves nothing.
TEST_F(RunTest, AHostileGuestGetsNothingFromTheHostAndItsRunLeavesNothing) {
  fs::path d = root_ / "d";
  fs::create_directories(root_ / "evil/bin");
  write_file(root_ / "evil/bin/vmwarden-guest",
             fmt::format("#!/bin/sh\n"
                         "m=/run/vmwarden/config/manifest\n"
                         "uid=$(sed -n 's/^uid //p' $m)\n"
                         "echo \"vm:x:$uid:$uid::/:/bin/sh\" > /etc/passwd\n"
                         "mkdir -p /r {0} && mount -t virtiofs vmwarden-report /r && mount -t virtiofs rw0 {0}\n"
                         "mount -o remount,rw /run/vmwarden/config\n"
                         "su -s /bin/sh vm -c 'ln -s {1} /r/output; mkfifo /r/exit-status; "
                         "(echo x > /run/vmwarden/config/manifest) 2> {0}/config; chmod 777 /r 2> {0}/chmod; "
                         "touch {0}/started'\n"
                         "killall acpid\n"
                         "while :; do sleep 1; done\n",
                         d.string(), (root_ / "hidden/secret").string()),
             0755);
  CommandResult archive =
      run_command({"sh", "-c", "cd \"$0\" && echo bin/vmwarden-guest | cpio -o -H newc --quiet > ../evil.cpio",
                   (root_ / "evil").string()});
  ASSERT_EQ(archive.exit_code, 0) << archive.err;
  // Appended, its /bin/vmwarden-guest replaces the image's.
  write_file(root_ / "evil.img", read_file(image_ / "initrd.img") + read_file(root_ / "evil.cpio"), 0644);
  std::vector<std::string> argv = run_argv({"--rw", d.string(), "--timeout", "3"}, "true");
  *std::find(argv.begin(), argv.end(), (image_ / "initrd.img").string()) = (root_ / "evil.img").string();
  int out = ::open((root_ / "out").c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  int err = ::open((root_ / "log").c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  pid_t pid = start_argv(argv, out, err);
  ::close(out);
  ::close(err);
  ASSERT_TRUE(wait_for(d / "started", 120s)) << read_file(root_ / "log");
  std::this_thread::sleep_for(500ms);  // the relay has looked at the symlink
  ASSERT_EQ(testing::kill_process(pid, SIGINT), 0);
  auto status = wait_exit(pid, 60s);
  ASSERT_TRUE(status) << "waited on the FIFO?\n" << read_file(root_ / "log");
  EXPECT_EQ(*status, 1) << read_file(root_ / "log");
  EXPECT_THAT(read_file(root_ / "log"), HasSubstr("the guest reported no exit status"));
  EXPECT_THAT(read_file(root_ / "log"), HasSubstr("shutdown timeout"));
  EXPECT_EQ(read_file(root_ / "out"), "") << "followed the symlink";
  EXPECT_THAT(read_file(d / "config"), HasSubstr("Permission denied"));
  EXPECT_THAT(read_file(d / "chmod"), HasSubstr("Operation not permitted"));
  struct stat st {};
  ASSERT_EQ(::stat((d / "started").c_str(), &st), 0);
  EXPECT_EQ(testing::acl_entries_naming(st.st_uid, d), "");
  EXPECT_TRUE(fs::is_empty(root_ / "state/runs"));
}

TEST_F(RunTest, WallTimeOfTrue) {
  auto start = Clock::now();
  CommandResult result = run({}, "true");
  double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  EXPECT_EQ(result.exit_code, 0) << result.err;
  fmt::print("vmwarden run -- true: {:.2f} s wall\n", seconds);
}

}  // namespace
}  // namespace vmwarden
