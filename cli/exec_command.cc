// vmwarden exec: run one command as the main service of a sandbox, without
// a VM. Everything the user can get wrong (flags, the command, paths, ids)
// is checked here, before anything is created.

#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/core.h>

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "cli/cli.h"
#include "common/accounts.h"
#include "common/error.h"
#include "supervisor/policy.h"
#include "supervisor/sandbox.h"
#include "vm-launcher/names.h"

namespace vmwarden::cli {
namespace {

namespace fs = std::filesystem;

struct ExecOptions {
  std::vector<std::string> rw;
  std::vector<std::string> ro;
  std::string uid;
  std::string gid;
  double timeout_s = 10;
  int notify_fd = -1;
  std::string name;
  bool share_net = false;
  bool s6 = false;
  std::vector<std::string> command;
};

std::optional<unsigned long> parse_id(const std::string& text) {
  unsigned long value = 0;
  auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc() || end != text.data() + text.size() || value >= 0xFFFFFFFFUL) return std::nullopt;
  return value;
}

struct Identity {
  uid_t uid;
  gid_t gid;
};

// The one place that decides whom the command runs as.
Identity choose_identity(const ExecOptions& options) {
  if (options.uid.empty()) {
    throw UsageError(
        "--uid is required: the default, a single-use UID, needs the UID registry, which is not available yet; "
        "give --uid USER or --uid NUMBER (--uid 0 runs the command as root)");
  }
  Identity identity{};
  std::optional<gid_t> primary_gid;
  // A number is taken as is, without a passwd lookup: per-VM UIDs have no
  // passwd entry, and the lookup (NSS) would cost more than the sandbox.
  if (auto number = parse_id(options.uid)) {
    identity.uid = static_cast<uid_t>(*number);
  } else if (auto user = find_user_in_files(options.uid)) {
    identity.uid = user->uid;
    primary_gid = user->gid;
  } else {
    throw UsageError("--uid " + options.uid + ": no such user in /etc/passwd (give a user name or a number)");
  }
  if (options.gid.empty()) {
    // --uid NUMBER: the group of the same number; --uid NAME: the user's
    // primary group.
    identity.gid = primary_gid.value_or(static_cast<gid_t>(identity.uid));
  } else if (auto number = parse_id(options.gid)) {
    identity.gid = static_cast<gid_t>(*number);
  } else if (auto gid = find_group_in_files(options.gid)) {
    identity.gid = *gid;
  } else {
    throw UsageError("--gid " + options.gid + ": no such group in /etc/group (give a group name or a number)");
  }
  return identity;
}

void check_executable(const fs::path& path, const std::string& as_given) {
  struct stat st {};
  if (::stat(path.c_str(), &st) < 0) throw UsageError(as_given + ": no such file");
  if (S_ISDIR(st.st_mode)) throw UsageError(as_given + ": is a directory, not a command");
  if (!S_ISREG(st.st_mode) || ::access(path.c_str(), X_OK) < 0) {
    throw UsageError(fmt::format("{}: not executable (mode {:04o})", as_given, st.st_mode & 07777));
  }
}

// Like execvp's lookup, but done up front so that a typo is a usage error
// (exit 2) before any sandbox exists.
fs::path resolve_command(const std::string& command) {
  if (command.empty()) throw UsageError("the command is an empty string");
  if (command.find('/') != std::string::npos) {
    fs::path path = fs::absolute(command).lexically_normal();
    check_executable(path, command);
    return path;
  }
  const char* env_path = std::getenv("PATH");
  std::string search = env_path != nullptr ? env_path : "/usr/local/bin:/usr/bin:/bin";
  size_t start = 0;
  std::optional<fs::path> not_executable;
  while (start <= search.size()) {
    size_t end = search.find(':', start);
    if (end == std::string::npos) end = search.size();
    std::string dir = search.substr(start, end - start);
    start = end + 1;
    fs::path candidate = fs::absolute(fs::path(dir.empty() ? "." : dir) / command).lexically_normal();
    struct stat st {};
    if (::stat(candidate.c_str(), &st) < 0 || !S_ISREG(st.st_mode)) continue;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
    if (!not_executable) not_executable = candidate;
  }
  if (not_executable) check_executable(*not_executable, not_executable->string());
  throw UsageError(fmt::format("{}: command not found in PATH ({})", command, search));
}

// Each service gets an empty tmpfs on these, which hides whatever the host
// has beneath them.
constexpr std::string_view kPrivateInSandbox[] = {"/tmp", "/dev/shm"};

std::optional<std::string_view> hidden_in_sandbox(const fs::path& path) {
  for (std::string_view dir : kPrivateInSandbox) {
    const fs::path prefix(dir);  // one object: its iterators must not outlive it
    auto [end, _] = std::mismatch(prefix.begin(), prefix.end(), path.begin(), path.end());
    if (end == prefix.end()) return dir;
  }
  return std::nullopt;
}

void check_visible(const std::string& what, const fs::path& path) {
  if (auto dir = hidden_in_sandbox(path)) {
    throw UsageError(fmt::format("{}: {} is beneath {}, which is a private, empty tmpfs inside the sandbox; "
                                 "use a path elsewhere",
                                 what, path.string(), *dir));
  }
}

fs::path existing_path(const std::string& flag, const std::string& given) {
  if (given.empty()) throw UsageError(flag + " needs a path");
  fs::path path = fs::absolute(given).lexically_normal();
  std::error_code error;
  if (!fs::exists(path, error)) throw UsageError(fmt::format("{} {}: no such file or directory", flag, given));
  check_visible(flag + " " + given, path);
  return path;
}

supervisor::SandboxSpec build_spec(const ExecOptions& options, const Locations& locations) {
  if (options.command.empty()) {
    throw UsageError("no command given: vmwarden exec [OPTIONS] -- COMMAND [ARGS...]");
  }
  fs::path command = resolve_command(options.command.front());
  check_visible(options.command.front(), command);
  Identity identity = choose_identity(options);

  std::string name = options.name.empty() ? fmt::format("exec-{}", ::getpid()) : options.name;
  if (auto problem = vm::vm_name_problem(name)) throw UsageError("--name " + name + ": " + *problem);
  if (!std::isfinite(options.timeout_s) || options.timeout_s < 0 || options.timeout_s > 86400) {
    throw UsageError(fmt::format("--timeout {}: give a number of seconds from 0 to 86400", options.timeout_s));
  }

  supervisor::SandboxSpec spec;
  spec.name = name;
  spec.runtime_dir = locations.vm_runtime_dir(name);
  spec.runtime_dir_uid = identity.uid;
  spec.runtime_dir_gid = identity.gid;
  spec.private_network = !options.share_net;
  spec.shutdown_timeout = std::chrono::milliseconds(std::llround(options.timeout_s * 1000));
  spec.require_s6_parent = options.s6;
  if (options.notify_fd >= 0) {
    if (options.notify_fd <= 2) throw UsageError("--notify-fd must not be stdin, stdout or stderr (0-2)");
    if (::fcntl(options.notify_fd, F_GETFD) < 0) {
      throw UsageError(fmt::format("--notify-fd {}: no such open file descriptor", options.notify_fd));
    }
    spec.notify_fd = options.notify_fd;
  } else if (options.s6) {
    spec.notify_fd = supervisor::read_s6_notification_fd();
  }

  supervisor::ServiceSpec service;
  service.name = "command";
  service.main = true;
  service.argv = options.command;
  service.argv.front() = command.string();
  for (char** entry = environ; *entry != nullptr; ++entry) service.env.emplace_back(*entry);
  // The current directory, unless the sandbox cannot show it.
  std::error_code error;
  service.cwd = fs::current_path(error);
  if (error || hidden_in_sandbox(service.cwd)) service.cwd = "/";
  service.fds = {{0, 0}, {1, 1}, {2, 2}};
  service.confinement.uid = identity.uid;
  service.confinement.gid = identity.gid;
  // Landlock: what any dynamically linked program needs to start, the
  // command itself and the sandbox's runtime dir; everything else only
  // through --ro and --rw. --ro is also a read-only bind mount, which holds
  // even for root.
  auto& rules = service.confinement.landlock.paths;
  rules = supervisor::command_rules(command, spec.runtime_dir);
  service.confinement.landlock.deny_tcp = !options.share_net;
  for (const std::string& path : options.rw) {
    service.confinement.landlock.paths.push_back({existing_path("--rw", path), supervisor::PathRights::read_write()});
  }
  for (const std::string& given : options.ro) {
    fs::path path = existing_path("--ro", given);
    service.confinement.landlock.paths.push_back({path, supervisor::PathRights::read_execute()});
    spec.mounts.push_back({.source = path, .target = path, .readonly = true});
  }
  spec.services.push_back(std::move(service));
  return spec;
}

}  // namespace

