// A service's confinement described as it will be applied on this kernel
// (detected Landlock ABI, capabilities the kernel knows, the seccomp profile
// as it resolves on this architecture), before anything runs. `vmwarden
// audit` and `vmwarden exec --audit` print these.
#pragma once

#include <string>
#include <string_view>

#include "supervisor/confinement.h"

namespace vmwarden::supervisor {

// Indented plain text, one fact per line; lines starting with "!" flag
// what weakens the confinement (uid 0, kept capabilities, dropped Landlock
// features, a seccomp filter that only logs or does not exist). A
// `required` policy this kernel cannot meet is reported, not thrown.
std::string describe_confinement_text(std::string_view service, const Confinement& confinement);

// The same as one JSON object (no trailing newline).
std::string describe_confinement_json(std::string_view service, const Confinement& confinement);

}  // namespace vmwarden::supervisor
