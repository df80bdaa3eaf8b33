// JSON string literals, for every JSON vmwarden writes (audits, QMP
// requests, reports).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace vmwarden {

// `text` as a JSON string literal, quotes included. Valid UTF-8 passes
// through; a byte that is not part of a valid UTF-8 sequence (a path is any
// bytes) becomes U+FFFD, so the output is always valid JSON.
std::string json_quote(std::string_view text);

// The length of the valid UTF-8 sequence of two or more bytes that starts
// at text[at], or 0 (an ASCII byte, or a byte no valid sequence starts with).
std::size_t utf8_sequence_length(std::string_view text, std::size_t at);

// Whether `text` is valid UTF-8 throughout (what JSON and TOML text must be).
bool is_valid_utf8(std::string_view text);

}  // namespace vmwarden