void add_exec_command(CLI::App& app, Globals& globals) {
  auto options = std::make_shared<ExecOptions>();
  CLI::App* command = app.add_subcommand(
      "exec",
      "Run COMMAND inside a sandbox: vmwarden is PID 1 of fresh PID, mount, IPC, UTS, cgroup and (unless "
      "--share-net) network namespaces, the command is PID 2 with a private /tmp and /dev/shm, running as --uid. "
      "SIGTERM, SIGINT and SIGHUP stop it (SIGTERM to the command, SIGKILL after --timeout). Exits with the "
      "command's status (128+N if killed by signal N); 2 if COMMAND cannot be found or a flag is wrong; 125 if "
      "the sandbox cannot start.");
  command->add_option("--rw", options->rw, "Allow reading and writing beneath PATH (enforced by Landlock)")
      ->allow_extra_args(false)
      ->type_name("PATH");
  command
      ->add_option("--ro", options->ro,
                   "Allow reading and executing beneath PATH (Landlock), and bind-mount it read-only in the sandbox")
      ->allow_extra_args(false)
      ->type_name("PATH");
  command->add_option("--uid", options->uid, "Run the command as this user (name or number; 0 for root)")
      ->type_name("USER");
  command->add_option("--gid", options->gid, "Run the command with this group (default: the primary group of a --uid NAME, the same number for a --uid NUMBER)")
      ->type_name("GROUP");
  command->add_option("--timeout", options->timeout_s, "Seconds between SIGTERM and SIGKILL when stopping (default 10)")
      ->type_name("SECONDS");
  command->add_option("--notify-fd", options->notify_fd,
                      "Write a newline to this fd and close it once the command was exec'd")
      ->type_name("FD");
  command->add_option("--name", options->name, "Sandbox name: log prefix and runtime dir name (default exec-PID)");
  command->add_flag("--share-net", options->share_net, "Keep the host's network namespace");
  command->add_flag("--s6", options->s6,
                    "Run as an s6 service: refuse unless the parent is the s6-supervise holding ./supervise/lock, "
                    "and take the readiness fd from ./notification-fd");
  command->add_option("command", options->command, "The command and its arguments, after --")->type_name("COMMAND");
  command->callback([&globals, options] {
    globals.action = [&globals, options] {
      supervisor::SandboxSpec spec = build_spec(*options, globals.locations());
      return supervisor::run_sandbox(spec);
    };
  });
}

}  // namespace vmwarden::cli
