#include "common/environment.h"

#include <fmt/format.h>

#include <algorithm>

#include "common/printable.h"

namespace vmwarden {
namespace {

std::string_view name_of(std::string_view entry) { return entry.substr(0, entry.find('=')); }

std::string printable_list(const std::vector<std::string>& names) {
  std::vector<std::string> shown;
  for (const std::string& name : names) shown.push_back(printable(name));
  return fmt::format("{}", fmt::join(shown, ", "));
}

}  // namespace

std::vector<std::string> EnvironmentRule::build(const char* const* base) const {
  std::vector<std::string> env;
  if (inherit) {
    for (const char* const* entry = base; *entry != nullptr; ++entry) {
      std::string_view text = *entry;
      if (std::find(unset.begin(), unset.end(), name_of(text)) == unset.end()) env.emplace_back(text);
    }
  }
  for (const std::string& entry : set) {
    std::erase_if(env, [&](const std::string& existing) { return name_of(existing) == name_of(entry); });
    env.push_back(entry);
  }
  return env;
}

std::vector<std::string> EnvironmentRule::set_names() const {
  std::vector<std::string> names;
  for (const std::string& entry : set) {
    std::string name(name_of(entry));
    if (std::find(names.begin(), names.end(), name) == names.end()) names.push_back(std::move(name));
  }
  return names;
}

std::string EnvironmentRule::describe() const {
  if (!inherit) {
    if (set.empty()) return "empty";
    return fmt::format("only {} (values not shown)", printable_list(set_names()));
  }
  std::string text = "vmwarden's own (whatever it was started with; not shown)";
  if (!unset.empty()) text += fmt::format(", less {}", printable_list(unset));
  if (!set.empty()) text += fmt::format(", then set {} (values not shown)", printable_list(set_names()));
  return text;
}

std::optional<std::string> environment_name_problem(std::string_view name) {
  if (name.empty()) return "a variable's name cannot be empty";
  if (name.find('=') != std::string_view::npos) return "a variable's name cannot contain '='";
  if (name.find('\0') != std::string_view::npos) return "a variable's name cannot contain a NUL character";
  if (std::any_of(name.begin(), name.end(), [](char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7f; }))
    return "a variable's name cannot contain a control character";
  return std::nullopt;
}

}  // namespace vmwarden
