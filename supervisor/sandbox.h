// The public interface of the supervisor: describe a sandbox (its services
// and their confinement), then run it. The caller (the `vmwarden exec` CLI,
// the VM launcher) builds a SandboxSpec; run_sandbox() becomes the outer
// process, clones the PID-1 warden and returns the exit status to report.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/environment.h"
#include "supervisor/confinement.h"

namespace vmwarden::supervisor {

struct FdMapping {
  int parent_fd;  // open in the process that calls run_sandbox()
  int child_fd;   // the number the service sees; every other fd is closed
};

class RunningService;

// A unix socket the supervisor binds for a service (see ServiceSpec).
struct ListenSocket {
  std::filesystem::path path;  // inside the sandbox's runtime dir
  int child_fd;                // the number the service sees
};

// A descriptor of a service whose output the warden keeps in a file (see
// ServiceSpec::captures): a VMM's guest console.
struct OutputCapture {
  int child_fd;                 // the number the service writes to: a pipe's write end
  std::filesystem::path file;   // directly in the sandbox's runtime dir
  std::uint64_t max_bytes = 0;  // at most this much in `file`, and as much in `file`.1
  // Instead of a file (`file` and `max_bytes` unset): each line to the
  // warden's log, after "SERVICE fd N: ", its control characters escaped
  // and cut every 4 KiB, so that nothing the service writes reads as a line
  // of vmwarden's own there.
  bool to_log = false;
};

struct ServiceSpec {
  std::string name;                  // "virtiofsd-home", "vmm", "command"
  std::vector<std::string> argv;     // argv[0] is an absolute path
  // Made from vmwarden's own environment when the service starts (the
  // warden's is the caller's); by default empty. The audit shows it by names.
  EnvironmentRule environment{.inherit = false};
  std::filesystem::path cwd = "/";
  std::vector<FdMapping> fds;
  // Bound and listening before any service starts, owned by the service's
  // uid and gid, mode 0600: a client started later (the VMM) can connect at
  // once, and the service never needs write access where the socket lives.
  std::vector<ListenSocket> listen_sockets;
  // What the service writes to each capture's child_fd is the warden's to
  // store, so that it cannot fill the runtime dir's filesystem (/run, a
  // tmpfs in RAM) however much it writes. The service gets a pipe's write
  // end, blocking (the pipe is its uid's and gid's, so that it may open it
  // again by /proc/self/fd/N): when the warden does not keep up, the writer
  // waits. The warden reads the other end from its event loop, never
  // blocking on it (during start-up, between the probes of the readiness
  // waits: RunningService::stop_requested()), and writes it to `file`, which it
  // creates (replacing whatever is there) owned by the service's uid and
  // gid, mode 0600, through the runtime dir's descriptor opened on the
  // host's mount: once `file` holds max_bytes it is renamed to `file`.1
  // (replacing that) and a new one is started. The bytes are never logged.
  // At the end, what is left in the pipe is written too.
  std::vector<OutputCapture> captures;
  Confinement confinement;

  // The main service's exit starts the shutdown, and its status becomes the
  // sandbox's exit status. Exactly one service is main.
  bool main = false;

  // Every service starts a session of its own (setsid). These standard fds
  // (of 0, 1 and 2), each mapped in `fds` from the caller's terminal (an
  // interactive `vmwarden exec` command), get instead the slave of a new pty
  // that the outer opens from the host's /dev/ptmx, with the caller's
  // terminal's window size and modes; the first is the service's
  // controlling terminal (TIOCSCTTY). While the sandbox runs, the outer
  // relays between the caller's terminal (in raw mode) and the pty's master
  // (supervisor/pty_relay.h). Empty: no controlling terminal at all. At
  // most one service has them.
  std::vector<int> terminal_fds;

  // Services of the same stage start together; a stage starts once every
  // service of the earlier stages is ready (e.g. every virtiofsd, then the VMM).
  int stage = 0;

  // Runs in the warden. Returns once the service is ready or throws when it
  // cannot become ready by `deadline`, or as soon as the service's
  // stop_requested() says so (between probes, which it must call often: the
  // warden reads the services' output pipes there). Unset: ready as soon as
  // exec succeeded.
  std::function<void(const RunningService&, std::chrono::steady_clock::time_point deadline)> wait_ready;

  // Runs in the warden to ask the service to stop gracefully (QMP
  // system_powerdown, `crosvm powerbtn`, ...). Unset: SIGTERM. It runs on
  // the warden's loop, so it must give up by `deadline` (the warden passes
  // about a second, never past the shutdown deadline): a wedged control
  // socket must not hold the loop past the point where it SIGKILLs.
  std::function<void(const RunningService&, std::chrono::steady_clock::time_point deadline)> graceful_stop;
  // Asks again at this interval until the service exits or the shutdown
  // deadline passes: a guest that has not loaded its ACPI button driver yet
  // loses the press. Zero: asked once.
  std::chrono::milliseconds graceful_stop_repeat{0};

