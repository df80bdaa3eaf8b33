#include "common/locations.h"

#include <cstdlib>
#include <string>

#include <fmt/core.h>

#include "common/error.h"

namespace vmwarden {
namespace {

std::filesystem::path from_env(const char* variable, std::string_view fallback) {
  const char* value = std::getenv(variable);
  if (value == nullptr) return std::filesystem::path(fallback);
  // Set but empty is most likely an unset shell variable: acting on the
  // default (the system's own state) instead would be a surprise.
  if (*value == '\0')
    throw UsageError(fmt::format("{} is set but empty; unset it for the default {}, or give an absolute path",
                                 variable, fallback));
  require_absolute_location(value, variable, fallback);
  return value;
}

}  // namespace

void require_absolute_location(const std::filesystem::path& path, std::string_view source,
                               std::string_view example) {
  if (path.is_absolute()) return;
  // Relative to what: the current directory differs between a shell, an s6
  // service directory and the sandbox, so it is refused rather than guessed.
  throw UsageError(std::string(source) + " \"" + path.string() + "\" is a relative path; give an absolute one, e.g. " +
                   std::string(example));
}

Locations Locations::from_environment() {
  return Locations{
      .config_dir = from_env("VMWARDEN_CONFIG_DIR", kDefaultConfigDir),
      .state_dir = from_env("VMWARDEN_STATE_DIR", kDefaultStateDir),
      .runtime_dir = from_env("VMWARDEN_RUNTIME_DIR", kDefaultRuntimeDir),
  };
}

std::filesystem::path Locations::definition_file(std::string_view vm_name) const {
  return config_dir / "vms" / (std::string(vm_name) + ".toml");
}

std::filesystem::path Locations::vm_runtime_dir(std::string_view vm_name) const {
  return runtime_dir / std::string(vm_name);
}

}  // namespace vmwarden
