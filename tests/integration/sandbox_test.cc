// The supervisor with real processes and real namespaces: `vmwarden exec`
// driven as a user (or s6) would, and the process tree observed from the
// host through /proc rather than trusting what vmwarden reports.

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/shm.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <linux/fs.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <algorithm>
#include <fstream>
#include <map>
#include <optional>
#include <random>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <fmt/core.h>

#include "common/process.h"
#include "common/unique_fd.h"
#include "supervisor/namespaces.h"
#include "supervisor/policy.h"
#include "supervisor/runtime_dir.h"
#include "supervisor/sandbox.h"
#include "tests/support/support.h"

namespace vmwarden::testing {
namespace {

using std::chrono::milliseconds;
using std::chrono::steady_clock;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr const char* kMarkerVariable = "VMWARDEN_TEST_MARKER";

std::string fresh_marker() {
  std::random_device random;
  return "m" + std::to_string(random()) + std::to_string(random());
}

// ---- looking at the host's process table -------------------------------

std::vector<pid_t> all_pids() {
  std::vector<pid_t> pids;
  DIR* proc = opendir("/proc");
  if (proc == nullptr) return pids;
  while (dirent* entry = readdir(proc)) {
    char* end = nullptr;
    long pid = std::strtol(entry->d_name, &end, 10);
    if (*end == '\0' && pid > 0) pids.push_back(static_cast<pid_t>(pid));
  }
  closedir(proc);
  return pids;
}

std::string read_proc(pid_t pid, const char* what) {
  return testing::read_proc_file("/proc/" + std::to_string(pid) + "/" + what);
}

// Live processes whose environment carries the marker: the outer, the warden
// and the command all inherit it.
std::vector<pid_t> marked_processes(const std::string& marker) {
  std::string needle = std::string(kMarkerVariable) + "=" + marker;
  std::vector<pid_t> found;
  for (pid_t pid : all_pids()) {
    std::string environ_text = read_proc(pid, "environ");
    size_t start = 0;
    while (start < environ_text.size()) {
      size_t end = environ_text.find('\0', start);
      if (end == std::string::npos) end = environ_text.size();
      if (environ_text.compare(start, end - start, needle) == 0) {
        found.push_back(pid);
        break;
      }
      start = end + 1;
    }
  }
  return found;
}

ino_t pid_namespace(pid_t pid) {
  struct stat st {};
  std::string path = "/proc/" + std::to_string(pid) + "/ns/pid";
  return stat(path.c_str(), &st) == 0 ? st.st_ino : 0;
}

std::vector<pid_t> processes_in_pid_namespace(ino_t ns) {
  std::vector<pid_t> found;
  for (pid_t pid : all_pids()) {
    if (pid_namespace(pid) == ns) found.push_back(pid);
  }
  return found;
}

char process_state(pid_t pid) {
  std::string stat = read_proc(pid, "stat");
  size_t paren = stat.rfind(')');
  return paren == std::string::npos || paren + 2 >= stat.size() ? '\0' : stat[paren + 2];
}

std::vector<std::string> mount_table() {
  std::vector<std::string> mounts;
  std::istringstream in(read_proc(getpid(), "mountinfo"));
  std::string line;
  while (std::getline(in, line)) mounts.push_back(line);
  return mounts;
}

// ---- running vmwarden --------------------------------------------------

struct LaunchOptions {
  std::map<std::string, std::string> env;
  std::optional<std::filesystem::path> cwd;
  bool notify_pipe = false;  // a pipe at fd 3 for --notify-fd 3
  // stderr a pipe whose reader is gone (`2>&1 | head -1` after head exits),
  // with SIGPIPE at its default action.
  bool stderr_without_reader = false;
  // A cgroup.procs file the process moves itself into before exec.
  std::optional<std::filesystem::path> cgroup_procs;
};

// A process started by the test: output to files, dies with the test.
class Launched {
 public:
  Launched(const std::vector<std::string>& argv, const LaunchOptions& options) : output_("vmwarden-out") {
    int notify[2] = {-1, -1};
    if (options.notify_pipe && pipe2(notify, O_CLOEXEC) < 0) throw std::runtime_error("pipe2");
    std::vector<std::string> env_strings;
    for (char** e = environ; *e != nullptr; ++e) {
      std::string entry(*e);
      if (!options.env.contains(entry.substr(0, entry.find('=')))) env_strings.push_back(entry);
    }
    for (const auto& [key, value] : options.env) env_strings.push_back(key + "=" + value);
    std::vector<char*> args, envp;
    std::vector<std::string> argv_copy = argv;
    for (auto& arg : argv_copy) args.push_back(arg.data());
    args.push_back(nullptr);
    for (auto& entry : env_strings) envp.push_back(entry.data());
    envp.push_back(nullptr);
    std::string out = (output_ / "out").string(), err = (output_ / "err").string();
    int readerless[2] = {-1, -1};
    if (options.stderr_without_reader) {
      if (pipe2(readerless, O_CLOEXEC) < 0) throw std::runtime_error("pipe2");
      close(readerless[0]);
    }
    pid_t parent = getpid();
    pid_ = fork();
    if (pid_ < 0) throw std::runtime_error("fork");
    if (pid_ == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent) _exit(127);
      int in_fd = open("/dev/null", O_RDONLY);
      int out_fd = open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
      int err_fd = open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
      dup2(in_fd, 0);
      dup2(out_fd, 1);
      dup2(options.stderr_without_reader ? readerless[1] : err_fd, 2);
      if (options.stderr_without_reader) signal(SIGPIPE, SIG_DFL);
      if (options.notify_pipe) dup2(notify[1], 3);
      if (options.cwd && chdir(options.cwd->c_str()) != 0) _exit(127);
      if (options.cgroup_procs) {
        int procs = open(options.cgroup_procs->c_str(), O_WRONLY | O_CLOEXEC);
        if (procs < 0 || write(procs, "0", 1) != 1) _exit(126);  // "0": the writer itself
        close(procs);
      }
      execve(args[0], args.data(), envp.data());
      _exit(127);
    }
    if (options.notify_pipe) {
      close(notify[1]);
      notify_ = UniqueFd(notify[0]);
    }
    if (options.stderr_without_reader) close(readerless[1]);
  }