  // Runs in the warden when the shutdown timeout has passed and the main
  // service still runs: its own immediate stop (QMP `quit`, `crosvm stop`,
  // `ch-remote shutdown-vmm`), so that the VMM exits on its own terms (its
  // disk images flushed) rather than by SIGKILL; returns once it has exited
  // or, at `deadline` (about a second on), SIGKILLs it. Unset: SIGKILL.
  std::function<void(const RunningService&, std::chrono::steady_clock::time_point deadline)> force_stop;
  // For the audit: the programs graceful_stop and force_stop run (a VMM's
  // own control program), each from a child of the warden that joins this
  // service's mount namespace and takes its confinement.
  std::vector<std::string> stop_programs;
  // For the audit: what wait_ready, graceful_stop and force_stop do in the
  // warden itself, with its privileges (root, every capability).
  struct WardenAction {
    std::string action;                     // "connect to the QMP socket ..."
    std::vector<std::string> capabilities;  // what it takes, e.g. "CAP_DAC_OVERRIDE"
    std::string why;
  };
  std::vector<WardenAction> warden_actions;
};

// A started service, as the warden sees it.
class RunningService {
 public:
  virtual ~RunningService() = default;
  virtual const ServiceSpec& spec() const = 0;
  virtual pid_t pid() const = 0;     // in the warden's PID namespace
  virtual bool running() const = 0;  // not yet reaped
  // A stop (SIGTERM, SIGINT, SIGHUP, the outer's death) has arrived and
  // waits for the warden: a readiness wait gives up at once instead of
  // running to its deadline, and the warden then stops the sandbox.
  virtual bool stop_requested() const = 0;
};

// A mount made in the warden's mount namespace before any service starts.
struct BindMount {
  std::filesystem::path source;
  // Usually == source: same path, new flags. Empty: at
  // private_mount_point(spec, name), and then source_copy is required.
  std::filesystem::path target;
  std::string name;
  bool readonly = true;
  // A copy of `source`'s mounts (detached_copy() below) made when the
  // caller checked it; for a granted tree, right after its grant. Set, the
  // mount is that copy, not `source` looked up by name again, and a target
  // named like the source must still be the very directory copied.
  std::shared_ptr<const UniqueFd> source_copy;
};

struct SandboxSpec {
  std::string name;                    // logs, and the runtime dir's name
  std::filesystem::path runtime_dir;   // created 0700, removed on every exit path
  uid_t runtime_dir_uid = 0;           // its owner: the VM's UID, so that services
  gid_t runtime_dir_gid = 0;           // running as that UID can create sockets there
  bool private_network = true;         // an empty network namespace
  std::vector<BindMount> mounts;      // in this order: a target inside another after it
  std::vector<ServiceSpec> services;
  std::chrono::milliseconds shutdown_timeout{30'000};
  std::chrono::milliseconds ready_timeout{30'000};

  // Readiness for s6 (`notification-fd`) or `--notify-fd`: a newline is
  // written and the fd closed once every service is ready.
  std::optional<int> notify_fd;

  // Under s6: prove that the parent is the s6-supervise holding
  // `supervise/lock` in the current directory before doing anything.
  bool require_s6_parent = false;

  // Runs in the outer once the warden, and with it every service, has
  // exited, before the runtime dir is removed: the revoke of a single-use
  // UID's grants. What the services left in the runtime dir is theirs to
  // make slow to remove, and a supervisor's kill timeout must not come
  // before the revoke. It must not throw.
  std::function<void()> after_services;
};

// Where a BindMount without a target is mounted: RUNTIME_DIR/mnt/NAME. The
// warden mounts a tmpfs of its own on RUNTIME_DIR/mnt, makes NAME there and
// then makes that tmpfs read-only: a service given this path reaches the
// mount whatever happens to the source's own path. Only root and the VM's
// UID (which owns the runtime dir, and could only ever lead its own
// services to what it can reach itself) can change anything on the way.
// `name` is 1-64 characters of [A-Za-z0-9_-].
std::filesystem::path private_mount_point(const SandboxSpec& spec, std::string_view name);

// Throws UsageError when an unbindable mount lies at `dir` or below it: a
// copy (detached_copy()) would leave it out, and show in the sandbox the
// directory it covers on the host, which no grant has walked.
void require_copyable_mounts(const std::filesystem::path& dir);

// A detached, private copy of the mounts at and below the directory open as
// `dir_fd` (open_tree(OPEN_TREE_CLONE | AT_RECURSIVE)), those below it
// read-only, for BindMount::source_copy: it holds the directory itself, not
// its path. Close-on-exec. `path` is where it lies (require_copyable_mounts()
// is checked there again).
UniqueFd detached_copy(int dir_fd, const std::filesystem::path& path);

// Under s6 (the current directory is the service directory): throws
// PermanentError unless the parent process is the s6-supervise holding
// supervise/lock. run_sandbox() checks it too when require_s6_parent is set.
void verify_s6_parent();

// Under s6: the number in the service directory's `notification-fd` file
// (the current directory), if there is one.
std::optional<int> read_s6_notification_fd();

// What s6-supervise's `timeout-kill` must leave beyond the shutdown timeout:
// the last graceful-stop attempt, the namespace's teardown and the revoke of
// the grants (`vmwarden s6 service` writes the timeout plus this).
inline constexpr std::chrono::seconds kS6KillMargin{10};

// Under s6: throws PermanentError if the service directory's `timeout-kill`
// (the current directory) is set and shorter than `shutdown_timeout` plus
// kS6KillMargin: s6-supervise would SIGKILL vmwarden in the middle of a stop
// and leave its grants. It is read at each stop, the definition at each
// start: a shutdown_timeout_s raised after the service was written meets
// the old value.
void verify_s6_timeout_kill(std::chrono::milliseconds shutdown_timeout);

// Records the parent process as it is now. main() calls it first thing: a
// sandbox started later (after a UID lease and ACL grants, which can take
// seconds) then refuses to start when that parent is gone by then, instead
// of taking whoever inherited it for its parent and running orphaned.
void remember_parent();

// Exit status conventions: the main service's exit code; any other service
// exiting while the sandbox runs shuts it down (its status is logged); 128+N when it died
// of signal N; 125 (PermanentError) for a sandbox that can never start.
int run_sandbox(const SandboxSpec& spec);

}  // namespace vmwarden::supervisor
