// vmwarden-guest: runs the program of `vmwarden run` inside the VM. Started
// as root by the image's init (tools/guest-init: vmwarden.run=/bin/vmwarden-guest
// with the config share mounted at /run/vmwarden/config), it
//   1. reads the launch manifest (vm-launcher/guest_manifest.h);
//   2. mounts each share at the path it has on the host, read-only ones
//      remounted read-only;
//   3. writes /etc/passwd and /etc/group for the VM's UID;
//   4. builds PATH (the store paths' bin/ first) and the environment;
//   5. runs the program as the VM's UID and gid, without supplementary
//      groups, in HOME;
//   6. writes the program's exit status into the report share, as the VM's
//      UID (the only uid virtiofsd maps), and prints it on the console;
//   7. exits with that status; the init then powers the VM off.
// SIGTERM (the init forwards the ACPI power button to our process group)
// reaches the program too; the agent waits for it and still reports.
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <sys/fsuid.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "vm-launcher/guest_manifest.h"

namespace {

using vmwarden::guest::Manifest;

constexpr const char* kConfigDir = "/run/vmwarden/config";
constexpr const char* kReportDir = "/run/vmwarden/report";

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

void write_text(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::trunc);
  out << text;
  out.close();
  if (!out) fail("cannot write " + path);
}

std::string find_program(const std::string& program, const std::string& path_list) {
  if (program.find('/') != std::string::npos) return program;
  std::stringstream dirs(path_list);
  for (std::string dir; std::getline(dirs, dir, ':');) {
    std::string candidate = dir + "/" + program;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return {};
}

volatile sig_atomic_t g_child = 0;
void forward(int sig) {
  if (g_child > 0) ::kill(g_child, sig);
}

void report(const Manifest& m, int status) {
  say("exit-status=" + std::to_string(status));
  if (m.report_tag.empty()) return;
  // virtiofsd maps the VM's UID only: create the file as that uid.
  ::setfsgid(m.gid);
  ::setfsuid(m.uid);
  std::string temporary = std::string(kReportDir) + "/.exit-status";
  std::string final_path = std::string(kReportDir) + "/" + std::string(vmwarden::guest::kExitStatusFile);
  int fd = ::open(temporary.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  std::string text = std::to_string(status) + "\n";
  bool ok = fd >= 0 && ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) &&
            ::fsync(fd) == 0 && ::close(fd) == 0 && ::rename(temporary.c_str(), final_path.c_str()) == 0;
  if (!ok) say("warning: cannot write " + final_path + ": " + errno_text());
  ::setfsuid(0);
  ::setfsgid(0);
}

}  // namespace

int main() {
  std::ifstream file(std::string(kConfigDir) + "/" + std::string(vmwarden::guest::kManifestFile));
  if (!file) fail(std::string("cannot read the manifest in ") + kConfigDir);
  std::stringstream text;
  text << file.rdbuf();
  std::string error;
  auto parsed = vmwarden::guest::parse_manifest(text.str(), error);
  if (!parsed) fail("manifest: " + error);
  const Manifest& m = *parsed;

  for (const auto& mount : m.mounts) mount_share(mount.tag, mount.path, mount.readonly);
  if (!m.report_tag.empty()) mount_share(m.report_tag, kReportDir, false);

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
  for (const auto& entry : m.env) env.push_back(entry);
  std::string resolved_path = path;
  for (const auto& entry : m.env)
    if (entry.rfind("PATH=", 0) == 0) resolved_path = entry.substr(5);

  std::string program = find_program(m.program, resolved_path);
  if (program.empty()) {
    say("error: " + m.program + ": not found on PATH " + resolved_path);
    report(m, 127);
    return 127;
  }
  std::vector<char*> argv = {const_cast<char*>(m.program.c_str())};
  for (const auto& arg : m.args) argv.push_back(const_cast<char*>(arg.c_str()));
  argv.push_back(nullptr);
  std::vector<char*> envp;
  for (auto& entry : env) envp.push_back(entry.data());
  envp.push_back(nullptr);

  struct sigaction action {};
  action.sa_handler = forward;
  sigemptyset(&action.sa_mask);
  ::sigaction(SIGTERM, &action, nullptr);
  ::sigaction(SIGINT, &action, nullptr);

  say("running " + program + " as uid " + std::to_string(m.uid));
  pid_t child = ::fork();
  if (child < 0) fail("fork: " + errno_text());
  if (child == 0) {
    ::signal(SIGTERM, SIG_DFL);
    ::signal(SIGINT, SIG_DFL);
    if (::setgroups(0, nullptr) != 0 || ::setresgid(m.gid, m.gid, m.gid) != 0 ||
        ::setresuid(m.uid, m.uid, m.uid) != 0) {
      say("error: cannot become uid " + std::to_string(m.uid) + ": " + errno_text());
      ::_exit(126);
    }
    if (::chdir(m.home.c_str()) != 0) ::chdir("/");
    ::execve(program.c_str(), argv.data(), envp.data());
    say("error: exec " + program + ": " + errno_text());
    ::_exit(errno == ENOENT ? 127 : 126);
  }
  g_child = child;
  int status = 0;
  while (::waitpid(child, &status, 0) < 0) {
    if (errno != EINTR) fail("waitpid: " + errno_text());
  }
  int code = WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status);
  report(m, code);
  ::sync();
  return code;
}
