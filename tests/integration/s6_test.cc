// vmwarden under the real s6: s6-svscan on a scratch scandir, service
// directories written by `vmwarden s6 service`, plain-command definitions
// (fast), driven with s6-svc / s6-svwait / s6-svstat as an s6 user would.

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <thread>

#include <fmt/core.h>

#include "common/unique_fd.h"
#include "tests/support/support.h"

namespace vmwarden {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;
using ::testing::HasSubstr;
using testing::CommandResult;
using testing::run_command;
using testing::write_file;

double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

class S6Test : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root";
    if (!fs::exists("/usr/bin/s6-svscan")) GTEST_SKIP() << "s6 is not installed";
    fs::permissions(root_, fs::perms(0711));
    for (const char* dir : {"config/vms", "state", "run", "scandir", "rw"}) fs::create_directories(root_ / dir);
    svscan_ = ::fork();
    if (svscan_ == 0) {
      // Should the test binary be killed (a meson timeout), s6-svscan brings
      // its services down and exits rather than restarting them forever.
      ::prctl(PR_SET_PDEATHSIG, SIGTERM);
      if (!scanner_path_first().empty())
        ::setenv("PATH", (scanner_path_first().string() + ":" + std::getenv("PATH")).c_str(), 1);
      int log = ::open((root_ / "svscan.log").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      ::dup2(log, 1);
      ::dup2(log, 2);
      ::execl("/usr/bin/s6-svscan", "s6-svscan", (root_ / "scandir").c_str(), nullptr);
      ::_exit(127);
    }
  }

  // A directory put first on s6-svscan's PATH, and so on that of every run
  // and finish script; none by default.
  virtual fs::path scanner_path_first() const { return {}; }

  void TearDown() override {
    if (svscan_ <= 0) return;
    run_command({"s6-svscanctl", "-t", (root_ / "scandir").string()});
    auto deadline = Clock::now() + 20s;
    while (Clock::now() < deadline && ::waitpid(svscan_, nullptr, WNOHANG) == 0) std::this_thread::sleep_for(10ms);
    if (::waitpid(svscan_, nullptr, WNOHANG) == 0) {
      testing::kill_process(svscan_, SIGKILL);
      ::waitpid(svscan_, nullptr, 0);
    }
  }

  std::map<std::string, std::string> env() const {
    return {{"VMWARDEN_CONFIG_DIR", (root_ / "config").string()},
            {"VMWARDEN_STATE_DIR", (root_ / "state").string()},
            {"VMWARDEN_RUNTIME_DIR", (root_ / "run").string()}};
  }

  // A plain-command definition running `script` (sh), with the rw share.
  void define(const std::string& name, const std::string& script) {
    write_file(root_ / "config/vms" / (name + ".toml"),
               fmt::format("command = [\"/bin/sh\", \"-c\", '''{}''']\nshutdown_timeout_s = 5\n"
                           "[[share]]\ntag = \"rw\"\npath = \"{}\"\naccess = \"rw\"\n",
                           script, (root_ / "rw").string()));
  }

  CommandResult vmwarden(std::vector<std::string> args) {
    args.insert(args.begin(), testing::vmwarden_binary());
    return run_command(args, {.extra_env = env()});
  }

  fs::path service(const std::string& name) const { return root_ / "scandir" / name; }

  void add_service(const std::string& name, bool log = false) {
    std::vector<std::string> args = {"s6", "service", name, "--scandir", (root_ / "scandir").string()};
    if (log) args.push_back("--log");
    CommandResult result = vmwarden(args);
    ASSERT_EQ(result.exit_code, 0) << result.err;
  }

  // s6-supervise runs for `dir` and has set up what s6-svc and s6-svwait use:
  // its control fifo (s6-svok), its event fifodir and its status file.
  static bool supervised(const fs::path& dir) {
    return run_command({"s6-svok", dir.string()}).exit_code == 0 && fs::exists(dir / "event") &&
           fs::exists(dir / "supervise/status");
  }

