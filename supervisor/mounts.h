// Mounts made inside the sandbox's mount namespaces. Nothing here touches the
// host's mount table: every function runs after a mount namespace was
// unshared or cloned and propagation was made private.
#pragma once

#include <filesystem>
#include <optional>
#include <vector>

#include "supervisor/sandbox.h"

namespace vmwarden::supervisor {

// Whether each service gets a mount namespace of its own. Its purpose is a
// /tmp and /dev/shm, and a read-only view, per service, so that services
// cannot meet there; a sandbox of one service (`vmwarden exec`, a VM without
// shares) has nobody to keep apart, and the warden makes its service's
// mounts in its own namespace, sparing the sandbox a namespace copy and its
// teardown (an expedited RCU grace period, ~0.3 ms). The warden writes
// nothing there afterwards but through descriptors opened on the host's
// mounts (the runtime dir's removal).
bool services_have_own_mount_namespaces(const SandboxSpec& spec);

// Whether a BindMount goes on a private_mount_point() (it has no target).
bool has_private_mount_points(const SandboxSpec& spec);

// In the warden, before any service starts: recursive private propagation on
// /, a fresh /proc for the new PID namespace, and the sandbox's bind mounts
// (on their private mount points, which it makes, for those without a
// target).
void setup_warden_mounts(const SandboxSpec& spec);

// In the warden, before it removes the runtime dir itself (when the outer
// is gone): the tmpfs of private_mount_point()s, and the writable copy a
// single service's read-only view put on the runtime dir, are mounts in the
// warden's namespace, which the kernel will not let it remove while
// mounted. Detaches them, with the shares on them; failures are logged.
void unmount_runtime_dir_mounts(const SandboxSpec& spec) noexcept;

// What a service's child does to its mount namespace, a copy of the
// warden's of its own (the warden does it in its own namespace for the one
// service of a sandbox: own_namespace false).
struct ServiceMounts {
  bool own_namespace = true;  // services_have_own_mount_namespaces()
  // The private mount points (the shares' copies) that none of its Landlock
  // rules lies at or below, unmounted there, so that a rule on a directory
  // above them (the VMM's on the runtime directory) does not reach the
  // shares, which are virtiofsd's alone.
  std::vector<std::filesystem::path> hidden;
  // With Landlock on and no rule on the runtime directory (or above it): the
  // runtime directory covered by an empty read-only tmpfs holding only the
  // paths below it that its rules name (a virtiofsd's share), so that it
  // cannot reach the VMM's control socket there. Pathname sockets are not
  // Landlock's, and the VMM's, the VM's uid's, would take its connect.
  std::optional<std::filesystem::path> covered_runtime_dir;
  std::vector<std::filesystem::path> uncovered;  // its rules' paths below it
  // With Landlock on: every mount read-only but at its write rules, which
  // stay as writable as they are on the host. Landlock (up to ABI 7) does not
  // cover chmod, chown, extended attributes (POSIX ACLs among them) or file
  // times: without this, a service could change those of any file its uid
  // may (as root, any file on the host), outside every rule.
  bool read_only_elsewhere = false;
  // The write rules that need a writable mount: not those on /tmp and
  // /dev/shm (the service's own tmpfs), nor on device nodes (a read-only
  // mount does not stop a device's writes).
  std::vector<PathRule> writable;
};
ServiceMounts service_mounts(const SandboxSpec& spec, const ServiceSpec& service);

// In a service's child, before its confinement (or in the warden, before it
// starts the one service): a mount namespace of its own (with
// `mounts.own_namespace`), without the mounts `mounts.hidden` names,
// read-only as `mounts` says, with private, size-limited nodev,nosuid,noexec
// tmpfs on /tmp and /dev/shm.
void setup_service_mounts(const ServiceMounts& mounts);

}  // namespace vmwarden::supervisor
