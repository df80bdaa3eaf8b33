// libFuzzer target for the definition parser: any byte string must yield
// either a definition or diagnostics, never a crash, hang or sanitizer
// report; and what it accepts must keep the rules that keep VMM and
// virtiofsd option syntax out of the paths and tags (vm-launcher/names.h).

#include <cstddef>
#include <cstdint>
#include <set>
#include <string>
#include <string_view>

#include "vm-launcher/definition.h"
#include "vm-launcher/names.h"

namespace {

void require(bool holds) {
  if (!holds) __builtin_trap();
}

void require_usable_path(const std::filesystem::path& path) {
  require(!vmwarden::vm::path_problem(path.native()) && !vmwarden::vm::hidden_path_problem(path.native()));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace vmwarden::vm;
  std::string_view text(reinterpret_cast<const char*>(data), size);
  CheckOptions options{.check_filesystem = false};
  ParseResult result = parse_definition(text, "fuzz.toml", options);
  // Diagnostics must always be formattable and carry a position.
  for (const auto& diagnostic : result.errors) {
    require(diagnostic.line != 0 && diagnostic.column != 0 && !diagnostic.to_string().empty());
  }
  require(result.ok() == result.definition.has_value());
  if (!result.definition) return 0;

  const Definition& definition = *result.definition;
  if (definition.command.empty()) {
    require_usable_path(definition.kernel);
    if (!definition.initramfs.empty()) require_usable_path(definition.initramfs);
  } else {
    const std::string& program = definition.command.front();
    require(program.starts_with('/') && !program.ends_with('/') &&
            std::filesystem::path(program).lexically_normal() == program);
    require(!hidden_path_problem(program));
  }
  require(definition.disks.size() <= kMaxDisks && definition.shares.size() <= kMaxShares);
  for (const Disk& disk : definition.disks) require_usable_path(disk.path);
  std::set<std::string> tags;
  for (const Share& share : definition.shares) {
    require_usable_path(share.path);
    require(!tag_problem(share.tag) && tags.insert(share.tag).second);
  }
  return 0;
}
