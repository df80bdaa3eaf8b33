// The escape suite through the real binary: each attack is the command of
// `vmwarden exec` (the attacker from tests/escape/attacker.cc), confined by
// exactly what the CLI sets up: PID 1 warden, namespaces, private /tmp,
// single-use or given uid, Landlock domain, seccomp profile. Each is shown
// denied with its errno (or killed by seccomp), and shown to succeed with
// the protection that stops it switched off by a flag (--landlock off,
// --seccomp-profile none, --network) or, where no flag can switch
// it off (capabilities, the PID namespace), when the same attacker runs on
// the host outside vmwarden.
//
// `exec` runs one command, so a "sibling service" is a process the test
// places beside it: in the sandbox's PID and network namespaces (setns into
// the warden's), running as the same uid under its own confinement
// (apply_confinement(): its own Landlock domain, the same seccomp profile),
// as the warden's own services are. A "host process" is one the test starts
// on the host; the PID namespace hides it, so it is attacked a second time
// placed in the namespace without a Landlock domain, as it would be seen if
// the namespace did not hide it.
//
// Every process signalled, traced or probed here was started by the test;
// the attacker refuses pid <= 0.
#include <arpa/inet.h>
#include <fcntl.h>
#include <grp.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/xattr.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "common/process.h"
#include "common/unique_fd.h"
#include "supervisor/confinement.h"
#include "supervisor/confinement_testing.h"
#include "supervisor/policy.h"
#include "tests/escape/escape_support.h"
#include "tests/support/support.h"

