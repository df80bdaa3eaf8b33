#include "supervisor/caps.h"

#include <grp.h>
#include <linux/securebits.h>
#include <sys/capability.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <fmt/format.h>

#include <algorithm>
#include <memory>

#include "common/error.h"

namespace vmwarden::supervisor {
namespace {

struct CapFree {
  void operator()(void* object) const { cap_free(object); }
};
using CapState = std::unique_ptr<std::remove_pointer_t<cap_t>, CapFree>;

bool contains(const std::vector<int>& list, int value) {
  return std::find(list.begin(), list.end(), value) != list.end();
}

// Sets permitted and effective to `permitted`, inheritable to `inheritable`.
void set_process_caps(const std::vector<int>& permitted, const std::vector<int>& inheritable) {
  CapState caps(cap_init());
  if (!caps) throw_errno("cap_init");
  auto raise = [&](cap_flag_t set, const std::vector<int>& list) {
    if (list.empty()) return;
    std::vector<cap_value_t> values(list.begin(), list.end());
    check(cap_set_flag(caps.get(), set, static_cast<int>(values.size()), values.data(), CAP_SET),
          "cap_set_flag");
  };
  raise(CAP_PERMITTED, permitted);
  raise(CAP_EFFECTIVE, permitted);
  raise(CAP_INHERITABLE, inheritable);
  check(cap_set_proc(caps.get()), "cap_set_proc");
}

}  // namespace

std::string capability_name(int capability) {
  std::unique_ptr<char, CapFree> name(cap_to_name(capability));
  if (!name) return fmt::format("cap_{}", capability);
  return name.get();
}

std::optional<int> capability_from_name(std::string_view name) {
  cap_value_t value = 0;
  if (cap_from_name(std::string(name).c_str(), &value) != 0) return std::nullopt;
  return value;
}

int capability_count() { return static_cast<int>(cap_max_bits()); }

void validate_capabilities(const std::vector<int>& capabilities) {
  for (int capability : capabilities)
    if (capability < 0 || capability >= capability_count())
      throw UsageError(fmt::format("capability {} is not known to this kernel (0 .. {})",
                                   capability, capability_count() - 1));
}

void switch_identity(uid_t uid, gid_t gid) {
  check(::prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0), "prctl(PR_SET_KEEPCAPS)");
  check(::setgroups(0, nullptr), "setgroups");
  check(::setresgid(gid, gid, gid), "setresgid", std::to_string(gid));
  check(::setresuid(uid, uid, uid), "setresuid", std::to_string(uid));
}

void restrict_capabilities(const std::vector<int>& keep) {
  // CAP_SETPCAP stays effective until the end: dropping from the bounding
  // set and setting securebits need it.
  std::vector<int> working = keep;
  if (!contains(working, CAP_SETPCAP)) working.push_back(CAP_SETPCAP);
  set_process_caps(working, keep);

  for (int capability = 0; capability < capability_count(); ++capability)
    if (!contains(keep, capability))
      check(cap_drop_bound(capability), "cap_drop_bound", capability_name(capability));

  // Ambient capabilities are what lets a kept capability survive execve of
  // a binary without file capabilities; every other one is cleared.
  check(cap_reset_ambient(), "cap_reset_ambient");
  for (int capability : keep)
    check(cap_set_ambient(capability, CAP_SET), "cap_set_ambient", capability_name(capability));

  // SECBIT_NOROOT: uid 0 (a service run with --uid 0) and set-user-ID-root
  // binaries get no capabilities from execve; no_new_privs already ignores
  // the set-user-ID bit, this holds even without it. KEEP_CAPS is cleared
  // and locked; the ambient set can no longer be raised. Each locked, so
  // that the service cannot undo them. NO_SETUID_FIXUP is left alone: it
  // only keeps capabilities across a uid change, and a service has none to
  // keep but those a user namespace of its own confines (virtiofsd's).
  check(cap_set_secbits(SECBIT_NOROOT | SECBIT_NOROOT_LOCKED | SECBIT_KEEP_CAPS_LOCKED |
                        SECBIT_NO_CAP_AMBIENT_RAISE | SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED),
        "cap_set_secbits");

  set_process_caps(keep, keep);
}

}  // namespace vmwarden::supervisor
