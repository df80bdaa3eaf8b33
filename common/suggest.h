// "Did you mean ...?" for mistyped keys, values and subcommands.
#pragma once

#include <optional>
#include <span>
#include <string_view>

namespace vmwarden {

// The candidate closest to `word` by edit distance, if it is close enough to
// read as a typo (at most 2 edits, or a third of the word for long words).
std::optional<std::string_view> closest_match(std::string_view word, std::span<const std::string_view> candidates);

}  // namespace vmwarden
