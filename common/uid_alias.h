// The spelling of a UID alias, shared by the definition parser (which
// explains a bad one at its file:line:col) and the UID registry (which
// refuses one on the command line).
#pragma once

#include <string_view>

namespace vmwarden {

// [a-z][a-z0-9_.-]{0,63}. Unlike VM names an alias starts with a letter: a
// --uid argument starting with a digit is read as a UID number, so an alias
// such as "1abc" could be created but never named.
bool valid_uid_alias(std::string_view alias);

}  // namespace vmwarden
