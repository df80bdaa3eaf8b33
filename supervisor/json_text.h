// Writing JSON text for the audit output: string literals and arrays of
// them. Internal to the supervisor (the audit renderers).
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace vmwarden::supervisor {

// `text` as a JSON string literal, quotes included. UTF-8 passes through.
std::string json_string(std::string_view text);
std::string json_strings(const std::vector<std::string>& items);

}  // namespace vmwarden::supervisor
