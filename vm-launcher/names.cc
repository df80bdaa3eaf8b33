#include "vm-launcher/names.h"

#include <fmt/core.h>
#include <linux/limits.h>

#include "common/json_quote.h"
#include "common/uid_alias.h"

namespace vmwarden::vm {
namespace {

bool is_lower_alnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }
bool is_alnum(char c) { return is_lower_alnum(c) || (c >= 'A' && c <= 'Z'); }
bool is_control(char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7f; }

std::optional<std::string> lower_name_problem(std::string_view what, std::string_view name) {
  bool ok = !name.empty() && name.size() <= 64 && is_lower_alnum(name.front());
  for (char c : name) {
    ok = ok && (is_lower_alnum(c) || c == '_' || c == '.' || c == '-');
  }
  if (ok) return std::nullopt;
  return fmt::format(
      "{} \"{}\" is not valid: use 1 to 64 characters from a-z, 0-9, '_', '.', '-', "
      "starting with a letter or digit",
      what, printable(name));
}

}  // namespace

std::optional<std::string> vm_name_problem(std::string_view name) {
  return lower_name_problem("VM name", name);
}

std::optional<std::string> alias_problem(std::string_view alias) {
  if (valid_uid_alias(alias)) return std::nullopt;
  if (!alias.empty() && !(alias.front() >= 'a' && alias.front() <= 'z')) {
    return fmt::format("UID alias \"{}\" is not valid: it must start with a lowercase letter "
                       "(a name starting with a digit is read as a UID)",
                       printable(alias));
  }
  return fmt::format("UID alias \"{}\" is not valid: use 1 to 64 characters from a-z, 0-9, '_', '.', '-', "
                     "starting with a lowercase letter",
                     printable(alias));
}

std::optional<std::string> tag_problem(std::string_view tag) {
  bool ok = !tag.empty() && tag.size() <= 36;
  for (char c : tag) ok = ok && (is_alnum(c) || c == '_' || c == '-');
  if (ok) return std::nullopt;
  return fmt::format("tag \"{}\" is not valid: use 1 to 36 characters from A-Z, a-z, 0-9, '_', '-'",
                     printable(tag));
}

std::optional<std::string> hidden_path_problem(std::string_view path) {
  for (std::string_view hidden : {"/tmp", "/dev/shm"}) {
    if (path == hidden || (path.starts_with(hidden) && path.size() > hidden.size() && path[hidden.size()] == '/'))
      return fmt::format("{} lies under {}, which every service of the sandbox sees as its own empty tmpfs; use "
                         "a path outside /tmp and /dev/shm (e.g. under /var/lib)",
                         printable(path), hidden);
  }
  return std::nullopt;
}

std::optional<std::string> path_problem(std::string_view path) {
  if (path.empty()) return "path is empty: give an absolute path such as /var/lib/vmwarden/x";
  if (path.size() >= PATH_MAX) return fmt::format("path is longer than {} bytes", PATH_MAX - 1);
  for (char c : path) {
    if (is_control(c)) {
      return fmt::format("path \"{}\" contains a control character", printable(path));
    }
    if (c == ',' || c == ':' || c == '=') {
      return fmt::format(
          "path \"{}\" contains '{}', which a VMM would read as an option separator; "
          "rename the file or directory, or reach it through a path without ',' ':' '='",
          printable(path), c);
    }
    // cloud-hypervisor's option parser drops quotes and nests on brackets
    // (`path=/srv/a"b".img` opens /srv/ab.img), and crosvm's refuses them
    // unquoted: the VMM would open another file than the one checked, or
    // fail only once started.
    if (c == '"' || c == '\'' || c == '[' || c == ']') {
      return fmt::format(
          "path \"{}\" contains '{}', which a VMM's option parser would read as quoting or nesting; "
          "rename the file or directory, or reach it through a path without '\"' '\'' '[' ']'",
          printable(path), c);
    }
  }
  // cloud-hypervisor trims each option value: "/srv/disk.img " would open
  // /srv/disk.img.
  if (path.back() == ' ')
    return fmt::format("path \"{}\" ends with a space, which a VMM's option parser would drop; "
                       "rename the file or directory",
                       printable(path));
  // A definition is TOML, which holds UTF-8 only, and the VMMs' JSON
  // (QMP, the cloud-hypervisor API) too.
  if (!is_valid_utf8(path))
    return fmt::format("path \"{}\" is not valid UTF-8, which a definition cannot hold; rename the file or "
                       "directory, or reach it through a path that is",
                       printable(path));
  if (path.front() != '/') {
    return fmt::format("path \"{}\" is relative: give an absolute path", printable(path));
  }
  auto empty_component = [&] {
    return fmt::format("path \"{}\" has an empty component (\"//\"): write it with single slashes",
                       printable(path));
  };
  std::string_view body = path.substr(1);
  if (!body.empty() && body.back() == '/') body.remove_suffix(1);  // one trailing slash is fine
  while (!body.empty()) {
    size_t slash = body.find('/');
    std::string_view component = body.substr(0, slash);
    if (component.empty()) return empty_component();
    if (component == "." || component == "..") {
      return fmt::format("path \"{}\" has a \"{}\" component: give the path without \".\" or \"..\"",
                         printable(path), component);
    }
    if (slash == std::string_view::npos) break;
    body.remove_prefix(slash + 1);
    if (body.empty()) return empty_component();
  }
  return std::nullopt;
}

std::string normalize_path(std::string_view path) {
  if (path.size() > 1 && path.back() == '/') path.remove_suffix(1);
  return std::string(path);
}

}  // namespace vmwarden::vm
