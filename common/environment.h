// How a confined program's environment is made from vmwarden's own: the
// one rule behind `exec --clearenv/--unsetenv/--setenv` and a command
// definition's [environment] table, and the audit's words for it.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace vmwarden {

struct EnvironmentRule {
  bool inherit = true;              // start from vmwarden's own (else from nothing)
  std::vector<std::string> unset;   // names taken out of what is inherited
  std::vector<std::string> set;     // KEY=VALUE, put in last; a later one wins

  // The complete environment, KEY=VALUE, from `base` (a NULL-terminated
  // array such as environ).
  std::vector<std::string> build(const char* const* base) const;

  // The names `set` sets, each once, in order.
  std::vector<std::string> set_names() const;

  // What the program gets, by name only: values may be secrets, and
  // inherited names depend on how vmwarden was started. E.g. "vmwarden's
  // own, less DISPLAY; set LANG (values not shown)".
  std::string describe() const;
};

// Why `name` cannot name a variable (empty, holds '=', NUL or another
// control character, which the audit would print), if it cannot.
std::optional<std::string> environment_name_problem(std::string_view name);

}  // namespace vmwarden
