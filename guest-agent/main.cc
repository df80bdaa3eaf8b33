// vmwarden-guest: runs the program of `vmwarden run` inside the VM. Started
// as root by the image's init (tools/guest-init: vmwarden.run=/bin/vmwarden-guest
// with the config share mounted at /run/vmwarden/config), it
//   1. reads the launch manifest (vm-launcher/guest_manifest.h);
//   2. mounts each share at the path it has on the host, read-only ones
//      remounted read-only;
//   3. writes /etc/passwd and /etc/group for the VM's UID;
//   4. builds PATH (the store paths' bin/ first) and the environment;
//   5. runs the program as the VM's UID and gid, without supplementary
//      groups, in HOME (looked up on PATH as that UID: a directory or a file
//      it may not execute is skipped);
//   6. copies the program's standard output and error, a pipe, into the
//      report share as they come (report/output, relayed by `vmwarden run`),
//      and writes the program's exit status there, as the VM's
//      UID (the only uid virtiofsd maps), and prints it on the console; the
//      report share is mounted in a mount namespace of the agent's own, and
//      the program runs in the guest's first one, where it is not mounted:
//      neither the program nor anything it leaves running can reach it, so
//      the status reported is the one the agent saw;
//   7. exits with that status; the init then powers the VM off.
// The stop: the init sends SIGTERM to the agent's process group, the
// program included (it is no group leader, so that a program may call
// setsid()). The agent passes it on only to a program that has left the
// group (setsid), and SIGKILLs the program the manifest's `grace` seconds
// later if it is still there, so that it outlives the program and reports
// its status however it ends. The init's own SIGKILL of the group comes a
// second after that, for whatever the program left. A stop before the
// program starts means it is not started (status 143): the init starts
// the agent with TERM and INT ignored and marks a press in
// /run/vmwarden-stop (vmwarden.stopfile=1), so that one before the
// handlers are in place is seen too.
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <sched.h>
#include <signal.h>
#include <sys/fsuid.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <new>
#include <sstream>
#include <string>
#include <vector>

#include "common/write_all.h"
#include "vm-launcher/guest_manifest.h"

namespace {

using vmwarden::guest::Manifest;

constexpr const char* kConfigDir = "/run/vmwarden/config";
constexpr const char* kReportDir = "/run/vmwarden/report";
constexpr const char* kStopMark = "/run/vmwarden-stop";  // tools/guest-init's

void say(const std::string& line) {
  std::string text = "vmwarden-guest: " + line + "\n";
  ssize_t ignored = ::write(2, text.data(), text.size());
  (void)ignored;
}

[[noreturn]] void fail(const std::string& what) {
  say("error: " + what);
  std::exit(125);
}

std::string errno_text() { return std::strerror(errno); }

void make_dirs(const std::string& path) {
  for (size_t slash = 1; slash != std::string::npos;) {
    slash = path.find('/', slash + 1);
    std::string prefix = path.substr(0, slash);
    if (::mkdir(prefix.c_str(), 0755) != 0 && errno != EEXIST) fail("mkdir " + prefix + ": " + errno_text());
  }
}

void mount_share(const std::string& tag, const std::string& path, bool readonly) {
  make_dirs(path);
  if (::mount(tag.c_str(), path.c_str(), "virtiofs", MS_NOSUID | MS_NODEV, nullptr) != 0)
    fail("mount virtiofs " + tag + " on " + path + ": " + errno_text());
  if (readonly) {
    // Read-only for the guest's kernel as well as for the host's bind mount.
    if (::mount(nullptr, path.c_str(), nullptr, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, nullptr) != 0)
      fail("read-only remount of " + path + ": " + errno_text());
  }
}

// Makes way for the agent's own file: whatever is at `path` (of whatever
// type) is removed. Only the agent can reach the share in the guest; this
// is for what may be there all the same.
void remove_any(const std::string& path) {
  if (::unlink(path.c_str()) != 0 && (errno == EISDIR || errno == EPERM)) ::rmdir(path.c_str());
}

void write_text(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::trunc);
  out << text;
  out.close();
  if (!out) fail("cannot write " + path);
}

// In the child, as the VM's UID: execs the program, a name being looked up
// on `path_list` as execvp does (a candidate that is missing, not a
// regular file or not executable by this UID is skipped). Returns only on
// failure, with the exit status to report (127 not found, 126 not runnable).
int exec_program(const std::string& program, const std::string& path_list, char* const argv[], char* const envp[]) {
  if (program.find('/') != std::string::npos) {
    ::execve(program.c_str(), argv, envp);
    say("error: exec " + program + ": " + errno_text());
    return errno == ENOENT ? 127 : 126;
  }
  bool denied = false;
  std::stringstream dirs(path_list);
  for (std::string dir; std::getline(dirs, dir, ':');) {
    std::string candidate = (dir.empty() ? "." : dir) + "/" + program;
    ::execve(candidate.c_str(), argv, envp);
    if (errno == EACCES) {
      denied = true;  // a directory, or not executable by this UID: go on, as execvp does
    } else if (errno != ENOENT && errno != ENOTDIR) {
      say("error: exec " + candidate + ": " + errno_text());
      return 126;
    }
  }
  say("error: " + program + ": " + (denied ? "not executable by this UID" : "not found") + " on PATH " + path_list);
  return denied ? 126 : 127;
}

