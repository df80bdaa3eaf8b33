// What a service is confined to. A Confinement is plain data: built by the
// launcher (or `vmwarden exec`), printed by `vmwarden audit`, and applied by
// apply_confinement() in the service's child process between fork and exec.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/unique_fd.h"

namespace vmwarden::supervisor {

// Coarse rights on a path beneath which a service may act. landlock.cc maps
// them to the Landlock access bits of the running kernel's ABI.
struct PathRights {
  bool read = false;     // read files, list directories
  bool write = false;    // write and truncate files, create and remove entries
                         // (never device nodes)
  bool execute = false;  // execute files
  bool ioctl_dev = false;  // ioctl on device files (ABI 5), e.g. /dev/kvm
  bool make_socket = false;  // create unix sockets (bind), and nothing else

  static PathRights read_only() { return {.read = true}; }
  static PathRights read_execute() { return {.read = true, .execute = true}; }
  static PathRights read_write() { return {.read = true, .write = true}; }
  // A directory a service binds its sockets in but writes no file to (a
  // VMM's runtime directory: files there would be /run's space).
  static PathRights sockets() { return {.read = true, .make_socket = true}; }
};

struct PathRule {
  std::filesystem::path path;
  PathRights rights;
  // The directory `path` named when the caller checked it (a granted tree's
  // root, as its grant opened it). Set, the rule is made from this
  // descriptor: whatever the name leads to by the time the service starts,
  // the rule covers the directory that was granted and nothing else.
  std::shared_ptr<const UniqueFd> pinned;
};

enum class LandlockMode {
  required,     // a right, scope or net rule the kernel lacks is a refusal to start
  best_effort,  // apply what the kernel supports; log exactly what was dropped
  off,          // no Landlock domain at all (`vmwarden exec --landlock off`; flagged by the audit)
};

struct LandlockPolicy {
  LandlockMode mode = LandlockMode::required;
  std::vector<PathRule> paths;   // everything else on the filesystem is denied
  bool scope_signal = true;      // ABI 6: no signals to processes outside the domain
  bool scope_abstract_unix = true;  // ABI 6: no connect to abstract sockets outside it
  bool deny_tcp = true;          // ABI 4: handle TCP bind/connect, allow no port
};

enum class SeccompAction { kill, log };

struct SeccompPolicy {
  std::string profile = "vm-daemon";  // a named profile in seccomp.cc
  SeccompAction action = SeccompAction::kill;
};

enum class UserNamespace {
  host,
  // uid and gid map onto themselves. The kept capabilities then hold in that
  // namespace only: they act on files owned by uid:gid and nowhere else on
  // the host (virtiofsd's file-server set).
  identity,
  // uid and gid appear as 0 (`vmwarden exec --uid 0`): the service sees
  // itself as root, while every check the host makes (files, sockets,
  // signals, /proc/sys) sees uid, an unprivileged UID.
  root,
};

struct Confinement {
  uid_t uid = 0;
  gid_t gid = 0;  // no supplementary groups, ever
  // Capabilities the service keeps across exec (as ambient capabilities);
  // every other capability leaves all five sets, the bounding set included.
  std::vector<int> keep_capabilities;
  // The host's user namespace, or one of the service's own, created after
  // the uid switch, which maps only uid and gid (see UserNamespace).
  UserNamespace user_namespace = UserNamespace::host;
  LandlockPolicy landlock;
  SeccompPolicy seccomp;
};

// The Landlock ABI the kernel offers (0: none), detected once. Tests replace
// it to prove that `required` refuses to start on an older kernel.
int landlock_abi();
void override_landlock_abi_for_testing(std::optional<int> abi);

// Validates `confinement` against the kernel before anything is started:
// throws PermanentError naming the missing feature and the running ABI when a
// `required` policy cannot be met. Returns the warnings a `best_effort`
// policy will log (what is dropped).
std::vector<std::string> check_confinement(const Confinement& confinement);

// Applies the confinement to the calling process. Called in the child after
// fork, before exec; the order of the steps is written out in
// confinement.cc. Throws on any failure (the child then exits without exec).
void apply_confinement(const Confinement& confinement);

// Loads `policy`'s seccomp filter on the calling process, which must have
// set no_new_privs: for a program that run_program_unprivileged() runs
// outside any Confinement (virtiofsd --help), as its `in_child`.
void load_seccomp_policy(const SeccompPolicy& policy);

}  // namespace vmwarden::supervisor
