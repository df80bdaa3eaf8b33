// Landlock ABI 3-7 definitions. Debian 12's linux/landlock.h stops at ABI 2
// (its struct landlock_ruleset_attr has only handled_access_fs), so the
// project carries the later constants itself, each guarded so that a newer
// header wins, and its own copies of the structs that grew.
#pragma once

#include <linux/landlock.h>
#include <sys/syscall.h>

#include <cstdint>

#ifndef SYS_landlock_create_ruleset
#define SYS_landlock_create_ruleset 444
#endif
#ifndef SYS_landlock_add_rule
#define SYS_landlock_add_rule 445
#endif
#ifndef SYS_landlock_restrict_self
#define SYS_landlock_restrict_self 446
#endif

// create_ruleset flags.
#ifndef LANDLOCK_CREATE_RULESET_VERSION
#define LANDLOCK_CREATE_RULESET_VERSION (1U << 0)
#endif
#ifndef LANDLOCK_CREATE_RULESET_ERRATA
#define LANDLOCK_CREATE_RULESET_ERRATA (1U << 1)  // a bitmask of fixed errata
#endif

// ABI 2.
#ifndef LANDLOCK_ACCESS_FS_REFER
#define LANDLOCK_ACCESS_FS_REFER (1ULL << 13)
#endif
// ABI 3.
#ifndef LANDLOCK_ACCESS_FS_TRUNCATE
#define LANDLOCK_ACCESS_FS_TRUNCATE (1ULL << 14)
#endif
// ABI 4.
#ifndef LANDLOCK_ACCESS_NET_BIND_TCP
#define LANDLOCK_ACCESS_NET_BIND_TCP (1ULL << 0)
#endif
#ifndef LANDLOCK_ACCESS_NET_CONNECT_TCP
#define LANDLOCK_ACCESS_NET_CONNECT_TCP (1ULL << 1)
#endif
// ABI 5.
#ifndef LANDLOCK_ACCESS_FS_IOCTL_DEV
#define LANDLOCK_ACCESS_FS_IOCTL_DEV (1ULL << 15)
#endif
// ABI 6.
#ifndef LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET
#define LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET (1ULL << 0)
#endif
#ifndef LANDLOCK_SCOPE_SIGNAL
#define LANDLOCK_SCOPE_SIGNAL (1ULL << 1)
#endif
// ABI 7: landlock_restrict_self() flags.
#ifndef LANDLOCK_RESTRICT_SELF_LOG_SAME_EXEC_OFF
#define LANDLOCK_RESTRICT_SELF_LOG_SAME_EXEC_OFF (1U << 0)
#endif
#ifndef LANDLOCK_RESTRICT_SELF_LOG_NEW_EXEC_ON
#define LANDLOCK_RESTRICT_SELF_LOG_NEW_EXEC_ON (1U << 1)
#endif
#ifndef LANDLOCK_RESTRICT_SELF_LOG_SUBDOMAINS_OFF
#define LANDLOCK_RESTRICT_SELF_LOG_SUBDOMAINS_OFF (1U << 2)
#endif

namespace vmwarden::supervisor::landlock_uapi {

// enum landlock_rule_type gained NET_PORT in ABI 4; an enumerator cannot be
// guarded with #ifndef, hence a constant of our own.
inline constexpr int kRulePathBeneath = 1;
inline constexpr int kRuleNetPort = 2;

// The ABI 6 layout of struct landlock_ruleset_attr. The kernel accepts any
// size it knows, so the full 24 bytes are passed on every ABI >= 6 and the
// ABI 1-5 prefix (8 or 16 bytes) on older kernels, which reject a non-zero
// field they do not know with E2BIG.
struct RulesetAttr {
  std::uint64_t handled_access_fs;
  std::uint64_t handled_access_net;  // ABI 4
  std::uint64_t scoped;              // ABI 6
};
static_assert(sizeof(RulesetAttr) == 24);

struct [[gnu::packed]] PathBeneathAttr {
  std::uint64_t allowed_access;
  std::int32_t parent_fd;
};
static_assert(sizeof(PathBeneathAttr) == 12);

struct NetPortAttr {  // ABI 4
  std::uint64_t allowed_access;
  std::uint64_t port;
};
static_assert(sizeof(NetPortAttr) == 16);

}  // namespace vmwarden::supervisor::landlock_uapi
