// `vmwarden run`, in the order the steps happen. Everything the user passed
// is checked before anything is created; the run's own directory
// (STATE_DIR/runs/NAME: the definition, the config share, the report share,
// the scratch directory) is removed on every exit path that lets code run.

#include "vm-launcher/run.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <optional>
#include <random>
#include <sstream>

#include <fmt/core.h>

#include "acl-manager/acl.h"
#include "acl-manager/uid_registry.h"
#include "common/error.h"
#include "common/exit_status.h"
#include "common/log.h"
#include "common/printable.h"
#include "common/process.h"
#include "common/text_file.h"
#include "supervisor/runtime_dir.h"
#include "virtiofs-glue/virtiofsd.h"
#include "vm-launcher/backend.h"
#include "vm-launcher/backend_util.h"
#include "vm-launcher/guest_manifest.h"
#include "vm-launcher/guest_report.h"
#include "vm-launcher/launch.h"
#include "vm-launcher/names.h"
#include "vm-launcher/share_check.h"

namespace vmwarden::vm {
namespace {

namespace fs = std::filesystem;

// Where the guest's init mounts the config share, and the agent it runs
// (tools/guest-init, guest-agent/).
constexpr std::string_view kGuestConfigDir = "/run/vmwarden/config";
constexpr std::string_view kGuestAgent = "/bin/vmwarden-guest";
constexpr std::string_view kConfigTag = "vmwarden-config";
constexpr std::string_view kReportTag = "vmwarden-report";

// A stop (SIGINT/SIGTERM to `vmwarden run`, the power button in the guest)
// gives the program most of the --timeout the guest has to power off: it
// gets the init's SIGTERM, and the agent SIGKILLs it this long after, so
// that it can still report the status; the init kills the agent's group a
// second later should it hang, and powers off in the remaining second or two.
// (--timeout is at least 2: at 1 the VMM would be quit as the SIGKILL is due.)
unsigned program_grace_s(std::uint32_t timeout_s) { return timeout_s > 4 ? timeout_s - 3 : 1; }
unsigned init_grace_s(std::uint32_t timeout_s) { return program_grace_s(timeout_s) + 1; }

std::string toml_string(std::string_view text) {
  std::string out = "\"";
  for (char c : text) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

// `text` (the absolute form of `given`) must pass the definition's path
// rules and not lie where the sandbox hides everything.
void require_usable_path(std::string_view flag, const fs::path& given, const std::string& text) {
  for (auto problem : {path_problem(text), hidden_path_problem(text)})
    if (problem) throw UsageError(fmt::format("{} {}: {}", flag, printable(given.string()), *problem));
}

// A share's path must pass the definition's rules (it becomes a [[share]])
// and the guest agent's manifest (it is mounted at the same path there,
// and a manifest line cannot carry a space).
// It is granted to the VM's UID, so grant()'s own refusals (a symlink or
// ".." on the way, not a directory, no POSIX ACLs) come here, before
// anything is created or leased.
fs::path existing_dir(const fs::path& path, std::string_view flag, const Locations& locations) {
  std::error_code error;
  fs::path absolute = fs::absolute(path, error);
  if (error) throw UsageError(fmt::format("{} {}: {}", flag, path.string(), error.message()));
  fs::path tree;
  try {
    tree = checked_share(absolute, locations);
  } catch (const UsageError& e) {
    throw UsageError(fmt::format("{}: {}", flag, e.what()));
  }
  std::string text = normalize_path(tree.string());
  require_usable_path(flag, path, text);
  if (text.find(' ') != std::string::npos) {
    throw UsageError(fmt::format("{} {}: the guest mounts it at the same path, which may not contain a space; "
                                 "share a directory whose path has none",
                                 flag, path.string()));
  }
  return text;
}

// The kernel or initramfs named on the command line, made absolute.
fs::path existing_file(const fs::path& path, std::string_view flag) {
  std::error_code error;
  fs::path absolute = fs::absolute(path, error).lexically_normal();
  if (error || !fs::is_regular_file(absolute))
    throw UsageError(fmt::format("{} {}: not an existing regular file", flag, path.string()));
  require_usable_path(flag, path, absolute.string());
  return absolute;
}

// One line of the guest agent's manifest: no newline, no NUL.
void require_single_line(std::string_view value, std::string_view what) {
  if (value.find('\n') != std::string_view::npos || value.find('\0') != std::string_view::npos)
    throw UsageError(fmt::format("{} contains a newline or NUL, which the guest agent cannot be given", what));
}

// The run's directory: removed when the run ends, however it ends, and
// locked (flock) while the run lives, so that `acl sweep` can tell a
// directory a killed run left from a live run's.
class RunDir {
 public:
  explicit RunDir(fs::path path)
      : path_(std::move(path)), lock_(::open(path_.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) {
    if (!lock_ || ::flock(lock_.get(), LOCK_EX) < 0) {
      int error = errno;
      ::rmdir(path_.c_str());  // just made, still empty
      throw SystemError(error, lock_ ? "flock" : "open", path_.string());
    }
  }
  // Not fs::remove_all: it keeps a descriptor per level, and the VM's UID
  // can make its scratch and report shares deeper than the limit.
  ~RunDir() {
    try {
      supervisor::remove_directory_tree(path_);
    } catch (const std::exception& e) {
      // The message can hold names the VM chose in its shares.
      log::warning("cannot remove {}: {}", path_.string(), printable(e.what()));
    }
  }
  RunDir(const RunDir&) = delete;
  RunDir& operator=(const RunDir&) = delete;
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
  UniqueFd lock_;
};

// "run-PID-HEX", as run_program_in_vm names a run's directory: the PID.
std::optional<pid_t> run_dir_pid(std::string_view name) {
  if (!name.starts_with("run-")) return std::nullopt;
  name.remove_prefix(4);
  std::size_t dash = name.find('-');
  if (dash == std::string_view::npos || dash == 0 || dash + 1 == name.size()) return std::nullopt;
  pid_t pid = 0;
  auto [end, error] = std::from_chars(name.data(), name.data() + dash, pid);
  if (error != std::errc() || end != name.data() + dash || pid <= 0) return std::nullopt;
  for (char c : name.substr(dash + 1)) {
    if (!std::isxdigit(static_cast<unsigned char>(c)) || std::isupper(static_cast<unsigned char>(c))) return std::nullopt;
  }
  return pid;
}

void make_dir(const fs::path& path, mode_t mode) {
  if (::mkdir(path.c_str(), mode) != 0 && errno != EEXIST) throw_errno("mkdir", path.string());
  check(::chmod(path.c_str(), mode), "chmod", path.string());
}

struct CheckedRun {
  std::vector<fs::path> ro, rw, store;
  fs::path kernel, initramfs;
  fs::path runs;  // STATE_DIR/runs
};

// 1. Everything the user named, checked before anything is created.
CheckedRun check_run(const RunOptions& options) {
  if (options.command.empty()) throw UsageError("no program given: vmwarden run [OPTIONS] -- PROGRAM [ARGS...]");
  if (options.timeout_s < 2 || options.timeout_s > 3600)
    throw UsageError(fmt::format("--timeout {}: give 2 to 3600 seconds (the program gets SIGKILL a second or more "
                                 "before the VM is stopped)",
                                 options.timeout_s));
  CheckedRun run;
  std::vector<fs::path>&ro = run.ro, &rw = run.rw, &store = run.store;
  for (const auto& dir : options.ro) ro.push_back(existing_dir(dir, "--ro", options.locations));
  for (const auto& dir : options.rw) rw.push_back(existing_dir(dir, "--rw", options.locations));
  for (const auto& dir : options.store) store.push_back(existing_dir(dir, "--store", options.locations));
  // The run's own config and report shares, and the scratch directory, count.
  std::size_t own_shares = 2 + (options.scratch ? 1 : 0);
  if (ro.size() + rw.size() + store.size() + own_shares > kMaxShares)
    throw UsageError(fmt::format("at most {} --ro, --rw and --store directories in all{} (a VM has at most {} "
                                 "shares, {} of them the run's own)",
                                 kMaxShares - own_shares, options.scratch ? " with --scratch" : "", kMaxShares,
                                 own_shares));
  {
    // One share per directory: a second one would get a second grant that
    // contradicts the first, and mount over it in the guest.
    std::vector<fs::path> all = ro;
    all.insert(all.end(), rw.begin(), rw.end());
    all.insert(all.end(), store.begin(), store.end());
    std::sort(all.begin(), all.end());
    if (auto twice = std::adjacent_find(all.begin(), all.end()); twice != all.end())
      throw UsageError(fmt::format("{} is given more than once (--ro, --rw, --store); give it once", twice->string()));
  }
  if (options.image.empty() || options.image == "." || options.image == ".." ||
      options.image.find('/') != std::string::npos)
    throw UsageError(fmt::format("--image \"{}\": give the name of an image in {} (no '/')", options.image,
                                 (options.locations.state_dir / "images").string()));
  for (const auto& entry : options.env) {
    if (entry.empty() || entry.front() == '=' || entry.find('=') == std::string::npos)
      throw UsageError(fmt::format("--env {}: want KEY=VALUE", entry));
    require_single_line(entry, "--env " + entry.substr(0, entry.find('=')));
  }
  if (options.command.front().empty()) throw UsageError("the program's name is an empty string");
  require_single_line(options.command.front(), "the program's name");
  for (std::size_t i = 1; i < options.command.size(); ++i)
    require_single_line(options.command[i], fmt::format("the program's argument {}", i));
  if (options.wayland && options.vmm != Vmm::crosvm)
    throw UsageError("--wayland needs --vmm crosvm (only crosvm passes a Wayland socket to the guest)");
  // A VMWARDEN_QEMU (...) override that is empty or names no program: found
  // here, not once the run's directory exists.
  Host host = Host::detect();
  // Every run has shares (its config and report), and crosvm finds a share
  // by the tag its virtiofsd advertises, which QEMU's C virtiofsd cannot:
  // found here too, as supervise finds it, not once the run's directory
  // exists.
  if (options.vmm == Vmm::crosvm) {
    fs::path virtiofsd = backend::required_program(host.virtiofsd, "virtiofsd", "VMWARDEN_VIRTIOFSD");
    if (virtiofs::detect_dialect(virtiofsd) == virtiofs::Dialect::c)
      throw PermanentError(fmt::format("--vmm crosvm needs the Rust virtiofsd (crosvm finds a share by the tag it "
                                       "advertises); {} is QEMU's C virtiofsd: set VMWARDEN_VIRTIOFSD to the Rust one",
                                       virtiofsd.string()));
  }
  fs::path &kernel = run.kernel, &initramfs = run.initramfs;
  if (!options.kernel.empty()) kernel = existing_file(options.kernel, "--kernel");
  if (!options.initramfs.empty()) initramfs = existing_file(options.initramfs, "--initramfs");
  // The run's directory holds the transient definition's config, report
  // and scratch shares, so STATE_DIR/runs must pass the same path rules,
  // checked here: found by the definition's check in step 3, it would come
  // after step 2 had created runs/ and opened STATE_DIR up.
  fs::path& runs = run.runs;
  runs = options.locations.state_dir / "runs";
  for (auto problem : {path_problem(runs.string()), hidden_path_problem(runs.string())})
    if (problem)
      throw UsageError(fmt::format("{} {} cannot hold the run's directory: {}", options.state_dir_setting,
                                   options.locations.state_dir.string(), *problem));
  // The scratch directory is mounted at the same path in the guest, which
  // the manifest cannot write with a space.
  if (options.scratch && runs.string().find(' ') != std::string::npos)
    throw UsageError(fmt::format("{} {}: --scratch is mounted in the guest at its path under runs/, which may not "
                                 "contain a space",
                                 options.state_dir_setting, options.locations.state_dir.string()));
  if (kernel.empty()) {
    fs::path image = options.locations.state_dir / "images" / options.image;
    if (!fs::exists(image / "vmlinuz"))
      throw UsageError(fmt::format("image \"{}\": {} does not exist; build one with VMWARDEN_GUEST_AGENT=PATH "
                                   "tools/build-guest-image {} (doc/GUEST-AGENT.md), or pass --kernel and "
                                   "--initramfs",
                                   options.image, (image / "vmlinuz").string(), image.string()));
    // Checked as --kernel and --initramfs are, before anything is created:
    // a path the definition would refuse (a ',' in the image's name) or an
    // image without its initramfs.
    std::string flag = fmt::format("--image \"{}\":", options.image);
    kernel = existing_file(image / "vmlinuz", flag);
    initramfs = existing_file(image / "initrd.img", flag);
  }
  return run;
}

struct ShareEntry {
  std::string tag;
  fs::path path;
  bool readonly;
};

// 3. The transient definition of a run whose directory is `dir`, and the
//    shares it has.
std::string run_definition(const RunOptions& options, const CheckedRun& run, const fs::path& dir,
                           std::vector<ShareEntry>& shares) {
  fs::path config = dir / "config", report = dir / "report", scratch = dir / "scratch";
  shares = {{std::string(kConfigTag), config, true}, {std::string(kReportTag), report, false}};
  for (size_t i = 0; i < run.ro.size(); ++i) shares.push_back({fmt::format("ro{}", i), run.ro[i], true});
  for (size_t i = 0; i < run.rw.size(); ++i) shares.push_back({fmt::format("rw{}", i), run.rw[i], false});
  for (size_t i = 0; i < run.store.size(); ++i) shares.push_back({fmt::format("store{}", i), run.store[i], true});
  if (options.scratch) shares.push_back({"scratch", scratch, false});
  std::string toml = fmt::format(
      "# Written by `vmwarden run` for one run; removed when it ends.\n"
      "vmm = {}\nkernel = {}\n{}cmdline = {}\nmemory_mib = {}\ncpus = 1\nshutdown_timeout_s = {}\n",
      toml_string(to_string(options.vmm)), toml_string(run.kernel.string()),
      run.initramfs.empty() ? "" : "initramfs = " + toml_string(run.initramfs.string()) + "\n",
      toml_string(fmt::format("console=ttyS0 quiet vmwarden.share={}@{} vmwarden.run={} vmwarden.stopfile=1 "
                              "vmwarden.grace={}",
                              kConfigTag, kGuestConfigDir, kGuestAgent, init_grace_s(options.timeout_s))),
      options.memory_mib, options.timeout_s);
  if (options.wayland) toml += "[display]\nwayland = true\n";
  for (const auto& share : shares)
    toml += fmt::format("[[share]]\ntag = {}\npath = {}\naccess = \"{}\"\n", toml_string(share.tag),
                        toml_string(share.path.string()), share.readonly ? "ro" : "rw");
  return toml;
}

[[noreturn]] void invalid_run_definition(const ParseResult& parsed) {
  std::string errors;
  for (const auto& diagnostic : parsed.errors) errors += "\n  " + diagnostic.to_string();
  throw UsageError("the run's definition is invalid:" + errors);
}

}  // namespace

int run_program_in_vm(const RunOptions& options) {
  // Stop requests wait from here on: once the sandbox runs they power the
  // VM off (the supervisor reads them), and before that they must not cut
  // the run short of its clean-up.
  block_stop_signals();
  const CheckedRun run = check_run(options);
  const fs::path& runs = run.runs;

  // 2. The run's directory: one per run, with the config share (root's,
  //    read-only for the VM), the report share (granted read-write like any
  //    share) and the scratch directory (the UID's own, its HOME). runs/ and
  //    the run's directory are root's 0700: the VM reaches its shares only
  //    through its virtiofsds, which get them from the directory each grant
  //    opened, never by path; and the UID owns its scratch directory, which
  //    the program can open to every user (chmod 0777 $HOME) and so to a
  //    user who guesses the run's name (16 random bits). STATE_DIR is 0755
  //    for the VMM, which reads an image's kernel there as the UID.
  fs::create_directories(runs);
  check(::chmod(options.locations.state_dir.c_str(), 0755), "chmod", options.locations.state_dir.string());
  check(::chmod(runs.c_str(), 0700), "chmod", runs.string());
  // Made here, not found: a directory a killed run left behind under the
  // same name would bring its old report (exit status) with it.
  std::string name;
  for (std::random_device random;;) {
    name = fmt::format("run-{}-{:x}", ::getpid(), random() & 0xffff);
    if (::mkdir((runs / name).c_str(), 0700) == 0) break;
    if (errno != EEXIST) throw_errno("mkdir", (runs / name).string());
  }
  RunDir dir(runs / name);
  check(::chmod(dir.path().c_str(), 0700), "chmod", dir.path().string());
  fs::path config = dir.path() / "config", report = dir.path() / "report", scratch = dir.path() / "scratch";
  make_dir(config, 0755);
  make_dir(report, 0700);
  if (options.scratch) make_dir(scratch, 0700);

  // 3. The transient definition, validated like any other.
  std::vector<ShareEntry> shares;
  std::string toml = run_definition(options, run, dir.path(), shares);
  fs::path definition_file = dir.path() / (name + ".toml");
  write_text_file(definition_file, toml);
  ParseResult parsed = load_definition(definition_file);
  if (!parsed.ok()) invalid_run_definition(parsed);

  // 4. Once the UID is known: the manifest, and the scratch dir made the
  //    UID's own (it is the program's HOME).
  LaunchOptions launch_options;
  launch_options.locations = options.locations;
  launch_options.own_state_subdir = runs / name;
  launch_options.prepare = [&](uid_t uid) {
    guest::Manifest manifest;
    manifest.uid = uid;
    manifest.gid = static_cast<gid_t>(uid);
    manifest.home = options.scratch ? scratch.string() : "/";
    manifest.program = options.command.front();
    manifest.args.assign(options.command.begin() + 1, options.command.end());
    manifest.env = options.env;
    for (const auto& share : shares) {
      if (share.tag == kConfigTag || share.tag == kReportTag) continue;
      manifest.mounts.push_back({share.tag, share.path.string(), share.readonly});
    }
    for (const auto& path : run.store) manifest.store.push_back(path.string());
    manifest.store_lib = options.store_lib;
    manifest.report_tag = std::string(kReportTag);
    manifest.grace_s = program_grace_s(options.timeout_s);
    write_text_file(config / std::string(guest::kManifestFile), guest::write_manifest(manifest));
    if (options.scratch) check(::chown(scratch.c_str(), uid, uid), "chown", scratch.string());
  };

  // 5. The VM in the foreground (SIGINT/SIGTERM power it off), then its
  //    grants revoked and its UID released by launch(). What the program
  //    writes is relayed to our standard output meanwhile, to the end.
  OutputRelay output(report, STDOUT_FILENO);
  int status = launch(*parsed.definition, launch_options);
  bool relayed = output.finish();

  // 6. The program's status, as the agent reported it; a success whose
  //    output could not all be written (a full disk, a reader gone) is the
  //    run's failure, as for every command's output.
  if (std::optional<int> program_status = read_reported_exit_status(report))
    return *program_status == exit_status::kOk && !relayed ? exit_status::kFailure : *program_status;
  log::error("the guest reported no exit status for {} (the VM exited with status {})", options.command.front(),
             status);
  return status == 0 ? exit_status::kFailure : status;
}

supervisor::AbandonedDirs remove_abandoned_runs(const Locations& locations, bool dry_run) {
  return supervisor::remove_unlocked_directories(
      locations.state_dir / "runs",
      [](std::string_view name, const struct stat&) {
        // A run may still be alive without its lock: between making its
        // directory and locking it.
        std::optional<pid_t> pid = run_dir_pid(name);
        return pid && ::access(fmt::format("/proc/{}", *pid).c_str(), F_OK) != 0;
      },
      dry_run);
}

RunAudit audit_run(const RunOptions& options) {
  const CheckedRun run = check_run(options);
  // The name is made at the start, from the pid and a random number.
  const std::string name = "run-pid-random";
  const fs::path dir = run.runs / name;
  std::vector<ShareEntry> shares;
  std::string toml = run_definition(options, run, dir, shares);
  // The run's directory does not exist yet: its shares are checked when it does.
  ParseResult parsed = parse_definition(toml, (dir / (name + ".toml")).string(), {.check_filesystem = false});
  if (!parsed.ok()) invalid_run_definition(parsed);
  const Definition& definition = *parsed.definition;

  acl::UidRegistry registry(options.locations);
  LaunchOptions launch_options;
  launch_options.locations = options.locations;
  launch_options.own_state_subdir = dir;
  RunAudit audit{.plan = plan_launch(definition, registry.range().first, launch_options), .options = {}};
  LaunchAuditOptions& out = audit.options;
  out.title = "vmwarden run";
  out.locations = options.locations;
  out.uid_source = UidSource::single_use;
  out.uid_is_placeholder = true;
  out.uid_range = registry.range().to_string();
  for (const fs::path& file : {run.kernel, run.initramfs})
    if (!file.empty()) out.files_read_as_uid.push_back(file);
  out.steps_before.push_back(
      {"outer",
       fmt::format("create {} (and the state directory, made 0755; runs/ 0700) and, exclusively, the run's "
                   "directory {} (0700; named at the start from the pid and a random number; flock'ed while the run "
                   "lives, for acl sweep) with config/ (0755), "
                   "report/ (0700){}; write the transient definition {} there",
                   run.runs.string(), dir.string(), options.scratch ? " and scratch/ (0700)" : "",
                   (dir / (name + ".toml")).string()),
       {},
       "no uid but root's may enter runs/ or the run's directory (the VM reaches its shares through its "
       "virtiofsds only), so that a scratch directory the program opens up stays out of other users' reach; the "
       "config share is root's, read-only to "
       "the VM; the report share is granted to the UID like any share, for the guest agent to leave the program's "
       "exit status"});
  out.steps_before.push_back(
      {"outer",
       fmt::format("fork a process that, until the VM is gone, copies what {} gains to the standard output (a "
                   "regular file, never following a symlink nor waiting on a FIFO, {} MiB at most, said on stderr "
                   "when reached; a write that fails ends it)",
                   (dir / "report" / std::string(guest::kOutputFile)).string(), guest::kOutputLimit >> 20),
       {},
       "the program's standard output and error, which the guest agent copies there, reach the caller as they "
       "come; forked before the sandbox exists, so that no thread runs when the warden is cloned"});
  out.steps_at_prepare.push_back(
      {"outer",
       fmt::format("write the guest agent's manifest (the UID, the program, its arguments and environment, the shares' "
                   "mount points) to {}{}",
                   (dir / "config" / std::string(guest::kManifestFile)).string(),
                   options.scratch ? fmt::format("; chown {} to the UID", (dir / "scratch").string()) : ""),
       options.scratch ? std::vector<std::string>{"CAP_CHOWN"} : std::vector<std::string>{},
       options.scratch ? "the guest runs the program as the UID; the scratch directory is its HOME"
                       : "the guest runs the program as the UID"});
  out.steps_after.push_back({"outer",
                             fmt::format("wait for the output relay to copy the rest; read the program's exit "
                                         "status from {} (a regular file, never following a symlink nor waiting on "
                                         "a FIFO), then remove {} and everything in it",
                                         (dir / "report" / std::string(guest::kExitStatusFile)).string(),
                                         dir.string()),
                             {},
                             "the run's exit status is the program's (1 for a 0 whose output could not all be written); nothing of the "
                             "run is left"});
  return audit;
}

}  // namespace vmwarden::vm
