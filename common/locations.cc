#include "common/locations.h"

#include <cstdlib>
#include <string>

namespace vmwarden {
namespace {

std::filesystem::path from_env(const char* variable, std::string_view fallback) {
  const char* value = std::getenv(variable);
  if (value != nullptr && *value != '\0') return value;
  return std::filesystem::path(fallback);
}

}  // namespace

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