  // Rescans, and waits until s6-supervise runs for each of `names` (before
  // that, s6-svc and s6-svwait cannot reach it).
  void rescan(const std::vector<std::string>& names) {
    // Right after its start s6-svscan may not listen on its control fifo yet.
    ASSERT_TRUE(wait_until(
        [&] { return run_command({"s6-svscanctl", "-a", (root_ / "scandir").string()}).exit_code == 0; }, 10s))
        << "s6-svscan does not take commands";
    for (const std::string& name : names)
      ASSERT_TRUE(wait_until([&] { return supervised(service(name)); }, 10s)) << name << " is not supervised";
  }

  std::string svstat(const std::string& name, const std::string& fields = "") {
    std::vector<std::string> args = {"s6-svstat"};
    if (!fields.empty()) args.insert(args.end(), {"-o", fields});
    args.push_back(service(name).string());
    return run_command(args).out;
  }

  // Processes whose command line contains `marker`.
  static std::set<pid_t> processes_with(const std::string& marker) {
    std::set<pid_t> found;
    auto with_marker = [&](const std::vector<std::string>& argv) { return testing::some_argument_contains(argv, marker); };
    for (const testing::ProcessInfo& process : testing::processes_where(with_marker)) found.insert(process.pid);
    return found;
  }

  // Waits until the service's s6-log file holds `text`.
  ::testing::AssertionResult logged(const std::string& name, const std::string& text) {
    fs::path current = service(name) / "log/main/current";
    auto log = [&] { return fs::exists(current) ? testing::read_file(current) : std::string(); };
    if (wait_until([&] { return log().find(text) != std::string::npos; }, 10s)) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure() << "no \"" << text << "\" in the log: " << log().substr(0, 3000);
  }

  // Waits until the service failed permanently: down, not wanted up, 125.
  ::testing::AssertionResult failed_permanently(const std::string& name) {
    if (wait_until([&] { return svstat(name, "wantedup,exitcode") == "false 125\n"; }, 10s))
      return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure() << svstat(name);
  }

  static bool wait_until(const std::function<bool()>& condition, std::chrono::milliseconds timeout) {
    auto deadline = Clock::now() + timeout;
    while (Clock::now() < deadline) {
      if (condition()) return true;
      std::this_thread::sleep_for(10ms);
    }
    return condition();
  }

  testing::TempDir scratch_{"vmwarden-s6"};
  fs::path root_ = scratch_.path();
  pid_t svscan_ = 0;
};

TEST_F(S6Test, SvwaitReadyReturnsOnlyOnceTheSandboxedCommandRuns) {
  define("app", "while :; do sleep 1; done # marker-s6-ready");
  add_service("app");
  rescan({"app"});
  CommandResult waited = run_command({"s6-svwait", "-U", "-t", "20000", service("app").string()});
  ASSERT_EQ(waited.exit_code, 0) << waited.err;
  // Ready means the warden started the command: it is there now.
  EXPECT_FALSE(processes_with("marker-s6-ready").empty());
  EXPECT_THAT(svstat("app", "up,ready"), HasSubstr("true true"));
}

TEST_F(S6Test, SvcDownStopsGracefullyAndLeavesNothing) {
  define("app", fmt::format("trap 'echo stopped > {0}/stopped; exit 0' TERM; : > {0}/trapped; "
                            "while :; do sleep 0.1; done # marker-s6-down",
                            (root_ / "rw").string()));
  add_service("app");
  rescan({"app"});
  ASSERT_EQ(run_command({"s6-svwait", "-U", "-t", "20000", service("app").string()}).exit_code, 0);
  // Ready means exec'd; the shell still has to install its trap.
  ASSERT_TRUE(wait_until([this] { return std::filesystem::exists(root_ / "rw/trapped"); }, 10s));
  auto start = Clock::now();
  ASSERT_EQ(run_command({"s6-svc", "-d", service("app").string()}).exit_code, 0);
  ASSERT_EQ(run_command({"s6-svwait", "-D", "-t", "20000", service("app").string()}).exit_code, 0);
  fmt::print("s6-svc -d to down: {:.2f} s\n", seconds_since(start));
  EXPECT_THAT(svstat("app"), ::testing::StartsWith("down"));
  EXPECT_EQ(testing::read_file(root_ / "rw/stopped"), "stopped\n") << "SIGTERM reached the command";
  EXPECT_TRUE(processes_with("marker-s6-down").empty());
}

