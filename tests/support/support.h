// Helpers shared by the unit, integration and end-to-end tests: scratch
// directories that clean up after themselves and running real binaries.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "common/unique_fd.h"

namespace vmwarden::testing {

// A fresh directory under $TMPDIR (or /tmp), removed with everything in it,
// without following symlinks, when the object goes away.
class TempDir {
 public:
  explicit TempDir(std::string_view prefix = "vmwarden-test");
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(std::string_view name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

void write_file(const std::filesystem::path& path, std::string_view content, mode_t mode = 0644);
std::string read_file(const std::filesystem::path& path);
// A /proc file of another process, "" when it cannot be read: the process may
// exit while it is read (an ifstream then throws from underflow, ESRCH).
std::string read_proc_file(const std::filesystem::path& path);
// The names in dir, sorted; none when it does not exist.
std::vector<std::string> directory_names(const std::filesystem::path& dir);

// kill(2) for tests, which run as root in the host's PID namespace: a pid
// that names more than one process of the test's own (0: its process group,
// -1: every process, below that a process group) or the host's init (1) is a
// bug of the test, which is then aborted, loudly, before anything is sent.
int kill_process(pid_t pid, int signal);

struct CommandResult {
  int exit_code = -1;     // the exit status, or -1 when killed by a signal
  int signal = 0;         // the killing signal, if any
  bool timed_out = false; // killed by run_command's own deadline
  std::string out;
  std::string err;
};

struct CommandOptions {
  std::map<std::string, std::string> extra_env;
  std::optional<std::string> stdin_text;
  std::chrono::milliseconds timeout{60'000};
  std::optional<std::filesystem::path> cwd;
};

// Runs argv (argv[0] looked up in PATH) and collects its output. The child is
// SIGKILLed at the deadline; it dies with the test (PDEATHSIG) either way.
CommandResult run_command(const std::vector<std::string>& argv, const CommandOptions& options = {});

// `argv` as one line of sh words, each single-quoted.
std::string shell_words(const std::vector<std::string>& argv);

// Runs `script` with /bin/sh under script(1): on a new pty, which is its
// stdin, stdout, stderr and controlling terminal, in a session of its own
// (script's). What is written there comes back in `out` (stderr too), with
// the pty's \r\n line ends; `stdin_text` is typed into it.
CommandResult run_on_terminal(const std::string& script, const CommandOptions& options = {});

// script(1) driven as a user at its terminal would: the session's output is
// read as it comes, and keys are typed once a marker has appeared. The
// session is SIGKILLed if the object goes first.
class TerminalDialogue {
 public:
  TerminalDialogue(const std::string& script, const std::map<std::string, std::string>& extra_env);
  ~TerminalDialogue();
  TerminalDialogue(const TerminalDialogue&) = delete;
  TerminalDialogue& operator=(const TerminalDialogue&) = delete;

  // Until `marker` is in output(); false at the timeout or the output's end.
  bool wait_for(std::string_view marker, std::chrono::milliseconds timeout = std::chrono::milliseconds(20'000));
  void type(std::string_view keys);
  // Until script has exited: its exit status, or -1.
  int finish(std::chrono::milliseconds timeout = std::chrono::milliseconds(30'000));
  const std::string& output() const { return output_; }

 private:
  bool read_some(std::chrono::milliseconds timeout);

  pid_t pid_ = -1;
  UniqueFd keys_, screen_;
  std::string output_;
};

// The ACL entries (getfacl -R -n, one per line) that name `uid`, anywhere
// under `tree` (or on `tree` alone with recursive false). Throws when
// getfacl fails or lists nothing: an empty answer must mean "no entry",
// never "getfacl did not run".
std::string acl_entries_naming(unsigned uid, const std::filesystem::path& tree, bool recursive = true);
// The same for every named user or group entry (any uid or gid), access
// and default: "nothing was granted to anyone".
std::string named_acl_entries(const std::filesystem::path& tree, bool recursive = true);

// The vmwarden binary under test ($VMWARDEN_BIN, set by meson).
std::string vmwarden_binary();

// For benchmarks: moves the calling process into a mount namespace of its
// own (propagation private) and mounts a tmpfs on `dir`, as /run is on a
// usual host. The host never sees the mount; it is undone when the object
// goes (so that a TempDir holding `dir` can then remove it), or at the
// latest with the namespace. Needs root.
class PrivateTmpfs {
 public:
  explicit PrivateTmpfs(std::filesystem::path dir);
  ~PrivateTmpfs();
  PrivateTmpfs(const PrivateTmpfs&) = delete;
  PrivateTmpfs& operator=(const PrivateTmpfs&) = delete;

 private:
  std::filesystem::path dir_;
};
// The source tree ($VMWARDEN_SOURCE_DIR, set by meson).
std::filesystem::path source_dir();

// A socket listening on the abstract unix address `name` (given without its
// leading NUL) in this process's network namespace; throws if it is taken.
UniqueFd listen_on_abstract_socket(std::string_view name);

struct ProcessInfo {
  pid_t pid = 0;
  std::vector<std::string> argv;  // from /proc/PID/cmdline
};
// The processes other than this one whose argv satisfies `matches`, as
// /proc shows them now (one that exits meanwhile is left out).
std::vector<ProcessInfo> processes_where(const std::function<bool(const std::vector<std::string>& argv)>& matches);
// `root` and every process below it now (through /proc/PID/task/*/children).
std::set<pid_t> process_tree(pid_t root);
// No such process, or a zombie waiting for whoever inherited it.
bool process_gone(pid_t pid);
// Whether some argument of `argv` contains `text`.
bool some_argument_contains(const std::vector<std::string>& argv, std::string_view text);

}  // namespace vmwarden::testing