volatile sig_atomic_t g_child = 0;     // the program, until it is reaped
volatile sig_atomic_t g_stopped = 0;   // a stop has come
volatile sig_atomic_t g_handled = 0;   // ... and was acted on for the program
unsigned g_grace_s = 0;

void on_stop(int) {
  g_stopped = 1;
  if (g_child <= 0 || g_handled) return;
  g_handled = 1;
  // The group signal reached the program unless it left the group.
  pid_t group = ::getpgid(g_child);
  if (group > 0 && group != ::getpgrp()) ::kill(-group, SIGTERM);
  if (g_grace_s > 0) ::alarm(g_grace_s);
}

void kill_program(int) {
  if (g_child > 0) ::kill(g_child, SIGKILL);
}

void report(const Manifest& m, int status) {
  say("exit-status=" + std::to_string(status));
  if (m.report_tag.empty()) return;
  // virtiofsd maps the VM's UID only: create the file as that uid.
  ::setfsgid(m.gid);
  ::setfsuid(m.uid);
  std::string temporary = std::string(kReportDir) + "/.exit-status";
  std::string final_path = std::string(kReportDir) + "/" + std::string(vmwarden::guest::kExitStatusFile);
  remove_any(temporary);
  remove_any(final_path);
  int fd = ::open(temporary.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
  std::string text = std::to_string(status) + "\n";
  bool ok = fd >= 0 && ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) &&
            ::fsync(fd) == 0 && ::close(fd) == 0 && ::rename(temporary.c_str(), final_path.c_str()) == 0;
  if (!ok) say("warning: cannot write " + final_path + ": " + errno_text());
  ::setfsuid(0);
  ::setfsgid(0);
}

// Forks the process that copies the program's standard output and error
// (the pipe `from`) into report/output as it comes, for `vmwarden run` to
// relay: in the agent's mount namespace, where the report share is, the
// file created as the VM's UID (the only uid virtiofsd maps), at most
// kOutputLimit bytes. It reads the pipe to its end even when it cannot
// write, so that the program never blocks on a full pipe, and ignores the
// stop signals the init sends the group: it ends when the program and
// whatever it left running have closed the pipe, or when the agent kills
// it. Returns its pid.
//
// How many bytes it has read so far, in memory the agent shares with it:
// the agent waits while that keeps growing (see finish_output_copier).
std::atomic<std::uint64_t>* g_copied = nullptr;