// The real finish scripts, run by s6-supervise with a `sleep` first on
// PATH that only records where it was called from: a crash is paced before
// its restart, a stop asked for is not (SIGTERM ends a plain command with
// 143, a failure status, and `s6-svc -d` must not wait for a restart that
// will not come).
class S6FinishTest : public S6Test {
 protected:
  void SetUp() override {
    fs::create_directories(root_ / "stub");
    write_file(root_ / "stub/sleep", fmt::format("#!/bin/sh\necho \"$(pwd) $*\" >> {}/slept\n", root_.string()), 0755);
    S6Test::SetUp();
  }
  fs::path scanner_path_first() const override { return root_ / "stub"; }
};

TEST_F(S6FinishTest, FinishPausesBeforeARestartButNotAfterAStopOnPurpose) {
  define("app", "exec /bin/sleep 1000");
  define("crash", "exit 3");
  add_service("app");
  add_service("crash");
  rescan({"app", "crash"});
  ASSERT_EQ(run_command({"s6-svwait", "-U", "-t", "20000", service("app").string()}).exit_code, 0);
  auto slept = [&] { return fs::exists(root_ / "slept") ? testing::read_file(root_ / "slept") : std::string(); };
  EXPECT_TRUE(wait_until([&] { return slept().find(service("crash").string() + " 2\n") != std::string::npos; }, 20s))
      << "no pause before the crash's restart: " << slept();
  ASSERT_EQ(run_command({"s6-svc", "-d", service("crash").string()}).exit_code, 0);

  auto start = Clock::now();
  ASSERT_EQ(run_command({"s6-svc", "-d", service("app").string()}).exit_code, 0);
  ASSERT_EQ(run_command({"s6-svwait", "-D", "-t", "20000", service("app").string()}).exit_code, 0);
  fmt::print("s6-svc -d to down, the command ending with 143: {:.2f} s\n", seconds_since(start));
  EXPECT_EQ(svstat("app", "wantedup,exitcode"), "false 143\n");
  EXPECT_EQ(slept().find(service("app").string()), std::string::npos) << "a pause after a stop on purpose: " << slept();
}

// With --log, what the finish script says reaches the service's own log,
// as vmwarden's own lines do.
TEST_F(S6Test, APermanentFailureIsSaidInTheServiceLog) {
  define("broken", "true");
  add_service("broken", true);
  write_file(root_ / "config/vms/broken.toml", "command = [\"/bin/true\"\nshutdown_timeout_s = oops\n");
  rescan({"broken"});
  EXPECT_TRUE(failed_permanently("broken"));
  EXPECT_TRUE(logged("broken", "permanent failure, not restarting"));
}

TEST_F(S6Test, KillingS6SuperviseTakesTheWholeTreeDownWithinASecond) {
  define("app", "while :; do sleep 1; done # marker-s6-kill");
  add_service("app");
  rescan({"app"});
  ASSERT_EQ(run_command({"s6-svwait", "-U", "-t", "20000", service("app").string()}).exit_code, 0);
  std::set<pid_t> tree = processes_with("marker-s6-kill");
  pid_t outer = std::stoi(svstat("app", "pid"));
  // The whole tree under the outer: the warden (retitled, no marker), the
  // shell and its sleep.
  tree.merge(testing::process_tree(outer));
  ASSERT_GE(tree.size(), 3u) << "outer, warden and the command's shell";
  std::ifstream stat(fmt::format("/proc/{}/stat", outer));
  std::string skip;
  pid_t supervise = 0;
  stat >> skip >> skip >> skip >> supervise;
  ASSERT_GT(supervise, 1);
  ASSERT_EQ(testing::kill_process(supervise, SIGKILL), 0);
  auto gone = [&tree] {
    return std::all_of(tree.begin(), tree.end(), [](pid_t pid) { return testing::process_gone(pid); });
  };
  EXPECT_TRUE(wait_until(gone, 1s)) << "processes of the old tree left after 1 s";
}

