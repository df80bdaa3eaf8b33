// One virtiofsd per shared directory: the daemon's argv in the flag dialect
// of the binary at hand, what it may touch, what it keeps, and how the warden
// sees it ready without consuming the one frontend connection it serves.
// Which uid it runs as, in which user namespace, is the caller's business.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/unique_fd.h"
#include "supervisor/confinement.h"
#include "supervisor/sandbox.h"

namespace vmwarden::virtiofs {

enum class Dialect {
  c,     // QEMU's virtiofsd (up to QEMU 7.2): -o source=, -o sandbox=, no read-only flag
  rust,  // the Rust virtiofsd: --shared-dir, --sandbox, --readonly, --tag
};
std::string_view to_string(Dialect dialect);

// Runs `binary --help` and recognises the dialect. The answer is cached per
// binary (path, inode and modification time). Throws PermanentError for a
// program that is neither.
Dialect detect_dialect(const std::filesystem::path& binary);

struct Share {
  std::filesystem::path binary;  // absolute
  Dialect dialect = Dialect::c;
  std::string tag;
  std::filesystem::path shared_dir;
  bool readonly = true;  // the Rust daemon also gets --readonly; the caller adds
                         // the read-only bind mount either way
  // The vhost-user socket the VMM connects to. With `listen_fd` set it is
  // already bound and listening (see common/unix_socket.h) and the daemon gets
  // --fd; otherwise the daemon creates it (and a pid file: the C daemon in
  // /var/run/virtiofsd/, the Rust one next to the socket).
  std::filesystem::path socket;
  std::optional<int> listen_fd;  // the fd number the daemon sees
  // Rust dialect only: advertise the tag (--tag). crosvm needs it; QEMU
  // 7.1 to 8.0 crash on it, and the C daemon has no such flag.
  bool advertise_tag = false;
};

struct DaemonPlan {
  std::vector<std::string> argv;
  // System programs and libraries, the usual devices, /proc/self, the binary,
  // the share (read-only or read-write) and, without listen_fd, where the
  // socket and pid file are created.
  std::vector<supervisor::PathRule> paths;
  std::string seccomp_profile;
  // What the daemon's own start-up needs to keep: it chroots into the share
  // (CAP_SYS_CHROOT), re-applies its capability sets (CAP_SETPCAP) and keeps
  // the file-server set it acts on the guest's behalf with.
  std::vector<int> keep_capabilities;
  // Returns once the daemon waits for its frontend; throws when it exits, is
  // not waiting by the deadline, or a stop arrives (stop_requested()).
  std::function<void(const supervisor::RunningService&, std::chrono::steady_clock::time_point)> wait_ready;
  // For the audit: what wait_ready does in the warden with its privileges.
  std::vector<supervisor::ServiceSpec::WardenAction> warden_actions;
};

// Throws UsageError for a path that would inject options (`,` `:` `=`,
// control characters, not absolute), a bad tag, or an option the dialect
// cannot express (--tag with the C daemon).
DaemonPlan plan_virtiofsd(const Share& share);

// The readiness probe: some thread of `pid` is blocked in accept(2) on a
// listening unix socket bound at `socket`. Reads /proc only; connects to
// nothing.
bool accepting_on(pid_t pid, const std::filesystem::path& socket);

// One line of /proc/PID/net/unix: nullopt when it is not the socket `inode`,
// otherwise whether that socket listens at exactly `expected_path` (the path
// is the rest of the line, spaces included).
std::optional<bool> unix_table_listening(const std::string& line, unsigned long inode,
                                         const std::string& expected_path);

}  // namespace vmwarden::virtiofs
