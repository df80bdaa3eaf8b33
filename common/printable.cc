#include "common/printable.h"

#include <fmt/core.h>

#include "common/json_quote.h"

namespace vmwarden {
namespace {

bool is_control(char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7f; }

// The code point of a valid UTF-8 sequence (utf8_sequence_length() said so).
char32_t decode(std::string_view sequence) {
  auto byte = [&](std::size_t i) { return static_cast<char32_t>(static_cast<unsigned char>(sequence[i])); };
  switch (sequence.size()) {
    case 1: return byte(0);
    case 2: return (byte(0) & 0x1f) << 6 | (byte(1) & 0x3f);
    case 3: return (byte(0) & 0x0f) << 12 | (byte(1) & 0x3f) << 6 | (byte(2) & 0x3f);
    default: return (byte(0) & 0x07) << 18 | (byte(1) & 0x3f) << 12 | (byte(2) & 0x3f) << 6 | (byte(3) & 0x3f);
  }
}

// A character a terminal or a log viewer acts on rather than shows: C0 and
// DEL, the C1 controls U+0080-U+009F (0x9b is an 8-bit CSI), the line and
// paragraph separators (a line break to editors and JavaScript), and the
// invisible format characters: bidirectional marks, overrides and
// isolates, which reorder what follows them, zero-width characters, the
// byte order mark, interlinear annotations and tags.
bool is_control_character(std::string_view sequence) {
  if (sequence.size() == 1) return is_control(sequence[0]);
  char32_t c = decode(sequence);
  return (c >= 0x80 && c <= 0x9f) || c == 0x61c || c == 0x180e || (c >= 0x200b && c <= 0x200f) ||
         (c >= 0x2028 && c <= 0x202e) || (c >= 0x2060 && c <= 0x206f) || c == 0xfeff ||
         (c >= 0xfff9 && c <= 0xfffb) || (c >= 0xe0000 && c <= 0xe007f);
}

// `value` with each byte of each control character and of each invalid
// UTF-8 sequence (and, if `escape_backslash`, each backslash) written by
// `escape`.
template <typename Escape>
std::string escaped(std::string_view value, bool escape_backslash, Escape escape) {
  std::string out;
  for (std::size_t at = 0; at < value.size();) {
    unsigned char c = static_cast<unsigned char>(value[at]);
    std::size_t length = c >= 0x80 ? utf8_sequence_length(value, at) : 1;
    if (length == 0) {
      out += escape(c);
      ++at;
      continue;
    }
    std::string_view sequence = value.substr(at, length);
    if (is_control_character(sequence) || (escape_backslash && c == '\\')) {
      for (char byte : sequence) out += escape(static_cast<unsigned char>(byte));
    } else {
      out.append(sequence);
    }
    at += length;
  }
  return out;
}

}  // namespace

std::string printable(std::string_view value) {
  return escaped(value, false, [](unsigned char byte) { return fmt::format("\\x{:02x}", byte); });
}

std::string octal_escaped(std::string_view value) {
  return escaped(value, true, [](unsigned char byte) { return fmt::format("\\{:03o}", byte); });
}

}  // namespace vmwarden
