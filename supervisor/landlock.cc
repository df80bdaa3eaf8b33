#include "supervisor/landlock.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <string_view>
#include <optional>

#include "common/error.h"
#include "common/log.h"
#include "supervisor/landlock_abi.h"

namespace vmwarden::supervisor {
namespace {

struct Right {
  const char* name;
  std::uint64_t bit;
  int abi;  // the first ABI that knows it
};

constexpr std::array kFsRights{
    Right{"FS_EXECUTE", LANDLOCK_ACCESS_FS_EXECUTE, 1},
    Right{"FS_WRITE_FILE", LANDLOCK_ACCESS_FS_WRITE_FILE, 1},
    Right{"FS_READ_FILE", LANDLOCK_ACCESS_FS_READ_FILE, 1},
    Right{"FS_READ_DIR", LANDLOCK_ACCESS_FS_READ_DIR, 1},
    Right{"FS_REMOVE_DIR", LANDLOCK_ACCESS_FS_REMOVE_DIR, 1},
    Right{"FS_REMOVE_FILE", LANDLOCK_ACCESS_FS_REMOVE_FILE, 1},
    Right{"FS_MAKE_CHAR", LANDLOCK_ACCESS_FS_MAKE_CHAR, 1},
    Right{"FS_MAKE_DIR", LANDLOCK_ACCESS_FS_MAKE_DIR, 1},
    Right{"FS_MAKE_REG", LANDLOCK_ACCESS_FS_MAKE_REG, 1},
    Right{"FS_MAKE_SOCK", LANDLOCK_ACCESS_FS_MAKE_SOCK, 1},
    Right{"FS_MAKE_FIFO", LANDLOCK_ACCESS_FS_MAKE_FIFO, 1},
    Right{"FS_MAKE_BLOCK", LANDLOCK_ACCESS_FS_MAKE_BLOCK, 1},
    Right{"FS_MAKE_SYM", LANDLOCK_ACCESS_FS_MAKE_SYM, 1},
    Right{"FS_REFER", LANDLOCK_ACCESS_FS_REFER, 2},
    Right{"FS_TRUNCATE", LANDLOCK_ACCESS_FS_TRUNCATE, 3},
    Right{"FS_IOCTL_DEV", LANDLOCK_ACCESS_FS_IOCTL_DEV, 5},
};
constexpr std::array kNetRights{
    Right{"NET_BIND_TCP", LANDLOCK_ACCESS_NET_BIND_TCP, 4},
    Right{"NET_CONNECT_TCP", LANDLOCK_ACCESS_NET_CONNECT_TCP, 4},
};
constexpr std::array kScopes{
    Right{"ABSTRACT_UNIX_SOCKET", LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET, 6},
    Right{"SIGNAL", LANDLOCK_SCOPE_SIGNAL, 6},
};

template <std::size_t N>
std::vector<std::string> names_of(const std::array<Right, N>& table, std::uint64_t bits) {
  std::vector<std::string> names;
  for (const Right& right : table)
    if (bits & right.bit) names.emplace_back(right.name);
  return names;
}

template <std::size_t N>
std::uint64_t rights_up_to(const std::array<Right, N>& table, int abi) {
  std::uint64_t bits = 0;
  for (const Right& right : table)
    if (right.abi <= abi) bits |= right.bit;
  return bits;
}

// The first kernel release of each ABI, for error messages.
const char* kernel_for_abi(int abi) {
  switch (abi) {
    case 1: return "5.13";
    case 2: return "5.19";
    case 3: return "6.2";
    case 4: return "6.7";
    case 5: return "6.10";
    case 6: return "6.12";
    default: return "6.15";
  }
}

int detect_abi() {
  long abi = ::syscall(SYS_landlock_create_ruleset, nullptr, 0, LANDLOCK_CREATE_RULESET_VERSION);
  if (abi >= 0) return static_cast<int>(abi);
  // ENOSYS: not built in; EOPNOTSUPP: disabled at boot (lsm=). Either way
  // there is no Landlock; anything else is unexpected.
  if (errno == ENOSYS || errno == EOPNOTSUPP) return 0;
  throw_errno("landlock_create_ruleset(LANDLOCK_CREATE_RULESET_VERSION)");
}

std::optional<int>& abi_override() {
  static std::optional<int> value;
  return value;
}

// VMWARDEN_LANDLOCK_ABI=N, a testing aid: treat the kernel as offering ABI N
// when N is lower than what it offers, so that `required` and `best-effort`
// can be exercised end to end on a new kernel. It can only take protections
// away from what the kernel would enforce in the eyes of the plan, never
// claim ones the kernel lacks: a value above the detected ABI is ignored.
int apply_abi_from_environment(int detected) {
  const char* text = std::getenv("VMWARDEN_LANDLOCK_ABI");
  if (text == nullptr || *text == '\0') return detected;
  int wanted = -1;
  std::string_view view(text);
  auto [end, error] = std::from_chars(view.data(), view.data() + view.size(), wanted);
  if (error != std::errc() || end != view.data() + view.size() || wanted < 0) {
    throw UsageError(fmt::format("VMWARDEN_LANDLOCK_ABI={}: give a Landlock ABI number (0 = no Landlock) no higher "
                                 "than this kernel's, {}",
                                 text, detected));
  }
  if (wanted >= detected) {
    if (wanted > detected)
      log::warning("VMWARDEN_LANDLOCK_ABI={} ignored: it can only lower this kernel's Landlock ABI, {}", wanted,
                   detected);
    return detected;
  }
  log::warning("VMWARDEN_LANDLOCK_ABI={}: treating this kernel's Landlock ABI {} as {} (a testing aid)", wanted,
               detected, wanted);
  return wanted;
}

std::string join_paths(const std::vector<std::filesystem::path>& paths) {
  std::string out;
  for (const auto& path : paths) {
    if (!out.empty()) out += ", ";
    out += path.string();
  }
  return out;
}

}  // namespace

int landlock_abi() {
  if (abi_override()) return *abi_override();
  static const int detected = apply_abi_from_environment(detect_abi());
  return detected;
}

void override_landlock_abi_for_testing(std::optional<int> abi) { abi_override() = abi; }

std::vector<std::string> landlock_fs_names(std::uint64_t bits) { return names_of(kFsRights, bits); }
std::vector<std::string> landlock_net_names(std::uint64_t bits) { return names_of(kNetRights, bits); }
std::vector<std::string> landlock_scope_names(std::uint64_t bits) { return names_of(kScopes, bits); }

std::uint64_t landlock_fs_rights(int abi) { return rights_up_to(kFsRights, abi); }

std::uint64_t landlock_file_rights() {
  return LANDLOCK_ACCESS_FS_EXECUTE | LANDLOCK_ACCESS_FS_WRITE_FILE | LANDLOCK_ACCESS_FS_READ_FILE |
         LANDLOCK_ACCESS_FS_TRUNCATE | LANDLOCK_ACCESS_FS_IOCTL_DEV;
}

std::uint64_t landlock_access_for(const PathRights& rights) {
  std::uint64_t bits = 0;
  if (rights.read) bits |= LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_READ_DIR;
  if (rights.execute) bits |= LANDLOCK_ACCESS_FS_EXECUTE;
  // MAKE_CHAR and MAKE_BLOCK are never granted: a service that could create
  // device nodes (given CAP_MKNOD) could reach any device.
  if (rights.write)
    bits |= LANDLOCK_ACCESS_FS_WRITE_FILE | LANDLOCK_ACCESS_FS_TRUNCATE |
            LANDLOCK_ACCESS_FS_REMOVE_DIR | LANDLOCK_ACCESS_FS_REMOVE_FILE |
            LANDLOCK_ACCESS_FS_MAKE_DIR | LANDLOCK_ACCESS_FS_MAKE_REG |
            LANDLOCK_ACCESS_FS_MAKE_SOCK | LANDLOCK_ACCESS_FS_MAKE_FIFO |
            LANDLOCK_ACCESS_FS_MAKE_SYM | LANDLOCK_ACCESS_FS_REFER;
  if (rights.ioctl_dev) bits |= LANDLOCK_ACCESS_FS_IOCTL_DEV;
  if (rights.make_socket) bits |= LANDLOCK_ACCESS_FS_MAKE_SOCK;
  return bits;
}

LandlockPlan plan_landlock(const LandlockPolicy& policy, int abi) {
  LandlockPlan plan;
  plan.mode = policy.mode;
  // Off: no ruleset at all, whatever the kernel offers. Nothing counts as
  // dropped: the policy asked for nothing (the audit flags the mode itself).
  if (policy.mode == LandlockMode::off) return plan;
  plan.abi = abi;

  // What the policy relies on, feature by feature. The filesystem rules as a
  // whole need ABI 1, and FS_TRUNCATE always: below ABI 3 truncate(2) is not
  // restricted, so a "read-only" file could still be emptied. FS_REFER and
  // FS_IOCTL_DEV are needed only where a rule grants them.
  int needed_abi = 0;
  std::vector<std::string> missing;
  auto need = [&](int feature_abi, std::string_view feature, std::string_view consequence) {
    if (abi >= feature_abi) return;
    needed_abi = std::max(needed_abi, feature_abi);
    missing.push_back(fmt::format("{} (ABI {}, Linux {}): {}", feature, feature_abi,
                                  kernel_for_abi(feature_abi), consequence));
  };
  if (abi < 1) {
    need(1, "Landlock", "no filesystem, network or scope restriction at all");
  } else {
    need(3, "FS_TRUNCATE", "truncate(2) is not restricted anywhere");
    std::vector<std::filesystem::path> refer, ioctl_dev;
    for (const PathRule& rule : policy.paths) {
      if (rule.rights.write) refer.push_back(rule.path);
      if (rule.rights.ioctl_dev) ioctl_dev.push_back(rule.path);
    }
    if (!refer.empty())
      need(2, fmt::format("FS_REFER for {}", join_paths(refer)),
           "renaming or linking across directories fails");
    if (!ioctl_dev.empty())
      need(5, fmt::format("FS_IOCTL_DEV for {}", join_paths(ioctl_dev)),
           "ioctl on devices is not restricted anywhere");
    if (policy.deny_tcp)
      need(4, "NET_BIND_TCP and NET_CONNECT_TCP", "TCP bind and connect are not denied");
    if (policy.scope_abstract_unix)
      need(6, "scope ABSTRACT_UNIX_SOCKET",
           "abstract unix sockets outside the domain are reachable");
    if (policy.scope_signal)
      need(6, "scope SIGNAL", "processes outside the domain can be signalled");
  }

  if (!missing.empty() && policy.mode == LandlockMode::required) {
    std::string list;
    for (const auto& item : missing) list += fmt::format("\n  - {}", item);
    throw PermanentError(fmt::format(
        "landlock = \"required\", but this kernel offers Landlock ABI {}, which lacks:{}\n"
        "Run on Linux >= {} (Landlock ABI {}), or set landlock = \"best-effort\" (vmwarden exec "
        "--landlock best-effort) to run with these protections dropped.",
        abi, list, kernel_for_abi(needed_abi), needed_abi));
  }
  plan.dropped = std::move(missing);
  if (abi < 1) return plan;

  // Handle every right the ABI knows, so that whatever no rule grants is
  // denied, device-node creation included.
  plan.handled_fs = landlock_fs_rights(abi);
  if (policy.deny_tcp && abi >= 4)
    plan.handled_net = LANDLOCK_ACCESS_NET_BIND_TCP | LANDLOCK_ACCESS_NET_CONNECT_TCP;
  if (abi >= 6) {
    if (policy.scope_abstract_unix) plan.scoped |= LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET;
    if (policy.scope_signal) plan.scoped |= LANDLOCK_SCOPE_SIGNAL;
  }
  for (const PathRule& rule : policy.paths) {
    if (!rule.path.is_absolute())
      throw UsageError(fmt::format("Landlock rule path {} is not absolute", rule.path.string()));
    std::uint64_t allowed = landlock_access_for(rule.rights) & plan.handled_fs;
    if (allowed != 0) plan.paths.push_back({rule.path, allowed, rule.pinned});
  }
  return plan;
}

UniqueFd create_landlock_ruleset(const LandlockPlan& plan) {
  using namespace landlock_uapi;
  if (plan.abi < 1) return {};

  RulesetAttr attr{plan.handled_fs, plan.handled_net, plan.scoped};
  // Pass only the part of the struct the ABI knows: an older kernel rejects
  // a larger struct (E2BIG) even when the extra fields are zero.
  std::size_t size = plan.abi >= 6 ? sizeof attr : plan.abi >= 4 ? 16 : 8;
  UniqueFd ruleset(static_cast<int>(::syscall(SYS_landlock_create_ruleset, &attr, size, 0U)));
  if (!ruleset) throw_errno("landlock_create_ruleset");

  for (const LandlockPathPlan& rule : plan.paths) {
    UniqueFd opened;
    if (!rule.pinned) opened = UniqueFd(::open(rule.path.c_str(), O_PATH | O_CLOEXEC));
    int fd = rule.pinned ? rule.pinned->get() : opened.get();
    if (fd < 0) {
      if (errno == ENOENT && plan.mode == LandlockMode::best_effort) {
        log::warning("Landlock rule for {} skipped: it does not exist (nothing is granted there)",
                     rule.path.string());
        continue;
      }
      throw_errno("open for a Landlock rule", rule.path.string());
    }
    struct stat st {};
    check(::fstat(fd, &st), "fstat for a Landlock rule", rule.path.string());
    PathBeneathAttr beneath{rule.allowed, fd};
    // Directory-only rights on a file are EINVAL: a file keeps the rest.
    if (!S_ISDIR(st.st_mode)) beneath.allowed_access &= landlock_file_rights();
    if (beneath.allowed_access == 0) continue;
    check(::syscall(SYS_landlock_add_rule, ruleset.get(), kRulePathBeneath, &beneath, 0U),
          "landlock_add_rule", rule.path.string());
  }
  // No NET_PORT rules: with TCP bind/connect handled, every port is denied.
  return ruleset;
}

void landlock_restrict_self(int ruleset_fd) {
  // Flags 0: the kernel's default audit logging (ABI 7) of denials by this
  // very program; denials after a further exec are not logged.
  check(::syscall(SYS_landlock_restrict_self, ruleset_fd, 0U), "landlock_restrict_self");
}

}  // namespace vmwarden::supervisor
