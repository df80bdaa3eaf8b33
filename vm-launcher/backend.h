// The VMM backends: for a VM definition and the paths of its running
// sandbox, what to exec (argv), what the VMM may touch (Landlock rules), which
// seccomp profile confines it, and how the warden sees it ready, asks it to
// power off and forces it to stop. One file per VMM: qemu.cc, crosvm.cc,
// cloud_hypervisor.cc. Building a plan starts nothing.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "supervisor/confinement.h"
#include "supervisor/sandbox.h"
#include "vm-launcher/definition.h"

namespace vmwarden::vm {

// Where the programs vmwarden runs live on this host, and whether KVM is
// usable. detect() reads the overrides VMWARDEN_QEMU, VMWARDEN_CROSVM,
// VMWARDEN_CLOUD_HYPERVISOR, VMWARDEN_CH_REMOTE and VMWARDEN_VIRTIOFSD, then
// looks on PATH and in the standard locations (doc/VMM.md). A program that
// is not found stays empty; planning a VM that needs it is then an error
// that names the variable to set.
struct Host {
  std::filesystem::path qemu;
  std::filesystem::path crosvm;
  std::filesystem::path cloud_hypervisor;
  std::filesystem::path ch_remote;
  std::filesystem::path virtiofsd;
  bool kvm = false;  // kvm_usable()

  static Host detect();
  // /dev/kvm is read-write for every user (the VM's UID) and opens, and
  // VMWARDEN_NO_KVM=1 is not set.
  static bool kvm_usable();
};

// The descriptor each VMM writes the guest's console to: a pipe's write end,
// the warden the reader (supervisor::ServiceSpec::captures), which keeps it
// in RuntimePaths::serial_log. The VMM opens no console file itself: a guest
// that writes its console without end would fill the runtime dir's
// filesystem (/run, memory).
inline constexpr int kConsoleFd = 3;
// QEMU and cloud-hypervisor get their control socket bound and listening
// from the warden, as this descriptor (VmmPlan::control_fd), so that they
// create nothing in the runtime directory: cloud-hypervisor binding by path
// also makes a lock file beside the socket. crosvm binds its own (its
// readiness is that socket appearing).
inline constexpr int kControlFd = 4;
// How much of the console serial.log holds before it becomes serial.log.1:
// the last 1 to 2 MiB are kept.
inline constexpr std::uint64_t kSerialLogMaxBytes = 1024 * 1024;

// The paths of one running VM, chosen by the caller (normally inside the VM's
// runtime directory). Every path must be free of `,` `:` `=` and fit in a
// unix socket address where it names a socket.
struct RuntimePaths {
  std::filesystem::path runtime_dir;
  std::filesystem::path control_socket;  // QMP, crosvm control socket, cloud-hypervisor API
  std::filesystem::path serial_log;      // the warden's, from the VMM's console (kConsoleFd)
  std::map<std::string, std::filesystem::path> share_sockets;  // vhost-user socket by share tag
  std::filesystem::path wayland_socket;  // the host compositor's socket, for [display] wayland

  // RUNTIME_DIR/control.sock, RUNTIME_DIR/serial.log, RUNTIME_DIR/fsN.sock for
  // the Nth share (numbered, not named by tag, to stay within the 107 bytes
  // of a socket address). The Wayland socket is left to the caller.
  static RuntimePaths in(const std::filesystem::path& runtime_dir, const Definition& definition);
};

using Deadline = std::chrono::steady_clock::time_point;

struct VmmPlan {
  std::vector<std::string> argv;  // argv[0] is the absolute path of the VMM
  // Everything the VMM may touch: the system's programs and libraries, the
  // usual devices, /proc/self, its own binary, kernel and initramfs (read),
  // disks (read, or read-write unless `readonly`), the runtime directory and
  // sockets (read-write), /dev/kvm (read-write and device ioctls) when used.
  std::vector<supervisor::PathRule> paths;
  std::string seccomp_profile;  // a profile name known to supervisor/seccomp.cc
  bool needs_network = false;   // `[sandbox] network = true`: TCP must not be denied
  // The VMM writes the guest's console to this descriptor, which the caller
  // gives it (a pipe's write end: supervisor::OutputCapture).
  int console_fd = kConsoleFd;
  // Set: the caller binds RuntimePaths::control_socket (as the VM's uid's,
  // listening) and gives it to the VMM as this descriptor
  // (supervisor::ListenSocket); the VMM then may create nothing in the
  // runtime directory. Unset: the VMM binds it there itself.
  std::optional<int> control_fd;

  // For ServiceSpec::wait_ready: returns once the VMM runs the guest, throws
  // when it exits, is not ready by the deadline, or a stop arrives
  // (stop_requested(), checked between probes).
  std::function<void(const supervisor::RunningService&, Deadline)> wait_ready;
  // For ServiceSpec::graceful_stop: asks the guest to power off (ACPI power
  // button) and returns without waiting for it.
  // Gives up by the deadline (the warden's loop waits on it).
  std::function<void(const supervisor::RunningService&, Deadline)> graceful_stop;
  // Stops the VMM now: its own stop command first, then SIGKILL if it has not
  // exited by the deadline. Returns once it has exited or was SIGKILLed.
  std::function<void(const supervisor::RunningService&, Deadline)> force_stop;
  // For the audit: what those three do in the warden with its privileges.
  std::vector<supervisor::ServiceSpec::WardenAction> warden_actions;
  // The command lines those two run through run_control_program() (for the
  // audit); empty when they speak to the VMM from the warden itself (QMP).
  std::vector<std::string> stop_programs;
};

// Throws UsageError for a definition the backend cannot express (a plain
// command, `network = true` with crosvm or cloud-hypervisor, a path or tag
// that would inject options, a socket path too long) and PermanentError when
// the VMM's program is not installed.
VmmPlan plan_vmm(const Definition& definition, const RuntimePaths& paths, const Host& host);

}  // namespace vmwarden::vm