namespace vmwarden::escape {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;
using std::chrono::steady_clock;
using testing::CommandResult;
using testing::TempDir;
using testing::run_command;
using testing::vmwarden_binary;
using testing::write_file;

// The uid given with --uid where a sibling must share it: unused on the
// machine, distinct per test run.
uid_t attacker_uid() { return 3'300'000 + static_cast<uid_t>(getpid() % 100'000); }
std::string uid_text() { return std::to_string(attacker_uid()); }

int kernel_landlock_abi() {
  long abi = ::syscall(444 /* landlock_create_ruleset */, nullptr, 0, 1U /* VERSION */);
  return abi < 0 ? 0 : static_cast<int>(abi);
}

Outcome outcome_of(const CommandResult& result) {
  Outcome outcome;
  // exec reports a command killed by signal N as 128+N.
  if (result.exit_code > 128 && result.exit_code < 128 + 65) {
    outcome.signal = result.exit_code - 128;
  } else {
    outcome.exit_code = result.exit_code;
  }
  outcome.out = result.out;
  if (!outcome.out.empty() && outcome.out.back() == '\n') outcome.out.pop_back();
  outcome.err = result.err;
  return outcome;
}

std::string shell_quote(const std::string& text) {
  std::string out = "'";
  for (char c : text) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

constexpr const char* kTarget = "{target}";

// `vmwarden exec` started in the background, its stdin a pipe the test
// writes to; its output collected once it exits. Killed and reaped if the
// test ends first.
class LiveSandbox {
 public:
  LiveSandbox(const std::vector<std::string>& argv, const std::map<std::string, std::string>& env)
      : output_("vmwarden-escape-out") {
    auto [in_read, in_write] = make_pipe();
    auto [notify_read, notify_write] = make_pipe();
    stdin_ = std::move(in_write);
    notify_ = std::move(notify_read);
    std::vector<std::string> env_strings;
    for (char** e = environ; *e != nullptr; ++e) {
      std::string entry(*e);
      if (!env.contains(entry.substr(0, entry.find('=')))) env_strings.push_back(entry);
    }
    for (const auto& [key, value] : env) env_strings.push_back(key + "=" + value);
    std::vector<std::string> args = argv;
    std::vector<char*> arg_pointers, env_pointers;
    for (auto& arg : args) arg_pointers.push_back(arg.data());
    arg_pointers.push_back(nullptr);
    for (auto& entry : env_strings) env_pointers.push_back(entry.data());
    env_pointers.push_back(nullptr);
    std::string out = (output_ / "out").string(), err = (output_ / "err").string();
    pid_ = check(::fork(), "fork");
    if (pid_ == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      int out_fd = ::open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
      int err_fd = ::open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
      ::dup2(in_read.get(), 0);
      ::dup2(out_fd, 1);
      ::dup2(err_fd, 2);
      ::dup2(notify_write.get(), 3);
      ::execve(arg_pointers[0], arg_pointers.data(), env_pointers.data());
      ::_exit(127);
    }
  }
  ~LiveSandbox() {
    if (!reaped_ && pid_ > 0) {
      testing::kill_process(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  LiveSandbox(const LiveSandbox&) = delete;
  LiveSandbox& operator=(const LiveSandbox&) = delete;

  // Once the command was exec'd (--notify-fd 3).
  bool wait_ready() {
    pollfd entry{notify_.get(), POLLIN, 0};
    char c = 0;
    return ::poll(&entry, 1, 10'000) == 1 && ::read(notify_.get(), &c, 1) == 1 && c == '\n';
  }

  // The warden: the outer's one child.
  pid_t warden() const {
    std::ifstream children("/proc/" + std::to_string(pid_) + "/task/" + std::to_string(pid_) + "/children");
    pid_t pid = -1;
    children >> pid;
    return pid;
  }

  void send(const std::string& line) {
    std::string text = line + "\n";
    ASSERT_EQ(::write(stdin_.get(), text.data(), text.size()), static_cast<ssize_t>(text.size()));
    stdin_.reset();
  }

  Outcome finish() {
    CommandResult result;
    auto deadline = steady_clock::now() + milliseconds(30'000);
    int status = 0;
    while (::waitpid(pid_, &status, WNOHANG) != pid_) {
      if (steady_clock::now() > deadline) {
        testing::kill_process(pid_, SIGKILL);
        ::waitpid(pid_, &status, 0);
        break;
      }
      std::this_thread::sleep_for(milliseconds(5));
    }
    reaped_ = true;
    result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    result.out = testing::read_file(output_ / "out");
    result.err = testing::read_file(output_ / "err");
    return outcome_of(result);
  }

 private:
  TempDir output_;
  pid_t pid_ = -1;
  bool reaped_ = false;
  UniqueFd stdin_, notify_;
};

// A process placed in a running sandbox's PID and network namespaces (and,
// if asked, a UTS namespace of its own), confined by `confinement` without
// the steps in `omitted`, running the attacker with `args` until it is
// killed. An intermediate child does the setns (which only affects its
// children) and stays its parent, so that the pid the test holds is never
// reused: the neighbour dies with it (parent-death signal).
class Neighbour {
 public:
  Neighbour(pid_t warden, const supervisor::Confinement& confinement, unsigned omitted,
            std::vector<std::string> args, bool new_uts = false) {
    if (warden <= 0) throw std::logic_error("no warden to join");
    UniqueFd pid_ns(::open(("/proc/" + std::to_string(warden) + "/ns/pid").c_str(), O_RDONLY | O_CLOEXEC));
    UniqueFd net_ns(::open(("/proc/" + std::to_string(warden) + "/ns/net").c_str(), O_RDONLY | O_CLOEXEC));
    if (!pid_ns || !net_ns) throw_errno("open the warden's namespaces");
    auto [report_read, report_write] = make_pipe();
    auto [ready_read, ready_write] = make_pipe();
    ready_ = std::move(ready_read);
    intermediate_ = check(::fork(), "fork");
    if (intermediate_ == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::setns(pid_ns.get(), CLONE_NEWPID) != 0 || ::setns(net_ns.get(), CLONE_NEWNET) != 0) ::_exit(126);
      pid_t child = ::fork();
      if (child == 0) {
        ::dup2(ready_write.get(), 1);
        try {
          if (new_uts) check(::unshare(CLONE_NEWUTS), "unshare(CLONE_NEWUTS)");
          supervisor::apply_confinement_except(confinement, omitted);
        } catch (const std::exception& error) {
          std::fprintf(stderr, "neighbour: %s\n", error.what());
          ::_exit(125);
        }
        std::vector<char*> argv;
        for (auto& arg : args) argv.push_back(arg.data());
        argv.push_back(nullptr);
        ::execv(argv[0], argv.data());
        ::_exit(127);
      }
      ::write(report_write.get(), &child, sizeof child);
      int status = 0;
      ::waitpid(child, &status, 0);
      ::_exit(WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status));
    }
    report_write.reset();
    ready_write.reset();
    if (::read(report_read.get(), &host_pid_, sizeof host_pid_) != sizeof host_pid_) host_pid_ = -1;
  }
  ~Neighbour() {
    if (intermediate_ > 0) {
      testing::kill_process(intermediate_, SIGKILL);
      ::waitpid(intermediate_, nullptr, 0);
    }
  }
  Neighbour(const Neighbour&) = delete;
  Neighbour& operator=(const Neighbour&) = delete;

  // Its "ready" line; then its pid in the sandbox's PID namespace.
  std::string wait_ready() {
    std::string line;
    char c;
    pollfd entry{ready_.get(), POLLIN, 0};
    while (line.find('\n') == std::string::npos && ::poll(&entry, 1, 10'000) == 1 && ::read(ready_.get(), &c, 1) == 1)
      line += c;
    if (line != "ready\n") return "";
    std::ifstream status("/proc/" + std::to_string(host_pid_) + "/status");
    for (std::string text; std::getline(status, text);) {
      if (text.rfind("NSpid:", 0) == 0) return text.substr(text.rfind('\t') + 1);
    }
    return "";
  }

 private:
  pid_t intermediate_ = -1;
  pid_t host_pid_ = -1;
  UniqueFd ready_;
};

// A process the test starts on the host (outside any sandbox), as `uid`
// if given, running `attacker sleep` until the object goes away.
class HostProcess {
 public:
  HostProcess(const fs::path& attacker, std::optional<uid_t> uid) {
    auto [ready_read, ready_write] = make_pipe();
    pid_ = check(::fork(), "fork");
    if (pid_ == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      ::dup2(ready_write.get(), 1);
      if (uid && (::setgroups(0, nullptr) != 0 || ::setresgid(*uid, *uid, *uid) != 0 ||
                  ::setresuid(*uid, *uid, *uid) != 0))
        ::_exit(126);
      ::execl(attacker.c_str(), attacker.c_str(), "sleep", nullptr);
      ::_exit(127);
    }
    ready_write.reset();
    char line[6] = {};
    if (::read(ready_read.get(), line, sizeof line) != 6) throw std::runtime_error("the host process did not start");
  }
  ~HostProcess() {
    if (pid_ > 0) {
      testing::kill_process(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  HostProcess(const HostProcess&) = delete;
  HostProcess& operator=(const HostProcess&) = delete;
  std::string pid() const { return std::to_string(pid_); }

 private:
  pid_t pid_ = -1;
};

class ExecEscapeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "vmwarden exec needs root";
    if (kernel_landlock_abi() < 6) GTEST_SKIP() << "needs Landlock ABI >= 6, this kernel has " << kernel_landlock_abi();
  }

  std::map<std::string, std::string> env() const {
    return {{"VMWARDEN_RUNTIME_DIR", runtime_.path().string()},
            {"VMWARDEN_STATE_DIR", state_.path().string()},
            {"VMWARDEN_CONFIG_DIR", config_.path().string()}};
  }

  std::vector<std::string> exec_argv(const std::vector<std::string>& flags, const std::vector<std::string>& command,
                                     bool notify = false) const {
    std::vector<std::string> argv = {vmwarden_binary(), "exec", "--name", "escape", "--ro", tools_.dir().string()};
    if (notify) argv.insert(argv.end(), {"--notify-fd", "3"});
    argv.insert(argv.end(), flags.begin(), flags.end());
    argv.push_back("--");
    argv.insert(argv.end(), command.begin(), command.end());
    return argv;
  }

  std::vector<std::string> attacker(std::vector<std::string> args) const {
    args.insert(args.begin(), tools_.attacker().string());
    return args;
  }

  // The attacker as the command of `vmwarden exec FLAGS`.
  Outcome exec_attack(const std::vector<std::string>& flags, const std::vector<std::string>& args) const {
    testing::CommandOptions options;
    options.extra_env = env();
    options.timeout = milliseconds(30'000);
    return outcome_of(run_command(exec_argv(flags, attacker(args)), options));
  }

  // The attacker on the host, outside vmwarden: as root, or as `uid`
  // (setpriv), in a private mount namespace if asked (unshare).
  Outcome host_attack(const std::vector<std::string>& args, std::optional<uid_t> uid = std::nullopt,
                      bool private_mounts = false) const {
    std::vector<std::string> argv;
    if (private_mounts) argv = {"unshare", "--mount", "--propagation", "private"};
    if (uid) {
      std::string id = std::to_string(*uid);
      argv.insert(argv.end(), {"setpriv", "--reuid", id, "--regid", id, "--clear-groups"});
    }
    for (const std::string& arg : attacker(args)) argv.push_back(arg);
    return outcome_of(run_command(argv));
  }

  // The sandbox's PID 1 and sibling setup: starts `exec FLAGS`, whose
  // command waits for a target on stdin and then attacks it; `place` puts
  // the target beside it and returns what to attack (a pid in the sandbox's
  // namespace, a socket name), substituted for {target} in `args`.
  template <typename Place>
  Outcome attack_beside(const std::vector<std::string>& flags, const std::vector<std::string>& args, Place place) {
    std::string script = "read target && exec";
    for (const std::string& arg : attacker(args)) script += " " + (arg == kTarget ? "\"$target\"" : shell_quote(arg));
    LiveSandbox sandbox(exec_argv(flags, {"/bin/sh", "-c", script}, true), env());
    if (!sandbox.wait_ready()) {
      ADD_FAILURE() << "the sandbox did not start: " << sandbox.finish();
      return {};
    }
    std::string target = place(sandbox.warden());
    if (target.empty()) {
      ADD_FAILURE() << "the target could not be placed";
      return {};
    }
    sandbox.send(target);
    return sandbox.finish();
  }

  // A sibling service: the same uid, its own Landlock domain and seccomp
  // filter, in the sandbox's PID and network namespaces.
  supervisor::Confinement sibling_confinement() const {
    supervisor::Confinement confinement;
    confinement.uid = confinement.gid = attacker_uid();
    auto& paths = confinement.landlock.paths;
    for (auto rules : {supervisor::system_read_execute_rules(), supervisor::device_rules(),
                       supervisor::proc_self_rules()})
      paths.insert(paths.end(), rules.begin(), rules.end());
    paths.push_back({tools_.dir(), supervisor::PathRights::read_execute()});
    return confinement;
  }

  // Everything but the uid switch: a host process of the attacker's uid,
  // in no Landlock domain, without seccomp.
  static constexpr unsigned kOnlyIdentity = supervisor::step_capabilities | supervisor::step_no_new_privs |
                                            supervisor::step_landlock | supervisor::step_seccomp;

  Tools tools_;
  TempDir runtime_{"vmwarden-escape-run"}, state_{"vmwarden-escape-state"}, config_{"vmwarden-escape-config"};
};

const std::vector<std::string> kAsAttackerUid = {"--uid", uid_text()};

std::vector<std::string> with(std::vector<std::string> flags, const std::vector<std::string>& more) {
  flags.insert(flags.end(), more.begin(), more.end());
  return flags;
}

// --- signals --------------------------------------------------------------

TEST_F(ExecEscapeTest, CannotSignalTheWarden) {
  // Signal 0: the permission check without disturbing the warden.
  std::vector<std::string> args = {"signal", "1", "0"};
  expect_denied(exec_attack({}, args), "EPERM");
  // As uid 0: root of its own user namespace only, which the host sees as a
  // single-use UID; without Landlock's signal scope too (the scope alone is
  // shown on a sibling and a host process of the same uid, below).
  expect_denied(exec_attack({"--uid", "0"}, args), "EPERM");
  expect_denied(exec_attack({"--uid", "0", "--landlock", "off"}, args), "EPERM");
}

TEST_F(ExecEscapeTest, CannotSignalASibling) {
  std::optional<Neighbour> sibling;
  auto place = [&](pid_t warden) {
    sibling.emplace(warden, sibling_confinement(), 0, attacker({"sleep"}));
    return sibling->wait_ready();
  };
  expect_denied(attack_beside(kAsAttackerUid, {"signal", kTarget}, place), "EPERM");
  expect_success(attack_beside(with(kAsAttackerUid, {"--landlock", "off"}), {"signal", kTarget}, place));
}

TEST_F(ExecEscapeTest, CannotSignalAHostProcess) {
  // On the host, the PID namespace hides it: its pid names nothing inside.
  {
    HostProcess process(tools_.attacker(), attacker_uid());
    expect_denied(exec_attack(kAsAttackerUid, {"signal", process.pid(), "0"}), "ESRCH");
    expect_success(host_attack({"signal", process.pid(), "0"}, attacker_uid()));
  }

  std::optional<Neighbour> host;
  // Placed in the namespace without a Landlock domain (as the host would be
  // seen without the PID namespace), same uid: the signal scope refuses.
  auto place = [&](pid_t warden) {
    host.emplace(warden, sibling_confinement(), kOnlyIdentity, attacker({"sleep"}));
    return host->wait_ready();
  };
  expect_denied(attack_beside(kAsAttackerUid, {"signal", kTarget}, place), "EPERM");
  expect_success(attack_beside(with(kAsAttackerUid, {"--landlock", "off"}), {"signal", kTarget}, place));
}

// --- the caller's terminal ------------------------------------------------

// On a terminal (script(1) gives the caller one), the command holds a pty of
// its own, in a session of its own, never the caller's terminal. Whatever
// the command might reach instead is the test's own: script starts its shell
// in a session and process group of its own.
TEST_F(ExecEscapeTest, CannotReachTheCallersTerminalOrProcessGroup) {
  testing::CommandOptions options;
  options.extra_env = env();
  options.timeout = milliseconds(30'000);
  // Without Landlock's signal scope, testing::kill_process(0) reaches every process of the
  // command's process group that it may signal: its own, never the caller's.
  // A witness of the command's uid in the caller's process group (a
  // background job of a shell without job control) would trap it.
  TempDir scratch("vmwarden-escape-tty");
  fs::permissions(scratch.path(), fs::perms::all);
  std::string ready = (scratch / "witness-ready").string();
  std::string witness = testing::shell_words(
      {"setpriv", "--reuid", uid_text(), "--regid", uid_text(), "--clear-groups", "/bin/sh", "-c",
       "trap 'echo witness-got-TERM; exit' TERM; : >\"$0\"; while :; do sleep 1; done", ready});
  std::string command = testing::shell_words(
      exec_argv(with(kAsAttackerUid, {"--landlock", "off"}), {"/bin/sh", "-c", "kill -TERM 0; echo survived"}));
  CommandResult signalled = testing::run_on_terminal(
      witness + " & w=$!; until [ -e " + testing::shell_words({ready}) + " ]; do sleep 0.05; done; " + command +
          "; echo rc=$?; sleep 1; kill -KILL $w 2>/dev/null; wait",
      options);
  EXPECT_NE(signalled.out.find("rc=143"), std::string::npos) << signalled.out;
  EXPECT_EQ(signalled.out.find("witness-got-TERM"), std::string::npos) << signalled.out;

  // Its terminal's foreground process group (TIOCSPGRP, from a process
  // group of its own if it can make one), modes and window size: the
  // caller's terminal's (its foreground group is field 8 of the caller's
  // /proc/PID/stat) are as they were.
  // SIGTTOU ignored: a background group may then take the foreground.
  std::string takeover =
      "stty -echo -icanon -isig rows 5 cols 5; exec perl -MPOSIX -e '$SIG{TTOU} = \"IGNORE\"; setpgid(0, 0); "
      "tcsetpgrp(0, getpgrp()) or die \"tcsetpgrp: $!\\n\"; print \"own\\n\"'";
  command = testing::shell_words(exec_argv(kAsAttackerUid, {"/bin/sh", "-c", takeover}));
  CommandResult taken = testing::run_on_terminal(
      "stty rows 33 cols 77; modes=$(stty -g); echo \"fg=$(cut -d' ' -f8 /proc/$$/stat)\"; " + command +
          "; echo \"rc=$? fg=$(cut -d' ' -f8 /proc/$$/stat) size=$(stty size)\"; "
          "[ \"$modes\" = \"$(stty -g)\" ] && echo 'modes kept'",
      options);
  std::string out = taken.out;
  std::size_t before = out.find("fg="), after = out.find("rc=");
  ASSERT_NE(before, std::string::npos) << out;
  ASSERT_NE(after, std::string::npos) << out;
  std::string foreground = out.substr(before, out.find('\r', before) - before);
  EXPECT_NE(out.find("own\r\n"), std::string::npos) << "its own pty's foreground group is its own\n" << out;
  EXPECT_NE(out.substr(after).find("rc=0 " + foreground + " size=33 77\r\n"), std::string::npos) << out;
  EXPECT_NE(out.find("modes kept"), std::string::npos) << out;
}

// --- abstract unix sockets ------------------------------------------------

TEST_F(ExecEscapeTest, CannotConnectToAnAbstractSocketBoundOutside) {
  std::string name = "vmwarden-exec-escape-host-" + std::to_string(getpid());
  UniqueFd listener = testing::listen_on_abstract_socket(name);
  std::vector<std::string> args = {"connect-abstract", name};
  // Abstract names belong to a network namespace: the sandbox's own empty
  // one does not have it at all.
  expect_denied(exec_attack({}, args), "ECONNREFUSED");
  // In the host's network namespace the Landlock scope refuses.
  expect_denied(exec_attack({"--network"}, args), "EPERM");
  expect_success(exec_attack({"--network", "--landlock", "off"}, args));
}

TEST_F(ExecEscapeTest, CannotConnectToAnAbstractSocketBoundByASibling) {
  std::string name = "vmwarden-exec-escape-sibling-" + std::to_string(getpid());
  std::optional<Neighbour> sibling;
  auto place = [&](pid_t warden) {
    sibling.emplace(warden, sibling_confinement(), 0, attacker({"bind-abstract", name}));
    return sibling->wait_ready().empty() ? std::string() : name;
  };
  expect_denied(attack_beside(kAsAttackerUid, {"connect-abstract", kTarget}, place), "EPERM");
  expect_success(attack_beside(with(kAsAttackerUid, {"--landlock", "off"}), {"connect-abstract", kTarget}, place));
}

// --- ptrace ---------------------------------------------------------------

TEST_F(ExecEscapeTest, CannotPtraceASibling) {
  std::optional<Neighbour> sibling;
  auto place = [&](pid_t warden) {
    sibling.emplace(warden, sibling_confinement(), 0, attacker({"sleep"}));
    return sibling->wait_ready();
  };
  std::vector<std::string> args = {"ptrace", kTarget};
  expect_killed_by_seccomp(attack_beside(kAsAttackerUid, args, place));
  // Without seccomp, Landlock: the sibling is not in a domain nested in the attacker's.
  expect_denied(attack_beside(with(kAsAttackerUid, {"--seccomp-profile", "none"}), args, place), "EPERM");
  // Same uid, no capabilities on either side: only those two stood in the way.
  expect_success(
      attack_beside(with(kAsAttackerUid, {"--seccomp-profile", "none", "--landlock", "off"}), args, place));
}

// --- the filesystem -------------------------------------------------------

TEST_F(ExecEscapeTest, CannotReadEtcShadow) {
  std::vector<std::string> args = {"read", "/etc/shadow"};
  expect_denied(exec_attack({}, args), "EACCES");
  // As uid 0: root of its own user namespace, not the owner (the host's
  // root) whose file it is; without Landlock too.
  expect_denied(exec_attack({"--uid", "0"}, args), "EACCES");
  expect_denied(exec_attack({"--uid", "0", "--landlock", "off"}, args), "EACCES");
  expect_success(host_attack(args));
}

// Landlock (up to ABI 7) has no rule for connect() on a pathname unix
// socket, and a read-only mount does not stop one: only the file's
// permissions do. A root-only socket of the host (a container runtime's,
// systemd's private one, the system bus's) would take a root peer for
// root. --uid 0 is root of the command's own user namespace: the host sees
// a single-use UID, which the socket's directory (0750 root:root) keeps out.
// The host's group 0 would pass (the socket is 0660, as containerd's is): no
// command runs with it.
TEST_F(ExecEscapeTest, AUidZeroCommandCannotConnectToAHostRootOnlySocket) {
  TempDir dir("vmwarden-exec-escape-sock");
  ASSERT_EQ(::chmod(dir.path().c_str(), 0750), 0);
  fs::path path = dir / "root-only.sock";
  UniqueFd listener(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  ASSERT_TRUE(listener);
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  ASSERT_LT(path.string().size(), sizeof address.sun_path);
  std::strcpy(address.sun_path, path.c_str());
  ASSERT_EQ(::bind(listener.get(), reinterpret_cast<sockaddr*>(&address), sizeof address), 0) << path;
  ASSERT_EQ(::chmod(path.c_str(), 0660), 0);
  ASSERT_EQ(::listen(listener.get(), 8), 0);
  std::vector<std::string> args = {"connect-path", path.string()};

  for (const std::vector<std::string>& flags : std::vector<std::vector<std::string>>{
           {"--uid", "0"}, {"--uid", "0", "--landlock", "off"}, {"--uid", "0", "--landlock", "off", "--network"}}) {
    SCOPED_TRACE(flags.back());
    expect_denied(exec_attack(flags, args), "EACCES");
  }
  for (const char* group : {"0", "root"}) {
    Outcome refused = exec_attack(with(kAsAttackerUid, {"--gid", group}), args);
    EXPECT_EQ(refused.exit_code, 2) << refused;
    EXPECT_NE(refused.err.find("a command never runs with the host's group 0"), std::string::npos) << refused;
  }
  EXPECT_LT(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC), 0) << "a sandboxed command got through";
  // The control: the host's root connects.
  expect_success(host_attack(args));
  UniqueFd accepted(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
  EXPECT_TRUE(accepted) << "the host's root did not reach the listener: the test would prove nothing";
}

TEST_F(ExecEscapeTest, CannotWriteOrTruncateAReadOnlyPath) {
  TempDir data("vmwarden-exec-escape-data");
  ASSERT_EQ(::chmod(data.path().c_str(), 0777), 0);
  write_file(data / "existing", "keep me\n", 0666);  // writable by every uid, as far as the mode goes
  std::string dir = data.path().string(), existing = data / "existing", created = data / "created";
  for (const std::vector<std::string>& args :
       std::vector<std::vector<std::string>>{{"write", created}, {"write", existing}, {"truncate", existing}}) {
    SCOPED_TRACE(args[0] + " " + args[1]);
    // --ro is a Landlock rule without write and a read-only bind mount; the
    // mount answers first (the mode allows the write), and holds without
    // Landlock too. (A single-use UID's r-X grant would answer before it.)
    expect_denied(exec_attack(with(kAsAttackerUid, {"--ro", dir}), args), "EROFS");
    expect_denied(exec_attack(with(kAsAttackerUid, {"--ro", dir, "--landlock", "off"}), args), "EROFS");
    // Not named at all: every mount but the write rules' is read-only in
    // the command's namespace, for --uid 0 too (Landlock refuses as well,
    // which escape_test shows on its own).
    expect_denied(exec_attack(kAsAttackerUid, args), "EROFS");
    expect_denied(exec_attack({"--uid", "0"}, args), "EROFS");
  }
  EXPECT_FALSE(fs::exists(created));
  EXPECT_EQ(testing::read_file(existing), "keep me\n");
  expect_success(exec_attack({"--ro", dir}, {"read", existing}));
  expect_success(exec_attack(with(kAsAttackerUid, {"--landlock", "off"}), {"write", created}));
  // Given --rw, the same writes work.
  expect_success(exec_attack({"--rw", dir}, {"write", existing}));
  expect_success(exec_attack({"--rw", dir}, {"truncate", existing}));
  EXPECT_EQ(fs::file_size(existing), 0u);
}

// Landlock (up to ABI 7) does not cover chmod, chown, extended attributes
// (POSIX ACLs among them) or file times. Every mount but the write rules' is
// read-only in a service's namespace, so none of them reaches a file outside
// the write rules: not the command's own file (its uid owns it) outside
// every rule or under a read-only rule, nor a root-owned one for --uid 0.
// Under a write rule they work as the uid's permissions say. The control:
// with Landlock off (which also leaves the mounts writable), the owner
// changes its outside file; --uid 0 still cannot change root's (root of its
// own user namespace owns nothing on the host).
TEST_F(ExecEscapeTest, CannotChangeTheMetadataOfAFileOutsideItsWriteRules) {
  TempDir data("vmwarden-exec-escape-meta");
  ASSERT_EQ(::chmod(data.path().c_str(), 0755), 0);  // the attacker's uid may enter
  write_file(data / "roots", "root's\n", 0600);
  write_file(data / "attackers", "the attacker's\n", 0600);
  std::string roots = data / "roots", attackers = data / "attackers";
  ASSERT_EQ(::chown(attackers.c_str(), attacker_uid(), attacker_uid()), 0);
  const std::vector<std::string> changes[] = {{"chmod"}, {"chown"}, {"xattr"}, {"acl"}, {"utimes"}};
  auto metadata = [&](const std::string& path) {
    struct stat st {};
    EXPECT_EQ(::stat(path.c_str(), &st), 0);
    char value[64];
    return std::to_string(st.st_mode) + " " + std::to_string(st.st_uid) + " " + std::to_string(st.st_mtim.tv_sec) +
           " " + std::to_string(::getxattr(path.c_str(), "user.attacker", value, sizeof value)) + " " +
           std::to_string(::getxattr(path.c_str(), "system.posix_acl_access", value, sizeof value));
  };
  std::string roots_before = metadata(roots), attackers_before = metadata(attackers);
  for (std::vector<std::string> change : changes) {
    SCOPED_TRACE(change[0]);
    std::vector<std::string> on_roots = with(change, {roots}), on_attackers = with(change, {attackers});
    expect_denied(exec_attack({"--uid", "0"}, on_roots), "EROFS");
    expect_denied(exec_attack({"--uid", "0", "--ro", data.path().string()}, on_roots), "EROFS");
    expect_denied(exec_attack(kAsAttackerUid, on_attackers), "EROFS");
    expect_denied(exec_attack(with(kAsAttackerUid, {"--ro", data.path().string()}), on_attackers), "EROFS");
  }
  EXPECT_EQ(metadata(roots), roots_before);
  EXPECT_EQ(metadata(attackers), attackers_before);

  // Under a write rule: the uid's own file, as its permissions allow.
  TempDir shared("vmwarden-exec-escape-meta-rw");
  ASSERT_EQ(::chmod(shared.path().c_str(), 0777), 0);
  std::string own = shared / "own";
  write_file(shared / "own", "the command's\n", 0644);
  ASSERT_EQ(::chown(own.c_str(), attacker_uid(), attacker_uid()), 0);
  for (const char* change : {"chmod", "xattr", "utimes"}) {
    SCOPED_TRACE(change);
    expect_success(exec_attack(with(kAsAttackerUid, {"--rw", shared.path().string()}), {change, own}));
  }
  // The same tree named twice, once with a trailing '/': still writable
  // (each once took the other for the rule above it, and neither was kept).
  expect_success(exec_attack(with(kAsAttackerUid, {"--rw", shared.path().string(), "--rw", shared.path().string() + "/"}),
                             {"xattr", own}));

  // --uid 0 is not root's owner on the host, mounts writable or not.
  expect_denied(exec_attack({"--uid", "0", "--landlock", "off"}, {"chmod", roots}), "EPERM");
  EXPECT_EQ(metadata(roots), roots_before);
  expect_success(exec_attack(with(kAsAttackerUid, {"--landlock", "off"}), {"chmod", attackers}));
  struct stat st {};
  ASSERT_EQ(::stat(attackers.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 04777u) << "the control changed nothing: the test would prove nothing";
  // A write rule on / leaves no mount read-only (the copy of / put back
  // would lie above the root, and everything would be read-only).
  expect_success(exec_attack(with(kAsAttackerUid, {"--rw", "/"}), {"xattr", attackers}));
}

// The kernel lets the host's uid 0 write root-owned sysctls, sysfs settings
// and the SysRq trigger without any capability. --uid 0 is root of the
// command's own user namespace, which the kernel refuses them (EACCES),
// with or without Landlock. The sandbox's own hostname (its UTS namespace)
// stands in for every sysctl: a write that got through would change
// nothing on the host.
TEST_F(ExecEscapeTest, AUidZeroCommandCannotWriteKernelSettingsThroughProc) {
  expect_denied(exec_attack({"--uid", "0"}, {"write", "/proc/sys/kernel/hostname"}), "EACCES");
  expect_denied(exec_attack({"--uid", "0", "--landlock", "off"}, {"write", "/proc/sys/kernel/hostname"}), "EACCES");
  expect_denied(exec_attack({"--uid", "0", "--landlock", "off", "--network"}, {"write", "/proc/sys/kernel/hostname"}),
                "EACCES");
  // The others are only opened for writing: a write that got through would
  // act on the host.
  for (const char* path : {"/proc/sysrq-trigger", "/proc/sys/vm/drop_caches", "/proc/irq/default_smp_affinity"}) {
    SCOPED_TRACE(path);
    if (!std::filesystem::exists(path)) continue;  // a kernel built without it (this one has no SysRq)
    expect_denied(exec_attack({"--uid", "0", "--landlock", "off"}, {"open-write", path}), "EACCES");
  }
  // sysfs alike: a bogus value, which the kernel's parser refuses (EINVAL)
  // should the write get through.
  expect_denied(exec_attack({"--uid", "0", "--landlock", "off"}, {"write", "/sys/kernel/mm/transparent_hugepage/enabled"}),
                "EACCES");
  // Reading them still works.
  expect_success(exec_attack({"--uid", "0", "--landlock", "off"}, {"read", "/proc/sys/kernel/hostname"}));
  expect_success(exec_attack({"--uid", "0", "--landlock", "off"}, {"read", "/sys/kernel/mm/transparent_hugepage/enabled"}));
}

// A program written to a memfd and executed through its descriptor would run
// what no Landlock execute rule names: the sandbox's PID namespace has
// vm.memfd_noexec = 2, so a memfd is made without execute permission (and
// sealed so) and MFD_EXEC is refused. On the host (0) both work.
TEST_F(ExecEscapeTest, CannotExecuteAProgramWrittenToAMemfd) {
  expect_denied(exec_attack({}, {"memfd-exec"}), "EACCES");
  expect_denied(exec_attack({"--uid", "0", "--landlock", "off", "--seccomp-profile", "none"}, {"memfd-exec"}),
                "EACCES");
  expect_denied(exec_attack({}, {"memfd-exec", "exec"}), "EACCES");
  expect_success(host_attack({"memfd-exec"}, attacker_uid()));
  expect_success(host_attack({"memfd-exec", "exec"}, attacker_uid()));
}

// Landlock's execute rules stop execve() of what the command writes, not the
// dynamic loader mapping it: /tmp and /dev/shm are mounted noexec, where the
// kernel refuses executable mappings too. (Elsewhere the command can write
// only under --rw, or the runtime dir; see SECURITY.md.) On the host, from a
// directory of the test's, the loader runs it.
TEST_F(ExecEscapeTest, CannotRunAProgramItWroteToScratchSpaceThroughTheLoader) {
  for (const char* dir : {"/tmp", "/dev/shm"}) {
    SCOPED_TRACE(dir);
    expect_denied(exec_attack({}, {"loader-exec", dir}), "EACCES");
    expect_denied(exec_attack({"--uid", "0"}, {"loader-exec", dir}), "EACCES");
  }
  TempDir own("vmwarden-exec-escape-loader");
  expect_success(host_attack({"loader-exec", own.path().string()}));
}

// A --rw tree is not mounted noexec: only Landlock keeps the command from
// running a program it writes there, or making a character device there
// (an overlayfs whiteout, 0:0, needs no capability).
TEST_F(ExecEscapeTest, CannotRunAProgramOrMakeADeviceUnderRw) {
  TempDir data("vmwarden-exec-escape-rw");
  ASSERT_EQ(::chmod(data.path().c_str(), 0777), 0);
  std::string dir = data.path().string(), whiteout = data / "whiteout";
  for (const std::vector<std::string>& flags :
       std::vector<std::vector<std::string>>{with(kAsAttackerUid, {"--rw", dir}), {"--uid", "0", "--rw", dir}}) {
    SCOPED_TRACE(flags[1]);
    expect_denied(exec_attack(flags, {"exec-copy", dir}), "EACCES");
    expect_denied(exec_attack(flags, {"mknod-char", whiteout, "0", "0"}), "EACCES");
    EXPECT_FALSE(fs::exists(fs::symlink_status(whiteout)));
    fs::remove(data / "prog");  // the next uid may not write over this one's
  }
  expect_success(exec_attack(with(kAsAttackerUid, {"--rw", dir, "--landlock", "off"}), {"exec-copy", dir}));
  expect_success(exec_attack(with(kAsAttackerUid, {"--rw", dir, "--landlock", "off"}), {"mknod-char", whiteout, "0", "0"}));
}

// --- the kernel's privileged interfaces -----------------------------------

TEST_F(ExecEscapeTest, CannotCallBpf) {
  expect_killed_by_seccomp(exec_attack({}, {"bpf"}));
  expect_killed_by_seccomp(exec_attack({"--uid", "0", "--landlock", "off"}, {"bpf"}));
  // The kernel's own answer without the filter (unprivileged_bpf_disabled,
  // no CAP_BPF); root on the host gets a map.
  if (testing::read_file("/proc/sys/kernel/unprivileged_bpf_disabled") != "0\n")
    expect_denied(exec_attack({"--uid", "0", "--seccomp-profile", "none"}, {"bpf"}), "EPERM");
  expect_success(host_attack({"bpf"}));
}

TEST_F(ExecEscapeTest, CannotMount) {
  TempDir target("vmwarden-exec-escape-mnt");
  std::vector<std::string> args = {"mount", target.path().string()};
  expect_killed_by_seccomp(exec_attack({}, args));
  expect_denied(exec_attack({"--seccomp-profile", "none"}, args), "EPERM");  // no CAP_SYS_ADMIN
  // exec never leaves a capability, whatever the flags.
  expect_denied(exec_attack({"--uid", "0", "--seccomp-profile", "none", "--landlock", "off"}, args), "EPERM");
  // Root on the host, in a throwaway mount namespace, may.
  expect_success(host_attack(args, std::nullopt, true));
}

TEST_F(ExecEscapeTest, CannotCreateAUserNamespace) {
  for (const char* attack : {"unshare-user", "clone-newuser"}) {
    SCOPED_TRACE(attack);
    // Any uid may create one: only seccomp refuses.
    expect_killed_by_seccomp(exec_attack({}, {attack}));
    expect_success(exec_attack({"--seccomp-profile", "none"}, {attack}));
  }
}

TEST_F(ExecEscapeTest, CannotJoinANamespace) {
  // Its own namespace, which it may open: setns itself is refused.
  std::vector<std::string> own = {"setns", "/proc/self/ns/uts"};
  expect_killed_by_seccomp(exec_attack({}, own));
  expect_denied(exec_attack({"--seccomp-profile", "none"}, own), "EPERM");  // no CAP_SYS_ADMIN
  expect_success(host_attack(own));

  // A sibling's: the attacker's Landlock domain gives it no ptrace access,
  // so the sandbox's /proc (hidepid=invisible) does not even show it.
  std::optional<Neighbour> sibling;
  auto place = [&](pid_t warden) {
    sibling.emplace(warden, sibling_confinement(), 0, attacker({"sleep"}), /*new_uts=*/true);
    return sibling->wait_ready();
  };
  // The shell substitutes whole arguments only: build the path there.
  auto foreign_attack = [&](const std::vector<std::string>& flags) {
    std::string script = "read target && exec " + shell_quote(tools_.attacker()) + " setns \"/proc/$target/ns/uts\"";
    LiveSandbox sandbox(exec_argv(flags, {"/bin/sh", "-c", script}, true), env());
    if (!sandbox.wait_ready()) return Outcome{};
    sandbox.send(place(sandbox.warden()));
    return sandbox.finish();
  };
  expect_denied(foreign_attack(kAsAttackerUid), "ENOENT");
  expect_killed_by_seccomp(foreign_attack(with(kAsAttackerUid, {"--landlock", "off"})));
  expect_denied(foreign_attack(with(kAsAttackerUid, {"--landlock", "off", "--seccomp-profile", "none"})), "EPERM");
}

TEST_F(ExecEscapeTest, CannotLoadAKernelModule) {
  expect_killed_by_seccomp(exec_attack({}, {"load-module"}));
  // Without seccomp the call reaches the kernel: CAP_SYS_MODULE is missing
  // (EPERM), or the kernel has no module support at all (ENOSYS: then
  // nothing can load a module, root on the host included).
  bool modules = fs::exists("/proc/modules");
  expect_denied(exec_attack({"--seccomp-profile", "none"}, {"load-module"}), modules ? "EPERM" : "ENOSYS");
  Outcome host = host_attack({"load-module"});
  if (modules) expect_success(host);
  else expect_denied(host, "ENOSYS");
}

TEST_F(ExecEscapeTest, ASetuidRootBinaryGrantsNothing) {
  struct statvfs st {};
  ASSERT_EQ(::statvfs(tools_.dir().c_str(), &st), 0);
  if (st.f_flag & ST_NOSUID) GTEST_SKIP() << tools_.dir() << " is on a nosuid mount";
  ASSERT_EQ(::chown(tools_.probe().c_str(), 0, 0), 0);
  ASSERT_EQ(::chmod(tools_.probe().c_str(), 04755), 0);
  testing::CommandOptions options;
  options.extra_env = env();
  Outcome confined = outcome_of(run_command(exec_argv(kAsAttackerUid, {tools_.probe()}), options));
  EXPECT_EQ(confined.out, "euid=" + uid_text() + " cap_eff=0 cap_prm=0") << confined;
  Outcome root = outcome_of(run_command(exec_argv({"--uid", "0"}, {tools_.probe()}), options));
  EXPECT_EQ(root.out, "euid=0 cap_eff=0 cap_prm=0") << root;
  // no_new_privs holds without Landlock and seccomp, which need it, too.
  Outcome bare = outcome_of(run_command(
      exec_argv(with(kAsAttackerUid, {"--landlock", "off", "--seccomp-profile", "none"}), {tools_.probe()}), options));
  EXPECT_EQ(bare.out, "euid=" + uid_text() + " cap_eff=0 cap_prm=0") << bare;
  // The same uid on the host: the set-user-ID bit gives it root and every capability.
  std::string id = uid_text();
  Outcome host = outcome_of(
      run_command({"setpriv", "--reuid", id, "--regid", id, "--clear-groups", tools_.probe().string()}));
  EXPECT_EQ(host.out.rfind("euid=0 cap_eff=", 0), 0u) << host;
  EXPECT_EQ(host.out.find("cap_eff=0 "), std::string::npos) << host;
}

// --- /proc and the network ------------------------------------------------

TEST_F(ExecEscapeTest, CannotReachAHostProcessThroughProc) {
  {
    HostProcess process(tools_.attacker(), std::nullopt);
    // The sandbox's /proc is its PID namespace's: the host pid is not there.
    expect_denied(exec_attack({}, {"proc-read", process.pid(), "status"}), "ENOENT");
    expect_denied(exec_attack({"--uid", "0", "--landlock", "off", "--seccomp-profile", "none"},
                              {"proc-read", process.pid(), "status"}),
                  "ENOENT");
    expect_success(host_attack({"proc-read", process.pid(), "status"}, attacker_uid()));
  }
  // Nor is the warden, PID 1 there (root; its mountinfo would show the
  // host's mount table): hidepid=invisible, and no ptrace access to it.
  expect_denied(exec_attack({}, {"proc-read", "1", "mountinfo"}), "ENOENT");
  expect_success(exec_attack({}, {"proc-read", "self", "mountinfo"}));

  // A host process of the same uid placed in the namespace: Landlock gives
  // the attacker no ptrace access to it, so the sandbox's /proc
  // (hidepid=invisible) does not show it at all.
  std::optional<Neighbour> host;
  auto place = [&](pid_t warden) {
    host.emplace(warden, sibling_confinement(), kOnlyIdentity, attacker({"sleep"}));
    return host->wait_ready();
  };
  expect_denied(attack_beside(kAsAttackerUid, {"proc-read", kTarget, "environ"}, place), "ENOENT");
  expect_denied(attack_beside(kAsAttackerUid, {"proc-read", kTarget, "status"}, place), "ENOENT");
  expect_success(
      attack_beside(with(kAsAttackerUid, {"--landlock", "off"}), {"proc-read", kTarget, "environ"}, place));
}

TEST_F(ExecEscapeTest, CannotConnectOverTcpWithoutNetwork) {
  UniqueFd listener(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(listener.get(), reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
  ASSERT_EQ(::listen(listener.get(), 8), 0);
  socklen_t length = sizeof address;
  ASSERT_EQ(::getsockname(listener.get(), reinterpret_cast<sockaddr*>(&address), &length), 0);
  std::vector<std::string> args = {"tcp-connect", "127.0.0.1", std::to_string(ntohs(address.sin_port))};
  // Landlock refuses before the (empty) network namespace is even consulted.
  expect_denied(exec_attack({}, args), "EACCES");
  // Without Landlock, the namespace: its loopback is down and not the host's.
  expect_denied(exec_attack({"--landlock", "off"}, args), "ENETUNREACH");
  expect_success(exec_attack({"--network"}, args));
}

}  // namespace
}  // namespace vmwarden::escape
