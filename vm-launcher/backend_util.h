// What the three backends share: argument checks that keep option
// separators out of VMM command lines, the Landlock rules every VMM needs,
// and running a VMM's control program under the VMM's own confinement.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "common/process.h"
#include "supervisor/confinement.h"
#include "supervisor/sandbox.h"
#include "vm-launcher/backend.h"

namespace vmwarden::vm::backend {

// Returns `path` as a string once it passes path_problem(); throws UsageError
// naming `what` otherwise. Applied to every path a backend puts in an argv,
// wherever it came from: a definition was checked when parsed, but a
// RuntimePaths or a programmatically built Definition was not.
std::string checked_path(std::string_view what, const std::filesystem::path& path);
// Also checks that `path` fits in a unix socket address.
std::string checked_socket(std::string_view what, const std::filesystem::path& path);
std::string checked_tag(std::string_view tag);
// A kernel command line goes into one argv element: refuse control characters.
std::string checked_cmdline(std::string_view cmdline);
// The program for `vmm`, or PermanentError naming its override variable.
std::filesystem::path required_program(const std::filesystem::path& program, std::string_view name,
                                       std::string_view variable);
// The share's socket from `paths`, or UsageError.
std::filesystem::path share_socket(const RuntimePaths& paths, const Share& share);

// Whether the disk `path` leads to a block device (following symlinks, as
// the VMM's open does); false when nothing is there yet (a plan made for
// audit or a test) or it cannot be looked at.
bool is_block_device(const std::filesystem::path& path);

// Which block-device disks a VMM may send ioctls to (Landlock's
// FS_IOCTL_DEV on that device). QEMU needs them on a read-write one only
// (it refuses one whose BLKROGET fails; its size and sector-size probes on
// a read-only one fall back); cloud-hypervisor sizes every block device
// with BLKGETSIZE64 and fails without it, and crosvm is not known not to.
// The seccomp profiles refuse the loop device's own ioctls either way.
enum class BlockDiskIoctl { read_write_only, all };

// Who binds the VMM's control socket: the warden (VmmPlan::control_fd), or
// the VMM itself, in the runtime directory.
enum class ControlSocket { given, bound_by_vmm };

// System, device and /proc/self rules, the binaries, kernel, initramfs,
// disks (with ioctl on block devices as `block_ioctl` says), runtime
// directory (read, and FS_MAKE_SOCK only where the VMM binds its control
// socket there) and share sockets.
std::vector<supervisor::PathRule> common_rules(const Definition& definition, const RuntimePaths& paths,
                                               const std::vector<std::filesystem::path>& programs,
                                               BlockDiskIoctl block_ioctl, ControlSocket control);

// Runs a VMM control program (`crosvm powerbtn SOCKET`, `ch-remote ...`) from
// the warden as the VMM itself runs: same uid, Landlock domain and seccomp
// profile, same environment. Throws with the program's output unless it
// exits 0 by the deadline.
void run_control_program(const supervisor::RunningService& vmm, const std::vector<std::string>& argv,
                         Deadline deadline);

// Waits for the VMM to exit until `deadline`, then SIGKILLs it.
void kill_at_deadline(const supervisor::RunningService& vmm, Deadline deadline);

// Fails readiness when the VMM has already exited, or a stop has arrived
// (RunningService::stop_requested()).
void require_running(const supervisor::RunningService& vmm, std::string_view what);

// A readiness probe's own bound: a VMM that accepts a connection and then
// does not answer is asked again (a timeout is "not yet"), so that a stop
// is noticed between probes within a second or so.
Deadline probe_deadline(Deadline deadline);

// Sleeps a little between readiness probes, never past the deadline.
void pause_before_retry(Deadline deadline);

}  // namespace vmwarden::vm::backend
