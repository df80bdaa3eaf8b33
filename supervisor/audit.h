// A service's confinement described as it will be applied on this kernel
// (detected Landlock ABI, capabilities the kernel knows, the seccomp profile
// as it resolves on this architecture), before anything runs. `vmwarden
// audit` and `vmwarden exec --audit` print these.
#pragma once

#include <sys/types.h>

#include <map>
#include <string>
#include <string_view>

#include "supervisor/confinement.h"

namespace vmwarden::supervisor {

// Uids not known before the sandbox starts (a single-use UID, an alias
// allocated on first start) are planned with a representative number and
// shown by a label instead, so that an audit reads the same on every run.
struct AuditLabels {
  std::map<uid_t, std::string> uids;
  const std::string* label(uid_t uid) const;  // nullptr: show the number
  std::string text(uid_t uid) const;          // the label, or the number
};

// Indented plain text, one fact per line; lines starting with "!" flag
// what weakens the confinement (uid 0, kept capabilities, dropped Landlock
// features, a seccomp filter that only logs or does not exist). A
// `required` policy this kernel cannot meet is reported, not thrown.
std::string describe_confinement_text(std::string_view service, const Confinement& confinement,
                                      const AuditLabels& labels = {});

// Whether Landlock denies the service TCP bind and connect on this kernel
// (not with Landlock off, nor where best-effort drops it before ABI 4).
bool landlock_denies_tcp(const Confinement& confinement);

// The same as one JSON object (no trailing newline). A labelled uid is
// "uid": null with "uid_label"; gid likewise.
std::string describe_confinement_json(std::string_view service, const Confinement& confinement,
                                      const AuditLabels& labels = {});

}  // namespace vmwarden::supervisor