  ~Launched() {
    // pid_ > 0 always holds after the constructor; checked anyway because
    // testing::kill_process(-1) or testing::kill_process(0) here would hit far more than this test's process.
    if (!reaped_ && pid_ > 0) {
      testing::kill_process(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }

  pid_t pid() const { return pid_; }

  // What arrived on the readiness pipe before EOF or the deadline.
  std::string read_notify(milliseconds timeout, bool until_eof = false) {
    std::string got;
    auto deadline = steady_clock::now() + timeout;
    while (true) {
      auto left = std::chrono::duration_cast<milliseconds>(deadline - steady_clock::now()).count();
      if (left <= 0) break;
      pollfd entry{notify_.get(), POLLIN, 0};
      if (poll(&entry, 1, static_cast<int>(left)) <= 0) break;
      char buffer[64];
      ssize_t n = read(notify_.get(), buffer, sizeof buffer);
      if (n <= 0) break;
      got.append(buffer, static_cast<size_t>(n));
      if (!until_eof && got.find('\n') != std::string::npos) break;
    }
    return got;
  }

  // The wait status, or nullopt if it did not exit in time.
  std::optional<int> wait(milliseconds timeout) {
    auto deadline = steady_clock::now() + timeout;
    while (true) {
      int status = 0;
      pid_t got = waitpid(pid_, &status, WNOHANG);
      if (got == pid_) {
        reaped_ = true;
        return status;
      }
      if (steady_clock::now() >= deadline) return std::nullopt;
      std::this_thread::sleep_for(milliseconds(5));
    }
  }

  std::string out() const { return read_file(output_ / "out"); }

  // Whether stdout holds `text` by the deadline (e.g. a shell saying that
  // its trap is set).
  bool wait_for_output(const std::string& text, milliseconds timeout) const {
    for (auto deadline = steady_clock::now() + timeout; steady_clock::now() < deadline;
         std::this_thread::sleep_for(milliseconds(5)))
      if (out().find(text) != std::string::npos) return true;
    return false;
  }
  std::string err() const { return read_file(output_ / "err"); }

 private:
  TempDir output_;
  pid_t pid_ = -1;
  bool reaped_ = false;
  UniqueFd notify_;
};

int exit_code(const std::optional<int>& status) {
  if (!status) return -1;
  if (WIFSIGNALED(*status)) return 128 + WTERMSIG(*status);
  return WEXITSTATUS(*status);
}

class SandboxTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    // Scratch directories must be visible inside the sandbox, whose /tmp is
    // private: meson points TMPDIR elsewhere.
    const char* tmpdir = std::getenv("TMPDIR");
    ASSERT_TRUE(tmpdir != nullptr && !std::string_view(tmpdir).starts_with("/tmp")) << "TMPDIR must not be /tmp";
    std::filesystem::create_directories(tmpdir);
    // Orphans of the trees under test (a warden whose outer was killed)
    // come to the test, which reaps them, instead of to the host's init.
    ASSERT_EQ(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
  }

  SandboxTest()
      : runtime_root_("vmwarden-runtime"), state_root_("vmwarden-state"), config_root_("vmwarden-config"),
        marker_(fresh_marker()) {}

  LaunchOptions options(bool notify = false) const {
    LaunchOptions launch;
    launch.env = {{"VMWARDEN_RUNTIME_DIR", runtime_root_.path().string()},
                  {"VMWARDEN_STATE_DIR", state_root_.path().string()},
                  {"VMWARDEN_CONFIG_DIR", config_root_.path().string()},
                  {kMarkerVariable, marker_}};
    launch.notify_pipe = notify;
    return launch;
  }

  std::vector<std::string> exec_argv(std::vector<std::string> flags, std::vector<std::string> command) const {
    std::vector<std::string> argv = {vmwarden_binary(), "exec", "--name", name_};
    argv.insert(argv.end(), flags.begin(), flags.end());
    argv.push_back("--");
    argv.insert(argv.end(), command.begin(), command.end());
    return argv;
  }

  // Runs `vmwarden exec` to completion.
  CommandResult exec(std::vector<std::string> flags, std::vector<std::string> command) {
    CommandOptions run;
    run.extra_env = options().env;
    run.timeout = milliseconds(30'000);
    return run_command(exec_argv(std::move(flags), std::move(command)), run);
  }

  // Runs `vmwarden exec` to completion in a private mount namespace of the
  // test's, once the shell command `setup` has run there (to mount
  // something below a path given to the sandbox).
  CommandResult exec_after(const std::string& setup, std::vector<std::string> flags,
                           std::vector<std::string> command) {
    std::vector<std::string> argv = {"/usr/bin/unshare", "-m", "--propagation", "private", "/bin/sh", "-c",
                                     setup + " && exec \"$@\"", "sh"};
    for (std::string& arg : exec_argv(std::move(flags), std::move(command))) argv.push_back(std::move(arg));
    CommandOptions run;
    run.extra_env = options().env;
    run.timeout = milliseconds(30'000);
    return run_command(argv, run);
  }

  std::filesystem::path runtime_dir() const { return runtime_root_.path() / name_; }

  // Every process of the tree gone (counted through /proc by marker and by
  // PID namespace), the runtime dir gone, the mount table as before, all
  // within `deadline` of `since`. Returns what is left, for the message.
  // Reaps the recorded processes that became the test's children (as
  // subreaper), except `keep`, which its Launched object waits for.
  std::string wait_until_tree_gone(steady_clock::time_point since, milliseconds deadline, ino_t ns,
                                   const std::vector<pid_t>& recorded, const std::vector<std::string>& mounts,
                                   pid_t keep) {
    std::string left;
    auto reap = [&] {
      for (pid_t pid : recorded) {
        if (pid != keep) waitpid(pid, nullptr, WNOHANG);
      }
    };
    while (true) {
      reap();
      left.clear();
      for (pid_t pid : marked_processes(marker_)) left += " marked:" + std::to_string(pid);
      for (pid_t pid : processes_in_pid_namespace(ns)) left += " in-namespace:" + std::to_string(pid);
      for (pid_t pid : recorded) {
        char state = process_state(pid);
        if (state != '\0' && state != 'Z') left += " recorded:" + std::to_string(pid) + state;
      }
      if (std::filesystem::exists(runtime_dir())) left += " runtime-dir";
      if (mount_table() != mounts) left += " mounts-changed";
      if (left.empty() || steady_clock::now() - since > deadline) break;
      std::this_thread::sleep_for(milliseconds(5));
    }
    reap();
    return left;
  }

  // A sandbox of one main service, "command", running `argv` without
  // Landlock or seccomp (what is tested is the supervisor around it).
  supervisor::SandboxSpec unconfined_sandbox(const std::string& name, std::vector<std::string> argv) const {
    supervisor::SandboxSpec spec;
    spec.name = name + "-" + std::to_string(getpid());
    spec.runtime_dir = runtime_root_.path() / spec.name;
    supervisor::ServiceSpec command;
    command.name = "command";
    command.argv = std::move(argv);
    // Not the host's uid 0, which the supervisor refuses to run a service as.
    command.confinement.uid = command.confinement.gid = 65534;
    command.confinement.landlock.mode = supervisor::LandlockMode::off;
    command.confinement.seccomp.profile = "none";
    command.main = true;
    spec.services = {command};
    return spec;
  }

  // An unconfined sandbox whose main service (`main_argv`, stage 1) waits
  // for `first` (argv `first_argv`, stage 0) to pass `wait_ready`.
  supervisor::SandboxSpec sandbox_after_first_stage(
      const std::string& name, std::vector<std::string> main_argv, const std::string& first,
      std::vector<std::string> first_argv,
      std::function<void(const supervisor::RunningService&, steady_clock::time_point)> wait_ready) const {
    supervisor::SandboxSpec spec = unconfined_sandbox(name, std::move(main_argv));
    spec.services[0].stage = 1;
    supervisor::ServiceSpec service = spec.services[0];
    service.name = first;
    service.argv = std::move(first_argv);
    service.main = false;
    service.stage = 0;
    service.wait_ready = std::move(wait_ready);
    spec.services.insert(spec.services.begin(), service);
    return spec;
  }

  TempDir runtime_root_;
  TempDir state_root_;
  TempDir config_root_;
  std::string marker_;
  std::string name_ = "test";
};

// ---- inside the sandbox --------------------------------------------------

// The command is 2 in its PID namespace; PID 1 there, the warden (root),
// is hidden from it (hidepid=invisible), as uid 0 too: root of its own user
// namespace only. TreeDeathTest shows from the host that the warden is 1.
TEST_F(SandboxTest, CommandIsPid2AndWardenIsPid1) {
  CommandResult result = exec({"--uid", "0"}, {"/bin/sh", "-c", "echo $$; ls /proc/1 >/dev/null 2>&1 || echo hidden"});
  ASSERT_EQ(result.exit_code, 0) << result.err;
  EXPECT_EQ(result.out, "2\nhidden\n");
}

// The first match of `pattern` in `text`: its groups, or none.
std::vector<std::string> first_match(const std::string& text, const std::string& pattern) {
  std::smatch match;
  if (!std::regex_search(text, match, std::regex(pattern))) return {};
  return std::vector<std::string>(match.begin() + 1, match.end());
}

// Every command starts a session of its own. One with a terminal on a
// standard descriptor gets a new pty in its place, its controlling terminal,
// relayed by vmwarden (script(1) gives the caller a terminal): never the
// caller's, whatever it does to it. A standard descriptor that is not a
// terminal is passed as it is. The session id (field 6 of /proc/PID/stat)
// would be 0 for a session led outside the sandbox's PID namespace.
TEST_F(SandboxTest, ACommandOnATerminalGetsAPtyOfItsOwnInASessionOfItsOwn) {
  // $$'s fd 1, not the command substitution's.
  std::vector<std::string> report = {
      "/bin/sh", "-c",
      "echo \"sid=$(cut -d' ' -f6 /proc/$$/stat) tty=$(tty) size=$(stty size 2>&1) out=$(readlink /proc/$$/fd/1)\"; "
      "echo via-dev-tty >/dev/tty; exit 7"};
  CommandResult piped = exec({"--uid", "65534"}, report);
  EXPECT_EQ(piped.exit_code, 7) << piped.err;
  EXPECT_THAT(piped.out, HasSubstr("sid=2 tty=not a tty ")) << "with pipes: its own session, no terminal";
  EXPECT_THAT(piped.err, HasSubstr("/dev/tty: No such device or address")) << "no controlling terminal";

  CommandOptions run;
  run.extra_env = options().env;
  run.timeout = milliseconds(30'000);
  std::string command = shell_words(exec_argv({"--uid", "65534"}, report));
  CommandResult caller = run_on_terminal(
      "stty rows 33 cols 77; before=$(stty -g); echo \"caller sid=$(cut -d' ' -f6 /proc/$$/stat) tty=$(tty)\"; " +
          command + "; echo rc=$?; " + command + " | cat; " +
          "[ \"$before\" = \"$(stty -g)\" ] && echo 'modes restored'",
      run);
  ASSERT_EQ(caller.exit_code, 0) << caller.err << caller.out;
  const std::string& out = caller.out;
  std::vector<std::string> callers = first_match(out, R"(caller sid=(\d+) tty=(/dev/pts/\d+))");
  ASSERT_EQ(callers.size(), 2u) << out;
  std::vector<std::string> command_on_terminal = first_match(out, R"(\nsid=(\d+) tty=(\S+) size=(.*) out=(\S+))");
  ASSERT_EQ(command_on_terminal.size(), 4u) << out;
  EXPECT_EQ(command_on_terminal[0], "2") << "a session of its own, led by the command (pid 2)\n" << out;
  EXPECT_THAT(command_on_terminal[1], ::testing::StartsWith("/dev/pts/")) << out;
  EXPECT_NE(command_on_terminal[1], callers[1]) << "a pty of its own, not the caller's\n" << out;
  EXPECT_EQ(command_on_terminal[2], "33 77") << "the caller's window size\n" << out;
  EXPECT_EQ(command_on_terminal[3], command_on_terminal[1]) << out;
  EXPECT_THAT(out, HasSubstr("via-dev-tty\r\nrc=7\r\n")) << "/dev/tty is its pty; its exit status passes through";
  // Its stdout a pipe: that pipe, the others its pty.
  std::vector<std::string> piped_out = first_match(out, R"(rc=7\r\n[\s\S]*sid=(\d+) tty=(\S+) size=(.*) out=(\S+))");
  ASSERT_EQ(piped_out.size(), 4u) << out;
  EXPECT_THAT(piped_out[1], ::testing::StartsWith("/dev/pts/")) << out;
  EXPECT_NE(piped_out[1], callers[1]) << out;
  EXPECT_THAT(piped_out[3], ::testing::StartsWith("pipe:")) << out;
  EXPECT_THAT(out, HasSubstr("modes restored")) << "the caller's terminal as it was\n" << out;

  // A producer in a pipeline, its stdin and stderr on the terminal but not
  // its stdout: output is relayed, the keys (the reader's) are not taken,
  // and the terminal's modes stay as whoever reads it set them (here -echo,
  // set while the command runs, is not undone at its end).
  std::string producer = shell_words(exec_argv({"--uid", "65534"}, {"/bin/sh", "-c", "sleep 1; echo produced"}));
  CommandResult pipeline = run_on_terminal(
      "stty echo icanon; " + producer + " | { sleep 0.5; stty -a </dev/tty | grep -o -- '-*icanon' | head -1; "
      "stty -echo </dev/tty; cat; }; stty -a | grep -o -- '-*echo ' | head -1",
      run);
  EXPECT_THAT(pipeline.out, ::testing::StartsWith("icanon\r\n")) << "raw while a producer ran\n" << pipeline.out;
  EXPECT_THAT(pipeline.out, HasSubstr("produced\r\n")) << pipeline.out;
  EXPECT_THAT(pipeline.out, HasSubstr("-echo")) << "the reader's modes were undone\n" << pipeline.out;

  // The audit, run the same way, says which.
  CommandResult audit = run_on_terminal(shell_words(exec_argv({"--uid", "65534", "--audit"}, report)), run);
  EXPECT_THAT(audit.out, HasSubstr("outer: open a new pty from the host's /dev/ptmx"));
  EXPECT_THAT(audit.out, HasSubstr("receives the slave as its fds 0, 1 and 2, instead of the caller's terminal"));
  EXPECT_THAT(audit.out, HasSubstr("in the child: start a session of its own (setsid) and make the pty's slave, its "
                                   "fd 0, its controlling terminal (TIOCSCTTY)"));
  EXPECT_THAT(audit.out, HasSubstr("relay bytes between the caller's terminal and the pty's master"));
  CommandResult audit_piped = exec({"--uid", "65534", "--audit"}, report);
  EXPECT_THAT(audit_piped.out,
              HasSubstr("in the child: start a session of its own (setsid), without a controlling terminal"));
  EXPECT_THAT(audit_piped.out, Not(HasSubstr("/dev/ptmx")));
}

// What is typed at the caller's terminal reaches the command through the
// relay and its pty's line discipline: a line it reads, and Ctrl-C, which
// signals the command's own foreground process group, not the caller's (the
// caller's shell traps SIGINT to tell, and vmwarden would forward a SIGINT
// it got to the sandbox).
TEST_F(SandboxTest, KeysTypedAtTheCallersTerminalReachTheCommandThroughItsPty) {
  std::string command = shell_words(exec_argv(
      {"--uid", "65534"},
      {"/bin/sh", "-c", "echo \"command on $(tty)\"; read line; echo \"got:$line\"; echo waiting; exec sleep 60"}));
  TerminalDialogue dialogue(
      "trap 'echo caller-got-INT' INT; before=$(stty -g); echo \"caller on $(tty)\"; " + command +
          "; echo rc=$?; [ \"$before\" = \"$(stty -g)\" ] && echo 'modes restored'",
      options().env);
  ASSERT_TRUE(dialogue.wait_for("\ncommand on /dev/pts/")) << dialogue.output();
  dialogue.type("hello\n");
  ASSERT_TRUE(dialogue.wait_for("got:hello\r\nwaiting")) << dialogue.output();
  // `waiting` comes just before `exec sleep`: a Ctrl-C that arrives earlier
  // ends the shell with SIGINT just the same.
  dialogue.type("\x03");
  EXPECT_EQ(dialogue.finish(), 0) << dialogue.output();
  const std::string& out = dialogue.output();
  std::vector<std::string> caller = first_match(out, R"(caller on (/dev/pts/\d+))");
  std::vector<std::string> own = first_match(out, R"(command on (/dev/pts/\d+))");
  ASSERT_EQ(caller.size(), 1u) << out;
  ASSERT_EQ(own.size(), 1u) << out;
  EXPECT_NE(caller[0], own[0]) << out;
  EXPECT_THAT(out, HasSubstr("rc=130")) << "killed by SIGINT from its pty\n" << out;
  EXPECT_THAT(out, Not(HasSubstr("caller-got-INT"))) << out;
  EXPECT_THAT(out, Not(HasSubstr("forwarding SIGINT"))) << out;
  EXPECT_THAT(out, HasSubstr("modes restored")) << out;
}

// vmwarden's own lines (here -v's, from the outer and the warden) end in
// "\r\n" while the caller's terminal is raw for the relay, which takes the
// terminal's own "\n" to "\r\n" away: else each starts where the last
// ended. Everything else on a terminal gets its carriage returns from a
// line discipline (the caller's before and after, the pty's meanwhile), so
// no line of the whole dialogue may end in a bare "\n".
TEST_F(SandboxTest, VmwardensOwnLinesKeepTheirCarriageReturnWhileTheTerminalIsRaw) {
  std::string command = shell_words(exec_argv(
      {"-v", "--uid", "65534"}, {"/bin/sh", "-c", "echo \"command on $(tty)\"; read line; echo \"got:$line\""}));
  TerminalDialogue dialogue("echo caller; " + command + "; echo rc=$?", options().env);
  ASSERT_TRUE(dialogue.wait_for("\ncommand on /dev/pts/")) << dialogue.output();
  dialogue.type("hello\n");
  EXPECT_EQ(dialogue.finish(), 0) << dialogue.output();
  const std::string& out = dialogue.output();
  ASSERT_THAT(out, HasSubstr("got:hello\r\n")) << out;
  ASSERT_THAT(out, HasSubstr("rc=0")) << out;
  // -v's line at the command's exit comes while the terminal is raw.
  ASSERT_THAT(out, HasSubstr("command (pid 2) exited with status 0")) << out;
  for (std::size_t at = out.find('\n'); at != std::string::npos; at = out.find('\n', at + 1)) {
    std::size_t start = out.rfind('\n', at - 1);
    start = start == std::string::npos ? 0 : start + 1;
    EXPECT_TRUE(at > 0 && out[at - 1] == '\r') << "a bare \\n ends: " << out.substr(start, at - start);
  }
}

// The command gets vmwarden's environment, less --unsetenv, plus --setenv;
// --clearenv starts it empty.
TEST_F(SandboxTest, TheEnvironmentIsTheCallersUnlessClearedOrChanged) {
  CommandOptions run;
  run.extra_env = options().env;
  run.extra_env["VMWARDEN_ENVTEST_SECRET"] = "s3cret";
  run.extra_env["VMWARDEN_ENVTEST_KEPT"] = "kept";
  auto env_of = [&](std::vector<std::string> flags) {
    flags.insert(flags.begin(), {"--uid", "65534"});
    CommandResult result = run_command(exec_argv(flags, {"/usr/bin/env"}), run);
    EXPECT_EQ(result.exit_code, 0) << result.err;
    std::vector<std::string> lines;
    std::istringstream in(result.out);
    for (std::string line; std::getline(in, line);)
      if (line.starts_with("VMWARDEN_ENVTEST_")) lines.push_back(line);
    std::sort(lines.begin(), lines.end());
    return lines;
  };
  using ::testing::ElementsAre;
  EXPECT_THAT(env_of({}), ElementsAre("VMWARDEN_ENVTEST_KEPT=kept", "VMWARDEN_ENVTEST_SECRET=s3cret"));
  EXPECT_THAT(env_of({"--unsetenv", "VMWARDEN_ENVTEST_SECRET", "--setenv", "VMWARDEN_ENVTEST_NEW=a=b",
                      "--setenv", "VMWARDEN_ENVTEST_KEPT=changed"}),
              ElementsAre("VMWARDEN_ENVTEST_KEPT=changed", "VMWARDEN_ENVTEST_NEW=a=b"));
  EXPECT_THAT(env_of({"--clearenv", "--setenv", "VMWARDEN_ENVTEST_ONLY=1"}), ElementsAre("VMWARDEN_ENVTEST_ONLY=1"));
  CommandResult cleared = run_command(exec_argv({"--uid", "65534", "--clearenv"}, {"/usr/bin/env"}), run);
  EXPECT_EQ(cleared.exit_code, 0) << cleared.err;
  EXPECT_EQ(cleared.out, "");
  for (const std::vector<std::string>& bad : std::vector<std::vector<std::string>>{
           {"--setenv", "NOVALUE", "--setenv NOVALUE: want KEY=VALUE"},
           {"--setenv", "=x", "--setenv =x: a variable's name cannot be empty"},
           {"--setenv", "A\x1b[2J=x", "--setenv A\\x1b[2J=x: a variable's name cannot contain a control character"},
           {"--unsetenv", "A=B", "--unsetenv A=B: a variable's name cannot contain '='; give a variable's name"},
           {"--unsetenv", "", "--unsetenv was given an empty value"}}) {
    std::vector<std::string> flags = {"--uid", "65534", bad[0], bad[1]};
    CommandResult refused = run_command(exec_argv(flags, {"/bin/true"}), run);
    EXPECT_EQ(refused.exit_code, 2) << bad[0] << " " << bad[1];
    EXPECT_THAT(refused.err, HasSubstr(bad[2]));
  }
}

TEST_F(SandboxTest, PsShowsNoHostProcess) {
  // The host has many processes (this test among them); the sandbox's own
  // /proc must show only ps itself (the warden, root, is hidden from it).
  ASSERT_GT(all_pids().size(), 3u);
  CommandResult result = exec({"--uid", "0"}, {"ps", "-e", "-o", "pid=,comm="});
  ASSERT_EQ(result.exit_code, 0) << result.err;
  EXPECT_THAT(result.out, ::testing::MatchesRegex(" *2 ps\n")) << result.out;
}

// A SysV shared memory segment of the host's, open to everyone, is not
// there for the command to attach: the sandbox has an IPC namespace of its
// own. (Landlock and seccomp off, so that the namespace alone is tested.)
TEST_F(SandboxTest, TheHostsSharedMemoryIsNotVisible) {
  key_t key = static_cast<key_t>(0x76570000 | (::getpid() & 0xffff));
  int segment = ::shmget(key, 4096, IPC_CREAT | IPC_EXCL | 0666);
  ASSERT_GE(segment, 0) << strerror(errno);
  struct Removed {
    int id;
    ~Removed() { ::shmctl(id, IPC_RMID, nullptr); }
  } removed{segment};
  std::string script = fmt::format(
      "import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\n"
      "r = libc.shmget({}, 0, 0)\nprint('found' if r >= 0 else os.strerror(ctypes.get_errno()))\n",
      key);
  CommandResult result = exec({"--uid", "65534", "--landlock", "off", "--seccomp-profile", "none"},
                              {"/usr/bin/python3", "-c", script});
  ASSERT_EQ(result.exit_code, 0) << result.err;
  EXPECT_EQ(result.out, "No such file or directory\n");
}

TEST_F(SandboxTest, TmpAndDevShmAreEmptyPrivateAndLimited) {
  // Something the sandbox must not see in the host's /tmp and /dev/shm.
  std::string host_file = "vmwarden-visible-" + marker_;
  write_file("/tmp/" + host_file, "host");
  write_file("/dev/shm/" + host_file, "host");
  std::string inside_name = "inside-" + marker_;
  CommandResult result = exec(
      {"--uid", "0"},
      {"/bin/sh", "-c",
       "ls -A /tmp /dev/shm; touch /tmp/" + inside_name + " /dev/shm/" + inside_name +
           "; grep -E ' /(tmp|dev/shm) ' /proc/self/mountinfo | tail -n 2"});
  std::filesystem::remove("/tmp/" + host_file);
  std::filesystem::remove("/dev/shm/" + host_file);
  // Were /tmp and /dev/shm not private, the command wrote to the host's.
  bool leaked_tmp = std::filesystem::remove("/tmp/" + inside_name);
  bool leaked_shm = std::filesystem::remove("/dev/shm/" + inside_name);
  ASSERT_EQ(result.exit_code, 0) << result.err;
  EXPECT_THAT(result.out, ::testing::StartsWith("/dev/shm:\n\n/tmp:\n")) << result.out;
  EXPECT_THAT(result.out, Not(HasSubstr(host_file)));
  EXPECT_THAT(result.out, ::testing::ContainsRegex("/tmp rw,nosuid,nodev,[^\n]* tmpfs tmpfs rw,size=65536k"));
  EXPECT_THAT(result.out, ::testing::ContainsRegex("/dev/shm rw,nosuid,nodev,[^\n]* tmpfs tmpfs rw,size=65536k"));
  EXPECT_FALSE(leaked_tmp);
  EXPECT_FALSE(leaked_shm);
}

// /tmp is the sandbox's own empty tmpfs: a caller whose cwd is beneath it
// gets "/" inside, whatever the path looks like.
TEST_F(SandboxTest, ACwdBeneathTmpBecomesTheRoot) {
  char pattern[] = "/tmp/vmwarden-cwd-XXXXXX";
  ASSERT_NE(::mkdtemp(pattern), nullptr);
  std::filesystem::path dir = std::filesystem::path(pattern) / "deeper";
  std::filesystem::create_directory(dir);
  CommandOptions run;
  run.extra_env = options().env;
  run.cwd = dir;
  CommandResult result = run_command(exec_argv({"--uid", "0"}, {"/bin/pwd"}), run);
  std::filesystem::remove_all(pattern);
  EXPECT_EQ(result.exit_code, 0) << result.err;
  EXPECT_EQ(result.out, "/\n");
}

TEST_F(SandboxTest, ExitStatusIsTheCommands) {
  EXPECT_EQ(exec({"--uid", "0"}, {"/bin/sh", "-c", "exit 7"}).exit_code, 7);
  EXPECT_EQ(exec({"--uid", "0"}, {"/bin/sh", "-c", "kill -USR1 $$"}).exit_code, 128 + SIGUSR1);
}

TEST_F(SandboxTest, RunsAsTheGivenUidWithoutPrivileges) {
  Launched sandbox(exec_argv({"--uid", "65534", "--notify-fd", "3"},
                             {"/bin/sh", "-c", "id -u; id -g; id -G; grep NoNewPrivs /proc/self/status; sleep 30"}),
                   options(true));
  ASSERT_EQ(sandbox.read_notify(milliseconds(10'000)), "\n") << sandbox.err();
  // The command prints, then sleeps: wait for the whole output.
  auto deadline = steady_clock::now() + milliseconds(10'000);
  for (std::string out = sandbox.out(); std::count(out.begin(), out.end(), '\n') < 4; out = sandbox.out()) {
    ASSERT_LT(steady_clock::now(), deadline) << out;
    std::this_thread::sleep_for(milliseconds(10));
  }
  struct stat st {};
  ASSERT_EQ(stat(runtime_dir().c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 65534u);
  EXPECT_EQ(st.st_gid, 65534u);
  EXPECT_EQ(st.st_mode & 07777, 0700u);
  testing::kill_process(sandbox.pid(), SIGTERM);
  EXPECT_EQ(exit_code(sandbox.wait(milliseconds(10'000))), 128 + SIGTERM);
  EXPECT_EQ(sandbox.out(), "65534\n65534\n65534\nNoNewPrivs:\t1\n");
  EXPECT_FALSE(std::filesystem::exists(runtime_dir()));
}

TEST_F(SandboxTest, NetworkIsPrivateUnlessShared) {
  std::string host = read_file("/proc/net/dev");
  CommandResult isolated = exec({"--uid", "0"}, {"cat", "/proc/net/dev"});
  ASSERT_EQ(isolated.exit_code, 0) << isolated.err;
  // Two header lines, then only the loopback device.
  EXPECT_THAT(isolated.out, ::testing::MatchesRegex("[^\n]*\n[^\n]*\n *lo:[^\n]*\n")) << isolated.out;
  CommandResult shared = exec({"--uid", "0", "--share-net"}, {"cat", "/proc/net/dev"});
  ASSERT_EQ(shared.exit_code, 0) << shared.err;
  auto interfaces = [](const std::string& text) {
    std::set<std::string> names;
    std::istringstream in(text);
    std::string line;
    while (std::getline(in, line)) {
      if (auto colon = line.find(':'); colon != std::string::npos && line.find('|') == std::string::npos) {
        names.insert(line.substr(line.find_first_not_of(' '), colon - line.find_first_not_of(' ')));
      }
    }
    return names;
  };
  EXPECT_EQ(interfaces(shared.out), interfaces(host));
}

TEST_F(SandboxTest, ReadOnlyPathIsReadOnlyEvenForRoot) {
  TempDir dir("vmwarden-ro");
  std::string target = (dir / "written").string();
  // Granted --rw, root inside the sandbox can write there ...
  CommandResult writable = exec({"--uid", "0", "--rw", dir.path().string()}, {"/bin/sh", "-c", "echo x > " + target});
  EXPECT_EQ(writable.exit_code, 0) << writable.err;
  EXPECT_TRUE(std::filesystem::exists(target));
  std::filesystem::remove(target);
  // ... with it, not.
  CommandResult readonly = exec({"--uid", "0", "--ro", dir.path().string()}, {"/bin/sh", "-c", "echo x > " + target});
  EXPECT_NE(readonly.exit_code, 0);
  EXPECT_THAT(readonly.err, HasSubstr("Read-only file system"));
  EXPECT_FALSE(std::filesystem::exists(target));
}

// A --ro tree of a --uid is bind-mounted recursively, which leaves an
// unbindable mount below it out and shows the directory it covers: refused
// up front. The mount is made in a private mount namespace of the test's.
TEST_F(SandboxTest, AReadOnlyPathWithAnUnbindableMountBelowIsRefused) {
  TempDir dir("vmwarden-ro-unbindable");
  std::filesystem::permissions(dir.path(), std::filesystem::perms::owner_all | std::filesystem::perms::group_read |
                                               std::filesystem::perms::group_exec | std::filesystem::perms::others_read |
                                               std::filesystem::perms::others_exec);
  std::filesystem::create_directory(dir / "covered");
  std::filesystem::create_directory(dir / "covered/secret-below-the-mount");
  std::string covered = (dir / "covered").string();
  CommandResult result =
      exec_after("mount -t tmpfs -o size=16k tmpfs " + covered + " && mount --make-unbindable " + covered,
                 {"--uid", "65534", "--ro", dir.path().string()}, {"/bin/ls", covered});
  EXPECT_EQ(result.exit_code, 2) << result.out << result.err;
  EXPECT_THAT(result.err, HasSubstr("--ro " + dir.path().string() + ": " + dir.path().string() +
                                    " has an unbindable mount at or below it"));
  EXPECT_THAT(result.out, Not(HasSubstr("secret-below-the-mount")));
}

// A --ro tree of a given --uid (bind-mounted, not a single-use UID's
// granted copy) is read-only with every mount below it (a recursive
// mount_setattr; a classic read-only remount would leave them writable):
// the kernel refuses the write with EROFS. With --landlock off no rule
// makes the rest of the mounts read-only, and that bind mount is all there
// is. The mount, writable by all, is made in a private mount namespace of
// the test's.
TEST_F(SandboxTest, AMountBelowAReadOnlyPathIsReadOnlyToo) {
  TempDir dir("vmwarden-ro-submount");
  std::filesystem::permissions(dir.path(), std::filesystem::perms(0755));
  std::filesystem::create_directory(dir / "below");
  std::string below = (dir / "below").string();
  for (const char* landlock : {"required", "off"}) {
    SCOPED_TRACE(landlock);
    CommandResult result = exec_after("mount -t tmpfs -o size=16k,mode=0777 tmpfs " + below,
                                      {"--uid", "65534", "--landlock", landlock, "--ro", dir.path().string()},
                                      {"/bin/sh", "-c", "echo x > " + below + "/written"});
    EXPECT_NE(result.exit_code, 0) << result.out << result.err;
    EXPECT_THAT(result.err, HasSubstr("Read-only file system"));
  }
}

// ---- readiness -------------------------------------------------------------

TEST_F(SandboxTest, NotifyFdGetsANewlineOnceTheCommandRuns) {
  Launched sandbox(exec_argv({"--uid", "0", "--notify-fd", "3"}, {"/bin/sleep", "30"}), options(true));
  ASSERT_EQ(sandbox.read_notify(milliseconds(10'000)), "\n") << sandbox.err();
  // At that moment the command is running: sleep is in the tree.
  bool sleeping = false;
  for (pid_t pid : marked_processes(marker_)) sleeping |= read_proc(pid, "comm") == "sleep\n";
  EXPECT_TRUE(sleeping);
  EXPECT_EQ(sandbox.read_notify(milliseconds(2'000), true), "") << "the fd is closed after the newline";
  testing::kill_process(sandbox.pid(), SIGTERM);
  EXPECT_EQ(exit_code(sandbox.wait(milliseconds(10'000))), 128 + SIGTERM);
}

TEST_F(SandboxTest, NotifyFdStaysSilentWhenExecFails) {
  // Executable, found, but not a valid executable (no #!): execve fails with
  // ENOEXEC inside the sandbox, after the outer's checks passed.
  TempDir dir("vmwarden-noexec");
  ASSERT_EQ(::chmod(dir.path().c_str(), 0755), 0);  // the single-use UID may enter
  write_file(dir / "script", "echo hi\n", 0755);
  Launched sandbox(exec_argv({"--uid", "0", "--notify-fd", "3"}, {(dir / "script").string()}), options(true));
  EXPECT_EQ(sandbox.read_notify(milliseconds(10'000), true), "");
  EXPECT_EQ(exit_code(sandbox.wait(milliseconds(10'000))), 125);
  EXPECT_THAT(sandbox.err(), HasSubstr("cannot start command: execve " + (dir / "script").string() + ": Exec format"));
  EXPECT_FALSE(std::filesystem::exists(runtime_dir()));
}

TEST_F(SandboxTest, CommandGetsOnlyStdinStdoutAndStderr) {
  // fd 3 is open in vmwarden (it is the readiness fd) and must not reach the
  // command; neither may any descriptor of the outer or the warden.
  Launched sandbox(exec_argv({"--uid", "0", "--notify-fd", "3"}, {"/bin/sh", "-c", "ls /proc/$$/fd"}), options(true));
  EXPECT_EQ(exit_code(sandbox.wait(milliseconds(10'000))), 0) << sandbox.err();
  EXPECT_EQ(sandbox.out(), "0\n1\n2\n");
}

// Started with its standard descriptors closed, vmwarden holds them with
// /dev/null before it opens anything: otherwise its first files (a lock, a
// granted directory) would take their numbers and reach the command as its
// stdin, stdout or stderr.
TEST_F(SandboxTest, ClosedStandardDescriptorsReachTheCommandAsDevNull) {
  TempDir dir("vmwarden-closed-fds");
  std::string out = (dir / "out").string();
  std::vector<std::string> argv = exec_argv({"--uid", "0", "--rw", dir.path().string()},
                                            {"/bin/sh", "-c", "readlink /proc/$$/fd/0 /proc/$$/fd/2 > " + out});
  // The shell closes 0 and 2 and then runs vmwarden in its place.
  std::string script = "exec 0<&- 2>&-; exec \"$@\"";
  argv.insert(argv.begin(), {"/bin/sh", "-c", script, "sh"});
  CommandOptions run;
  run.extra_env = options().env;
  run.timeout = milliseconds(30'000);
  CommandResult result = run_command(argv, run);
  EXPECT_EQ(result.exit_code, 0);
  EXPECT_EQ(read_file(dir / "out"), "/dev/null\n/dev/null\n");
}

// Forks a process that runs the sandbox, as `vmwarden exec` would, and exits
// with its status (125 if run_sandbox throws, with the reason on stderr).
pid_t fork_run_sandbox(const supervisor::SandboxSpec& spec, int stderr_fd = -1) {
  pid_t outer = fork();
  if (outer == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (stderr_fd >= 0 && dup2(stderr_fd, STDERR_FILENO) < 0) _exit(125);
    int status = 125;
    try {
      status = supervisor::run_sandbox(spec);
    } catch (const std::exception& error) {
      std::fprintf(stderr, "run_sandbox: %s\n", error.what());
    }
    _exit(status);
  }
  return outer;
}

std::string read_until_eof(int fd) {
  std::string text;
  char buffer[256];
  for (ssize_t n; (n = read(fd, buffer, sizeof buffer)) != 0;) {
    if (n > 0) {
      text.append(buffer, static_cast<std::size_t>(n));
    } else if (errno != EINTR) {
      ADD_FAILURE() << "read: " << strerror(errno);
      break;
    }
  }
  return text;
}

// Runs `spec` to its end in a child; its wait status and what it wrote to stderr.
struct SandboxEnd {
  int status = 0;
  std::string err;
};
SandboxEnd run_sandbox_to_end(const supervisor::SandboxSpec& spec) {
  auto [err_read, err_write] = make_pipe();
  pid_t outer = fork_run_sandbox(spec, err_write.get());
  EXPECT_GT(outer, 0);
  err_write.reset();
  SandboxEnd end;
  end.err = read_until_eof(err_read.get());
  EXPECT_EQ(waitpid(outer, &end.status, 0), outer);
  return end;
}

// A service given only stdout (as the VM's daemons get only their log on 1
// and 2) finds /dev/null on its other standard descriptors, not a closed
// slot that its first open() would take.
TEST_F(SandboxTest, UnmappedStandardDescriptorsAreDevNull) {
  using namespace vmwarden::supervisor;
  auto [out_read, out_write] = make_pipe();
  SandboxSpec spec = unconfined_sandbox("stdfds", {"/bin/sh", "-c", "readlink /proc/$$/fd/0 /proc/$$/fd/2"});
  spec.services[0].fds = {{out_write.get(), 1}};
  pid_t outer = fork_run_sandbox(spec);
  ASSERT_GT(outer, 0);
  out_write.reset();
  std::string out = read_until_eof(out_read.get());
  int status = 0;
  waitpid(outer, &status, 0);
  EXPECT_EQ(exit_code(status), 0);
  EXPECT_EQ(out, "/dev/null\n/dev/null\n");
}

// ---- captured output ----------------------------------------------------------

// A service's fd 3 kept in a file of the runtime dir by the warden, bounded:
// 250004 bytes with a cap of 100000 leave the last 100000 in out.log.1 and
// the rest, up to the end, in out.log. The one service runs in the warden's
// namespace, which its Landlock rules (none on the runtime dir) make
// read-only there: the warden writes through the runtime dir's descriptor
// on the host's mount.
TEST_F(SandboxTest, ACapturedDescriptorIsKeptInTheRuntimeDirBounded) {
  using namespace vmwarden::supervisor;
  SandboxSpec spec = unconfined_sandbox(
      "capture", {"/bin/sh", "-c", "head -c 250000 /dev/zero | tr '\\0' x >&3; echo end >&3; exec sleep 60"});
  ServiceSpec& service = spec.services[0];
  service.confinement.landlock.mode = LandlockMode::best_effort;
  service.confinement.landlock.paths = system_read_execute_rules();
  for (PathRule& rule : device_rules()) service.confinement.landlock.paths.push_back(rule);
  service.confinement.seccomp.profile = "vm-daemon";
  service.captures = {{3, spec.runtime_dir / "out.log", 100'000}};
  pid_t outer = fork_run_sandbox(spec);
  ASSERT_GT(outer, 0);
  std::filesystem::path current = spec.runtime_dir / "out.log", previous = spec.runtime_dir / "out.log.1";
  auto ended = [&] {
    std::error_code error;
    return std::filesystem::exists(current, error) && read_file(current).ends_with("xend\n");
  };
  for (auto deadline = steady_clock::now() + milliseconds(20'000); steady_clock::now() < deadline && !ended();)
    std::this_thread::sleep_for(milliseconds(10));
  EXPECT_TRUE(ended());
  EXPECT_EQ(std::filesystem::file_size(previous), 100'000u);
  EXPECT_EQ(read_file(current), std::string(50'000, 'x') + "end\n");
  struct stat st {};
  ASSERT_EQ(stat(current.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  testing::kill_process(outer, SIGTERM);
  int status = 0;
  EXPECT_EQ(waitpid(outer, &status, 0), outer);
  EXPECT_EQ(exit_code(status), 128 + SIGTERM);
}

// A service's output goes to pipes the warden reads; before every service
// is ready the warden is in their readiness waits, not its loop, and reads
// them between probes: a daemon that writes more than a pipe holds before it
// is ready (a chatty wrapper, a debug log) is not blocked into failing its
// readiness. The marker is written only after 400,000 bytes of output.
TEST_F(SandboxTest, OutputBeforeReadinessDoesNotBlockTheService) {
  using namespace vmwarden::supervisor;
  TempDir scratch("vmwarden-chatty");
  ASSERT_EQ(chmod(scratch.path().c_str(), 0777), 0);
  std::string marker = (scratch / "ready").string();
  SandboxSpec spec = sandbox_after_first_stage(
      "chatty", {"/bin/sleep", "60"}, "chatty",
      {"/bin/sh", "-c", "head -c 400000 /dev/zero | tr '\\0' x | fold -w 79 >&2; : > " + marker + "; exec sleep 60"},
      [marker](const RunningService& service, steady_clock::time_point deadline) {
        while (!std::filesystem::exists(marker)) {
          if (service.stop_requested()) throw std::runtime_error("stopped");
          if (steady_clock::now() >= deadline) throw std::runtime_error("no marker");
          std::this_thread::sleep_for(milliseconds(10));
        }
      });
  spec.ready_timeout = milliseconds(10'000);
  spec.services[0].captures = {{.child_fd = 2, .to_log = true}};
  TempDir logs("vmwarden-chatty-log");
  UniqueFd log(open((logs / "err").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600));
  ASSERT_TRUE(log);
  pid_t outer = fork_run_sandbox(spec, log.get());
  ASSERT_GT(outer, 0);
  bool ready = false;
  for (auto deadline = steady_clock::now() + milliseconds(20'000); steady_clock::now() < deadline && !ready;
       std::this_thread::sleep_for(milliseconds(10)))
    ready = std::filesystem::exists(marker);
  EXPECT_TRUE(ready) << read_file(logs / "err").substr(0, 2000);
  testing::kill_process(outer, SIGTERM);
  int status = 0;
  EXPECT_EQ(waitpid(outer, &status, 0), outer);
  EXPECT_EQ(exit_code(status), 128 + SIGTERM) << read_file(logs / "err").substr(0, 2000);
}

// The service owns the runtime dir and keeps putting a symlink to a root
// file where its capture file goes, while it writes enough to make the
// warden rotate the file several times: the warden (root) moves whatever is
// at the name aside and creates the next file exclusively, never following
// it, so the root file is never written. (Rotating by reopening the name
// wrote the root file and gave it to the service's uid in 3 of 3 runs; the
// O_EXCL | O_NOFOLLOW of the create guards the few microseconds between the
// rename and the create, which this test does not reach.)
TEST_F(SandboxTest, ASymlinkPutInTheCaptureFilesPlaceLeadsTheWardenNowhere) {
  using namespace vmwarden::supervisor;
  TempDir host("vmwarden-capture-target");
  std::filesystem::path target = host / "root-file";
  write_file(target, "root's\n", 0644);
  SandboxSpec spec = unconfined_sandbox("capture-link", {});
  std::filesystem::path log = spec.runtime_dir / "out.log";
  spec.services[0].argv = {"/bin/sh", "-c",
                           "(while :; do ln -sfn " + target.string() + " " + log.string() + "; done) & planter=$!; " +
                               "for i in 1 2 3 4 5 6 7 8 9 10; do head -c 20000 /dev/zero | tr '\\0' x >&3; "
                               "sleep 0.01; done; kill $planter"};
  spec.services[0].confinement.uid = 65534;
  spec.services[0].confinement.gid = 65534;
  spec.runtime_dir_uid = 65534;
  spec.runtime_dir_gid = 65534;
  spec.services[0].captures = {{3, log, 30'000}};
  // The service's uid must reach its runtime dir, as a VM's does.
  ASSERT_EQ(::chmod(runtime_root_.path().c_str(), 0711), 0);
  auto [status, err] = run_sandbox_to_end(spec);
  EXPECT_EQ(exit_code(status), 0) << err;
  EXPECT_EQ(read_file(target), "root's\n") << "the warden wrote through the service's symlink";
  struct stat st {};
  ASSERT_EQ(::stat(target.c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 0u);
  EXPECT_EQ(st.st_mode & 07777, 0644u);
}

TEST_F(SandboxTest, ACaptureFileOutsideTheRuntimeDirIsRefused) {
  supervisor::SandboxSpec spec = unconfined_sandbox("capture-out", {"/bin/true"});
  spec.services[0].captures = {{3, runtime_root_.path() / "elsewhere.log", 1000}};
  auto [status, err] = run_sandbox_to_end(spec);
  EXPECT_EQ(exit_code(status), 125);
  EXPECT_THAT(err, HasSubstr("must be directly in the runtime dir"));
  EXPECT_FALSE(std::filesystem::exists(runtime_root_.path() / "elsewhere.log"));
}

// ---- shutdown ----------------------------------------------------------------

TEST_F(SandboxTest, CommandThatExitsOnSigtermStopsCleanlyBeforeTheTimeout) {
  Launched sandbox(exec_argv({"--uid", "0", "--timeout", "30", "--notify-fd", "3"},
                             // "trapped" once sleep runs: a SIGTERM that came while the
                             // shell's forked child still had the trap would be lost.
                             {"/bin/sh", "-c",
                              "trap 'exit 0' TERM; sleep 1000 & until [ \"$(cat /proc/$!/comm)\" = sleep ]; do :; "
                              "done; echo trapped; wait"}),
                   options(true));
  ASSERT_EQ(sandbox.read_notify(milliseconds(10'000)), "\n") << sandbox.err();
  ASSERT_TRUE(sandbox.wait_for_output("trapped", milliseconds(10'000))) << sandbox.err();
  auto start = steady_clock::now();
  testing::kill_process(sandbox.pid(), SIGTERM);
  auto status = sandbox.wait(milliseconds(10'000));
  auto took = steady_clock::now() - start;
  ASSERT_TRUE(status) << sandbox.err();
  EXPECT_EQ(exit_code(status), 0) << sandbox.err();
  EXPECT_LT(took, milliseconds(5'000)) << "the 30 s timeout must not be waited for";
  EXPECT_THAT(sandbox.err(), HasSubstr("SIGTERM received: stopping command (pid 2) with SIGTERM; waiting up to 30.0 s"));
  EXPECT_THAT(sandbox.err(), HasSubstr("all processes stopped"));
  EXPECT_THAT(sandbox.err(), Not(HasSubstr("SIGKILL")));
  EXPECT_TRUE(marked_processes(marker_).empty());
}

TEST_F(SandboxTest, CommandThatIgnoresSigtermIsKilledAfterTheTimeout) {
  Launched sandbox(exec_argv({"--uid", "0", "--timeout", "1", "--notify-fd", "3"},
                             {"/bin/sh", "-c", "trap '' TERM; echo trapped; exec sleep 1000"}),
                   options(true));
  ASSERT_EQ(sandbox.read_notify(milliseconds(10'000)), "\n") << sandbox.err();
  // An ignored SIGTERM stays ignored across the exec.
  ASSERT_TRUE(sandbox.wait_for_output("trapped", milliseconds(10'000))) << sandbox.err();
  auto start = steady_clock::now();
  testing::kill_process(sandbox.pid(), SIGTERM);
  auto status = sandbox.wait(milliseconds(10'000));
  auto took = steady_clock::now() - start;
  ASSERT_TRUE(status);
  EXPECT_EQ(exit_code(status), 128 + SIGKILL);
  EXPECT_GE(took, milliseconds(1'000));
  EXPECT_THAT(sandbox.err(), HasSubstr("shutdown timeout of 1.0 s reached"));
  EXPECT_THAT(sandbox.err(),
              HasSubstr("command was killed with SIGKILL after the shutdown timeout of 1.0 s; exit status 137"));
  EXPECT_TRUE(marked_processes(marker_).empty());
}

// A pids cgroup of the host's v1 hierarchy, made for one test and removed
// with it (once the processes in it are gone). Empty where there is none.
class PidsCgroup {
 public:
  explicit PidsCgroup(int max) {
    std::filesystem::path root = "/sys/fs/cgroup/pids";
    if (!std::filesystem::exists(root / "cgroup.procs") || std::filesystem::exists(root / "cgroup.controllers")) return;
    std::filesystem::path dir = root / ("vmwarden-test-" + std::to_string(getpid()));
    if (mkdir(dir.c_str(), 0755) != 0) return;
    dir_ = dir;
    try {
      testing::write_file(dir / "pids.max", std::to_string(max));
    } catch (const std::exception&) {
      remove();
    }
  }
  ~PidsCgroup() { remove(); }
  PidsCgroup(const PidsCgroup&) = delete;
  PidsCgroup& operator=(const PidsCgroup&) = delete;

  explicit operator bool() const { return !dir_.empty(); }
  std::filesystem::path procs() const { return dir_ / "cgroup.procs"; }
  bool empty() const { return dir_.empty() || testing::read_file(procs()).empty(); }

 private:
  void remove() {
    if (dir_.empty()) return;
    for (int i = 0; i < 500 && !empty(); ++i) std::this_thread::sleep_for(milliseconds(10));
    rmdir(dir_.c_str());
    dir_.clear();
  }
  std::filesystem::path dir_;
};

// The command cannot even be cloned (the cgroup admits the outer and the
// warden only): there is no child, so no SIGCHLD, and the warden must still
// end at once instead of waiting for one, with a status that lets s6 retry.
TEST_F(SandboxTest, AServiceThatCannotBeClonedEndsTheSandboxAtOnce) {
  PidsCgroup cgroup(2);
  if (!cgroup) GTEST_SKIP() << "no cgroup v1 pids hierarchy at /sys/fs/cgroup/pids";
  LaunchOptions launch = options();
  launch.cgroup_procs = cgroup.procs();
  Launched sandbox(exec_argv({"--uid", "0", "--timeout", "1"}, {"/bin/true"}), launch);
  auto status = sandbox.wait(milliseconds(20'000));
  ASSERT_TRUE(status) << "still running 20 s later: " << sandbox.err();
  EXPECT_THAT(sandbox.err(), HasSubstr("clone command: Resource temporarily unavailable"));
  EXPECT_EQ(exit_code(status), 1) << "out of processes is worth a retry, not 125: " << sandbox.err();
  EXPECT_THAT(sandbox.err(), Not(HasSubstr("shutdown timeout of 1.0 s reached")));
  EXPECT_TRUE(cgroup.empty());
}

// A stop that arrives while a stage waits for its readiness is taken in as
// soon as that wait ends: the next stage (here the main service, as the VMM
// comes after its virtiofsds) is never started for nobody.
TEST_F(SandboxTest, AStopDuringAReadinessWaitStartsNoLaterStage) {
  using namespace vmwarden::supervisor;
  auto [started_read, started_write] = make_pipe();
  auto [waiting_read, waiting_write] = make_pipe();
  UniqueFd null(::open("/dev/null", O_RDWR | O_CLOEXEC));
  ASSERT_TRUE(null);
  Confinement unconfined;
  unconfined.uid = unconfined.gid = 65534;
  unconfined.landlock.mode = LandlockMode::off;
  unconfined.seccomp.profile = "none";

  SandboxSpec spec;
  spec.name = "startup-" + std::to_string(getpid());
  spec.runtime_dir = runtime_root_.path() / spec.name;
  spec.shutdown_timeout = milliseconds(2'000);
  ServiceSpec first;
  first.name = "first";
  first.argv = {"/bin/sleep", "1000"};
  first.confinement = unconfined;
  first.fds = {{null.get(), 0}, {null.get(), 1}, {null.get(), 2}};
  first.stage = 0;
  // A slow start that does not look at stop_requested(): the stop is taken
  // in once it ends.
  first.wait_ready = [waiting = waiting_write.get()](const RunningService&, steady_clock::time_point) {
    if (write(waiting, "w", 1) != 1) throw std::runtime_error("write");
    std::this_thread::sleep_for(milliseconds(1'500));
  };
  ServiceSpec second;
  second.name = "second";
  second.argv = {"/bin/echo", "second started"};
  second.confinement = unconfined;
  second.fds = {{null.get(), 0}, {started_write.get(), 1}, {null.get(), 2}};
  second.stage = 1;
  second.main = true;
  // Runs in the warden right after the second stage's exec: evidence that
  // it was started even when the stop then kills it before it can write.
  second.wait_ready = [reached = started_write.get()](const RunningService&, steady_clock::time_point) {
    if (write(reached, "launched\n", 9) != 9) throw std::runtime_error("write");
  };
  spec.services = {first, second};

  pid_t outer = fork_run_sandbox(spec);
  ASSERT_GT(outer, 0);
  started_write.reset();
  waiting_write.reset();
  char byte;
  ASSERT_EQ(read(waiting_read.get(), &byte, 1), 1) << "the readiness wait never began";
  ASSERT_EQ(testing::kill_process(outer, SIGTERM), 0);
  int status = 0;
  auto deadline = steady_clock::now() + milliseconds(20'000);
  while (waitpid(outer, &status, WNOHANG) == 0 && steady_clock::now() < deadline) {
    std::this_thread::sleep_for(milliseconds(10));
  }
  if (steady_clock::now() >= deadline) {
    testing::kill_process(outer, SIGKILL);
    waitpid(outer, &status, 0);
    FAIL() << "the sandbox did not end";
  }
  char buffer[64];
  ssize_t n = read(started_read.get(), buffer, sizeof buffer);
  EXPECT_EQ(n, 0) << "the second stage was started: " << std::string(buffer, n > 0 ? n : 0);
  EXPECT_FALSE(std::filesystem::exists(spec.runtime_dir));
}

// A sandbox whose first stage never becomes ready, run by run_sandbox() in a
// child, once its readiness wait has begun: a wait that asks
// stop_requested() between probes, as the virtiofsd and VMM waits do.
struct WaitingSandbox {
  vmwarden::supervisor::SandboxSpec spec;
  pid_t outer = -1;
  UniqueFd err;  // the warden's stderr: closes when every process of the sandbox is gone
};

// Nothing started (outer -1) if the wait never began: a failure is added.
WaitingSandbox start_a_readiness_wait(vmwarden::supervisor::SandboxSpec spec, milliseconds ready_timeout) {
  using namespace vmwarden::supervisor;
  auto [waiting_read, waiting_write] = make_pipe();
  auto [err_read, err_write] = make_pipe();
  spec.services.front().wait_ready = [waiting = waiting_write.get()](const RunningService& service,
                                                                     steady_clock::time_point deadline) {
    if (write(waiting, "w", 1) != 1) throw std::runtime_error("write");
    while (!service.stop_requested()) {
      if (steady_clock::now() >= deadline) throw std::runtime_error("not ready by the deadline");
      std::this_thread::sleep_for(milliseconds(2));
    }
    throw std::runtime_error("stopped while waiting");
  };
  spec.ready_timeout = ready_timeout;
  spec.shutdown_timeout = milliseconds(2'000);
  WaitingSandbox sandbox{spec, fork_run_sandbox(spec, err_write.get()), std::move(err_read)};
  waiting_write.reset();
  err_write.reset();
  char byte;
  if (read(waiting_read.get(), &byte, 1) != 1) {
    ADD_FAILURE() << "the readiness wait never began";
    testing::kill_process(sandbox.outer, SIGKILL);
    waitpid(sandbox.outer, nullptr, 0);
    sandbox.outer = -1;
  }
  return sandbox;
}

// How a WaitingSandbox ended once `signal` was sent to its outer.
struct WaitEnd {
  std::string err;
  milliseconds took{0};  // until every process of the sandbox was gone
  int status = 0;        // the outer's
};

WaitEnd end_with(WaitingSandbox& sandbox, int signal) {
  WaitEnd end;
  auto sent = steady_clock::now();
  EXPECT_EQ(testing::kill_process(sandbox.outer, signal), 0);
  end.err = read_until_eof(sandbox.err.get());
  end.took = std::chrono::duration_cast<milliseconds>(steady_clock::now() - sent);
  EXPECT_EQ(waitpid(sandbox.outer, &end.status, 0), sandbox.outer);
  return end;
}

// A stop ends the wait at once, not at the ready timeout; the service is not
// blamed for a failed start-up.
TEST_F(SandboxTest, AStopEndsAReadinessWaitAtOnce) {
  WaitingSandbox sandbox = start_a_readiness_wait(
      sandbox_after_first_stage("stop-wait", {"/bin/echo", "second started"}, "never-ready", {"/bin/sleep", "1000"}, {}),
      milliseconds(120'000));
  ASSERT_GT(sandbox.outer, 0);
  WaitEnd end = end_with(sandbox, SIGTERM);
  EXPECT_LT(end.took, milliseconds(60'000)) << "the wait ran on towards the 120 s ready timeout";
  EXPECT_EQ(exit_code(end.status), 128 + SIGTERM) << "stopped before the main service ran: " << end.err;
  EXPECT_THAT(end.err, Not(HasSubstr("did not become ready"))) << end.err;
  EXPECT_FALSE(std::filesystem::exists(sandbox.spec.runtime_dir));
}

// So does the outer's death: the warden's parent-death signal is what
// stop_requested() sees there (the outer's pidfd is polled only between the
// start-up's steps), and without it the orphaned tree would run on until
// the ready timeout.
TEST_F(SandboxTest, AKilledOuterEndsAReadinessWaitAtOnce) {
  WaitingSandbox sandbox = start_a_readiness_wait(
      sandbox_after_first_stage("orphan-wait", {"/bin/echo", "second started"}, "never-ready", {"/bin/sleep", "1000"}, {}),
      milliseconds(30'000));
  ASSERT_GT(sandbox.outer, 0);
  WaitEnd end = end_with(sandbox, SIGKILL);
  EXPECT_LT(end.took, milliseconds(10'000)) << "the orphaned wait ran on towards the 30 s ready timeout: " << end.err;
  EXPECT_THAT(end.err, HasSubstr("the outer process is gone")) << end.err;
  EXPECT_FALSE(std::filesystem::exists(sandbox.spec.runtime_dir));
}

// A service that fails its readiness on its own is blamed (125: permanent),
// even when its exit (SIGCHLD) is pending as the wait gives up: only a
// stop request makes a failed wait no fault of the service's.
TEST_F(SandboxTest, AServiceThatExitsBeforeItIsReadyIsAPermanentFailure) {
  using namespace vmwarden::supervisor;
  SandboxSpec spec = sandbox_after_first_stage(
      "dies-early", {"/bin/true"}, "dies-early", {"/bin/false"},
      [](const RunningService& service, steady_clock::time_point deadline) {
        // As a real probe would find it: gone, its SIGCHLD not yet taken in.
        while (steady_clock::now() < deadline && !service.stop_requested()) {
          // Not reaped yet (the warden is here), so its /proc entry is a zombie's.
          if (read_file("/proc/" + std::to_string(service.pid()) + "/stat").find(") Z") != std::string::npos)
            throw std::runtime_error("dies-early exited before it was ready");
          std::this_thread::sleep_for(milliseconds(2));
        }
        throw std::runtime_error("not ready by the deadline");
      });
  auto [status, err] = run_sandbox_to_end(spec);
  EXPECT_EQ(exit_code(status), 125) << err;
  // The probe says so, or, when the exit was taken in before the wait began
  // (a loaded machine), the warden.
  EXPECT_THAT(err, HasSubstr("dies-early did not become ready: ")) << err;
}

// The same when the exit is taken in before its readiness wait begins: a
// service of the same stage, waited for first, is made ready only once
// dies-early is a zombie, so its SIGCHLD is pending when its turn comes.
TEST_F(SandboxTest, AServiceGoneBeforeItsReadinessWaitBeganIsAPermanentFailure) {
  using namespace vmwarden::supervisor;
  auto zombie_child = [] {
    std::istringstream children(read_file("/proc/1/task/1/children"));
    for (pid_t child; children >> child;) {
      if (read_file("/proc/" + std::to_string(child) + "/stat").find(") Z") != std::string::npos) return true;
    }
    return false;
  };
  SandboxSpec spec = sandbox_after_first_stage(
      "gone-early", {"/bin/true"}, "waits", {"/bin/sleep", "1000"},
      [zombie_child](const RunningService& service, steady_clock::time_point deadline) {
        while (!zombie_child()) {
          if (steady_clock::now() >= deadline || service.stop_requested()) throw std::runtime_error("no zombie");
          std::this_thread::sleep_for(milliseconds(2));
        }
      });
  ServiceSpec gone = spec.services[0];
  gone.name = "dies-early";
  gone.argv = {"/bin/false"};
  gone.wait_ready = [](const RunningService&, steady_clock::time_point) {
    throw std::runtime_error("waited for, though already gone");
  };
  spec.services.insert(spec.services.begin() + 1, gone);
  auto [status, err] = run_sandbox_to_end(spec);
  EXPECT_EQ(exit_code(status), 125) << err;
  EXPECT_THAT(err, HasSubstr("dies-early did not become ready: it exited with status 1 before it was ready")) << err;
  EXPECT_THAT(err, Not(HasSubstr("waited for, though already gone"))) << err;
}

// The parent recorded at the start (remember_parent(), as main() does) dies
// while the process is still busy before the sandbox (a lease, ACL grants):
// the sandbox refuses to start rather than run with whoever inherited it.
TEST_F(SandboxTest, AParentThatDiedBeforeTheSandboxStartedIsNoticed) {
  using namespace vmwarden::supervisor;
  auto [result_read, result_write] = make_pipe();
  SandboxSpec spec = unconfined_sandbox("orphan", {"/bin/true"});

  pid_t parent = fork();
  ASSERT_GE(parent, 0);
  if (parent == 0) {
    pid_t self = getpid();
    pid_t child = fork();
    if (child == 0) {
      remember_parent();
      testing::kill_process(getppid(), SIGKILL);  // its own parent, which this test started
      // This test is a subreaper: the orphan becomes its child. Wait until
      // the test has reaped the dead parent too: the kernel sends parent-
      // death signals while it reparents, and a PR_SET_PDEATHSIG set at that
      // moment would be answered at once.
      for (int waited = 0; getppid() == self || testing::kill_process(self, 0) == 0; ++waited) {
        if (waited == 10'000) _exit(3);  // 10 s: the read below then ends without an outcome
        usleep(1000);
      }
      std::string outcome;
      try {
        outcome = "started, status " + std::to_string(run_sandbox(spec));
      } catch (const std::exception& error) {
        outcome = error.what();
      }
      (void)!write(result_write.get(), outcome.data(), outcome.size());
      _exit(0);
    }
    pause();
    _exit(0);
  }
  result_write.reset();
  waitpid(parent, nullptr, 0);
  std::string outcome = read_until_eof(result_read.get());
  // Reap the orphan: this test's only child now, as its subreaper; it has
  // closed the pipe, so it is exiting.
  int orphan_status = 0;
  pid_t orphan = waitpid(-1, &orphan_status, 0);
  EXPECT_THAT(outcome, HasSubstr("the parent process exited while vmwarden was starting"))
      << "orphan " << orphan << " status " << orphan_status;
  EXPECT_FALSE(std::filesystem::exists(spec.runtime_dir));
}

TEST_F(SandboxTest, SigintAndSighupStopTheSandboxToo) {
  for (int sig : {SIGINT, SIGHUP}) {
    Launched sandbox(exec_argv({"--uid", "0", "--notify-fd", "3"}, {"/bin/sleep", "1000"}), options(true));
    ASSERT_EQ(sandbox.read_notify(milliseconds(10'000)), "\n") << sandbox.err();
    testing::kill_process(sandbox.pid(), sig);
    EXPECT_EQ(exit_code(sandbox.wait(milliseconds(5'000))), 128 + SIGTERM) << sandbox.err();
    EXPECT_THAT(sandbox.err(), HasSubstr(std::string("SIG") + sigabbrev_np(sig) + " received"));
  }
}

TEST_F(SandboxTest, ProcessesLeftWhenTheCommandExitsAreStopped) {
  auto start = steady_clock::now();
  CommandResult result = exec({"--uid", "0"}, {"/bin/sh", "-c", "sleep 1000 & exit 3"});
  EXPECT_EQ(result.exit_code, 3) << result.err;
  EXPECT_LT(steady_clock::now() - start, milliseconds(5'000));
  EXPECT_THAT(result.err, HasSubstr("sent SIGTERM to the remaining processes"));
  EXPECT_TRUE(marked_processes(marker_).empty());
}

TEST_F(SandboxTest, DoubleForkedOrphansAreReaped) {
  // The subshell exits at once, so its background sleep is reparented to
  // PID 1. Once that sleep exits, only PID 1 can reap it; the command waits
  // for /proc/PID to vanish and fails if it lingers as a zombie.
  std::string script =
      "( sleep 0.2 & echo $! > /tmp/orphan ); pid=$(cat /tmp/orphan); "
      "grep -q '^PPid:\t1$' /proc/$pid/status || { echo not-reparented; exit 2; }; "
      "for i in $(seq 100); do [ -e /proc/$pid ] || { echo reaped; exit 0; }; sleep 0.05; done; "
      "grep State /proc/$pid/status; exit 1";
  CommandResult result = exec({"--uid", "0"}, {"/bin/sh", "-c", script});
  EXPECT_EQ(result.exit_code, 0) << result.out << result.err;
  EXPECT_EQ(result.out, "reaped\n");
}

// The tests run as root in the host's PID namespace: every signal they send
// goes through kill_process, which ends the test binary rather than signal
// more than one process of its own or init. Signal 0 here, so that nothing
// would be sent even without the guard.
TEST(TestHarnessDeathTest, NeverSignalsAGroupEveryProcessOrInit) {
  for (pid_t pid : {0, -1, -42, 1}) {
    EXPECT_DEATH(testing::kill_process(pid, 0), "test bug: refusing to send signal 0 to pid") << pid;
  }
  EXPECT_EQ(testing::kill_process(getpid(), 0), 0);
}

// ---- nothing outlives its supervisor -----------------------------------------

class TreeDeathTest : public SandboxTest {
 protected:
  // Starts a tree whose command ignores SIGTERM (so only a bounded shutdown
  // can end it in time) and records it as seen from the host.
  void start(std::vector<std::string> argv, LaunchOptions launch) {
    mounts_before_ = mount_table();
    sandbox_.emplace(argv, launch);
    ASSERT_EQ(sandbox_->read_notify(milliseconds(10'000)), "\n") << sandbox_->err();
    std::this_thread::sleep_for(milliseconds(100));
    recorded_ = marked_processes(marker_);
    for (pid_t pid : recorded_) {
      std::string comm = read_proc(pid, "comm");
      if (comm == "vmwarden-warden\n") warden_ = pid;
      if (comm == "vmwarden\n") outer_ = pid;
    }
    ASSERT_GT(warden_, 0);
    ASSERT_GT(outer_, 0);
    namespace_ = pid_namespace(warden_);
    ASSERT_NE(namespace_, pid_namespace(getpid()));
    // NSpid: the host's pid, then the sandbox's.
    std::string status = read_proc(warden_, "status");
    std::string nspid = status.substr(status.find("NSpid:"));
    nspid = nspid.substr(0, nspid.find('\n'));
    EXPECT_EQ(nspid.substr(nspid.rfind('\t') + 1), "1") << "the warden is PID 1 of the sandbox: " << nspid;
    ASSERT_EQ(processes_in_pid_namespace(namespace_).size(), 2u) << "the warden and the command";
    ASSERT_TRUE(std::filesystem::is_directory(runtime_dir()));
  }

  std::vector<std::string> command() const {
    return {"/bin/sh", "-c", "trap '' TERM; exec sleep 1000"};
  }

  // The command's pid as the host sees it: the other process of the sandbox.
  pid_t sandboxed_command_pid() const {
    for (pid_t pid : processes_in_pid_namespace(namespace_)) {
      if (pid != warden_) return pid;
    }
    return -1;
  }

  void kill_and_expect_gone(pid_t victim) {
    ASSERT_GT(victim, 0) << "refusing to signal a process group or every process";
    auto killed_at = steady_clock::now();
    ASSERT_EQ(testing::kill_process(victim, SIGKILL), 0);
    std::string left = wait_until_tree_gone(killed_at, milliseconds(1'000), namespace_, recorded_, mounts_before_,
                                       sandbox_->pid());
    EXPECT_EQ(left, "") << "left 1 s after kill -9 of pid " << victim;
  }

  std::optional<Launched> sandbox_;
  std::vector<std::string> mounts_before_;
  std::vector<pid_t> recorded_;
  pid_t warden_ = -1, outer_ = -1;
  ino_t namespace_ = 0;
};

TEST_F(TreeDeathTest, KillingTheOuterLeavesNothing) {
  start(exec_argv({"--uid", "0", "--timeout", "30", "--notify-fd", "3"}, command()), options(true));
  kill_and_expect_gone(outer_);
}

// A write rule above the runtime dir (--rw of the directory holding it):
// the warden's view puts one writable copy back there, not a second one
// hidden below it, which would keep the runtime dir a mount point the
// orphaned warden cannot remove (EBUSY).
TEST_F(TreeDeathTest, KillingTheOuterLeavesNothingWithAWriteRuleAboveTheRuntimeDir) {
  // A --uid other than 0: no grant, which vmwarden's own directory refuses.
  start(exec_argv({"--uid", "65534", "--rw", runtime_dir().parent_path().string(), "--timeout", "30", "--notify-fd", "3"},
                  command()),
        options(true));
  kill_and_expect_gone(outer_);
}

TEST_F(TreeDeathTest, KillingTheWardenLeavesNothing) {
  start(exec_argv({"--uid", "0", "--timeout", "30", "--notify-fd", "3"}, command()), options(true));
  kill_and_expect_gone(warden_);
  EXPECT_EQ(exit_code(sandbox_->wait(milliseconds(1'000))), 128 + SIGKILL);
  EXPECT_THAT(sandbox_->err(), HasSubstr("the warden was killed by SIGKILL"));
}

TEST_F(TreeDeathTest, KillingTheCommandEndsTheSandbox) {
  start(exec_argv({"--uid", "0", "--timeout", "30", "--notify-fd", "3"}, command()), options(true));
  pid_t command_pid = sandboxed_command_pid();
  ASSERT_GT(command_pid, 0);
  kill_and_expect_gone(command_pid);
  EXPECT_EQ(exit_code(sandbox_->wait(milliseconds(1'000))), 128 + SIGKILL);
}

// A sandbox of one service runs it in the warden's mount namespace, where
// the warden made its view (read-only but at its write rules);
// multi-service sandboxes are covered by supervise_vmm_test. Either way it
// is not the host's, and /tmp is not the host's /tmp.
TEST_F(TreeDeathTest, TheOneServiceSharesTheWardensMountNamespaceNotTheHosts) {
  start(exec_argv({"--uid", "0", "--timeout", "30", "--notify-fd", "3"}, command()), options(true));
  pid_t command_pid = sandboxed_command_pid();
  ASSERT_GT(command_pid, 0);
  auto mount_namespace = [](pid_t pid) {
    return std::filesystem::read_symlink(fmt::format("/proc/{}/ns/mnt", pid)).string();
  };
  EXPECT_EQ(mount_namespace(command_pid), mount_namespace(warden_));
  EXPECT_NE(mount_namespace(command_pid), mount_namespace(::getpid()));
  struct stat in_sandbox {}, on_host {};
  ASSERT_EQ(::stat(fmt::format("/proc/{}/root/tmp", command_pid).c_str(), &in_sandbox), 0);
  ASSERT_EQ(::stat("/tmp", &on_host), 0);
  EXPECT_NE(in_sandbox.st_dev, on_host.st_dev) << "the command's /tmp is a tmpfs of its own";
  kill_and_expect_gone(outer_);
}

TEST_F(TreeDeathTest, KillingTheS6SuperviseParentLeavesNothing) {
  TempDir service("vmwarden-service");
  write_file(service / "notification-fd", "3\n");
  std::vector<std::string> argv = exec_argv({"--s6", "--uid", "0", "--timeout", "30"}, command());
  argv.insert(argv.begin(), {std::getenv("FAKE_S6_SUPERVISE"), service.path().string()});
  start(argv, options(true));
  pid_t supervise = sandbox_->pid();
  ASSERT_EQ(std::count(recorded_.begin(), recorded_.end(), supervise), 1);
  kill_and_expect_gone(supervise);
}

// ---- the s6 parent check --------------------------------------------------------

TEST_F(SandboxTest, S6ParentHoldingTheLockIsAccepted) {
  TempDir service("vmwarden-service");
  // As s6 does: the readiness fd is named in the service directory.
  write_file(service / "notification-fd", "3\n");
  std::vector<std::string> argv =
      exec_argv({"--s6", "--uid", "0"}, {"/bin/sh", "-c", "echo 'vmwarden[other]: forged'; echo on-stderr >&2"});
  argv.insert(argv.begin(), {std::getenv("FAKE_S6_SUPERVISE"), service.path().string()});
  Launched sandbox(argv, options(true));
  EXPECT_EQ(sandbox.read_notify(milliseconds(10'000)), "\n") << sandbox.err();
  EXPECT_EQ(exit_code(sandbox.wait(milliseconds(10'000))), 0) << sandbox.err();
  // Under s6 its output is the log's: marked lines of the warden's.
  EXPECT_EQ(sandbox.out(), "");
  EXPECT_THAT(sandbox.err(), HasSubstr("/warden]: command fd 1: vmwarden[other]: forged\n"));
  EXPECT_THAT(sandbox.err(), HasSubstr("/warden]: command fd 2: on-stderr\n"));
}

TEST_F(SandboxTest, S6NotificationFdThatIsNotANumberIsRefusedNamingIt) {
  TempDir service("vmwarden-service");
  write_file(service / "notification-fd", "three\n");
  std::vector<std::string> argv = exec_argv({"--s6", "--uid", "0"}, {"/bin/true"});
  argv.insert(argv.begin(), {std::getenv("FAKE_S6_SUPERVISE"), service.path().string()});
  Launched sandbox(argv, options());
  EXPECT_EQ(exit_code(sandbox.wait(milliseconds(10'000))), 125) << sandbox.err();
  EXPECT_THAT(sandbox.err(), HasSubstr(service.path().string() + "/notification-fd holds \"three\""));
}

TEST_F(SandboxTest, S6ParentThatIsNotTheLockHolderIsRefused) {
  TempDir service("vmwarden-service");
  std::vector<std::string> command = {"/bin/true"};
  // Without --s6 the same process tree runs: the check is what refuses.
  std::vector<std::string> unchecked = exec_argv({"--uid", "0"}, command);
  unchecked.insert(unchecked.begin(), {std::getenv("FAKE_S6_SUPERVISE"), "--lock-elsewhere", service.path().string()});
  Launched control(unchecked, options());
  EXPECT_EQ(exit_code(control.wait(milliseconds(10'000))), 0) << control.err();

  std::vector<std::string> checked = exec_argv({"--s6", "--uid", "0"}, command);
  checked.insert(checked.begin(), {std::getenv("FAKE_S6_SUPERVISE"), "--lock-elsewhere", service.path().string()});
  Launched sandbox(checked, options());
  EXPECT_EQ(exit_code(sandbox.wait(milliseconds(10'000))), 125);
  EXPECT_THAT(sandbox.err(), HasSubstr("is not the s6-supervise holding"));
  EXPECT_FALSE(std::filesystem::exists(runtime_dir()));
}

TEST_F(SandboxTest, S6WithoutASuperviseLockIsRefused) {
  TempDir service("vmwarden-service");
  CommandOptions run;
  run.extra_env = options().env;
  run.cwd = service.path();
  CommandResult result = run_command(exec_argv({"--s6", "--uid", "0"}, {"/bin/true"}), run);
  EXPECT_EQ(result.exit_code, 125);
  EXPECT_THAT(result.err, HasSubstr("cannot open supervise/lock"));
}

// With a single-use UID the refusal comes before the lease and the grants:
// nothing in the state directory, no entry on the tree, not even for a
// moment.
TEST_F(SandboxTest, S6WithoutASuperviseLockIsRefusedBeforeAUidIsLeased) {
  TempDir service("vmwarden-service");
  TempDir tree("vmwarden-tree");
  write_file(tree / "file", "data\n");
  CommandOptions run;
  run.extra_env = options().env;
  run.cwd = service.path();
  CommandResult result = run_command(exec_argv({"--s6", "--rw", tree.path().string()}, {"/bin/true"}), run);
  EXPECT_EQ(result.exit_code, 125);
  EXPECT_THAT(result.err, HasSubstr("cannot open supervise/lock"));
  EXPECT_TRUE(std::filesystem::is_empty(state_root_.path())) << "a UID was leased";
  EXPECT_FALSE(std::filesystem::exists(runtime_dir()));
}

TEST_F(SandboxTest, S6AndANotifyFdExcludeEachOther) {
  CommandResult result = exec({"--s6", "--uid", "0", "--notify-fd", "3"}, {"/bin/true"});
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_THAT(result.err, HasSubstr("--notify-fd and --s6 exclude each other"));
}

// ---- the runtime dir ------------------------------------------------------------

TEST_F(SandboxTest, RuntimeDirInUseIsRefusedAndAStaleOneReplaced) {
  Launched first(exec_argv({"--uid", "0", "--notify-fd", "3"}, {"/bin/sleep", "1000"}), options(true));
  ASSERT_EQ(first.read_notify(milliseconds(10'000)), "\n") << first.err();
  CommandResult second = exec({"--uid", "0"}, {"/bin/true"});
  EXPECT_EQ(second.exit_code, 1) << "the holder may be an instance still stopping: worth a retry";
  EXPECT_THAT(second.err, HasSubstr("is in use by a running instance"));
  EXPECT_TRUE(std::filesystem::exists(runtime_dir())) << "the refused instance must not remove it";
  testing::kill_process(first.pid(), SIGTERM);
  first.wait(milliseconds(10'000));

  std::filesystem::create_directories(runtime_dir() / "sub");
  write_file(runtime_dir() / "sub" / "stale", "x");
  std::filesystem::create_symlink("/etc", runtime_dir() / "link");
  // The command's uid must reach its runtime dir, as a VM's does.
  ASSERT_EQ(::chmod(runtime_root_.path().c_str(), 0711), 0);
  CommandResult third = exec({"--uid", "0"}, {"/bin/sh", "-c", "ls -A " + runtime_dir().string()});
  EXPECT_EQ(third.exit_code, 0) << third.err;
  EXPECT_EQ(third.out, "");
  EXPECT_THAT(third.err, HasSubstr("removing the stale runtime directory"));
  EXPECT_TRUE(std::filesystem::exists("/etc/passwd"));
  EXPECT_FALSE(std::filesystem::exists(runtime_dir()));
}

// ---- identity: single-use UIDs ------------------------------------------------

// The default UID range of the registry (acl-manager/uid_registry.h).
constexpr uid_t kFirstManagedUid = 1879048192u;
constexpr uid_t kLastManagedUid = kFirstManagedUid + 65535u;

// Waits until the sandbox printed `lines` lines (it prints, then sleeps).
void wait_for_lines(Launched& sandbox, std::size_t lines) {
  auto deadline = steady_clock::now() + milliseconds(10'000);
  for (std::string out = sandbox.out(); static_cast<std::size_t>(std::count(out.begin(), out.end(), '\n')) < lines;
       out = sandbox.out()) {
    ASSERT_LT(steady_clock::now(), deadline) << out << sandbox.err();
    std::this_thread::sleep_for(milliseconds(10));
  }
}

class SingleUseUidTest : public SandboxTest {
 protected:
  std::filesystem::path allocated_dir() const { return state_root_.path() / "uids" / "allocated"; }
  std::filesystem::path leases_dir() const { return runtime_root_.path() / "_uid-leases"; }

  // `vmwarden acl sweep` (--dry-run with dry_run) on this test's directories.
  CommandResult sweep(bool dry_run = false) const {
    CommandOptions run;
    run.extra_env = options().env;
    std::vector<std::string> argv = {vmwarden_binary(), "acl", "sweep"};
    if (dry_run) argv.push_back("--dry-run");
    return run_command(argv, run);
  }

  // `dir` opened and flock'ed, as a live instance holds its directory.
  static UniqueFd hold(const std::filesystem::path& dir) {
    UniqueFd held(open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!held || flock(held.get(), LOCK_EX) != 0) throw std::runtime_error("cannot lock " + dir.string());
    return held;
  }

  // Starts `exec` without --uid; returns the UID the command reports, after
  // checking it is leased and owns the runtime dir while the command runs.
  uid_t start(std::optional<Launched>& sandbox) {
    sandbox.emplace(exec_argv({"--notify-fd", "3"}, {"/bin/sh", "-c", "id -u; id -g; id -G; sleep 30"}),
                    options(true));
    EXPECT_EQ(sandbox->read_notify(milliseconds(10'000)), "\n") << sandbox->err();
    wait_for_lines(*sandbox, 3);
    std::istringstream lines(sandbox->out());
    std::string uid, gid, groups;
    std::getline(lines, uid);
    std::getline(lines, gid);
    std::getline(lines, groups);
    uid_t value = static_cast<uid_t>(std::stoul(uid));
    EXPECT_GE(value, kFirstManagedUid);
    EXPECT_LE(value, kLastManagedUid);
    EXPECT_EQ(gid, uid);
    EXPECT_EQ(groups, uid) << "no supplementary groups";
    EXPECT_EQ(directory_names(allocated_dir()), std::vector<std::string>{uid});
    EXPECT_EQ(read_file(allocated_dir() / uid), "single-use\n");
    EXPECT_EQ(directory_names(leases_dir()), std::vector<std::string>{uid});
    struct stat st {};
    EXPECT_EQ(stat(runtime_dir().c_str(), &st), 0);
    EXPECT_EQ(st.st_uid, value);
    return value;
  }
};

TEST_F(SingleUseUidTest, ReleasedWhenTheCommandExits) {
  CommandResult result = exec({}, {"/bin/sh", "-c", "id -u"});
  ASSERT_EQ(result.exit_code, 0) << result.err;
  uid_t uid = static_cast<uid_t>(std::stoul(result.out));
  EXPECT_GE(uid, kFirstManagedUid);
  EXPECT_LE(uid, kLastManagedUid);
  EXPECT_TRUE(directory_names(allocated_dir()).empty());
  EXPECT_TRUE(directory_names(leases_dir()).empty());
  // Released, so the registry can hand it out again (the released list
  // remembers it for the least-recently-used order).
  EXPECT_THAT(directory_names(state_root_.path() / "uids" / "released"),
              ::testing::ElementsAre(::testing::EndsWith("-" + std::to_string(uid))));
}

// A reader of vmwarden's stderr that went away (`2>&1 | head -1`) must not
// kill it between the lease and grant and their undoing: every log line
// then meets a pipe with no reader, from the first one on.
TEST_F(SingleUseUidTest, ReleasedWhenStderrIsAPipeWithoutReader) {
  TempDir tree("vmwarden-pipe-tree");
  std::vector<std::string> argv = exec_argv({"--rw", tree.path().string()}, {"/bin/true"});
  argv.insert(argv.begin() + 1, "--verbose");
  LaunchOptions launch = options();
  launch.stderr_without_reader = true;
  Launched sandbox(argv, launch);
  std::optional<int> status = sandbox.wait(milliseconds(30'000));
  ASSERT_TRUE(status.has_value()) << "still running";
  ASSERT_FALSE(WIFSIGNALED(*status)) << "killed by " << sigabbrev_np(WTERMSIG(*status));
  EXPECT_EQ(WEXITSTATUS(*status), 0);
  EXPECT_TRUE(directory_names(allocated_dir()).empty()) << "the UID was released";
  EXPECT_TRUE(directory_names(leases_dir()).empty());
  EXPECT_EQ(named_acl_entries(tree.path()), "") << "the grant was revoked";
}

// A directory a VM could write (a run's scratch and report shares) can be
// made deeper than any descriptor limit: std::filesystem::remove_all keeps
// one descriptor per level and gave up there, leaving it behind. Removed
// here under a soft limit of 64, 500 levels deep with a mode-000 directory
// and a symlink to an outside file at every level, which stays.
TEST(RemoveDirectoryTree, ATreeDeeperThanTheDescriptorLimitGoesWholeWithoutFollowingSymlinks) {
  TempDir dir("vmwarden-remove-tree");
  std::string outside = (dir / "outside").string();
  write_file(dir / "outside", "kept\n");
  std::filesystem::path tree = dir / "tree";
  std::filesystem::create_directory(tree);
  {
    UniqueFd level(::open(tree.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    ASSERT_TRUE(level);
    for (int depth = 0; depth < 500; ++depth) {
      ASSERT_EQ(::mkdirat(level.get(), "closed", 0), 0);
      ASSERT_EQ(::symlinkat(outside.c_str(), level.get(), "link"), 0);
      ASSERT_EQ(::mkdirat(level.get(), "d", 0755), 0);
      level = UniqueFd(::openat(level.get(), "d", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
      ASSERT_TRUE(level);
    }
  }
  struct rlimit saved {};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &saved), 0);
  const struct rlimit low = {64, saved.rlim_max};
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &low), 0);
  bool removed = false;
  std::string failure;
  try {
    removed = supervisor::remove_directory_tree(tree);
  } catch (const std::exception& e) {
    failure = e.what();
  }
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &saved), 0);
  EXPECT_TRUE(removed) << failure;
  EXPECT_FALSE(std::filesystem::exists(tree));
  EXPECT_EQ(read_file(dir / "outside"), "kept\n");
  EXPECT_FALSE(supervisor::remove_directory_tree(tree)) << "gone: nothing to remove";
}

// The runtime dir belongs to the command's uid, which without Landlock (its
// rule there allows sockets only) may nest directories in it as deep as it
// likes: removing them must neither crash the outer (a stack frame per
// level) nor run out of descriptors (one per level), before the UID is
// released, nor leave the directory for the next start to trip over. 3,000
// levels: deeper than the stack held with a frame of 4 KiB per level, and
// than a limit of 1,024 descriptors.
TEST_F(SingleUseUidTest, ReleasedAfterTheCommandNestedDirectoriesDeepInTheRuntimeDir) {
  // The command's uid must be able to get to its runtime dir by path.
  ASSERT_EQ(::chmod(runtime_root_.path().c_str(), 0711), 0);
  // perl (perl-base, essential in Debian): a shell's cd goes by the whole
  // path, which outgrows PATH_MAX long before.
  std::string script = fmt::format(
      "chdir '{}' or die; for (1..3000) {{ mkdir 'd' or die \"mkdir: $!\"; chdir 'd' or die \"chdir: $!\" }}",
      runtime_dir().string());
  CommandResult result = exec({"--landlock", "off"}, {"/usr/bin/perl", "-e", script});
  EXPECT_EQ(result.exit_code, 0) << result.err;
  EXPECT_FALSE(std::filesystem::exists(runtime_dir())) << result.err;
  EXPECT_TRUE(directory_names(allocated_dir()).empty()) << "the UID was released";
  EXPECT_TRUE(directory_names(leases_dir()).empty());
  CommandResult again = exec({}, {"/bin/true"});
  EXPECT_EQ(again.exit_code, 0) << again.err;
}

// The command's runtime dir takes its sockets and nothing else: a file or
// a directory there would be /run's space, which nothing bounds, and each
// entry a step of the removal that comes before the revoke at exit.
TEST_F(SingleUseUidTest, TheRuntimeDirTakesSocketsButNoFileOrDirectory) {
  ASSERT_EQ(::chmod(runtime_root_.path().c_str(), 0711), 0);
  std::string script = fmt::format(
      "import os, socket\n"
      "d = '{}'\n"
      "s = socket.socket(socket.AF_UNIX); s.bind(d + '/bus'); s.listen(1); print('socket bound')\n"
      "for what, act in (('file', lambda: open(d + '/big', 'w')), ('directory', lambda: os.mkdir(d + '/d')),\n"
      "                  ('fifo', lambda: os.mkfifo(d + '/f')), ('symlink', lambda: os.symlink('/', d + '/l'))):\n"
      "    try:\n"
      "        act(); print(what, 'created')\n"
      "    except OSError as e:\n"
      "        print(what, os.strerror(e.errno))\n",
      runtime_dir().string());
  CommandResult result = exec({}, {"/usr/bin/python3", "-c", script});
  ASSERT_EQ(result.exit_code, 0) << result.err;
  EXPECT_EQ(result.out,
            "socket bound\nfile Permission denied\ndirectory Permission denied\nfifo Permission denied\n"
            "symlink Permission denied\n");
  EXPECT_FALSE(std::filesystem::exists(runtime_dir()));
}

// The revoke comes before the runtime dir's removal, which what the command
// left there can make slow (here, without Landlock, 20,000 directories in a
// directory of its own there: the runtime dir itself may hold 1,024): a
// supervisor that kills vmwarden meanwhile (s6's timeout-kill) finds the
// grants already revoked. Watched from outside: once the command has said
// it is done, any moment the runtime dir holds fewer entries than it made
// (its removal has begun) must find the tree without the UID's entries.
TEST_F(SingleUseUidTest, TheGrantsAreRevokedBeforeTheRuntimeDirIsRemoved) {
  ASSERT_EQ(::chmod(runtime_root_.path().c_str(), 0711), 0);
  TempDir tree("vmwarden-rw");
  constexpr int kEntries = 20'000;
  std::string script = fmt::format(
      "import os\nos.mkdir('{1}/many')\nfor i in range({0}): os.mkdir('{1}/many/d%d' % i)\n"
      "open('{2}/done', 'w').close()\n",
      kEntries, runtime_dir().string(), tree.path().string());
  Launched sandbox(exec_argv({"--landlock", "off", "--rw", tree.path().string()}, {"/usr/bin/python3", "-c", script}),
                   options());
  auto entries = [&]() -> int {
    std::error_code error;
    int count = 0;
    for (std::filesystem::directory_iterator it(runtime_dir() / "many", error), end; !error && it != end;
         it.increment(error))
      ++count;
    return count;
  };
  bool checked = false;
  for (auto deadline = steady_clock::now() + milliseconds(60'000); steady_clock::now() < deadline && !checked;
       std::this_thread::sleep_for(milliseconds(2))) {
    if (!std::filesystem::exists(tree / "done")) continue;
    if (entries() >= kEntries) continue;
    EXPECT_EQ(named_acl_entries(tree.path()), "") << "the runtime dir's removal began before the revoke";
    checked = true;
  }
  EXPECT_TRUE(checked) << "the removal was never seen";
  std::optional<int> status = sandbox.wait(milliseconds(60'000));
  ASSERT_TRUE(status.has_value());
  EXPECT_EQ(exit_code(status), 0) << sandbox.err();
  EXPECT_FALSE(std::filesystem::exists(runtime_dir()));
  EXPECT_EQ(named_acl_entries(tree.path()), "");
}

// The command may bind sockets in its runtime directory, on the host's
// /run: one after another, they would fill it (other VMs then cannot take
// their lease). Past 1,024 entries the warden kills the sandbox.
TEST_F(SingleUseUidTest, ACommandBindingSocketsWithoutEndIsKilledPastTheRuntimeDirsLimit) {
  ASSERT_EQ(::chmod(runtime_root_.path().c_str(), 0711), 0);  // for the UID to reach its directory
  std::string script = fmt::format(
      "import os, socket\nos.chdir('{}')\nfor i in range(200000):\n"
      "    s = socket.socket(socket.AF_UNIX)\n    s.bind('s%d' % i)\n    s.close()\nprint('done')\n",
      runtime_dir().string());
  CommandResult result = exec({}, {"/usr/bin/python3", "-c", script});
  EXPECT_EQ(result.exit_code, 1) << result.out << result.err;
  EXPECT_EQ(result.out, "") << "it bound every socket";
  EXPECT_THAT(result.err,
              HasSubstr("made more than the 1024 entries it may in its runtime directory " + runtime_dir().string()));
  EXPECT_THAT(result.err, HasSubstr("killing every process of the sandbox"));
  EXPECT_FALSE(std::filesystem::exists(runtime_dir()));
  EXPECT_TRUE(directory_names(allocated_dir()).empty()) << "the UID is released";
}

TEST_F(SingleUseUidTest, ReleasedWhenTheSandboxIsStoppedBySignal) {
  for (int sig : {SIGTERM, SIGINT, SIGHUP}) {
    std::optional<Launched> sandbox;
    start(sandbox);
    testing::kill_process(sandbox->pid(), sig);
    EXPECT_EQ(exit_code(sandbox->wait(milliseconds(15'000))), 128 + SIGTERM) << sigabbrev_np(sig) << sandbox->err();
    EXPECT_TRUE(directory_names(allocated_dir()).empty()) << sigabbrev_np(sig);
    EXPECT_TRUE(directory_names(leases_dir()).empty()) << sigabbrev_np(sig);
    EXPECT_FALSE(std::filesystem::exists(runtime_dir()));
  }
}

TEST_F(SingleUseUidTest, AKilledOuterLeavesNoLeaseAndTheSweepReleasesTheUid) {
  std::optional<Launched> sandbox;
  uid_t uid = start(sandbox);
  ASSERT_GT(sandbox->pid(), 0);
  testing::kill_process(sandbox->pid(), SIGKILL);
  sandbox->wait(milliseconds(5'000));
  // The lease is a flock: the kernel drops it once the outer and the warden
  // (which inherited it) are gone; the warden follows its outer at once.
  CommandOptions run;
  run.extra_env = options().env;
  auto deadline = steady_clock::now() + milliseconds(10'000);
  std::string list, lease_holder;
  while (steady_clock::now() < deadline) {
    list = run_command({vmwarden_binary(), "uid", "list"}, run).out;
    // The row's fifth field: the pid holding the lease, "-" for none.
    std::istringstream lines(list);
    for (std::string line; std::getline(lines, line);) {
      std::istringstream words(line);
      std::string fields[5];
      for (std::string& field : fields) words >> field;
      if (fields[0] == std::to_string(uid)) lease_holder = fields[4];
    }
    if (lease_holder == "-") break;
    std::this_thread::sleep_for(milliseconds(20));
  }
  EXPECT_THAT(list, HasSubstr(std::to_string(uid)));
  EXPECT_EQ(lease_holder, "-") << "still leased:\n" << list;
  CommandResult sweep = run_command({vmwarden_binary(), "acl", "sweep"}, run);
  EXPECT_EQ(sweep.exit_code, 0) << sweep.err;
  EXPECT_TRUE(directory_names(allocated_dir()).empty()) << sweep.out;
}

// What the sweep takes for a runtime directory left behind: a directory of
// mode 0700 with a VM's name, owned by a UID of the range or marked as
// vmwarden's, that no instance holds. Not one an instance holds, nor a
// symlink (not followed), nor another owner's directory without the mark,
// nor another mode's, nor the leases.
TEST_F(SingleUseUidTest, TheSweepRemovesTheRuntimeDirectoriesNoInstanceHolds) {
  std::filesystem::path root = runtime_root_.path();
  TempDir outside("vmwarden-outside");
  auto make = [&](const std::filesystem::path& dir, uid_t owner, mode_t mode) {
    std::filesystem::create_directories(dir / "mnt" / "deeper");
    write_file(dir / "mnt" / "deeper" / "socket-ish", "left\n");
    ASSERT_EQ(chown(dir.c_str(), owner, owner), 0);
    ASSERT_EQ(chmod(dir.c_str(), mode), 0);
  };
  make(root / "exec-1", kFirstManagedUid + 7, 0700);   // left behind
  make(root / "exec-2", kFirstManagedUid + 8, 0700);   // held
  make(root / "exec-3", kFirstManagedUid + 9, 0755);   // not a runtime directory's mode
  make(root / "host-daemon", 0, 0700);                 // not a UID of the range, not marked
  make(root / "exec-5", 4242, 0700);                   // another UID's, marked as vmwarden makes them
  ASSERT_EQ(::setxattr((root / "exec-5").c_str(), "trusted.vmwarden.runtime-dir", "", 0, 0), 0);
  make(root / "exec-6", 4242, 0700);                   // another UID's, not marked
  make(root / "_uid-leases", 0, 0700);                 // not a VM's name
  make(outside / "target", kFirstManagedUid + 7, 0700);
  std::filesystem::create_directory_symlink(outside / "target", root / "exec-4");
  UniqueFd held = hold(root / "exec-2");

  CommandResult dry = sweep(/*dry_run=*/true);
  EXPECT_EQ(dry.exit_code, 0) << dry.err;
  EXPECT_THAT(dry.out, HasSubstr("would remove the runtime directory " + (root / "exec-1").string() +
                                 ", which no instance holds\n"));
  EXPECT_THAT(dry.out, HasSubstr("2 runtime and 0 run directories would be removed"));
  EXPECT_TRUE(std::filesystem::exists(root / "exec-1" / "mnt" / "deeper" / "socket-ish")) << "a dry run removes nothing";

  CommandResult swept = sweep();
  EXPECT_EQ(swept.exit_code, 0) << swept.err;
  EXPECT_THAT(swept.out, HasSubstr("removed the runtime directory " + (root / "exec-1").string()));
  EXPECT_THAT(swept.out, HasSubstr("removed the runtime directory " + (root / "exec-5").string()));
  EXPECT_THAT(swept.out, HasSubstr("2 runtime and 0 run directories removed"));
  EXPECT_EQ(directory_names(root),
            (std::vector<std::string>{"_uid-leases", "exec-2", "exec-3", "exec-4", "exec-6", "host-daemon"}));
  EXPECT_TRUE(std::filesystem::exists(outside / "target" / "mnt" / "deeper" / "socket-ish"));
  EXPECT_TRUE(std::filesystem::is_symlink(root / "exec-4"));
}

// `exec --uid NUMBER` killed before its warden could remove the runtime
// directory (here: the warden killed first, while the outer is stopped, so
// that neither cleans up) leaves it owned by that user, outside the range:
// the sweep knows it by the mark its creation put on it.
TEST_F(SingleUseUidTest, TheSweepRemovesAKilledExecUidsRuntimeDirectoryByItsMark) {
  Launched sandbox(exec_argv({"--uid", "4242", "--notify-fd", "3"}, {"/bin/sleep", "30"}), options(true));
  ASSERT_EQ(sandbox.read_notify(milliseconds(10'000)), "\n") << sandbox.err();
  struct stat st {};
  ASSERT_EQ(::lstat(runtime_dir().c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 4242u);
  EXPECT_GE(::lgetxattr(runtime_dir().c_str(), "trusted.vmwarden.runtime-dir", nullptr, 0), 0) << strerror(errno);

  ASSERT_EQ(testing::kill_process(sandbox.pid(), SIGSTOP), 0);
  for (pid_t pid : marked_processes(marker_)) {
    if (pid != sandbox.pid()) testing::kill_process(pid, SIGKILL);
  }
  auto deadline = steady_clock::now() + milliseconds(5'000);
  while (marked_processes(marker_) != std::vector<pid_t>{sandbox.pid()} && steady_clock::now() < deadline)
    std::this_thread::sleep_for(milliseconds(5));
  ASSERT_EQ(marked_processes(marker_), std::vector<pid_t>{sandbox.pid()});
  ASSERT_EQ(testing::kill_process(sandbox.pid(), SIGKILL), 0);
  sandbox.wait(milliseconds(5'000));
  ASSERT_TRUE(std::filesystem::exists(runtime_dir())) << "nothing removed it: the case the sweep is for";

  CommandResult swept = sweep();
  EXPECT_EQ(swept.exit_code, 0) << swept.out << swept.err;
  EXPECT_THAT(swept.out, HasSubstr("removed the runtime directory " + runtime_dir().string()));
  EXPECT_FALSE(std::filesystem::exists(runtime_dir()));
}

// A runtime directory left behind that cannot be removed (an immutable
// file in it) fails the sweep, named on stderr, and the others are still
// removed.
TEST_F(SingleUseUidTest, TheSweepReportsARuntimeDirectoryItCannotRemoveAndGoesOn) {
  std::filesystem::path root = runtime_root_.path();
  for (const char* name : {"exec-1", "exec-2"}) {
    std::filesystem::create_directories(root / name / "mnt");
    write_file(root / name / "mnt" / "file", "left\n");
    ASSERT_EQ(chown((root / name).c_str(), kFirstManagedUid + 7, kFirstManagedUid + 7), 0);
    ASSERT_EQ(chmod((root / name).c_str(), 0700), 0);
  }
  std::filesystem::path stuck = root / "exec-1" / "mnt" / "file";
  UniqueFd file(open(stuck.c_str(), O_RDONLY | O_CLOEXEC));
  ASSERT_TRUE(file);
  int flags = 0;
  if (ioctl(file.get(), FS_IOC_GETFLAGS, &flags) < 0) GTEST_SKIP() << "no inode flags here: " << strerror(errno);
  flags |= FS_IMMUTABLE_FL;
  if (ioctl(file.get(), FS_IOC_SETFLAGS, &flags) < 0) GTEST_SKIP() << "cannot set FS_IMMUTABLE_FL: " << strerror(errno);
  struct Mutable {
    int fd;
    ~Mutable() {
      int flags = 0;
      if (ioctl(fd, FS_IOC_GETFLAGS, &flags) == 0) {
        flags &= ~FS_IMMUTABLE_FL;
        ioctl(fd, FS_IOC_SETFLAGS, &flags);
      }
    }
  } made_mutable_again{file.get()};

  CommandResult swept = sweep();
  EXPECT_EQ(swept.exit_code, 1) << swept.out << swept.err;
  EXPECT_THAT(swept.err, HasSubstr(stuck.string())) << swept.err;
  EXPECT_THAT(swept.out, HasSubstr("removed the runtime directory " + (root / "exec-2").string()));
  EXPECT_THAT(swept.out, HasSubstr("1 runtime and 0 run directories removed"));
  EXPECT_EQ(directory_names(root), std::vector<std::string>{"exec-1"}) << swept.out;
}

// A `vmwarden run` killed with SIGKILL leaves STATE_DIR/runs/run-PID-HEX
// (its shares, the scratch too). The sweep takes a run directory whose lock
// is free and whose PID no process has; not one a run holds, nor one whose
// run may be between making and locking it, nor a symlink (not followed),
// nor what is not named as a run's.
TEST_F(SingleUseUidTest, TheSweepRemovesTheRunDirectoriesNoRunHolds) {
  std::vector<pid_t> dead;
  for (int i = 0; i < 2; ++i) {
    pid_t child = fork();
    ASSERT_GE(child, 0);
    if (child == 0) _exit(0);
    ASSERT_EQ(waitpid(child, nullptr, 0), child);
    dead.push_back(child);
  }
  std::filesystem::path runs = state_root_.path() / "runs";
  TempDir outside("vmwarden-outside");
  write_file(outside / "kept", "outside\n");
  auto make = [&](const std::string& name) {
    std::filesystem::create_directories(runs / name / "scratch" / "deep" / "er");
    std::filesystem::create_directories(runs / name / "report");
    write_file(runs / name / "report" / "status", "0\n");
    std::filesystem::create_directory_symlink(outside.path(), runs / name / "scratch" / "deep" / "er" / "out");
  };
  std::string left = fmt::format("run-{}-1a2b", dead[0]), held = fmt::format("run-{}-ffff", dead[1]),
              alive = fmt::format("run-{}-0abc", getpid());
  for (const std::string& name : {left, held, alive, std::string("run-x-1"), std::string("notarun")}) make(name);
  std::filesystem::create_directory_symlink(outside.path(), runs / fmt::format("run-{}-0001", dead[0]));
  UniqueFd lock = hold(runs / held);

  CommandResult dry = sweep(/*dry_run=*/true);
  EXPECT_EQ(dry.exit_code, 0) << dry.err;
  EXPECT_THAT(dry.out, HasSubstr("would remove the run directory " + (runs / left).string() + ", which no run holds\n"));
  EXPECT_THAT(dry.out, HasSubstr("0 runtime and 1 run directory would be removed"));
  EXPECT_TRUE(std::filesystem::exists(runs / left / "report" / "status")) << "a dry run removes nothing";

  CommandResult swept = sweep();
  EXPECT_EQ(swept.exit_code, 0) << swept.err;
  EXPECT_THAT(swept.out, HasSubstr("removed the run directory " + (runs / left).string()));
  EXPECT_THAT(swept.out, HasSubstr("0 runtime and 1 run directory removed"));
  std::vector<std::string> kept = {alive, fmt::format("run-{}-0001", dead[0]), held, "notarun", "run-x-1"};
  std::sort(kept.begin(), kept.end());
  EXPECT_EQ(directory_names(runs), kept);
  EXPECT_EQ(read_file(outside / "kept"), "outside\n");
}

// kill -9 of `vmwarden exec` at random instants of its start-up, while it
// leases a single-use UID, grants it a tree, makes its runtime directory and
// starts its warden: within a second nothing of the sandbox runs and the
// host's mounts are as before, and after one sweep nothing is left: no
// lease, no allocation, no ACL entry, no runtime directory.
TEST_F(SingleUseUidTest, KillNineAtRandomInstantsOfTheStartLeavesNothingASweepDoesNotClear) {
  TempDir tree("vmwarden-killed-tree");
  ASSERT_EQ(chmod(tree.path().c_str(), 0700), 0);
  std::filesystem::create_directories(tree / "sub");
  write_file(tree / "sub" / "file", "data\n");
  std::vector<std::string> argv =
      exec_argv({"--rw", tree.path().string(), "--notify-fd", "3"}, {"/bin/sh", "-c", "trap '' TERM; exec sleep 30"});
  std::vector<std::string> mounts_before = mount_table();

  // How long a start takes here, to kill at instants spread over it.
  std::chrono::microseconds start_time{};
  {
    auto started_at = steady_clock::now();
    Launched sandbox(argv, options(true));
    ASSERT_EQ(sandbox.read_notify(milliseconds(10'000)), "\n") << sandbox.err();
    start_time = std::chrono::duration_cast<std::chrono::microseconds>(steady_clock::now() - started_at);
    testing::kill_process(sandbox.pid(), SIGTERM);
    sandbox.wait(milliseconds(15'000));
  }
  std::mt19937 random(std::random_device{}());
  std::uniform_int_distribution<long> instant(0, 2 * start_time.count());
  constexpr int kRuns = 40;
  for (int run = 0; run < kRuns; ++run) {
    Launched sandbox(argv, options(true));
    ASSERT_GT(sandbox.pid(), 0);
    std::this_thread::sleep_for(std::chrono::microseconds(instant(random)));
    ASSERT_EQ(testing::kill_process(sandbox.pid(), SIGKILL), 0);
    sandbox.wait(milliseconds(5'000));
    auto killed_at = steady_clock::now();
    std::string left;
    do {
      while (waitpid(-1, nullptr, WNOHANG) > 0) {
      }
      left.clear();
      for (pid_t pid : marked_processes(marker_)) left += " marked:" + std::to_string(pid) + " " + read_proc(pid, "comm");
      if (mount_table() != mounts_before) left += " mounts-changed";
      if (left.empty()) break;
      std::this_thread::sleep_for(milliseconds(5));
    } while (steady_clock::now() - killed_at < milliseconds(1'000));
    EXPECT_EQ(left, "") << "run " << run << ": left 1 s after kill -9";
  }
  int left_runtime_dirs = 0;
  for (const std::string& name : directory_names(runtime_root_.path())) left_runtime_dirs += name != "_uid-leases";
  std::printf("start-up %.1f ms; %d of %d kills left their runtime directory for the sweep\n",
              start_time.count() / 1000.0, left_runtime_dirs, kRuns);

  CommandResult swept = sweep();
  EXPECT_EQ(swept.exit_code, 0) << swept.out << swept.err;
  EXPECT_EQ(directory_names(runtime_root_.path()), std::vector<std::string>{"_uid-leases"}) << swept.out;
  EXPECT_TRUE(directory_names(leases_dir()).empty()) << swept.out;
  EXPECT_TRUE(directory_names(allocated_dir()).empty()) << swept.out;
  EXPECT_EQ(named_acl_entries(tree.path()), "") << swept.out;
}

TEST_F(SingleUseUidTest, GetsAclGrantsOnRwAndRoTreesForTheRunOnly) {
  TempDir writable("vmwarden-rw"), readable("vmwarden-ro");
  ASSERT_EQ(chmod(writable.path().c_str(), 0700), 0);  // only root, and ACL grants
  ASSERT_EQ(chmod(readable.path().c_str(), 0700), 0);
  write_file(readable / "secret", "for the command\n", 0600);
  std::string out_file = (writable / "out").string();
  CommandResult result = exec({"--rw", writable.path().string(), "--ro", readable.path().string()},
                              {"/bin/sh", "-c", "id -u > " + out_file + " && cat " + (readable / "secret").string()});
  ASSERT_EQ(result.exit_code, 0) << result.err;
  EXPECT_EQ(result.out, "for the command\n");
  std::string uid = read_file(out_file);
  uid.pop_back();
  struct stat st {};
  ASSERT_EQ(stat(out_file.c_str(), &st), 0);
  EXPECT_EQ(std::to_string(st.st_uid), uid);
  // Revoked at exit: no entry for the UID is left on either tree.
  for (const std::filesystem::path& path :
       {writable.path(), readable.path(), readable / "secret", std::filesystem::path(out_file)}) {
    EXPECT_EQ(testing::acl_entries_naming(std::stoul(uid), path, /*recursive=*/false), "") << path;
  }
  // Without the grants the UID could not have entered the 0700 trees.
  CommandResult denied = exec({"--uid", uid, "--rw", writable.path().string()}, {"/bin/sh", "-c", "ls " + writable.path().string()});
  EXPECT_NE(denied.exit_code, 0);
  EXPECT_THAT(denied.err, HasSubstr("Permission denied"));
}

// --uid 0 is root of the command's own user namespace over a single-use
// UID: uid 0 and gid 0 inside, no capability; the host sees only the UID,
// which gets the --rw and --ro grants for the run and owns what the command
// creates. (That the host's root-only sockets and files stay out of reach
// is exec_escape_test's.)
TEST_F(SingleUseUidTest, UidZeroIsRootOfItsOwnUserNamespaceOverASingleUseUid) {
  TempDir writable("vmwarden-rw-root");
  ASSERT_EQ(chmod(writable.path().c_str(), 0700), 0);  // only root, and ACL grants
  std::string out_file = (writable / "uid_map").string();
  CommandResult root = exec({"--uid", "0", "--rw", writable.path().string()},
                            {"/bin/sh", "-c",
                             "id -u; id -g; grep CapEff /proc/self/status; cat /proc/self/uid_map > " + out_file +
                                 " && stat -c %u " + out_file});
  ASSERT_EQ(root.exit_code, 0) << root.err;
  EXPECT_EQ(root.out, "0\n0\nCapEff:\t0000000000000000\n0\n");
  std::istringstream map(read_file(out_file));
  unsigned long inside = 1, outside = 0, count = 0;
  map >> inside >> outside >> count;
  EXPECT_EQ(inside, 0u);
  EXPECT_EQ(count, 1u);
  EXPECT_NE(outside, 0u);
  struct stat st {};
  ASSERT_EQ(stat(out_file.c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, outside) << "the file it created is the single-use UID's on the host";
  EXPECT_EQ(testing::acl_entries_naming(static_cast<uid_t>(outside), writable.path(), /*recursive=*/true), "")
      << "the grant is revoked at exit";
  // Root named otherwise is the same.
  for (const std::vector<std::string>& flags :
       std::vector<std::vector<std::string>>{{"--uid", "root", "--gid", "root"}, {"--uid", "00", "--gid", "0"}}) {
    CommandResult named = exec(flags, {"/bin/sh", "-c", "id -u; id -g; cat /proc/self/uid_map"});
    ASSERT_EQ(named.exit_code, 0) << named.err;
    std::istringstream lines(named.out);
    std::string uid, gid;
    unsigned long inside_uid = 1, outside_uid = 0;
    lines >> uid >> gid >> inside_uid >> outside_uid;
    EXPECT_EQ(uid + " " + gid, "0 0") << flags[1];
    EXPECT_EQ(inside_uid, 0u) << flags[1];
    EXPECT_NE(outside_uid, 0u) << flags[1] << ": not the host's root";
  }

  CommandResult audit = exec({"--uid", "0", "--audit"}, {"/bin/true"});
  ASSERT_EQ(audit.exit_code, 0) << audit.err;
  EXPECT_THAT(audit.out, HasSubstr("\nwarnings: none\n"));
  EXPECT_THAT(audit.out, HasSubstr("asked for with --uid 0, it is shown to the command as uid 0 and gid 0"));
  EXPECT_THAT(audit.out, HasSubstr("user namespace: its own, in which only uid <single-use UID> and gid the same number "
                                   "are mapped, as uid 0 and gid 0"));
  EXPECT_THAT(audit.out, HasSubstr("map only uid <single-use UID> and gid <single-use UID>, as uid 0 and gid 0"));
  CommandResult single_use = exec({"--audit"}, {"/bin/true"});
  ASSERT_EQ(single_use.exit_code, 0) << single_use.err;
  EXPECT_THAT(single_use.out, HasSubstr("\nwarnings: none\n"));
  EXPECT_THAT(single_use.out, HasSubstr("identity: uid <single-use UID>, gid the same number"));
  EXPECT_THAT(single_use.out, Not(HasSubstr("user namespace: its own")));
}

// ---- Landlock modes and the injectable ABI ------------------------------------

// An abstract unix socket the test binds in the host's network namespace
// (which --network shares with the command): nothing but the Landlock
// abstract-socket scope (ABI 6) can refuse the command's connect.
class OutsideAbstractSocket {
 public:
  OutsideAbstractSocket()
      : name_("vmwarden-sandbox-test-" + std::to_string(::getpid())),
        listener_(testing::listen_on_abstract_socket(name_)) {}
  // The command that connects to it (as --uid 65534, without a lease).
  std::vector<std::string> connect() const {
    return {"/usr/bin/python3", "-c",
            "import socket, sys\ns = socket.socket(socket.AF_UNIX)\ns.connect('\\0' + sys.argv[1])\nprint('connected')",
            name_};
  }

 private:
  std::string name_;
  UniqueFd listener_;
};
const std::vector<std::string> kOutsideSocketFlags = {"--uid", "65534", "--network"};

std::vector<std::string> with(std::vector<std::string> flags, const std::vector<std::string>& more) {
  flags.insert(flags.end(), more.begin(), more.end());
  return flags;
}

TEST_F(SandboxTest, RequiredRefusesWhenTheAbiIsFakedLower) {
  LaunchOptions launch = options();
  launch.env["VMWARDEN_LANDLOCK_ABI"] = "5";
  CommandOptions run;
  run.extra_env = launch.env;
  // Without --uid too: the refusal comes before a UID is leased.
  for (std::vector<std::string> flags : {std::vector<std::string>{}, {"--uid", "0"}, {"--landlock", "required"}}) {
    CommandResult result = run_command(exec_argv(flags, {"/bin/sh", "-c", "echo ran"}), run);
    EXPECT_EQ(result.exit_code, 125) << result.err;
    EXPECT_EQ(result.out, "");
    EXPECT_THAT(result.err, HasSubstr("this kernel offers Landlock ABI 5, which lacks:"));
    EXPECT_THAT(result.err, HasSubstr("scope SIGNAL (ABI 6, Linux 6.12)"));
    EXPECT_THAT(result.err, HasSubstr("scope ABSTRACT_UNIX_SOCKET (ABI 6, Linux 6.12)"));
  }
  EXPECT_TRUE(std::filesystem::is_empty(runtime_root_.path()));
  EXPECT_TRUE(std::filesystem::is_empty(state_root_.path()));
}

TEST_F(SandboxTest, BestEffortRunsAndLogsExactlyWhatWasDropped) {
  OutsideAbstractSocket outside;
  // On this kernel the scope refuses.
  CommandResult scoped = exec(with(kOutsideSocketFlags, {"--landlock", "best-effort"}), outside.connect());
  EXPECT_NE(scoped.exit_code, 0);
  EXPECT_THAT(scoped.err, HasSubstr("Operation not permitted"));
  EXPECT_THAT(scoped.err, Not(HasSubstr("dropped")));

  auto dropped_lines = [](const std::string& err) {
    std::vector<std::string> lines;
    std::istringstream in(err);
    for (std::string line; std::getline(in, line);)
      if (line.find("landlock = \"best-effort\": dropped ") != std::string::npos)
        lines.push_back(line.substr(line.find("dropped ") + 8));
    return lines;
  };
  LaunchOptions launch = options();
  launch.env["VMWARDEN_LANDLOCK_ABI"] = "5";
  CommandOptions run;
  run.extra_env = launch.env;
  CommandResult abi5 =
      run_command(exec_argv(with(kOutsideSocketFlags, {"--landlock", "best-effort"}), outside.connect()), run);
  EXPECT_EQ(abi5.exit_code, 0) << abi5.err;
  EXPECT_EQ(abi5.out, "connected\n");  // the scope really is gone
  EXPECT_THAT(abi5.err, HasSubstr("VMWARDEN_LANDLOCK_ABI=5: treating this kernel's Landlock ABI"));
  EXPECT_THAT(dropped_lines(abi5.err),
              ::testing::ElementsAre(
                  "scope ABSTRACT_UNIX_SOCKET (ABI 6, Linux 6.12): abstract unix sockets outside the domain are "
                  "reachable",
                  "scope SIGNAL (ABI 6, Linux 6.12): processes outside the domain can be signalled"));

  launch.env["VMWARDEN_LANDLOCK_ABI"] = "3";
  run.extra_env = launch.env;
  CommandResult abi3 = run_command(exec_argv({"--uid", "0", "--landlock", "best-effort"}, {"/bin/true"}), run);
  EXPECT_EQ(abi3.exit_code, 0) << abi3.err;
  EXPECT_THAT(dropped_lines(abi3.err),
              ::testing::ElementsAre(::testing::StartsWith("FS_IOCTL_DEV for /dev/tty (ABI 5"),
                                     ::testing::StartsWith("NET_BIND_TCP and NET_CONNECT_TCP (ABI 4, Linux 6.7)"),
                                     ::testing::StartsWith("scope ABSTRACT_UNIX_SOCKET (ABI 6"),
                                     ::testing::StartsWith("scope SIGNAL (ABI 6")));
}

TEST_F(SandboxTest, TheInjectedAbiCanOnlyLowerTheKernels) {
  LaunchOptions launch = options();
  launch.env["VMWARDEN_LANDLOCK_ABI"] = "99";
  CommandOptions run;
  run.extra_env = launch.env;
  OutsideAbstractSocket outside;
  CommandResult raised = run_command(exec_argv(kOutsideSocketFlags, outside.connect()), run);
  EXPECT_THAT(raised.err, HasSubstr("VMWARDEN_LANDLOCK_ABI=99 ignored: it can only lower"));
  EXPECT_THAT(raised.err, HasSubstr("Operation not permitted"));  // still scoped
  EXPECT_EQ(raised.out, "");

  launch.env["VMWARDEN_LANDLOCK_ABI"] = "six";
  run.extra_env = launch.env;
  CommandResult garbage = run_command(exec_argv({"--uid", "0"}, {"/bin/true"}), run);
  EXPECT_EQ(garbage.exit_code, 2) << garbage.err;
  EXPECT_THAT(garbage.err, HasSubstr("VMWARDEN_LANDLOCK_ABI=six: give a Landlock ABI number"));
}

TEST_F(SandboxTest, LandlockOffAndSeccompFlagsChangeWhatTheCommandMayDo) {
  OutsideAbstractSocket outside;
  CommandResult off = exec(with(kOutsideSocketFlags, {"--landlock", "off"}), outside.connect());
  EXPECT_EQ(off.exit_code, 0) << off.err;
  EXPECT_EQ(off.out, "connected\n");
  CommandResult off_audit = exec({"--uid", "0", "--landlock", "off", "--audit"}, {"/bin/true"});
  EXPECT_THAT(off_audit.out, HasSubstr("! service command: no Landlock domain (landlock off)"));

  // A user namespace: the vm-daemon profile kills, log only logs, none has no filter.
  std::vector<std::string> unshare = {"/usr/bin/unshare", "--user", "/bin/true"};
  EXPECT_EQ(exec({}, unshare).exit_code, 128 + SIGSYS);
  EXPECT_EQ(exec({"--seccomp", "log"}, unshare).exit_code, 0);
  EXPECT_EQ(exec({"--seccomp-profile", "none"}, unshare).exit_code, 0);
  // Log mode still installs the filter (mode 2), as "none" does not.
  std::vector<std::string> status = {"/bin/grep", "^Seccomp:", "/proc/self/status"};
  CommandResult logged = exec({"--seccomp", "log"}, status);
  EXPECT_EQ(logged.out, "Seccomp:\t2\n") << logged.err;
  CommandResult unfiltered = exec({"--seccomp-profile", "none"}, status);
  EXPECT_EQ(unfiltered.out, "Seccomp:\t0\n") << unfiltered.err;
  CommandResult audit = exec({"--seccomp", "log", "--audit"}, {"/bin/true"});
  EXPECT_THAT(audit.out, HasSubstr("! service command: seccomp violations are only logged"));
}

// ---- usage errors -----------------------------------------------------------------

TEST_F(SandboxTest, UsageErrorsExit2AndCreateNothing) {
  TempDir dir("vmwarden-usage");
  write_file(dir / "data", "not a program", 0644);
  write_file(dir / "orphan-script", "#!/nonexistent/interpreter -x\necho hi\n", 0755);
  std::filesystem::create_directories(dir / "tree/sub");
  std::filesystem::create_directory_symlink(dir / "tree", dir / "link");
  std::filesystem::create_directory_symlink("/tmp", dir / "to-tmp");
  std::filesystem::create_directory_symlink("/dev", dir / "to-dev");
  std::filesystem::create_directory_symlink("/", dir / "to-root");
  std::string tree = (dir / "tree").string();
  struct Case {
    std::vector<std::string> argv;
    std::string message;
  };
  std::vector<Case> cases = {
      {{vmwarden_binary(), "exec", "--bogus", "--uid", "0", "--", "/bin/true"}, "--bogus"},
      {{vmwarden_binary(), "exec", "--uid", "0"}, "no command given"},
      {{vmwarden_binary(), "exec", "--uid", "0", "--", "no-such-command-xyz"}, "command not found in PATH"},
      {{vmwarden_binary(), "exec", "--uid", "0", "--", (dir / "data").string()}, "not executable"},
      {{vmwarden_binary(), "exec", "--uid", "0", "--", dir.path().string()}, "is a directory"},
      {{vmwarden_binary(), "exec", "--uid", "65534", "--", (dir / "orphan-script").string()},
       "its interpreter /nonexistent/interpreter (its #! line) does not exist"},
      {{vmwarden_binary(), "exec", "--gid", "0", "--", "/bin/true"}, "--gid needs --uid"},
      {{vmwarden_binary(), "exec", "--landlock", "sometimes", "--", "/bin/true"}, "best-effort"},
      {{vmwarden_binary(), "exec", "--seccomp", "trap", "--", "/bin/true"}, "kill"},
      {{vmwarden_binary(), "exec", "--seccomp-profile", "vm-deamon", "--", "/bin/true"}, "\"vm-daemon\""},
      {{vmwarden_binary(), "exec", "--json", "--", "/bin/true"}, "--json goes with --audit"},
      {{vmwarden_binary(), "exec", "--uid", "no-such-user-xyz", "--", "/bin/true"}, "no such user"},
      {{vmwarden_binary(), "exec", "--uid", "4294967295", "--", "/bin/true"}, "--uid 4294967295: not a valid id"},
      {{vmwarden_binary(), "exec", "--uid", "0", "--gid", "12x", "--", "/bin/true"}, "--gid 12x: not a valid id"},
      {{vmwarden_binary(), "exec", "--uid", "0", "--gid", "5", "--", "/bin/true"},
       "--gid 5: --uid 0 runs the command as root (uid 0, gid 0) of a user namespace of its own"},
      {{vmwarden_binary(), "exec", "--uid", "0", "--gid", "no-such-group-xyz", "--", "/bin/true"}, "no such group"},
      {{vmwarden_binary(), "exec", "--uid", "65534", "--gid", "0", "--", "/bin/true"},
       "--gid 0: a command never runs with the host's group 0"},
      {{vmwarden_binary(), "exec", "--uid", "65534", "--ro", "/no/such/path", "--", "/bin/true"}, "no such file"},
      {{vmwarden_binary(), "exec", "--ro", "/", "--", "/bin/true"}, "/ cannot be a share"},
      // With a --uid the tree is not granted, but it still cannot be /
      // (bound read-only over /, the start failed half-way).
      {{vmwarden_binary(), "exec", "--uid", "65534", "--ro", "/", "--", "/bin/true"},
       "--ro /: the whole filesystem cannot be mounted read-only over itself"},
      {{vmwarden_binary(), "exec", "--uid", "65534", "--ro", (dir / "to-root").string(), "--", "/bin/true"},
       "--ro " + (dir / "to-root").string() + " (it leads to /): the whole filesystem cannot be mounted"},
      // A symlink into the sandbox's private /tmp or /dev/shm is refused
      // naming where it leads, at the end of the path or on the way.
      {{vmwarden_binary(), "exec", "--uid", "65534", "--ro", (dir / "to-tmp").string(), "--", "/bin/true"},
       "--ro " + (dir / "to-tmp").string() + " (a symlink on the way leads to /tmp): /tmp is beneath /tmp"},
      {{vmwarden_binary(), "exec", "--uid", "65534", "--rw", (dir / "to-dev/shm").string(), "--", "/bin/true"},
       "(a symlink on the way leads to /dev/shm): /dev/shm is beneath /dev/shm"},
      {{vmwarden_binary(), "exec", "--uid", "0", "--notify-fd", "57", "--", "/bin/true"}, "no such open file"},
      {{vmwarden_binary(), "exec", "--uid", "0", "--name", "Bad Name", "--", "/bin/true"}, "--name"},
      {{vmwarden_binary(), "exec", "--uid", "0", "--timeout", "-1", "--", "/bin/true"}, "--timeout"},
      {{vmwarden_binary(), "exec", "--timeout", "", "--", "/bin/true"}, "--timeout was given an empty value"},
      {{vmwarden_binary(), "exec", "--notify-fd", "-1", "--", "/bin/true"}, "--notify-fd -1"},
      // What a grant to the single-use UID would refuse is refused before
      // the lease.
      {{vmwarden_binary(), "exec", "--rw", (dir / "link").string(), "--", "/bin/true"}, "goes through a symlink"},
      {{vmwarden_binary(), "exec", "--ro", (dir / "tree/sub/..").string(), "--", "/bin/true"}, "must not contain \"..\""},
      {{vmwarden_binary(), "exec", "--ro", (dir / "data").string(), "--", "/bin/true"}, "not a directory"},
      {{vmwarden_binary(), "exec", "--ro", tree, "--rw", tree + "/", "--", "/bin/true"}, "given to both --ro and --rw"},
      {{vmwarden_binary(), "exce", "--", "/bin/true"}, "unknown subcommand \"exce\"; did you mean \"exec\"?"},
      {{vmwarden_binary(), "--state-dir", "/x", "supervize", "vm"}, "did you mean \"supervise\"?"},
      {{vmwarden_binary(), "uid", "alocc"},
       "vmwarden: error: unknown subcommand \"alocc\" of vmwarden uid; did you mean \"alloc\"? (see vmwarden uid --help)"},
      {{vmwarden_binary(), "acl", "grnt", "--uid", "1", "--ro", "/x"}, "unknown subcommand \"grnt\" of vmwarden acl; did you mean \"grant\"?"},
      {{vmwarden_binary(), "s6"}, "vmwarden s6 needs a subcommand: service"},
      {{vmwarden_binary(), "check"}, "vmwarden: error: definition is required (see vmwarden check --help)"},
      {{vmwarden_binary(), "exec", "--nope", "--", "/bin/true"}, "vmwarden: error: The following argument was not expected: --nope"},
      {{vmwarden_binary(), "--runtime-dir", "relrun", "exec", "--", "/bin/true"},
       "--runtime-dir \"relrun\" is a relative path"},
      {{vmwarden_binary(), "exec", "--timeout", "abc", "--", "/bin/true"},
       "vmwarden: error: --timeout: \"abc\" is not a number (see vmwarden exec --help)"},
      {{vmwarden_binary(), "exec", "--notify-fd", "99999999999", "--", "/bin/true"},
       "vmwarden: error: --notify-fd: \"99999999999\" is out of range"},
      {{vmwarden_binary(), "exec", "--network=maybe", "--", "/bin/true"},
       "vmwarden: error: --network takes no value: give it alone, without \"=maybe\""},
      {{vmwarden_binary(), "exec", "--timeout", "1", "--timeout", "2", "--", "/bin/true"},
       "vmwarden: error: --timeout was given 2 times; give it once"},
      {{vmwarden_binary(), "--state-dir", "/x", "--state-dir", "/y", "uid", "list"},
       "vmwarden: error: --state-dir was given 2 times; give it once"},
  };
  TempDir cwd("vmwarden-cwd");  // where a relative location would have been created
  for (const Case& c : cases) {
    CommandOptions run;
    run.extra_env = options().env;
    run.cwd = cwd.path();
    CommandResult result = run_command(c.argv, run);
    EXPECT_EQ(result.exit_code, 2) << c.message << ": " << result.err;
    EXPECT_THAT(result.err, HasSubstr(c.message));
  }
  CommandOptions relative;
  relative.extra_env = options().env;
  relative.extra_env["VMWARDEN_RUNTIME_DIR"] = "relrun";
  relative.cwd = cwd.path();
  CommandResult result = run_command({vmwarden_binary(), "exec", "--", "/bin/true"}, relative);
  EXPECT_EQ(result.exit_code, 2) << result.err;
  EXPECT_THAT(result.err, HasSubstr("VMWARDEN_RUNTIME_DIR \"relrun\" is a relative path"));
  // A program override set but empty is refused like an empty location.
  CommandOptions empty_builder;
  empty_builder.extra_env = options().env;
  empty_builder.extra_env["VMWARDEN_IMAGE_BUILDER"] = "";
  CommandResult demo = run_command({vmwarden_binary(), "demo"}, empty_builder);
  EXPECT_EQ(demo.exit_code, 2) << demo.err;
  EXPECT_THAT(demo.err, HasSubstr("VMWARDEN_IMAGE_BUILDER is set but empty"));
  EXPECT_TRUE(std::filesystem::is_empty(cwd.path()));
  EXPECT_TRUE(std::filesystem::is_empty(runtime_root_.path()));
  EXPECT_TRUE(std::filesystem::is_empty(state_root_.path()));
}

// `vmwarden run` checks every flag before it leases, grants or creates
// anything (no runs/ directory in the state dir afterwards).
TEST_F(SandboxTest, RunRefusesBadFlagsBeforeChangingAnything) {
  TempDir scratch("vmwarden-run-flags");
  write_file(scratch / "vmlinuz", "not booted");
  std::filesystem::create_directories(scratch / "dir with space");
  std::filesystem::create_directories(scratch / "share");
  std::filesystem::create_directory_symlink(scratch / "share", scratch / "link");
  std::filesystem::create_directories(scratch / "not-utf8-\xff");
  std::string kernel = (scratch / "vmlinuz").string();
  struct Case {
    std::vector<std::string> argv;
    std::string message;
  };
  std::vector<Case> cases = {
      {{"--ro", (scratch / "dir with space").string(), "--", "/bin/true"}, "may not contain a space"},
      {{"--rw", (scratch / "missing").string(), "--", "/bin/true"}, "--rw"},
      {{"--env", "A=1\nB=2", "--", "/bin/true"}, "--env A contains a newline"},
      {{"--", "/bin/echo", "one\ntwo"}, "argument 1 contains a newline"},
      {{"--ro", "/tmp", "--", "/bin/true"}, "--ro /tmp: /tmp lies under /tmp"},
      {{"--wayland", "--", "/bin/true"}, "--wayland needs --vmm crosvm"},
      {{"--image", "base", "--", "/bin/true"}, "--image excludes --kernel"},
      {{"--ro", (scratch / "link").string(), "--", "/bin/true"}, "--ro: " + (scratch / "link").string() + ": the path goes through a symlink"},
      {{"--ro", (scratch / "share").string(), "--rw", (scratch / "share/").string(), "--", "/bin/true"}, "is given more than once"},
      {{"--", ""}, "the program's name is an empty string"},
      {{"--rw", (scratch / "not-utf8-\xff").string(), "--", "/bin/true"},
       "--rw " + (scratch / "not-utf8-\\xff").string() + ": path \"" + (scratch / "not-utf8-\\xff").string() +
           "\" is not valid UTF-8"},
  };
  std::vector<std::string> many;
  for (int i = 0; i < 15; ++i) many.insert(many.end(), {"--ro", (scratch / "share").string()});
  many.insert(many.end(), {"--", "/bin/true"});
  cases.push_back({many, "at most 14 --ro, --rw and --store directories in all"});
  for (const Case& c : cases) {
    std::vector<std::string> argv = {vmwarden_binary(), "run", "--kernel", kernel};
    argv.insert(argv.end(), c.argv.begin(), c.argv.end());
    CommandOptions run;
    run.extra_env = options().env;
    CommandResult result = run_command(argv, run);
    EXPECT_EQ(result.exit_code, 2) << c.message << ": " << result.err;
    EXPECT_THAT(result.err, HasSubstr(c.message));
  }
  CommandOptions run;
  run.extra_env = options().env;
  run.cwd = scratch.path();
  CommandResult relative = run_command({vmwarden_binary(), "run", "--kernel", "no-such-kernel", "--", "/bin/true"}, run);
  EXPECT_EQ(relative.exit_code, 2) << relative.err;
  EXPECT_THAT(relative.err, HasSubstr("--kernel no-such-kernel: not an existing regular file"));
  // Without --kernel the image's initrd.img is booted: an --initramfs alone
  // would be ignored.
  CommandResult alone = run_command({vmwarden_binary(), "run", "--initramfs", kernel, "--", "/bin/true"}, run);
  EXPECT_EQ(alone.exit_code, 2) << alone.err;
  EXPECT_THAT(alone.err, HasSubstr("--initramfs requires --kernel"));
  CommandResult image = run_command({vmwarden_binary(), "run", "--image", "../x", "--", "/bin/true"}, run);
  EXPECT_EQ(image.exit_code, 2) << image.err;
  EXPECT_THAT(image.err, HasSubstr("--image \"../x\": give the name of an image"));
  CommandOptions empty_qemu = run;
  empty_qemu.extra_env["VMWARDEN_QEMU"] = "";
  CommandResult qemu = run_command({vmwarden_binary(), "run", "--kernel", kernel, "--", "/bin/true"}, empty_qemu);
  EXPECT_EQ(qemu.exit_code, 2) << qemu.err;
  EXPECT_THAT(qemu.err, HasSubstr("VMWARDEN_QEMU is set but empty"));
  // Every run has shares, which crosvm finds by the tag only the Rust
  // virtiofsd advertises: a host with QEMU's C one cannot run it (125).
  CommandOptions c_virtiofsd = run;
  c_virtiofsd.extra_env["VMWARDEN_VIRTIOFSD"] = "/usr/lib/qemu/virtiofsd";
  CommandResult crosvm =
      run_command({vmwarden_binary(), "run", "--vmm", "crosvm", "--kernel", kernel, "--", "/bin/true"}, c_virtiofsd);
  EXPECT_EQ(crosvm.exit_code, 125) << crosvm.err;
  EXPECT_THAT(crosvm.err, HasSubstr("--vmm crosvm needs the Rust virtiofsd"));
  EXPECT_TRUE(std::filesystem::is_empty(state_root_.path()));
  EXPECT_TRUE(std::filesystem::is_empty(runtime_root_.path()));

  // Images whose files the definition would refuse, or that lack one, are
  // refused naming --image, and leave the state directory as it was.
  std::filesystem::path images = state_root_ / "images";
  for (const char* name : {"a,b", "no-initrd"}) std::filesystem::create_directories(images / name);
  write_file(images / "a,b/vmlinuz", "not booted");
  write_file(images / "a,b/initrd.img", "not booted");
  write_file(images / "no-initrd/vmlinuz", "not booted");
  struct stat before {};
  ASSERT_EQ(::stat(state_root_.path().c_str(), &before), 0);
  for (auto [name, message] : {std::pair{"a,b", "--image \"a,b\": " + (images / "a,b/vmlinuz").string() + ": "},
                               std::pair{"no-initrd", "--image \"no-initrd\": " +
                                                          (images / "no-initrd/initrd.img").string() +
                                                          ": not an existing regular file"}}) {
    CommandResult refused = run_command({vmwarden_binary(), "run", "--image", name, "--", "/bin/true"}, run);
    EXPECT_EQ(refused.exit_code, 2) << refused.err;
    EXPECT_THAT(refused.err, HasSubstr(message));
  }
  struct stat after {};
  ASSERT_EQ(::stat(state_root_.path().c_str(), &after), 0);
  EXPECT_EQ(after.st_mode, before.st_mode) << "the state directory's mode changed";
  EXPECT_FALSE(std::filesystem::exists(state_root_ / "runs"));
  EXPECT_TRUE(std::filesystem::is_empty(runtime_root_.path()));
}

// A STATE_DIR whose runs/ the run's definition would refuse (a ':' in its
// path, a space with --scratch) is refused naming the setting, before
// runs/ is created or STATE_DIR's mode is changed.
TEST_F(SandboxTest, RunRefusesStateDirTheDefinitionWouldRefuse) {
  TempDir scratch("vmwarden-run-state");
  write_file(scratch / "vmlinuz", "not booted");
  struct Case {
    std::string dir;
    std::vector<std::string> flags;
    std::string message;
  };
  for (const Case& c : {Case{"st:ate", {}, "contains ':'"},
                        Case{"st ate", {"--scratch"}, "--scratch is mounted in the guest"}}) {
    std::filesystem::path state = scratch / c.dir;
    ASSERT_EQ(::mkdir(state.c_str(), 0700), 0) << state;
    CommandOptions run;
    run.extra_env = options().env;
    run.extra_env["VMWARDEN_STATE_DIR"] = state.string();
    std::vector<std::string> argv = {vmwarden_binary(), "run", "--kernel", (scratch / "vmlinuz").string()};
    argv.insert(argv.end(), c.flags.begin(), c.flags.end());
    argv.insert(argv.end(), {"--", "/bin/true"});
    CommandResult result = run_command(argv, run);
    EXPECT_EQ(result.exit_code, 2) << result.err;
    EXPECT_THAT(result.err, HasSubstr("VMWARDEN_STATE_DIR " + state.string()));
    EXPECT_THAT(result.err, HasSubstr(c.message));
    struct stat st {};
    ASSERT_EQ(::stat(state.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, 0700u) << "the state directory's mode changed";
    EXPECT_FALSE(std::filesystem::exists(state / "runs"));
  }
  // Given by flag, the flag is named.
  CommandOptions run;
  run.extra_env = options().env;
  CommandResult flag = run_command({vmwarden_binary(), "--state-dir", (scratch / "st:ate").string(), "run",
                                    "--kernel", (scratch / "vmlinuz").string(), "--", "/bin/true"},
                                   run);
  EXPECT_EQ(flag.exit_code, 2) << flag.err;
  EXPECT_THAT(flag.err, HasSubstr("--state-dir " + (scratch / "st:ate").string()));
  EXPECT_TRUE(std::filesystem::is_empty(runtime_root_.path()));
}

// The run's definition cannot be written whole (here past a file size
// limit; a full disk is the same): the run fails naming the write and the
// file, rather than read a definition cut short back as invalid input.
TEST_F(SandboxTest, RunWhoseDefinitionCannotBeWrittenSaysSo) {
  TempDir scratch("vmwarden-run-write");
  write_file(scratch / "vmlinuz", "not booted");
  CommandOptions run;
  run.extra_env = options().env;
  // 512 bytes (ulimit -f 1): less than any run's definition, more than
  // anything written before it; SIGXFSZ ignored, so the write fails EFBIG.
  CommandResult result = run_command({"/bin/sh", "-c", "trap '' XFSZ; ulimit -f 1; exec \"$0\" \"$@\"",
                                      vmwarden_binary(), "run", "--kernel", (scratch / "vmlinuz").string(), "--",
                                      "/bin/true"},
                                     run);
  EXPECT_EQ(result.exit_code, 1) << result.err;
  EXPECT_THAT(result.err, HasSubstr("write " + (state_root_ / "runs").string() + "/run-"));
  EXPECT_THAT(result.err, HasSubstr(".toml: File too large"));
  EXPECT_THAT(result.err, ::testing::Not(HasSubstr("invalid")));
  EXPECT_TRUE(std::filesystem::is_empty(state_root_ / "runs")) << "the run's directory is left behind";
  EXPECT_TRUE(std::filesystem::is_empty(runtime_root_.path()));
}

// Only the subcommand on the command line is built; the top level's help
// still lists every one.
TEST_F(SandboxTest, TopLevelHelpListsEverySubcommand) {
  CommandResult result = run_command({vmwarden_binary(), "--help"}, {});
  EXPECT_EQ(result.exit_code, 0) << result.err;
  for (const char* name : {"check", "exec", "supervise", "uid", "acl", "demo", "s6", "run", "audit"})
    EXPECT_THAT(result.out, HasSubstr("\n  " + std::string(name) + " ")) << name;
  CommandResult exec_help = run_command({vmwarden_binary(), "exec", "--help"}, {});
  EXPECT_EQ(exec_help.exit_code, 0);
  EXPECT_THAT(exec_help.out, HasSubstr("Usage: vmwarden exec"));
}

// Output that cannot be written fails the command with its cause, however
// long it is: --help (over 4 KiB, more than stdio buffers for a pipe by
// default, so that the write fails before the final flush) and an audit
// past 64 KiB (more than vmwarden buffers). A reader that went away is
// silent. Each run's status and stderr, as "STATUS:STDERR".
TEST_F(SandboxTest, OutputThatCannotBeWrittenFailsWithItsCauseWhateverItsLength) {
  TempDir dirs("vmwarden-long-audit");
  std::vector<std::string> audit = {vmwarden_binary(), "exec", "--audit"};
  for (int i = 0; i < 30; ++i) {
    std::filesystem::path dir = dirs / fmt::format("{:0150}", i);
    std::filesystem::create_directory(dir);
    audit.push_back("--ro");
    audit.push_back(dir.string());
  }
  audit.push_back("--");
  audit.push_back("/bin/true");
  CommandOptions options;
  options.extra_env = this->options().env;
  CommandResult whole = run_command(audit, options);
  ASSERT_EQ(whole.exit_code, 0) << whole.err;
  ASSERT_GT(whole.out.size(), 64u * 1024) << "the audit no longer outgrows the buffer";
  auto written_to = [&](const char* where, std::vector<std::string> argv) {
    std::string script =
        "import os, subprocess, sys\n"
        "if sys.argv[1] == 'pipe':\n"
        "    r, w = os.pipe(); os.close(r); out = w\n"
        "else:\n"
        "    out = os.open('/dev/full', os.O_WRONLY)\n"
        "p = subprocess.run(sys.argv[2:], stdout=out, stderr=subprocess.PIPE)\n"
        "sys.stdout.write(f'{p.returncode}:{p.stderr.decode()}')\n";
    std::vector<std::string> prefix = {"/usr/bin/python3", "-c", script, where};
    argv.insert(argv.begin(), prefix.begin(), prefix.end());
    return run_command(argv, options).out;
  };
  std::string help_argv0 = vmwarden_binary();
  EXPECT_EQ(written_to("full", {help_argv0, "--help"}),
            "1:vmwarden: error: write standard output: No space left on device\n");
  EXPECT_EQ(written_to("pipe", {help_argv0, "--help"}), "1:");
  EXPECT_EQ(written_to("pipe", audit), "1:");
  EXPECT_THAT(written_to("full", audit), ::testing::StartsWith("1:vmwarden: error: write standard output: "));
}

// The warden's kill(-1) at shutdown is meant for its own PID namespace, as
// its PID 1. From any other PID it would reach every process root may
// signal: refused. Run in a PID namespace of the test's own, so that even a
// missing refusal signals nothing outside it.
TEST(KillRestOfNamespace, IsRefusedUnlessPidOne) {
  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    if (::unshare(CLONE_NEWPID) != 0) ::_exit(90);
    pid_t init = ::fork();  // PID 1 of the new namespace
    if (init < 0) ::_exit(91);
    if (init > 0) {
      int status = 0;
      if (::waitpid(init, &status, 0) != init) ::_exit(92);
      ::_exit(WIFEXITED(status) ? WEXITSTATUS(status) : 93);
    }
    pid_t victim = ::fork();
    if (victim == 0) {
      ::pause();
      ::_exit(0);
    }
    pid_t caller = ::fork();
    if (caller == 0) {
      int result = supervisor::kill_rest_of_namespace(SIGKILL);
      ::_exit(result == -1 && errno == EPERM ? 0 : 10);
    }
    int status = 0;
    if (victim < 0 || caller < 0 || ::waitpid(caller, &status, 0) != caller) ::_exit(94);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) ::_exit(10);
    if (::waitpid(victim, &status, WNOHANG) != 0) ::_exit(11);  // the victim died
    // From PID 1 it does reach the rest of the namespace.
    if (supervisor::kill_rest_of_namespace(SIGKILL) != 0) ::_exit(12);
    if (::waitpid(victim, &status, 0) != victim || !WIFSIGNALED(status)) ::_exit(13);
    ::_exit(0);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status));
  // 10: the call from PID 3 was not refused; 11: it killed PID 2.
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

}  // namespace
}  // namespace vmwarden::testing
