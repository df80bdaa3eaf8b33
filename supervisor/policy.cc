#include "supervisor/policy.h"

#include <sys/stat.h>

namespace vmwarden::supervisor {
namespace {

void add_existing(std::vector<PathRule>& rules, const char* path, PathRights rights,
                  bool directories_only = false) {
  struct stat st {};
  if (::lstat(path, &st) != 0) return;
  // A symlink like /lib -> usr/lib needs no rule: resolving it needs no
  // Landlock right, and its target is covered by the /usr rule.
  if (directories_only && !S_ISDIR(st.st_mode)) return;
  rules.push_back({path, rights});
}

}  // namespace

std::vector<PathRule> system_read_execute_rules() {
  std::vector<PathRule> rules;
  add_existing(rules, "/usr", PathRights::read_execute(), true);
  for (const char* path : {"/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"})
    add_existing(rules, path, PathRights::read_execute(), true);
  for (const char* path : {"/etc/ld.so.cache", "/etc/localtime", "/sys/devices/system/cpu"})
    add_existing(rules, path, PathRights::read_only());
  return rules;
}

std::vector<PathRule> device_rules() {
  std::vector<PathRule> rules;
  for (const char* path : {"/dev/null", "/dev/zero", "/dev/full"})
    add_existing(rules, path, PathRights::read_write());
  for (const char* path : {"/dev/random", "/dev/urandom"})
    add_existing(rules, path, PathRights::read_only());
  return rules;
}

std::vector<PathRule> proc_self_rules() { return {{"/proc/self", PathRights::read_only()}}; }

std::vector<PathRule> command_rules(const std::filesystem::path& program, const std::filesystem::path& runtime_dir) {
  std::vector<PathRule> rules = system_read_execute_rules();
  for (PathRule& rule : device_rules()) rules.push_back(std::move(rule));
  // The command's controlling terminal: a pty of its own that vmwarden
  // relays (ServiceSpec::terminal_fds), or none (ENXIO); never the caller's.
  // Interactive programs (less, a password prompt) open it and set its modes.
  PathRights terminal = PathRights::read_write();
  terminal.ioctl_dev = true;
  add_existing(rules, "/dev/tty", terminal);
  rules.push_back({program, PathRights::read_execute()});
  // Sockets only (a session bus's, a portal's): a file or directory there
  // would be /run's space, which nothing bounds, and each entry a step of
  // the removal at exit.
  rules.push_back({runtime_dir, PathRights::sockets()});
  // Private to the sandbox: its own tmpfs.
  rules.push_back({"/tmp", PathRights::read_write()});
  rules.push_back({"/dev/shm", PathRights::read_write()});
  // The sandbox's own proc (hidepid=invisible: the command sees its own
  // processes only, not the warden), with the system-wide files any
  // program may read (/proc/meminfo, /proc/sys, ...; /proc/net is the
  // host's with --network).
  rules.push_back({"/proc", PathRights::read_only()});
  return rules;
}

}  // namespace vmwarden::supervisor
