// vmwarden exec: run one command as the main service of a sandbox, without
// a VM. Everything the user can get wrong (flags, the command, paths, ids)
// is checked here, before anything is created.

#include <grp.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/core.h>

#include <algorithm>
#include <cctype>
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

#include <signal.h>

#include "acl-manager/acl.h"
#include "common/json_quote.h"
#include "acl-manager/uid_registry.h"
#include "cli/cli.h"
#include "common/accounts.h"
#include "common/environment.h"
#include "common/error.h"
#include "common/printable.h"
#include "common/process.h"
#include "common/log.h"
#include "supervisor/policy.h"
#include "supervisor/sandbox.h"
#include "vm-launcher/launch.h"
#include "vm-launcher/launch_audit.h"
#include "vm-launcher/names.h"
#include "vm-launcher/share_check.h"

namespace vmwarden::cli {
namespace {

namespace fs = std::filesystem;

struct ExecOptions {
  std::vector<std::string> rw;
  std::vector<std::string> ro;
  std::string uid;
  std::string gid;
  double timeout_s = 10;
  std::optional<int> notify_fd;
  std::string name;
  bool network = false;
  bool s6 = false;
  std::string landlock = "required";
  std::string seccomp = "kill";
  std::string seccomp_profile = "vm-daemon";
  bool audit = false;
  bool json = false;
  bool clear_env = false;
  std::vector<std::string> unset_env;
  std::vector<std::string> set_env;  // KEY=VALUE
  std::vector<std::string> command;
};

// A number (0 to 4294967294), or nullopt for a name. What starts like a
// number but is not a valid one ("-1", "12x", "4294967295") is refused here,
// rather than looked up as a name and reported as an unknown user.
std::optional<unsigned long> parse_id(const std::string& flag, const std::string& text) {
  if (text.empty() || !(std::isdigit(static_cast<unsigned char>(text.front())) || text.front() == '-' ||
                        text.front() == '+'))
    return std::nullopt;
  unsigned long value = 0;
  auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc() || end != text.data() + text.size() || value >= 0xFFFFFFFFUL)
    throw UsageError(fmt::format("{} {}: not a valid id; give a number from 0 to 4294967294, or a name", flag, text));
  return value;
}

struct Identity {
  uid_t uid;
  gid_t gid;
};

// The command's environment: vmwarden's own (none with --clearenv), less
// each --unsetenv, then each --setenv, in order (a later one wins).
EnvironmentRule command_environment(const ExecOptions& options) {
  for (const std::string& key : options.unset_env)
    if (auto problem = environment_name_problem(key))
      throw UsageError(fmt::format("--unsetenv {}: {}; give a variable's name", printable(key), *problem));
  for (const std::string& entry : options.set_env) {
    std::size_t equals = entry.find('=');
    if (equals == std::string::npos) throw UsageError(fmt::format("--setenv {}: want KEY=VALUE", printable(entry)));
    if (auto problem = environment_name_problem(std::string_view(entry).substr(0, equals)))
      throw UsageError(fmt::format("--setenv {}: {}", printable(entry), *problem));
  }
  return EnvironmentRule{.inherit = !options.clear_env, .unset = options.unset_env, .set = options.set_env};
}

// The one place that decides whom the command runs as: --uid (and --gid),
// or else nullopt, meaning a single-use UID leased from the registry. uid 0
// is given, but run as root of a user namespace of its own over a single-use
// UID (build_plan()), never as the host's root.
std::optional<Identity> given_identity(const ExecOptions& options) {
  if (options.uid.empty()) {
    if (!options.gid.empty()) throw UsageError("--gid needs --uid (a single-use UID always runs with its own group)");
    return std::nullopt;
  }
  Identity identity{};
  std::optional<gid_t> primary_gid;
  // A number is taken as is, without a passwd lookup: per-VM UIDs have no
  // passwd entry, and the lookup (NSS) would cost more than the sandbox.
  if (auto number = parse_id("--uid", options.uid)) {
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
  } else if (auto number = parse_id("--gid", options.gid)) {
    identity.gid = static_cast<gid_t>(*number);
  } else if (auto gid = find_group_in_files(options.gid)) {
    identity.gid = *gid;
  } else {
    throw UsageError("--gid " + options.gid + ": no such group in /etc/group (give a group name or a number)");
  }
  if (identity.uid == 0 && identity.gid != 0) {
    // Root of its own user namespace has no other group mapped.
    throw UsageError(fmt::format(
        "{}: --uid 0 runs the command as root (uid 0, gid 0) of a user namespace of its own, where no other group "
        "exists; give --gid 0, or a --uid other than 0",
        options.gid.empty() ? fmt::format("--uid {} (whose primary group is {})", options.uid, identity.gid)
                            : "--gid " + options.gid));
  }
  if (identity.uid != 0 && identity.gid == 0) {
    // The host's group 0 reaches what root's group may: 0660 root:root
    // sockets (a container runtime's) and root-group-writable sysfs files.
    throw UsageError(fmt::format(
        "{}: a command never runs with the host's group 0 (root), which opens root's group-accessible sockets and "
        "files; give --gid another group",
        options.gid.empty() ? fmt::format("--uid {} (whose primary group is 0)", options.uid) : "--gid " + options.gid));
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
  if (auto problem = script_interpreter_problem(path)) throw UsageError(as_given + ": " + *problem);
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

// A tree granted to the single-use UID: refused here, before the lease,
// for whatever grant() would refuse it for (a symlink or ".." on the way,
// not a directory, no POSIX ACLs).
fs::path granted_tree(const std::string& flag, const std::string& given, const Locations& locations) {
  if (given.empty()) throw UsageError(flag + " needs a path");
  fs::path tree;
  try {
    tree = vm::checked_share(fs::absolute(given), locations);
  } catch (const UsageError& e) {
    throw UsageError(fmt::format("{}: {}", flag, e.what()));
  }
  check_visible(flag + " " + given, tree);
  return tree;
}

// A tree for a --uid given by the caller: a Landlock rule on the host's
// path (--rw / included: a write rule on everything).
fs::path existing_path(const std::string& flag, const std::string& given, fs::path* resolved_out = nullptr) {
  if (given.empty()) throw UsageError(flag + " needs a path");
  fs::path path = fs::absolute(given).lexically_normal();
  std::error_code error;
  if (!fs::exists(path, error)) {
    // exists() is false on an error too: say which (EACCES, ELOOP, ...).
    std::string why = error ? error.message() : "no such file or directory";
    throw UsageError(fmt::format("{} {}: {}", flag, given, why));
  }
  check_visible(flag + " " + given, path);
  // The sandbox follows a symlink on the way as the host does, and one that
  // leads into /tmp or /dev/shm would end in the sandbox's own empty tmpfs:
  // where the path leads is checked too.
  fs::path resolved = fs::canonical(path, error);
  if (error) throw UsageError(fmt::format("{} {}: cannot resolve: {}", flag, given, error.message()));
  check_visible(fmt::format("{} {} (a symlink on the way leads to {})", flag, given, resolved.string()), resolved);
  if (resolved_out != nullptr) *resolved_out = resolved;
  return path;
}

// A --ro tree of a --uid is bind-mounted read-only over itself, recursively.
fs::path read_only_path(const std::string& given) {
  fs::path resolved;
  fs::path path = existing_path("--ro", given, &resolved);
  // Bound over /, it would lie under the sandbox's own /proc and /tmp (and
  // the start failed half-way). Every mount but the write rules' is
  // read-only in the sandbox anyway.
  if (resolved == "/") {
    throw UsageError(fmt::format("--ro {}{}: the whole filesystem cannot be mounted read-only over itself; name the "
                                 "directories the command needs to read",
                                 given, path == "/" ? "" : " (it leads to /)"));
  }
  // The recursive bind leaves an unbindable mount below the tree out,
  // showing in the sandbox the directory that mount covers on the host.
  try {
    supervisor::require_copyable_mounts(resolved);
  } catch (const UsageError& e) {
    throw UsageError(fmt::format("--ro {}: {}", given, e.what()));
  }
  return path;
}

supervisor::LandlockMode landlock_mode(const std::string& text) {
  if (text == "required") return supervisor::LandlockMode::required;
  if (text == "best-effort") return supervisor::LandlockMode::best_effort;
  return supervisor::LandlockMode::off;  // CLI11 admits nothing else
}

// What exec will do, decided before anything is done: the sandbox, the ACL
// grants a single-use UID needs, and whom the command runs as.
struct ExecPlan {
  vm::LaunchPlan launch;
  bool single_use = false;  // launch.uid is a stand-in until the lease is taken
  // --uid 0: the single-use UID appears as root in a user namespace of the
  // command's own.
  bool as_root = false;
  std::string uid_range;
};

void set_identity(ExecPlan& plan, uid_t uid, gid_t gid) {
  plan.launch.uid = uid;
  plan.launch.sandbox.runtime_dir_uid = uid;
  plan.launch.sandbox.runtime_dir_gid = gid;
  for (supervisor::ServiceSpec& service : plan.launch.sandbox.services) {
    service.confinement.uid = uid;
    service.confinement.gid = gid;
  }
}

ExecPlan build_plan(const ExecOptions& options, const Locations& locations) {
  if (options.command.empty()) {
    throw UsageError("no command given: vmwarden exec [OPTIONS] -- COMMAND [ARGS...]");
  }
  if (options.json && !options.audit) throw UsageError("--json goes with --audit");
  fs::path command = resolve_command(options.command.front());
  check_visible(options.command.front(), command);
  std::optional<Identity> given = given_identity(options);

  std::string name = options.name.empty() ? fmt::format("exec-{}", ::getpid()) : options.name;
  if (auto problem = vm::vm_name_problem(name)) throw UsageError("--name " + printable(name) + ": " + *problem);
  if (!std::isfinite(options.timeout_s) || options.timeout_s < 0 || options.timeout_s > 86400) {
    throw UsageError(fmt::format("--timeout {}: give a number of seconds from 0 to 86400", options.timeout_s));
  }

  ExecPlan plan;
  // --uid 0 is not the host's root: connect() on a pathname socket is outside
  // Landlock's rules (up to ABI 7), and the host's root-only sockets (a
  // container runtime's, the system bus) would take a root peer for root.
  // It is a single-use UID, leased and granted as without --uid, shown as
  // root in a user namespace of its own.
  plan.as_root = given && given->uid == 0;
  plan.single_use = !given || plan.as_root;
  supervisor::SandboxSpec& spec = plan.launch.sandbox;
  spec.name = name;
  spec.runtime_dir = locations.vm_runtime_dir(name);
  // The services reach it at the same path, which a private tmpfs would hide.
  check_visible("the runtime directory (VMWARDEN_RUNTIME_DIR or --runtime-dir)", spec.runtime_dir);
  spec.private_network = !options.network;
  spec.shutdown_timeout = std::chrono::milliseconds(std::llround(options.timeout_s * 1000));
  spec.require_s6_parent = options.s6;
  if (options.notify_fd) {
    if (options.s6) throw UsageError("--notify-fd and --s6 exclude each other (s6 names the fd)");
    spec.notify_fd = checked_notify_fd(*options.notify_fd);
  } else if (options.s6 && !options.audit) {
    spec.notify_fd = supervisor::read_s6_notification_fd();
  }

  supervisor::ServiceSpec service;
  service.name = "command";
  service.main = true;
  service.argv = options.command;
  service.argv.front() = command.string();
  service.environment = command_environment(options);
  // The current directory, unless the sandbox cannot show it.
  std::error_code error;
  service.cwd = fs::current_path(error);
  if (error || hidden_in_sandbox(service.cwd)) service.cwd = "/";
  vm::give_standard_descriptors(service, options.s6);
  if (plan.as_root) service.confinement.user_namespace = supervisor::UserNamespace::root;
  // Landlock: what any dynamically linked program needs to start, the
  // command itself and the sandbox's runtime dir; everything else only
  // through --ro and --rw. --ro is also a read-only bind mount, which holds
  // even for root.
  supervisor::Confinement& confinement = service.confinement;
  confinement.landlock.mode = landlock_mode(options.landlock);
  confinement.landlock.paths = supervisor::command_rules(command, spec.runtime_dir);
  confinement.landlock.deny_tcp = !options.network;
  confinement.seccomp.profile = options.seccomp_profile;
  confinement.seccomp.action = options.seccomp == "log" ? supervisor::SeccompAction::log : supervisor::SeccompAction::kill;
  // A single-use UID owns nothing on the host: it gets ACL grants on the
  // --rw and --ro trees for the run (revoked at exit), so that the host's
  // permission checks let it do what Landlock allows. A --uid is the
  // caller's to have permissions for.
  std::vector<fs::path> read_write;
  for (const std::string& given_path : options.rw) {
    fs::path path = plan.single_use ? granted_tree("--rw", given_path, locations) : existing_path("--rw", given_path);
    read_write.push_back(path);
    confinement.landlock.paths.push_back({path, supervisor::PathRights::read_write()});
    // Granted, it is mounted over itself from the grant's copy, the mounts
    // below it (which the grant and the revoke do not walk) read-only.
    if (plan.single_use) {
      plan.launch.grants.push_back({path, acl::Access::rw});
      spec.mounts.push_back({.source = path, .target = path, .readonly = false});
    }
  }
  for (const std::string& given_path : options.ro) {
    fs::path path = plan.single_use ? granted_tree("--ro", given_path, locations) : read_only_path(given_path);
    // The read-only bind mount would win over the read-write grant.
    if (std::find(read_write.begin(), read_write.end(), path) != read_write.end())
      throw UsageError(fmt::format("{} is given to both --ro and --rw; give it once", path.string()));
    confinement.landlock.paths.push_back({path, supervisor::PathRights::read_execute()});
    spec.mounts.push_back({.source = path, .target = path, .readonly = true});
    if (plan.single_use) plan.launch.grants.push_back({path, acl::Access::ro});
  }
  spec.services.push_back(std::move(service));
  vm::order_outer_first(plan.launch);

  if (!plan.single_use) {
    set_identity(plan, given->uid, given->gid);
  } else {
    // A stand-in from the registry's range until the lease is taken: every
    // check below is the same for any UID of the range.
    acl::UidRegistry registry(locations);
    plan.uid_range = registry.range().to_string();
    set_identity(plan, registry.range().first, static_cast<gid_t>(registry.range().first));
  }

  // The confinement against this kernel, before anything exists: an unknown
  // seccomp profile is a usage error, a `required` Landlock policy the
  // kernel cannot meet a permanent one (125). What best-effort drops is
  // logged once, by run_sandbox(); the audit reports both instead.
  if (!options.audit) vm::check_plan(plan.launch);
  return plan;
}

int audit(const ExecPlan& plan, const ExecOptions& options, const Locations& locations) {
  vm::LaunchAuditOptions audit{
      .title = "vmwarden exec",
      .locations = locations,
      .uid_source = plan.single_use ? vm::UidSource::single_use : vm::UidSource::given,
      .uid_is_placeholder = plan.single_use,
      .uid_range = plan.uid_range,
      .shown_as_root = plan.as_root,
      .checks_shares = false,
      .refusals = {},
  };
  print_audit(plan.launch, audit, options.json);
  return 0;
}

// Runs the plan: lease a single-use UID and grant it its trees when no
// --uid was given, run the sandbox, then revoke and release on every way
// out (the stop signals are turned into a normal return by run_sandbox).
int run(ExecPlan& plan, const Locations& locations) {
  // A logger that stops reading must not hold up a stop (doc/S6.md).
  log::never_block_on_a_pipe();
  if (!plan.single_use) return supervisor::run_sandbox(plan.launch.sandbox);
  // A run script started by hand is refused before a UID is leased or a
  // tree granted (run_sandbox() checks again, as it does for --uid).
  if (plan.launch.sandbox.require_s6_parent) {
    supervisor::verify_s6_parent();
    supervisor::verify_s6_timeout_kill(plan.launch.sandbox.shutdown_timeout);
  }
  block_stop_signals();

  acl::UidRegistry registry(locations);
  acl::UidLease lease = registry.lease_single_use();
  set_identity(plan, lease.uid(), static_cast<gid_t>(lease.uid()));
  log::debug("running as single-use UID {}", lease.uid());
  acl::ScopedGrants grants(registry, lease.uid());
  std::vector<acl::Report> reports = vm::grant_shares(plan.launch, grants);
  for (std::size_t i = 0; i < reports.size(); ++i) {
    log::debug("granted {} on {} to UID {}: {}", acl::to_string(plan.launch.grants[i].access),
               plan.launch.grants[i].tree.string(), lease.uid(), reports[i].summary());
  }
  plan.launch.sandbox.after_services = [&grants] { grants.revoke_all_or_warn(); };
  return supervisor::run_sandbox(plan.launch.sandbox);
  // `grants` has revoked before the runtime dir went; `lease` releases the
  // UID as it goes out of scope.
}

}  // namespace

void add_exec_command(CLI::App& app, Globals& globals) {
  auto options = std::make_shared<ExecOptions>();
  CLI::App* command = app.add_subcommand(
      "exec",
      "Run COMMAND inside a sandbox: vmwarden is PID 1 of fresh PID, mount, IPC, UTS, cgroup and (unless "
      "--network) network namespaces, the command is PID 2 with a private /tmp and /dev/shm, running under a "
      "single-use UID (or --uid) with no capabilities, its own Landlock domain (signal and abstract-socket "
      "scopes) and a seccomp filter, in a session of its own. Each of its stdin, stdout and stderr that is a "
      "terminal is replaced by a new pty (its controlling terminal), which vmwarden relays to and from the "
      "caller's terminal (keys too, with the terminal in raw mode meanwhile so that Ctrl-C reaches the command, "
      "when its stdin and stdout are the terminal and vmwarden runs in the foreground); the others are passed as they are. SIGQUIT, SIGALRM, SIGUSR1, SIGUSR2 and SIGABRT are ignored; SIGTERM, SIGINT and SIGHUP stop it (SIGTERM to the command, SIGKILL after "
      "--timeout). Exits with the command's status (128+N if killed by signal N); 2 if COMMAND cannot be found "
      "or a flag is wrong; 125 if the sandbox cannot start (e.g. --landlock required on a kernel that lacks a "
      "needed feature); 1 if it could not start for want of processes, memory or descriptors (a retry may work).");
  command->add_option("--rw", options->rw,
                      "Allow reading and writing beneath PATH (Landlock); a single-use UID also gets an ACL grant "
                      "(rwX) on it for the run, and PATH is then mounted over itself from the directory the grant "
                      "opened (mounts below PATH read-only)")
      ->allow_extra_args(false)
      ->type_name("PATH");
  command
      ->add_option("--ro", options->ro,
                   "Allow reading and executing beneath PATH (Landlock), and mount it read-only in the sandbox; "
                   "a single-use UID also gets an ACL grant (r-X) on it for the run, and the mount is then made "
                   "from the directory the grant opened. Not /, nor a tree with an unbindable mount below it")
      ->allow_extra_args(false)
      ->type_name("PATH");
  command
      ->add_option("--uid", options->uid,
                   "Run the command as this user (name or number) instead of a single-use UID leased from the "
                   "registry and released at exit. --uid 0 runs it as root of a user namespace of its own, without "
                   "capabilities: it sees uid 0 and gid 0, while the host sees a single-use UID, leased and granted "
                   "its --ro and --rw trees as without --uid (root's files and sockets on the host stay out of "
                   "reach; what it creates is owned by that UID)")
      ->type_name("USER");
  command->add_option("--gid", options->gid, "With --uid: run the command with this group (default: the primary group of a --uid NAME, the same number for a --uid NUMBER; with --uid 0 only 0)")
      ->type_name("GROUP");
  command
      ->add_option("--landlock", options->landlock,
                   "required (default): refuse to start (exit 125) if the kernel lacks a Landlock feature the "
                   "policy needs, naming it and the kernel's ABI; best-effort: apply what the kernel has and log "
                   "exactly what was dropped; off: no Landlock domain at all (the audit flags it)")
      ->check(CLI::IsMember({"required", "best-effort", "off"}))
      ->type_name("MODE");
  command
      ->add_option("--seccomp", options->seccomp,
                   "What a syscall the profile refuses does: kill (default) the process, or only log it")
      ->check(CLI::IsMember({"kill", "log"}))
      ->type_name("ACTION");
  command
      ->add_option("--seccomp-profile", options->seccomp_profile,
                   "vm-daemon (default: a deny list of debugging, module, BPF, keyring, mount and namespace "
                   "calls), qemu or virtiofsd (allow lists for those daemons), or none (no filter; the audit "
                   "flags it)")
      ->type_name("NAME");
  command->add_flag("--clearenv", options->clear_env,
                    "Start the command with an empty environment (default: vmwarden's own, which may hold what the "
                    "command should not see: tokens, agent sockets' paths)");
  command->add_option("--unsetenv", options->unset_env, "Remove variable KEY from the command's environment (repeatable)")
      ->type_name("KEY")
      ->allow_extra_args(false);
  command->add_option("--setenv", options->set_env,
                      "Set KEY=VALUE in the command's environment, after --clearenv and --unsetenv (repeatable; a "
                      "later one for the same KEY wins)")
      ->type_name("KEY=VALUE")
      ->allow_extra_args(false);
  command->add_flag("--network,--share-net", options->network,
                    "Keep the host's network namespace and allow TCP bind/connect (default: an empty network "
                    "namespace, and Landlock denies TCP)");
  command->add_option("--timeout", options->timeout_s, "Seconds between SIGTERM and SIGKILL when stopping (default 10)")
      ->type_name("SECONDS");
  command->add_option("--notify-fd", options->notify_fd,
                      "Write a newline to this fd and close it once the command has been exec'd")
      ->type_name("FD");
  command->add_option("--name", options->name, "Sandbox name: log prefix and runtime dir name (default exec-PID)");
  command->add_flag("--s6", options->s6,
                    "Run as an s6 service: refuse (exit 125, before any UID is leased) unless the parent is the "
                    "s6-supervise holding ./supervise/lock and ./timeout-kill, if set, leaves --timeout + 10 s, and "
                    "take the readiness fd from ./notification-fd (not with --notify-fd)");
  command->add_flag("--audit", options->audit,
                    "Run nothing: print every privileged step exec would take, with the capability each needs, "
                    "and the command's final confinement; nothing is leased, granted or created");
  command->add_flag("--json", options->json, "With --audit: print the audit as one JSON object");
  command->add_option("command", options->command, "The command and its arguments, after --")->type_name("COMMAND");
  command->callback([&globals, options] {
    globals.action = [&globals, options] {
      Locations locations = globals.locations();
      if (!options->audit) {
        ExecPlan plan = build_plan(*options, locations);
        return run(plan, locations);
      }
      try {
        ExecPlan plan = build_plan(*options, locations);
        return audit(plan, *options, locations);
      } catch (const std::exception& error) {
        // As `vmwarden audit --json`: one JSON object whatever happens.
        if (options->json) fmt::print("{{\"audit\":\"vmwarden exec\",\"error\":{}}}\n", json_quote(error.what()));
        throw;
      }
    };
  });
}

}  // namespace vmwarden::cli
