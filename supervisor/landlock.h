// Landlock: turning a LandlockPolicy into a ruleset for the running kernel's
// ABI, and applying it. Internal to the supervisor (and its tests and audit).
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "common/unique_fd.h"
#include "supervisor/confinement.h"

namespace vmwarden::supervisor {

// Access-right and scope names as the Landlock ABI spells them, without the
// LANDLOCK_ACCESS_ / LANDLOCK_SCOPE_ prefix ("FS_READ_FILE", "SIGNAL").
std::vector<std::string> landlock_fs_names(std::uint64_t fs_bits);
std::vector<std::string> landlock_net_names(std::uint64_t net_bits);
std::vector<std::string> landlock_scope_names(std::uint64_t scope_bits);

// Every filesystem right the given ABI knows (what a ruleset handles).
std::uint64_t landlock_fs_rights(int abi);
// The rights that apply to a non-directory: rules on files carry only these.
std::uint64_t landlock_file_rights();
// PathRights -> filesystem access bits, before masking to an ABI.
std::uint64_t landlock_access_for(const PathRights& rights);

struct LandlockPathPlan {
  std::filesystem::path path;
  std::uint64_t allowed = 0;  // masked to the ABI; files get landlock_file_rights() of it
  std::shared_ptr<const UniqueFd> pinned;  // PathRule::pinned
};

// The ruleset a policy becomes on one ABI.
struct LandlockPlan {
  LandlockMode mode = LandlockMode::required;
  int abi = 0;  // 0: no Landlock; nothing is applied
  std::uint64_t handled_fs = 0;
  std::uint64_t handled_net = 0;
  std::uint64_t scoped = 0;
  std::vector<LandlockPathPlan> paths;
  // One line per feature the policy needs and the ABI lacks, with the ABI
  // that adds it and what is therefore not enforced (empty when complete).
  std::vector<std::string> dropped;
};

// Pure computation (no kernel access). Throws PermanentError for a
// `required` policy whose needs `abi` does not meet, naming each missing
// feature and `abi`.
LandlockPlan plan_landlock(const LandlockPolicy& policy, int abi);

// Creates the ruleset and adds a rule per path (opened O_PATH, following
// symlinks as the service would). A missing path is an error under
// `required`; under `best_effort` it is logged and skipped, which only
// narrows what the service can reach. Returns an invalid fd when plan.abi is 0.
UniqueFd create_landlock_ruleset(const LandlockPlan& plan);

// Enforces the ruleset on the calling thread (and what it execs). Needs
// no_new_privs (or CAP_SYS_ADMIN).
void landlock_restrict_self(int ruleset_fd);

}  // namespace vmwarden::supervisor
