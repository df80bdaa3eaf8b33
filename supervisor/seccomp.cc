#include "supervisor/seccomp.h"

#include <errno.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/personality.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <seccomp.h>

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <span>
#include <vector>

#include "common/error.h"
#include "common/suggest.h"
#include "common/unique_fd.h"

namespace vmwarden::supervisor {
namespace {

// A syscall by name, with its number for those a libseccomp older than the
// running kernel may not know. Since Linux 5.1 (424) new syscalls have one
// number on every architecture, so these numbers are portable; older ones
// are always resolved by name, and one the architecture lacks is skipped.
struct Syscall {
  const char* name;
  int number = -1;
};

// Denied by the "vm-daemon" profile. No VM daemon (VMM, virtiofsd) and no
// ordinary command needs any of these; each is a way out of a sandbox or
// into the kernel's attack surface.
constexpr Syscall kVmDaemonDenied[] = {
    // Reading or changing other processes.
    {"ptrace"}, {"process_vm_readv"}, {"process_vm_writev"}, {"kcmp"},
    {"pidfd_getfd", 438}, {"process_madvise", 440},
    // Kernel attack surface a daemon has no use for.
    {"bpf"}, {"perf_event_open"}, {"lookup_dcookie"},
    {"keyctl"}, {"add_key"}, {"request_key"},
    {"memfd_secret", 447}, {"fanotify_init"},
    // Changing the kernel or the machine.
    {"kexec_load"}, {"kexec_file_load"},
    {"init_module"}, {"finit_module"}, {"delete_module"},
    {"create_module"}, {"query_module"}, {"get_kernel_syms"},
    {"reboot"}, {"syslog"}, {"acct"}, {"swapon"}, {"swapoff"},
    {"iopl"}, {"ioperm"}, {"modify_ldt"}, {"quotactl"}, {"quotactl_fd", 443},
    {"nfsservctl"}, {"uselib"}, {"vhangup"}, {"_sysctl"},
    {"sethostname"}, {"setdomainname"},
    {"settimeofday"}, {"clock_settime"}, {"clock_adjtime"}, {"adjtimex"},
    {"lsm_set_self_attr", 460},
    // The mount API: a service works in the mounts the warden made.
    {"mount"}, {"umount2"}, {"pivot_root"},
    {"open_tree", 428}, {"move_mount", 429}, {"fsopen", 430}, {"fsconfig", 431},
    {"fsmount", 432}, {"fspick", 433}, {"mount_setattr", 442}, {"open_tree_attr", 467},
    // Namespaces (clone's and unshare's namespace flags are filtered below).
    {"setns"},
    // File handles bypass path-based checks (open_by_handle_at) and leak
    // mount ids and inode handles (name_to_handle_at).
    {"open_by_handle_at"}, {"name_to_handle_at"},
};

// Answered ENOSYS by every profile, whatever its action, because programs
// probe them and do without: clone3 passes its flags in memory, where a
// filter cannot see CLONE_NEW*, so glibc falls back to clone; userfaultfd
// is probed by libvhost-user (virtiofsd) for post-copy migration; io_uring
// performs operations that seccomp never sees, so QEMU falls back to epoll;
// the rest are recent introspection calls.
constexpr Syscall kEnosys[] = {
    {"clone3", 435},
    {"userfaultfd"},
    {"io_uring_setup", 425},
    {"io_uring_enter", 426},
    {"io_uring_register", 427},
    {"statmount", 457},
    {"listmount", 458},
    {"lsm_get_self_attr", 459},
    {"lsm_list_modules", 461},
};

constexpr std::uint64_t kCloneNamespaceFlags[] = {
    CLONE_NEWNS, CLONE_NEWCGROUP, CLONE_NEWUTS, CLONE_NEWIPC,
    CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET,
};
// unshare also takes CLONE_NEWTIME, whose bit clone uses for the exit signal.
constexpr std::uint64_t kCloneNewTime = 0x80;

// personality(2) flags that weaken the address space (turn off ASLR, make
// reads executable, map page zero). The kernel stores every value but the
// query 0xffffffff, bit 31 set or not, so a deny list must refuse these flags
// with bit 31 clear and, separately, every value with bit 31 set but the
// query (no persona uses that bit).
constexpr std::uint64_t kDangerousPersonality[] = {
    ADDR_NO_RANDOMIZE, READ_IMPLIES_EXEC, MMAP_PAGE_ZERO, ADDR_COMPAT_LAYOUT, ADDR_LIMIT_32BIT,
};

// ioctls that push input into a terminal (TIOCSTI) or drive the virtual
// console (TIOCLINUX, whose paste needs no capability before Linux 6.7): a
// classic way out of a sandbox sharing a tty. And the loop device's own
// (LOOP_SET_FD 0x4C00 to LOOP_CONFIGURE 0x4C0A): a VMM given a loop device
// as its disk could otherwise swap its backing file (LOOP_CHANGE_FD needs
// no capability, on a read-only device), detach it, or move its window
// over the backing file, under everyone else who uses the device. And
// TIOCSETD: an interactive command holds a pty of its own, on which a new
// line discipline would have the kernel load its module (ldisc_autoload),
// code with a history of use-after-free bugs that no service needs.
constexpr std::uint32_t kDangerousIoctls[] = {
    TIOCSTI, TIOCLINUX, TIOCSETD, 0x4C00, 0x4C01, 0x4C02, 0x4C03, 0x4C04, 0x4C05, 0x4C06, 0x4C07, 0x4C08, 0x4C09, 0x4C0A,
};

// The socket families a service may create. Every other is refused
// (EAFNOSUPPORT, which programs take as "not built in"): AF_VSOCK above all,
// which no network namespace contains, so that a service with no network
// could reach the host's and other guests' vsock listeners; and with it
// every other family's kernel code (packet, XDP, algorithm sockets...).
constexpr std::uint32_t kAllowedSocketFamilies[] = {AF_UNIX, AF_INET, AF_INET6, AF_NETLINK};
// virtiofsd serves a share over one unix socket and needs no other family.
// An AF_INET socket would be network whether or not the VM has any: a
// listen() on an unbound one binds a port that Landlock's TCP bind rule
// never sees, and an attack served the share from there.
constexpr std::uint32_t kUnixSocketFamily[] = {AF_UNIX};

std::string family_names(std::span<const std::uint32_t> families) {
  std::vector<std::string> names;
  for (std::uint32_t family : families) {
    switch (family) {
      case AF_UNIX: names.emplace_back("AF_UNIX"); break;
      case AF_INET: names.emplace_back("AF_INET"); break;
      case AF_INET6: names.emplace_back("AF_INET6"); break;
      case AF_NETLINK: names.emplace_back("AF_NETLINK"); break;
      default: names.push_back(std::to_string(family));
    }
  }
  if (names.size() == 1) return names.front();
  std::string last = names.back();
  names.pop_back();
  return fmt::format("{} and {}", fmt::join(names, ", "), last);
}

// Masked patterns (mask, value), over the low 32 bits, whose union is every
// request but `denied`: walking each denied value's bits from the top, the
// subtree that branches off its path and holds no denied value is allowed
// whole. One rule each, since a rule has one comparison per argument.
void patterns_except(std::uint32_t mask, std::uint32_t value, int bit, const std::vector<std::uint32_t>& denied,
                     std::vector<std::pair<std::uint32_t, std::uint32_t>>& out) {
  if (bit < 0) return;  // a denied value itself
  for (std::uint32_t side : {0U, 1U}) {
    std::vector<std::uint32_t> below;
    for (std::uint32_t request : denied)
      if (((request >> bit) & 1U) == side) below.push_back(request);
    std::uint32_t next_mask = mask | (1U << bit), next_value = value | (side << bit);
    if (below.empty())
      out.emplace_back(next_mask, next_value);
    else
      patterns_except(next_mask, next_value, bit - 1, below, out);
  }
}

// Calls that act on another process named by pid (or on every process of
// the caller's uid) under a plain same-uid check: neither a signal nor
// ptrace, so Landlock's scopes do not cover them, while a VM's services
// share its uid. A VMM could lower virtiofsd's priority, pin it, or give it
// an RLIMIT_CPU that kills it. They may name the caller only (pid or who
// 0, and for setpriority and ioprio_set the kind of target that is one
// process); anything else fails with EPERM, which programs take as a
// refusal and go on.
struct SelfOnlyCall {
  const char* name;
  unsigned target_arg;           // the pid or "who" argument
  int kind_arg = -1;             // setpriority, ioprio_set: what "who" names
  std::uint64_t kind_one_process = 0;
};
constexpr int kIoprioWhoProcess = 1;
constexpr SelfOnlyCall kSelfOnlyCalls[] = {
    {"prlimit64", 0},
    {"sched_setaffinity", 0},
    {"sched_setscheduler", 0},
    {"sched_setparam", 0},
    {"sched_setattr", 0},
    {"setpriority", 1, 0, PRIO_PROCESS},
    {"ioprio_set", 1, 0, kIoprioWhoProcess},
};

bool is_self_only(std::string_view name) {
  return std::any_of(std::begin(kSelfOnlyCalls), std::end(kSelfOnlyCalls),
                     [&](const SelfOnlyCall& call) { return call.name == name; });
}

struct ProfileDef {
  std::string_view name;
  SeccompKind kind;
  std::string_view summary;
  std::span<const Syscall> listed;
  std::span<const Syscall> enosys;
  bool filter_arguments;  // clone namespace flags, personality, ioctl, socket families
  std::span<const std::uint32_t> socket_families = kAllowedSocketFamilies;
};

#include "supervisor/seccomp_allow_lists.inc"

constexpr ProfileDef kProfiles[] = {
    {"vm-daemon", SeccompKind::deny_list,
     "deny list: debugging, kernel modules and kexec, BPF, keyrings, the mount API, "
     "namespaces, file handles, clock and machine changes",
     kVmDaemonDenied, kEnosys, true},
    {"qemu", SeccompKind::allow_list,
     "allow list: the syscalls QEMU (TCG) was seen to make booting a guest with virtio-fs",
     kQemuAllowed, kEnosys, true},
    {"virtiofsd", SeccompKind::allow_list,
     "allow list: the syscalls the C virtiofsd was seen to make serving a share",
     kVirtiofsdAllowed, kEnosys, true, kUnixSocketFamily},
    {"none", SeccompKind::none, "no filter", {}, {}, false},
};

bool lists(const ProfileDef& profile, std::string_view name) {
  for (const Syscall& syscall : profile.listed)
    if (syscall.name == name) return true;
  return false;
}

const ProfileDef& find_profile(std::string_view name) {
  for (const ProfileDef& profile : kProfiles)
    if (profile.name == name) return profile;
  std::vector<std::string_view> names;
  for (const ProfileDef& profile : kProfiles) names.push_back(profile.name);
  std::string hint;
  if (auto match = closest_match(name, names)) hint = fmt::format(" (did you mean \"{}\"?)", *match);
  std::string known;
  for (auto known_name : names) known += fmt::format("{}\"{}\"", known.empty() ? "" : ", ", known_name);
  throw UsageError(fmt::format("unknown seccomp profile \"{}\"{}; known profiles: {}", name, hint, known));
}

// The syscall's number on the native architecture, or nullopt when the
// architecture has no such syscall.
std::optional<int> resolve(const Syscall& syscall) {
  int number = seccomp_syscall_resolve_name(syscall.name);
  if (number != __NR_SCMP_ERROR) return number;
  if (syscall.number >= 0) return syscall.number;
  return std::nullopt;
}

std::vector<std::string> resolved_names(std::span<const Syscall> syscalls) {
  std::vector<std::string> names;
  for (const Syscall& syscall : syscalls)
    if (resolve(syscall)) names.emplace_back(syscall.name);
  std::sort(names.begin(), names.end());
  return names;
}

void add_rule(scmp_filter_ctx ctx, std::uint32_t action, const Syscall& syscall,
              std::span<const scmp_arg_cmp> comparisons = {}) {
  auto number = resolve(syscall);
  if (!number) return;
  check_negative_errno(
      seccomp_rule_add_array(ctx, action, *number, static_cast<unsigned>(comparisons.size()),
                             comparisons.data()),
      fmt::format("seccomp_rule_add({})", syscall.name));
}

}  // namespace

std::vector<std::string> seccomp_profile_names() {
  std::vector<std::string> names;
  for (const ProfileDef& profile : kProfiles) names.emplace_back(profile.name);
  return names;
}

SeccompProfileInfo describe_seccomp_profile(std::string_view name) {
  const ProfileDef& profile = find_profile(name);
  SeccompProfileInfo info;
  info.name = profile.name;
  info.kind = profile.kind;
  info.summary = profile.summary;
  info.syscalls = resolved_names(profile.listed);
  info.enosys = resolved_names(profile.enosys);
  if (profile.filter_arguments) {
    // In an allow list a filter applies only to a syscall the list names.
    bool deny = profile.kind == SeccompKind::deny_list;
    if (deny || lists(profile, "clone"))
      info.argument_filters.push_back("clone: refused with any CLONE_NEW* flag");
    for (const SelfOnlyCall& call : kSelfOnlyCalls) {
      if (!deny && !lists(profile, call.name)) continue;
      info.argument_filters.push_back(fmt::format(
          "{}: on the caller itself only ({}), else EPERM: the VM's other services share its uid", call.name,
          call.kind_arg < 0 ? "pid 0" : call.kind_one_process == PRIO_PROCESS ? "PRIO_PROCESS, who 0"
                                                                               : "IOPRIO_WHO_PROCESS, who 0"));
    }
    if (deny || lists(profile, "unshare"))
      info.argument_filters.push_back(
          "unshare: refused with any CLONE_NEW* flag (unshare(CLONE_FS) stays allowed)");
    if (deny || lists(profile, "personality"))
      info.argument_filters.push_back(
          "personality: refused with ADDR_NO_RANDOMIZE, READ_IMPLIES_EXEC, MMAP_PAGE_ZERO, "
          "ADDR_COMPAT_LAYOUT or ADDR_LIMIT_32BIT, and with bit 31 set unless it is the query 0xffffffff");
    for (const char* call : {"socket", "socketpair"}) {
      if (deny || lists(profile, call))
        info.argument_filters.push_back(fmt::format(
            "{}: families other than {} refused with EAFNOSUPPORT ({}the family's low 32 bits decide)", call,
            family_names(profile.socket_families),
            profile.socket_families.size() == 1 ? "" : "AF_VSOCK is in no network namespace; "));
    }
    if (deny || lists(profile, "ioctl"))
      info.argument_filters.push_back(
          "ioctl: refused for TIOCSTI, TIOCLINUX, TIOCSETD and the loop device's LOOP_SET_FD to LOOP_CONFIGURE "
          "(the request's low 32 bits, whatever the upper ones hold)");
  }
  return info;
}

namespace {

// libseccomp's filter context, released once.
struct SeccompContext {
  scmp_filter_ctx ctx;
  explicit SeccompContext(std::uint32_t default_action) : ctx(seccomp_init(default_action)) {
    if (ctx == nullptr) throw_system_error(ENOMEM, "seccomp_init");
  }
  ~SeccompContext() { seccomp_release(ctx); }
  SeccompContext(const SeccompContext&) = delete;
  SeccompContext& operator=(const SeccompContext&) = delete;
};

// libseccomp 2.5 exports only to a file descriptor.
std::vector<sock_filter> export_program(scmp_filter_ctx ctx) {
  UniqueFd memory(check(::memfd_create("seccomp-bpf", MFD_CLOEXEC), "memfd_create"));
  check_negative_errno(seccomp_export_bpf(ctx, memory.get()), "seccomp_export_bpf");
  off_t size = check(::lseek(memory.get(), 0, SEEK_END), "lseek", "(seccomp program)");
  if (size <= 0 || size % static_cast<off_t>(sizeof(sock_filter)) != 0)
    throw SystemError(EINVAL, fmt::format("seccomp_export_bpf wrote {} bytes, not whole instructions", size));
  std::vector<sock_filter> program(static_cast<std::size_t>(size) / sizeof(sock_filter));
  ssize_t read = check(::pread(memory.get(), program.data(), static_cast<std::size_t>(size), 0), "pread",
                       "(seccomp program)");
  if (read != size) throw SystemError(EIO, "short read of the exported seccomp program");
  return program;
}

}  // namespace

std::vector<sock_filter> compile_seccomp_program(const SeccompPolicy& policy) {
  const ProfileDef& profile = find_profile(policy.profile);
  if (profile.kind == SeccompKind::none) return {};

  const std::uint32_t refuse =
      policy.action == SeccompAction::kill ? SCMP_ACT_KILL_PROCESS : SCMP_ACT_LOG;
  const bool allow_list = profile.kind == SeccompKind::allow_list;
  SeccompContext context(allow_list ? refuse : SCMP_ACT_ALLOW);
  scmp_filter_ctx ctx = context.ctx;
  // Only the native architecture is in the filter: i386 (int 0x80) and
  // x32 syscalls reach the bad-architecture action, which kills the whole
  // process (libseccomp's default kills only the thread). In log mode they
  // are only logged as well.
  check_negative_errno(seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, refuse),
                       "seccomp_attr_set(SCMP_FLTATR_ACT_BADARCH)");
  // no_new_privs is set by apply_confinement() before the filter is loaded.
  check_negative_errno(seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 0),
                       "seccomp_attr_set(SCMP_FLTATR_CTL_NNP)");
  // A binary search over the syscall numbers instead of a linear chain: when
  // the filter is loaded the kernel runs it once for every syscall number to
  // build its allow cache, so the load costs (syscalls × chain length) with
  // a chain and (syscalls × log of it) with a tree; every refused or
  // argument-checked syscall is cheaper to decide too.
  check_negative_errno(seccomp_attr_set(ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2),
                       "seccomp_attr_set(SCMP_FLTATR_CTL_OPTIMIZE)");

  const std::uint32_t listed_action = allow_list ? SCMP_ACT_ALLOW : refuse;
  for (const Syscall& syscall : profile.listed) {
    std::string_view name = syscall.name;
    // In an allow list these are allowed only with safe arguments (below).
    if (allow_list && profile.filter_arguments &&
        (name == "clone" || name == "unshare" || name == "personality" || name == "ioctl" || name == "socket" ||
         name == "socketpair" || is_self_only(name)))
      continue;
    add_rule(ctx, listed_action, syscall);
  }
  for (const Syscall& syscall : profile.enosys) add_rule(ctx, SCMP_ACT_ERRNO(ENOSYS), syscall);

  if (profile.filter_arguments) {
    // Whole 64-bit comparisons: the kernel reads these arguments as ints,
    // so a value that is 0 only in its low half is refused too, which costs
    // nothing (no program passes one).
    // In log mode only logged, as every refusal is; an allow list's
    // default action already does that (libseccomp refuses a rule that
    // repeats the default).
    const std::uint32_t elsewhere = policy.action == SeccompAction::kill ? SCMP_ACT_ERRNO(EPERM) : SCMP_ACT_LOG;
    const bool add_elsewhere = !(allow_list && elsewhere == refuse);
    for (const SelfOnlyCall& call : kSelfOnlyCalls) {
      if (allow_list && !lists(profile, call.name)) continue;  // refused whatever the arguments
      std::vector<scmp_arg_cmp> the_caller = {{call.target_arg, SCMP_CMP_EQ, 0, 0}};
      scmp_arg_cmp another = {call.target_arg, SCMP_CMP_NE, 0, 0};
      if (add_elsewhere) add_rule(ctx, elsewhere, {call.name}, {&another, 1});
      if (call.kind_arg >= 0) {
        auto kind_arg = static_cast<unsigned>(call.kind_arg);
        the_caller.push_back({kind_arg, SCMP_CMP_EQ, call.kind_one_process, 0});
        scmp_arg_cmp not_one_process = {kind_arg, SCMP_CMP_NE, call.kind_one_process, 0};
        if (add_elsewhere) add_rule(ctx, elsewhere, {call.name}, {&not_one_process, 1});
      }
      if (allow_list) add_rule(ctx, SCMP_ACT_ALLOW, {call.name}, the_caller);
    }

    // The kernel reads the family as an int: only the low 32 bits are
    // compared, so upper bits cannot dress a refused family up.
    const std::vector<std::uint32_t> allowed_families(profile.socket_families.begin(),
                                                      profile.socket_families.end());
    std::vector<std::pair<std::uint32_t, std::uint32_t>> other_families;
    patterns_except(0, 0, 31, allowed_families, other_families);
    const std::uint32_t unsupported = policy.action == SeccompAction::kill ? SCMP_ACT_ERRNO(EAFNOSUPPORT) : SCMP_ACT_LOG;
    // socketpair() runs the family's create code as socket() does.
    for (const char* call : {"socket", "socketpair"}) {
      if (allow_list && !lists(profile, call)) continue;
      if (!(allow_list && unsupported == refuse)) {
        for (auto [mask, value] : other_families) {
          scmp_arg_cmp family = SCMP_A0_64(SCMP_CMP_MASKED_EQ, mask, value);
          add_rule(ctx, unsupported, {call}, {&family, 1});
        }
      }
      if (allow_list) {
        for (std::uint32_t allowed : allowed_families) {
          scmp_arg_cmp family = SCMP_A0_64(SCMP_CMP_MASKED_EQ, 0xffffffffULL, allowed);
          add_rule(ctx, SCMP_ACT_ALLOW, {call}, {&family, 1});
        }
      }
    }

    std::uint64_t all_namespaces = 0;
    for (std::uint64_t flag : kCloneNamespaceFlags) all_namespaces |= flag;
    if (allow_list) {
      if (lists(profile, "clone")) {
        scmp_arg_cmp no_namespace = SCMP_A0_64(SCMP_CMP_MASKED_EQ, all_namespaces, 0);
        add_rule(ctx, SCMP_ACT_ALLOW, {"clone"}, {&no_namespace, 1});
      }
      if (lists(profile, "unshare")) {
        scmp_arg_cmp no_namespace = SCMP_A0_64(SCMP_CMP_MASKED_EQ, all_namespaces | kCloneNewTime, 0);
        add_rule(ctx, SCMP_ACT_ALLOW, {"unshare"}, {&no_namespace, 1});
      }
      if (lists(profile, "ioctl")) {
        // Any request whose low 32 bits (all the kernel looks at) are none
        // of the dangerous ones, as masked patterns: libseccomp compares
        // 64 bits, so a NE would let TIOCSTI | 1 << 32 through.
        std::vector<std::pair<std::uint32_t, std::uint32_t>> allowed;
        patterns_except(0, 0, 31, {std::begin(kDangerousIoctls), std::end(kDangerousIoctls)}, allowed);
        for (auto [mask, value] : allowed) {
          scmp_arg_cmp matches = SCMP_A1_64(SCMP_CMP_MASKED_EQ, mask, value);
          add_rule(ctx, SCMP_ACT_ALLOW, {"ioctl"}, {&matches, 1});
        }
      }
      if (lists(profile, "personality")) {
        std::uint64_t dangerous = 0;
        for (std::uint64_t flag : kDangerousPersonality) dangerous |= flag;
        scmp_arg_cmp safe_personality = SCMP_A0_32(SCMP_CMP_MASKED_EQ, dangerous | 0x80000000U, 0);
        add_rule(ctx, SCMP_ACT_ALLOW, {"personality"}, {&safe_personality, 1});
        scmp_arg_cmp query = SCMP_A0_32(SCMP_CMP_EQ, 0xffffffffU);
        add_rule(ctx, SCMP_ACT_ALLOW, {"personality"}, {&query, 1});
      }
    } else {
      for (std::uint64_t flag : kCloneNamespaceFlags) {
        scmp_arg_cmp has_flag = SCMP_A0_64(SCMP_CMP_MASKED_EQ, flag, flag);
        add_rule(ctx, refuse, {"clone"}, {&has_flag, 1});
        add_rule(ctx, refuse, {"unshare"}, {&has_flag, 1});
      }
      scmp_arg_cmp new_time = SCMP_A0_64(SCMP_CMP_MASKED_EQ, kCloneNewTime, kCloneNewTime);
      add_rule(ctx, refuse, {"unshare"}, {&new_time, 1});
      // The ioctl/personality arguments are 32-bit in the kernel: compare
      // only the low half, or garbage in the upper half would slip by.
      constexpr std::uint32_t kBit31 = 0x80000000U;
      for (std::uint64_t flag : kDangerousPersonality) {
        scmp_arg_cmp has_flag = SCMP_A0_32(SCMP_CMP_MASKED_EQ, flag | kBit31, flag);
        add_rule(ctx, refuse, {"personality"}, {&has_flag, 1});
      }
      // Bit 31 set and some other bit clear: anything but the query. One
      // comparison per argument is all libseccomp allows in a rule, hence
      // one rule per bit.
      for (int bit = 0; bit < 31; ++bit) {
        scmp_arg_cmp not_query = SCMP_A0_32(SCMP_CMP_MASKED_EQ, kBit31 | (1U << bit), kBit31);
        add_rule(ctx, refuse, {"personality"}, {&not_query, 1});
      }
      // The kernel takes the request as an unsigned int: whatever the upper
      // half holds, the low one decides (an EQ on the whole argument would
      // let TIOCSTI | 1 << 32 through).
      for (std::uint32_t request : kDangerousIoctls) {
        scmp_arg_cmp is_request = SCMP_A1_64(SCMP_CMP_MASKED_EQ, 0xffffffffULL, request);
        add_rule(ctx, refuse, {"ioctl"}, {&is_request, 1});
      }
    }
  }
  return export_program(ctx);
}

}  // namespace vmwarden::supervisor