TEST_F(S6Test, ACrashIsRestartedAndAnInvalidDefinitionIsNot) {
  define("crash", fmt::format("echo run >> {}/runs; exit 3", (root_ / "rw").string()));
  define("broken", "true");
  add_service("crash");
  add_service("broken");
  // Broken after the service was written (which validates it).
  write_file(root_ / "config/vms/broken.toml", "command = [\"/bin/true\"\nshutdown_timeout_s = oops\n");
  rescan({"crash", "broken"});
  EXPECT_TRUE(wait_until(
      [&] { return fs::exists(root_ / "rw/runs") && testing::read_file(root_ / "rw/runs") == "run\nrun\n"; }, 15s))
      << "restarted after the crash";
  EXPECT_TRUE(wait_until([&] { return svstat("broken", "wantedup,exitcode") == "false 125\n"; }, 10s))
      << svstat("broken");
  // And it stays down.
  std::this_thread::sleep_for(3s);
  EXPECT_EQ(svstat("broken", "up,wantedup,exitcode"), "false false 125\n");
}

TEST_F(S6Test, TwentyServicesStartTogetherAndStopWithTheScanner) {
  std::vector<std::string> dirs = {"s6-svwait", "-U", "-a", "-t", "60000"};
  std::vector<std::string> names;
  for (int i = 0; i < 20; ++i) {
    std::string name = fmt::format("vm{:02}", i);
    names.push_back(name);
    define(name, fmt::format("trap 'exit 0' TERM; while :; do sleep 0.1; done # marker-s6-many"));
    add_service(name);
    dirs.push_back(service(name).string());
  }
  auto start = Clock::now();
  rescan(names);
  CommandResult waited = run_command(dirs, {.timeout = 90s});
  ASSERT_EQ(waited.exit_code, 0) << waited.err;
  double up = seconds_since(start);
  // One shell per service; a shell's child between fork and exec of sleep
  // briefly carries the same command line, so count only those whose
  // parent does not.
  std::set<pid_t> shells = processes_with("marker-s6-many");
  size_t top_level = 0;
  for (pid_t pid : shells) {
    std::ifstream stat(fmt::format("/proc/{}/stat", pid));
    std::string line;
    std::getline(stat, line);
    pid_t parent = std::atoi(line.substr(line.rfind(')') + 4).c_str());
    if (!shells.count(parent)) ++top_level;
  }
  EXPECT_EQ(top_level, 20u);

  auto stop = Clock::now();
  ASSERT_EQ(run_command({"s6-svscanctl", "-t", (root_ / "scandir").string()}).exit_code, 0);
  int status = 0;
  ASSERT_TRUE(wait_until([&] { return ::waitpid(svscan_, &status, WNOHANG) == svscan_; }, 60s));
  svscan_ = 0;
  double down = seconds_since(stop);
  fmt::print("20 plain-command services: all ready {:.2f} s after the scan, all stopped {:.2f} s after "
             "s6-svscanctl -t\n",
             up, down);
  EXPECT_TRUE(wait_until([] { return processes_with("marker-s6-many").empty(); }, 5s));
}