pid_t start_output_copier(const Manifest& m, int from, int writer_end) {
  void* shared = ::mmap(nullptr, sizeof *g_copied, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (shared == MAP_FAILED) fail("mmap: " + errno_text());
  g_copied = new (shared) std::atomic<std::uint64_t>(0);
  pid_t pid = ::fork();
  if (pid != 0) return pid;
  ::close(writer_end);
  for (int sig : {SIGTERM, SIGINT, SIGALRM, SIGQUIT}) ::signal(sig, SIG_IGN);
  ::setfsgid(m.gid);
  ::setfsuid(m.uid);
  std::string path = std::string(kReportDir) + "/" + std::string(vmwarden::guest::kOutputFile);
  remove_any(path);
  int out = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
  if (out < 0) say("warning: cannot write " + path + ": " + errno_text() + "; the program's output is dropped");
  std::size_t written = 0, dropped = 0;
  char buffer[65536];
  for (;;) {
    ssize_t n = ::read(from, buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    std::size_t size = static_cast<std::size_t>(n);
    g_copied->fetch_add(size, std::memory_order_relaxed);
    std::size_t kept = out >= 0 ? std::min(size, vmwarden::guest::kOutputLimit - written) : 0;
    if (kept > 0 && !vmwarden::write_all(out, std::string_view(buffer, kept))) {
      say("warning: cannot write " + path + ": " + errno_text() + "; the rest of the program's output is dropped");
      ::close(out);
      out = -1;
      kept = 0;
    }
    written += kept;
    dropped += size - kept;
  }
  if (dropped > 0) say("warning: " + std::to_string(dropped) + " bytes of the program's output dropped");
  ::_exit(out >= 0 && ::close(out) == 0 ? 0 : 1);
}

// Waits for the output copier to reach the end of the pipe, as long as it
// keeps reading (a slow guest may still be copying what the program wrote
// last), until a second passes without a byte (then something the program
// left running holds the pipe open), and 10 s at most (something it left
// running keeps writing).
void finish_output_copier(pid_t copier) {
  std::uint64_t seen = g_copied->load(std::memory_order_relaxed);
  for (int quiet = 0, waited = 0; quiet < 100 && waited < 1000; ++quiet, ++waited) {
    pid_t done = ::waitpid(copier, nullptr, WNOHANG);
    if (done == copier || (done < 0 && errno != EINTR)) return;
    ::usleep(10'000);
    std::uint64_t now = g_copied->load(std::memory_order_relaxed);
    if (now != seen) {
      seen = now;
      quiet = 0;
    }
  }
  say("warning: output of processes the program left running is cut");
  ::kill(copier, SIGKILL);
  while (::waitpid(copier, nullptr, 0) < 0 && errno == EINTR) {
  }
}

}  // namespace

int main() {
  // First of all: a stop that comes while the shares are mounted must not
  // kill the agent before it can report.
  struct sigaction action {};
  sigemptyset(&action.sa_mask);
  for (int sig : {SIGTERM, SIGINT, SIGALRM}) sigaddset(&action.sa_mask, sig);
  action.sa_handler = on_stop;
  ::sigaction(SIGTERM, &action, nullptr);
  ::sigaction(SIGINT, &action, nullptr);
  action.sa_handler = kill_program;
  ::sigaction(SIGALRM, &action, nullptr);
  if (::access(kStopMark, F_OK) == 0) g_stopped = 1;

  std::ifstream file(std::string(kConfigDir) + "/" + std::string(vmwarden::guest::kManifestFile));
  if (!file) fail(std::string("cannot read the manifest in ") + kConfigDir);
  std::stringstream text;
  text << file.rdbuf();
  std::string error;
  auto parsed = vmwarden::guest::parse_manifest(text.str(), error);
  if (!parsed) fail("manifest: " + error);
  const Manifest& m = *parsed;

  for (const auto& mount : m.mounts) mount_share(mount.tag, mount.path, mount.readonly);
  // The report share only in a mount namespace of the agent's own: the
  // program goes back to the first one (the init's, where the shares above
  // are mounted) before it drops root, and finds kReportDir an empty
  // directory of root's there. It can neither write its own status nor be
  // in the way of the agent's; nor can what it leaves running, and without
  // CAP_SYS_ADMIN none of it can mount the share or enter this namespace.
  int program_namespace = -1;
  if (!m.report_tag.empty()) {
    program_namespace = ::open("/proc/self/ns/mnt", O_RDONLY | O_CLOEXEC);
    if (program_namespace < 0) fail("open /proc/self/ns/mnt: " + errno_text());
    make_dirs(kReportDir);
    if (::unshare(CLONE_NEWNS) != 0) fail("unshare(CLONE_NEWNS): " + errno_text());
    // Nothing mounted here propagates back to the program's namespace.
    if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0)
      fail("make / private in the agent's mount namespace: " + errno_text());
    mount_share(m.report_tag, kReportDir, false);
  }

  write_text("/etc/passwd", "root:x:0:0:root:/root:/bin/sh\n" + m.user + ":x:" + std::to_string(m.uid) + ":" +
                                std::to_string(m.gid) + "::" + m.home + ":/bin/sh\n");
  write_text("/etc/group", "root:x:0:\n" + m.user + ":x:" + std::to_string(m.gid) + ":\n");

  std::string path;
  std::string library_path;
  for (const auto& store : m.store) {
    path += store + "/bin:";
    library_path += (library_path.empty() ? "" : ":") + store + "/lib";
  }
  path += "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin";
  std::vector<std::string> env = {"PATH=" + path, "HOME=" + m.home, "USER=" + m.user, "LOGNAME=" + m.user};
  if (m.store_lib && !library_path.empty()) env.push_back("LD_LIBRARY_PATH=" + library_path);
  // An entry replaces the one of its name: a program that reads the first
  // of two (glibc's getenv) would miss the caller's HOME or PATH.
  for (const auto& entry : m.env) {
    std::string name = entry.substr(0, entry.find('=') + 1);
    auto same = std::find_if(env.begin(), env.end(), [&](const std::string& e) { return e.starts_with(name); });
    if (same != env.end())
      *same = entry;
    else
      env.push_back(entry);
  }
  std::string resolved_path = path;
  for (const auto& entry : m.env)
    if (entry.rfind("PATH=", 0) == 0) resolved_path = entry.substr(5);

  std::vector<char*> argv = {const_cast<char*>(m.program.c_str())};
  for (const auto& arg : m.args) argv.push_back(const_cast<char*>(arg.c_str()));
  argv.push_back(nullptr);
  std::vector<char*> envp;
  for (auto& entry : env) envp.push_back(entry.data());
  envp.push_back(nullptr);

  // Held back until the child's pid is known. The child waits for a go
  // from here before it execs: a stop seen at the last look before the go
  // means the program is not started; one after it reaches the program
  // through the group (a SIGTERM already pending in the child ends it as
  // soon as it unblocks: 143 either way).
  g_grace_s = m.grace_s;
  // The program's standard output and error, copied to the report share.
  int output[2] = {-1, -1};
  pid_t copier = -1;
  if (!m.report_tag.empty()) {
    if (::pipe2(output, O_CLOEXEC) != 0) fail("pipe2: " + errno_text());
    copier = start_output_copier(m, output[0], output[1]);
    if (copier < 0) fail("fork: " + errno_text());
    ::close(output[0]);
  }
  sigset_t stops = action.sa_mask, previous, pending;
  ::sigprocmask(SIG_BLOCK, &stops, &previous);
  int go[2];
  if (::pipe2(go, O_CLOEXEC) != 0) fail("pipe2: " + errno_text());
  auto stopped = [&] {
    sigpending(&pending);
    return g_stopped || sigismember(&pending, SIGTERM) == 1 || sigismember(&pending, SIGINT) == 1;
  };
  auto not_started = [&](pid_t child) {
    say("stopped before " + m.program + " started");
    if (child > 0) {
      ::kill(child, SIGKILL);
      while (::waitpid(child, nullptr, 0) < 0 && errno == EINTR) {
      }
    }
    report(m, 128 + SIGTERM);
    ::sync();
    return 128 + SIGTERM;
  };
  if (stopped()) return not_started(0);

  say("running " + m.program + " as uid " + std::to_string(m.uid));
  pid_t child = ::fork();
  if (child < 0) fail("fork: " + errno_text());
  if (child == 0) {
    // The init's TERM and INT (and QUIT, ignored by the shell that started
    // the agent) are the program's to handle.
    for (int sig : {SIGTERM, SIGINT, SIGALRM, SIGQUIT}) ::signal(sig, SIG_DFL);
    ::close(go[1]);
    char byte;
    ssize_t got;
    while ((got = ::read(go[0], &byte, 1)) < 0 && errno == EINTR) {
    }
    if (got != 1) ::_exit(128 + SIGTERM);  // no go: stopped
    ::sigprocmask(SIG_SETMASK, &previous, nullptr);
    // From here on, what goes wrong is said on the program's own stderr.
    if (output[1] >= 0 && (::dup2(output[1], 1) < 0 || ::dup2(output[1], 2) < 0)) {
      say("error: cannot give the program its output pipe: " + errno_text());
      ::_exit(126);
    }
    if (program_namespace >= 0 && ::setns(program_namespace, CLONE_NEWNS) != 0) {
      say("error: cannot leave the agent's mount namespace: " + errno_text());
      ::_exit(126);
    }
    if (::setgroups(0, nullptr) != 0 || ::setresgid(m.gid, m.gid, m.gid) != 0 ||
        ::setresuid(m.uid, m.uid, m.uid) != 0) {
      say("error: cannot become uid " + std::to_string(m.uid) + ": " + errno_text());
      ::_exit(126);
    }
    if (::chdir(m.home.c_str()) != 0) {
      // Started elsewhere, a program would read and write relative names
      // where nobody expects them.
      say("error: chdir " + m.home + ": " + errno_text());
      ::_exit(126);
    }
    ::_exit(exec_program(m.program, resolved_path, argv.data(), envp.data()));
  }
  ::close(go[0]);
  if (output[1] >= 0) ::close(output[1]);
  if (stopped()) return not_started(child);
  g_child = child;
  if (::write(go[1], "g", 1) != 1) fail("write the go: " + errno_text());
  ::close(go[1]);
  ::sigprocmask(SIG_SETMASK, &previous, nullptr);
  // Waited for without reaping, so that its pid cannot go to another
  // process while the SIGKILL may still be sent to it; then forgotten.
  siginfo_t exited {};
  while (::waitid(P_PID, static_cast<id_t>(child), &exited, WEXITED | WNOWAIT) < 0) {
    if (errno != EINTR) fail("waitid: " + errno_text());
  }
  ::sigprocmask(SIG_BLOCK, &stops, nullptr);
  ::alarm(0);
  g_child = 0;
  int status = 0;
  while (::waitpid(child, &status, 0) < 0) {
    if (errno != EINTR) fail("waitpid: " + errno_text());
  }
  int code = WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status);
  // All of the output is in the share before the status that ends the run.
  if (copier > 0) finish_output_copier(copier);
  report(m, code);
  ::sync();
  return code;
}
