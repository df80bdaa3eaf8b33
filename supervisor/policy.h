// Building blocks for a service's Landlock rules: what any dynamically
// linked program needs to start and run. Callers (the VM launcher, `vmwarden
// exec`) add the service's own paths to these.
#pragma once

#include <vector>

#include "supervisor/confinement.h"

namespace vmwarden::supervisor {

// Read and execute on the system's programs and libraries (/usr, and /bin,
// /sbin, /lib* where they are directories rather than symlinks into /usr),
// read on what the dynamic loader and libc consult (/etc/ld.so.cache,
// /etc/localtime, the CPU list in /sys). Only paths that exist are returned.
std::vector<PathRule> system_read_execute_rules();

// /dev/null, /dev/zero, /dev/full read-write; /dev/random, /dev/urandom
// read-only. Only devices that exist are returned.
std::vector<PathRule> device_rules();

// Read on /proc/self. The rule is opened by the confined process itself just
// before exec, so it covers that process's own /proc/PID directory (its
// threads included) and no other process's, not even its future children's.
std::vector<PathRule> proc_self_rules();

// Everything a plain command (`vmwarden exec`, a `command = [...]`
// definition) may touch without being granted more: the system rules, the
// devices, /dev/tty (its own controlling terminal, if it has one), `program`
// itself, its sandbox's runtime dir, and the sandbox's own
// /tmp, /dev/shm (private tmpfs) and /proc (its PID namespace only).
std::vector<PathRule> command_rules(const std::filesystem::path& program, const std::filesystem::path& runtime_dir);

}  // namespace vmwarden::supervisor
