// Text helpers shared by the audit renderers (audit.cc, sandbox_audit.cc):
// JSON string literals and arrays of them, and joined lists. Internal to the
// supervisor.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace vmwarden::supervisor {

// `text` as a JSON string literal, quotes included. UTF-8 passes through.
std::string json_string(std::string_view text);
std::string json_strings(const std::vector<std::string>& items);

// The items with `separator` between them.
std::string join(const std::vector<std::string>& items, std::string_view separator);

}  // namespace vmwarden::supervisor
