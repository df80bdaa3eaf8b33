#include "common/printable.h"

#include <fmt/core.h>

#include "common/json_quote.h"

namespace vmwarden {
namespace {

bool is_control(char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7f; }

// A character a terminal acts on rather than shows: C0 and DEL, the C1
// controls U+0080-U+009F (0x9b is an 8-bit CSI), and the bidirectional
// overrides and isolates, which reorder what follows them.
bool is_control_character(std::string_view sequence) {
  if (sequence.size() == 1) return is_control(sequence[0]);
  auto byte = [&](std::size_t i) { return static_cast<unsigned char>(sequence[i]); };
  if (sequence.size() == 2) return byte(0) == 0xc2 && byte(1) <= 0x9f;  // U+0080-U+009F
  if (sequence.size() == 3 && byte(0) == 0xe2 && byte(1) == 0x80)
    return byte(2) == 0x8e || byte(2) == 0x8f || (byte(2) >= 0xaa && byte(2) <= 0xae);  // U+200E-F, U+202A-E
  if (sequence.size() == 3 && byte(0) == 0xe2 && byte(1) == 0x81)
    return byte(2) >= 0xa6 && byte(2) <= 0xa9;  // U+2066-U+2069
  return false;
}

}  // namespace

std::string printable(std::string_view value) {
  std::string out;
  for (std::size_t at = 0; at < value.size();) {
    unsigned char c = static_cast<unsigned char>(value[at]);
    std::size_t length = c >= 0x80 ? utf8_sequence_length(value, at) : 1;
    if (length == 0) {
      out += fmt::format("\\x{:02x}", c);
      ++at;
      continue;
    }
    std::string_view sequence = value.substr(at, length);
    if (is_control_character(sequence)) {
      for (char byte : sequence) out += fmt::format("\\x{:02x}", static_cast<unsigned char>(byte));
    } else {
      out.append(sequence);
    }
    at += length;
  }
  return out;
}

}  // namespace vmwarden
