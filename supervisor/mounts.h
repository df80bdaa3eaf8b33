// Mounts made inside the sandbox's mount namespaces. Nothing here touches the
// host's mount table: every function runs after a mount namespace was
// unshared or cloned and propagation was made private.
#pragma once

#include <filesystem>
#include <vector>

#include "supervisor/sandbox.h"

namespace vmwarden::supervisor {

// Whether each service gets a mount namespace of its own. Its purpose is a
// /tmp and /dev/shm per service, so that services cannot meet there; a
// sandbox of one service (`vmwarden exec`, a VM without shares) has nobody
// to keep apart, and its service lives in the warden's namespace, with the
// scratch tmpfs mounted there. Nothing differs for the service (the view is
// the same; a copy would be identical), and the sandbox is spared a
// namespace copy and its teardown (an expedited RCU grace period, ~0.3 ms).
bool services_have_own_mount_namespaces(const SandboxSpec& spec);

// Whether a BindMount goes on a private_mount_point() (it has no target).
bool has_private_mount_points(const SandboxSpec& spec);

// In the warden, before any service starts: recursive private propagation on
// /, a fresh /proc for the new PID namespace, the sandbox's bind mounts (on
// their private mount points, which it makes, for those without a target),
// and the scratch tmpfs when the services have no mount namespaces of their
// own.
void setup_warden_mounts(const SandboxSpec& spec);

// In the warden, before it removes the runtime dir itself (when the outer
// is gone): the tmpfs of private_mount_point()s is a mount point in the
// warden's namespace, which the kernel will not let it remove while
// mounted. Detaches it with the shares on it; failures are logged.
void unmount_private_mount_points(const SandboxSpec& spec) noexcept;

// What a service's child does to its mount namespace.
struct ServiceMounts {
  bool own_namespace = false;  // services_have_own_mount_namespaces()
  // In its own namespace: the private mount points (the shares' copies) that
  // none of its Landlock rules lies at or below, unmounted there, so that a
  // rule on a directory above them (the VMM's on the runtime directory)
  // does not reach the shares, which are virtiofsd's alone.
  std::vector<std::filesystem::path> hidden;
};
ServiceMounts service_mounts(const SandboxSpec& spec, const ServiceSpec& service);

// In a service's child, before its confinement, with `mounts.own_namespace`:
// a mount namespace of its own with private, size-limited nodev,nosuid
// tmpfs on /tmp and /dev/shm, without the mounts `mounts.hidden` names.
void setup_service_mounts(const ServiceMounts& mounts);

}  // namespace vmwarden::supervisor
