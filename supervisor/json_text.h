// Text helpers shared by the audit renderers (audit.cc, sandbox_audit.cc):
// JSON string literals and arrays of them, and joined lists. Internal to the
// supervisor.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "common/json_quote.h"

namespace vmwarden::supervisor {

// JSON string literals (common/json_quote.h) and arrays of them.
std::string json_strings(const std::vector<std::string>& items);

// The items with `separator` between them.
std::string join(const std::vector<std::string>& items, std::string_view separator);

}  // namespace vmwarden::supervisor