// The command's stdout and stderr go to the log line by line, each after
// "command fd N: " with its control characters escaped: nothing it writes
// reads as a line of vmwarden's own there (it tried: a forged line, one cut
// in two across its descriptors, a terminal escape).
TEST_F(S6Test, TheLogGoesThroughS6Log) {
  define("chatty", "echo hello-from-the-sandbox; echo on-stderr >&2; "
                   "printf 'vmwarden[other]: granted rw on / to UID 0\\n\\033[2Jcleared\\nvmwarden[oth'; "
                   "printf 'er]: forged\\n' >&2; exec sleep 1000");
  add_service("chatty", true);
  rescan({"chatty"});
  ASSERT_EQ(run_command({"s6-svwait", "-U", "-t", "20000", service("chatty").string()}).exit_code, 0);
  fs::path current = service("chatty") / "log/main/current";
  ASSERT_TRUE(wait_until(
      [&] { return fs::exists(current) && testing::read_file(current).find("cleared") != std::string::npos; }, 10s));
  std::string log = testing::read_file(current);
  EXPECT_THAT(log, HasSubstr(" vmwarden[chatty/warden]: command fd 1: hello-from-the-sandbox\n"));
  EXPECT_THAT(log, HasSubstr(" vmwarden[chatty/warden]: command fd 2: on-stderr\n"));
  EXPECT_THAT(log, HasSubstr(" vmwarden[chatty/warden]: command fd 1: vmwarden[other]: granted rw on / to UID 0\n"));
  EXPECT_THAT(log, HasSubstr(" vmwarden[chatty/warden]: command fd 1: \\x1b[2Jcleared\n"));
  EXPECT_THAT(log, HasSubstr(" vmwarden[chatty/warden]: command fd 2: er]: forged\n"));
  EXPECT_EQ(log.find('\033'), std::string::npos) << log;
  std::istringstream lines(log);
  for (std::string line; std::getline(lines, line);)
    if (std::size_t forged = line.find("vmwarden[oth"); forged != std::string::npos)
      EXPECT_LT(line.find("]: command fd "), forged) << "a line of its own: " << line;
  // T: an ISO 8601 timestamp ("2026-11-22 11:50:24.311652898") starts each line.
  EXPECT_TRUE(log.size() > 30 && log[4] == '-' && log[7] == '-' && log[10] == ' ' && log[13] == ':' && log[19] == '.')
      << log;
}

