// libFuzzer target for the definition parser: any byte string must yield
// either a definition or diagnostics, never a crash, hang or sanitizer report.

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "vm-launcher/definition.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  vmwarden::vm::CheckOptions options{.check_filesystem = false};
  vmwarden::vm::ParseResult result = vmwarden::vm::parse_definition(text, "fuzz.toml", options);
  // Diagnostics must always be formattable and carry a position.
  for (const auto& diagnostic : result.errors) {
    if (diagnostic.line == 0 || diagnostic.column == 0 || diagnostic.to_string().empty()) __builtin_trap();
  }
  if (result.ok() != result.definition.has_value()) __builtin_trap();
  return 0;
}
