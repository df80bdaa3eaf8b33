// The lexical rules for the names and paths that end up in a VMM's or
// virtiofsd's command line. A VMM parses "key=value,key=value" and
// "path:tag:options" argument syntaxes, so a `,` `:` or `=` inside a path or a
// tag would inject options; these checks keep them out wherever the value came
// from (a definition file, a `vmwarden run` flag).
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "common/printable.h"

namespace vmwarden::vm {

// Each returns std::nullopt when the value is acceptable, otherwise a message
// that says what is wrong and what would be right.
std::optional<std::string> vm_name_problem(std::string_view name);    // [a-z0-9][a-z0-9_.-]{0,63}
std::optional<std::string> alias_problem(std::string_view alias);     // as a VM name, but [a-z] first
std::optional<std::string> tag_problem(std::string_view tag);         // [A-Za-z0-9_-]{1,36}
// Absolute, no "." or ".." or empty components, no `,` `:` `=` or control
// characters, at most PATH_MAX bytes. A single trailing slash is tolerated
// by normalize_path().
std::optional<std::string> path_problem(std::string_view path);

// A (normalized) path under /tmp or /dev/shm, which every service of a
// sandbox sees as its own empty tmpfs: the problem, saying what to use.
std::optional<std::string> hidden_path_problem(std::string_view path);

// Drops one trailing slash ("/a/b/" -> "/a/b"); "/" stays "/".
std::string normalize_path(std::string_view path);

}  // namespace vmwarden::vm
