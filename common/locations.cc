#include "common/locations.h"

#include <sys/stat.h>

#include <cstdlib>
#include <string>

#include <fmt/core.h>

#include "common/error.h"
#include "common/printable.h"

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
  check_location(value, variable, fallback);
  return value;
}

}  // namespace

void check_location(const std::filesystem::path& path, std::string_view source,
                               std::string_view example) {
  // Relative to what: the current directory differs between a shell, an s6
  // service directory and the sandbox, so it is refused rather than guessed.
  if (!path.is_absolute())
    throw UsageError(fmt::format("{} \"{}\" is a relative path; give an absolute one, e.g. {}", source,
                                 printable(path.string()), example));
  // Found here, rather than as ENOTDIR from whichever file is opened first.
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0 && !S_ISDIR(st.st_mode))
    throw UsageError(fmt::format("{} {} is not a directory; give a directory (a missing one is created when needed), "
                                 "e.g. {}",
                                 source, printable(path.string()), example));
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