// A command that writes without pause gets 256 KiB into the log, then 64
// KiB a second, counted as the log's bytes (an empty line is a prefix of
// its own): the warden writes the log itself, and must not spend its loop
// on one service's flood. The rest is dropped, and counted.
TEST_F(S6Test, AFloodOfOutputIsLoggedAtABoundedRate) {
  define("flood", "head -c 3000000 /dev/zero | tr '\\0' x | fold -w 99; head -c 2000000 /dev/zero | tr '\\0' '\\n'; "
                  "sleep 1; echo after-the-flood; exec sleep 1000");
  add_service("flood", true);
  auto started = Clock::now();
  rescan({"flood"});
  fs::path current = service("flood") / "log/main/current";
  ASSERT_TRUE(wait_until(
      [&] { return fs::exists(current) && testing::read_file(current).find("after-the-flood") != std::string::npos; },
      30s));
  std::string log = testing::read_file(current);
  // The bounds follow from how long it took, however slow the machine.
  double seconds = std::chrono::duration<double>(Clock::now() - started).count();
  // Each line's bytes after s6-log's timestamp, its newline included.
  std::size_t logged = 0;
  std::istringstream lines(log);
  for (std::string line; std::getline(lines, line);)
    if (line.find("]: command fd 1: ") != std::string::npos && line.find(" bytes of its output dropped") == std::string::npos)
      logged += line.size() - line.find(" vmwarden[");
  EXPECT_GT(logged, 200'000u) << "the burst is logged";
  EXPECT_LT(logged, 256 * 1024 + 64 * 1024 * seconds + 16 * 1024) << "more than the burst and the rate, in "
                                                                    << seconds << " s";
  // Counted in a line at most once a second (and at the end).
  std::uint64_t dropped = 0;
  int reports = 0;
  std::istringstream again(log);
  for (std::string line; std::getline(again, line);) {
    std::size_t at = line.find(": command fd 1: ");
    if (at == std::string::npos || !line.ends_with(" bytes of its output dropped (more than 64 KiB a second)")) continue;
    dropped += std::stoull(line.substr(at + 16));
    ++reports;
  }
  EXPECT_GT(dropped, 4'000'000u) << log.substr(0, 2000);
  EXPECT_EQ(log.find("after-the-flood"), log.rfind("after-the-flood")) << "one line";
  EXPECT_LE(reports, seconds + 2) << "a report a second at most";
}

// A logger that does not read (its service down here; s6-log -b on a full
// disk alike) fills the pipe the command's flood goes to: vmwarden's lines
// are then dropped rather than waited for, and `s6-svc -d` stops the
// service as usual. Before, the outer blocked logging the SIGTERM it was to
// forward and was SIGKILLed at timeout-kill (12 s here), leaving the warden
// blocked too, holding the command, the lease and the grant.
TEST_F(S6Test, ALoggerThatDoesNotReadDoesNotHoldUpAStop) {
  define("deaf", "trap 'exit 0' TERM; while :; do echo marker-s6-deaf-log-line-to-fill-the-pipe; done");
  add_service("deaf", true);
  write_file(service("deaf") / "log/down", "");
  rescan({"deaf", "deaf/log"});
  // What the log pipe holds, read through a read end of its own opened on
  // the outer's stderr (nothing is taken from it).
  auto log_pipe_full = [&] {
    UniqueFd pipe(::open(fmt::format("/proc/{}/fd/2", std::stoi(svstat("deaf", "pid"))).c_str(),
                         O_RDONLY | O_NONBLOCK | O_CLOEXEC));
    int held = 0;
    return pipe && ::ioctl(pipe.get(), FIONREAD, &held) == 0 && held > 60'000;
  };
  ASSERT_EQ(run_command({"s6-svwait", "-U", "-t", "20000", service("deaf").string()}).exit_code, 0);
  ASSERT_TRUE(wait_until(log_pipe_full, 10s)) << "the flood does not fill the log pipe";
  auto start = Clock::now();
  ASSERT_EQ(run_command({"s6-svc", "-d", service("deaf").string()}).exit_code, 0);
  CommandResult waited = run_command({"s6-svwait", "-D", "-t", "8000", service("deaf").string()}, {.timeout = 20s});
  fmt::print("s6-svc -d to down with the logger not reading: {:.2f} s\n", seconds_since(start));
  EXPECT_EQ(waited.exit_code, 0) << "not down within 8 s: " << svstat("deaf");
  EXPECT_EQ(svstat("deaf", "exitcode"), "0\n");
  EXPECT_TRUE(wait_until([] { return processes_with("marker-s6-deaf").empty(); }, 2s));
  EXPECT_EQ(testing::named_acl_entries(root_ / "rw"), "") << "the grant was left";
  EXPECT_FALSE(fs::exists(root_ / "run/deaf")) << "the runtime directory was left";
  // Started again while the pipe is still full, the lines it drops are
  // counted once the log reads again.
  ASSERT_EQ(run_command({"s6-svc", "-u", service("deaf").string()}).exit_code, 0);
  ASSERT_EQ(run_command({"s6-svwait", "-U", "-t", "20000", service("deaf").string()}).exit_code, 0);
  ASSERT_TRUE(wait_until(log_pipe_full, 10s));
  // A line waits 500 ms before it is dropped.
  std::this_thread::sleep_for(1s);
  ASSERT_EQ(run_command({"s6-svc", "-u", service("deaf/log").string()}).exit_code, 0);
  EXPECT_TRUE(logged("deaf", "of vmwarden's log dropped: the log did not take them within 500 ms"));
}

// s6-supervise reads timeout-kill at each stop, vmwarden the definition at
// each start: a shutdown_timeout_s raised after the service was written
// would have the VM SIGKILLed in the middle of its stop, its grants left.
// Such a start is refused as permanent, before any lease or grant, until
// `vmwarden s6 service` writes the service again.
TEST_F(S6Test, AShutdownTimeoutBeyondTimeoutKillIsRefusedUntilTheServiceIsWrittenAgain) {
  define("slow", "exec sleep 1000 # marker-s6-slow");
  add_service("slow", true);
  std::string definition = testing::read_file(root_ / "config/vms/slow.toml");
  definition.replace(definition.find("shutdown_timeout_s = 5"), 22, "shutdown_timeout_s = 60");
  write_file(root_ / "config/vms/slow.toml", definition);
  rescan({"slow"});
  EXPECT_TRUE(failed_permanently("slow"));
  EXPECT_TRUE(logged("slow", "timeout-kill holds 15000 ms"));
  EXPECT_TRUE(processes_with("marker-s6-slow").empty());
  EXPECT_EQ(testing::named_acl_entries(root_ / "rw"), "") << "the share was granted";

  add_service("slow", true);
  EXPECT_EQ(testing::read_file(service("slow") / "timeout-kill"), "70000\n");
  ASSERT_EQ(run_command({"s6-svc", "-u", service("slow").string()}).exit_code, 0);
  EXPECT_EQ(run_command({"s6-svwait", "-U", "-t", "20000", service("slow").string()}).exit_code, 0);
}

// s6-svc sends more signals than the three that stop a VM: those that mean
// nothing to vmwarden leave it running. Before, SIGQUIT, SIGALRM, SIGUSR2
// and SIGABRT killed the outer outright, which left its UID and grants.
TEST_F(S6Test, SignalsThatMeanNothingToVmwardenLeaveItRunning) {
  define("app", "exec sleep 1000 # marker-s6-signals");
  add_service("app");
  rescan({"app"});
  ASSERT_EQ(run_command({"s6-svwait", "-U", "-t", "20000", service("app").string()}).exit_code, 0);
  std::string pid = svstat("app", "pid");
  for (const char* option : {"-q", "-a", "-1", "-2", "-b", "-y"})
    ASSERT_EQ(run_command({"s6-svc", option, service("app").string()}).exit_code, 0) << option;
  std::this_thread::sleep_for(300ms);
  EXPECT_EQ(svstat("app", "up,pid"), "true " + pid);
  ASSERT_EQ(run_command({"s6-svc", "-wD", "-T", "20000", "-d", service("app").string()}).exit_code, 0);
  EXPECT_EQ(svstat("app", "exitcode"), "143\n") << "the command died of the SIGTERM, vmwarden passed it on";
  EXPECT_EQ(testing::named_acl_entries(root_ / "rw"), "") << "the grant was left";
}

TEST_F(S6Test, SupervisingOutsideS6IsRefused) {
  define("app", "true");
  // In a scan directory the fixture's s6-svscan does not watch: there, its
  // first scan, late on a busy machine, could start the service for real.
  fs::path unwatched = root_ / "unwatched";
  fs::create_directories(unwatched);
  CommandResult added = vmwarden({"s6", "service", "app", "--scandir", unwatched.string()});
  ASSERT_EQ(added.exit_code, 0) << added.err;
  // The service's own run script, started by hand rather than by s6-supervise.
  CommandResult result = run_command({(unwatched / "app/run").string()}, {.cwd = unwatched / "app"});
  EXPECT_EQ(result.exit_code, 125);
  EXPECT_THAT(result.err, HasSubstr("supervise/lock"));
  EXPECT_TRUE(fs::is_empty(root_ / "state")) << "a UID was leased";
  EXPECT_EQ(testing::named_acl_entries(root_ / "rw"), "") << "the share was granted";
}

// A definition that `check` and `supervise` refuse for a share showing
// vmwarden's own directories gets no service either (it used to: only the
// syntax and the files were checked).
TEST_F(S6Test, ADefinitionWhoseShareShowsTheStateDirectoryGetsNoService) {
  fs::path unwatched = root_ / "unwatched";
  fs::create_directories(unwatched);
  write_file(root_ / "config/vms/own.toml",
             fmt::format("command = [\"/bin/true\"]\n[[share]]\ntag = \"st\"\npath = \"{}\"\naccess = \"rw\"\n",
                         (root_ / "state").string()));
  CommandResult refused = vmwarden({"s6", "service", "own", "--scandir", unwatched.string()});
  EXPECT_EQ(refused.exit_code, 2) << refused.err;
  EXPECT_THAT(refused.err, HasSubstr("own.toml:"));
  EXPECT_THAT(refused.err, HasSubstr("invalid definition, no service written"));
  EXPECT_TRUE(fs::is_empty(unwatched)) << "a service was written";
}

}  // namespace
}  // namespace vmwarden
