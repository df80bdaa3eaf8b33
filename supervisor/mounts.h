// Mounts made inside the sandbox's mount namespaces. Nothing here touches the
// host's mount table: every function runs after a mount namespace was
// unshared or cloned and propagation was made private.
#pragma once

#include <vector>

#include "supervisor/sandbox.h"

namespace vmwarden::supervisor {

// In the warden, before any service starts: recursive private propagation on
// /, a fresh /proc for the new PID namespace, then the sandbox's bind mounts.
void setup_warden_mounts(const std::vector<BindMount>& mounts);

// In a service's child, before its confinement: a mount namespace of its own
// with private, size-limited nodev,nosuid tmpfs on /tmp and /dev/shm.
void setup_service_mounts();

}  // namespace vmwarden::supervisor
