// JSON string literals, for every JSON vmwarden writes (audits, QMP
// requests, reports).
#pragma once

#include <string>
#include <string_view>

namespace vmwarden {

// `text` as a JSON string literal, quotes included. Valid UTF-8 passes
// through; a byte that is not part of a valid UTF-8 sequence (a path is any
// bytes) becomes U+FFFD, so the output is always valid JSON.
std::string json_quote(std::string_view text);

}  // namespace vmwarden
