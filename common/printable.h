// Quoting what a user (or a guest) wrote in a message, safely for a
// terminal. In common/ so that every component escapes the same way.
#pragma once

#include <string>
#include <string_view>

namespace vmwarden {

// `value` with each control character (a terminal escape, a NUL, a
// newline, a C1 control such as the 8-bit CSI, a bidirectional override)
// and each byte that is not part of valid UTF-8 written as \xNN, byte by
// byte.
std::string printable(std::string_view value);

// getfacl's quoting, for a name in text that `setfacl --restore` reads
// back: the bytes printable() escapes, and each backslash, as \ooo (three
// octal digits), which setfacl undoes.
std::string octal_escaped(std::string_view value);

}  // namespace vmwarden
