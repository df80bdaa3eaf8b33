// Where vmwarden keeps things. Each location has a built-in default, an
// environment override and (in the CLI) a flag override, so that tests never
// touch the host's real directories.
#pragma once

#include <filesystem>
#include <string_view>

namespace vmwarden {

struct Locations {
  std::filesystem::path config_dir;   // VM definitions live in config_dir/vms/NAME.toml
  std::filesystem::path state_dir;    // UID registry, grant records, images
  std::filesystem::path runtime_dir;  // one directory per running VM

  // Defaults, overridden by VMWARDEN_CONFIG_DIR, VMWARDEN_STATE_DIR and
  // VMWARDEN_RUNTIME_DIR when those are set and non-empty.
  static Locations from_environment();

  std::filesystem::path definition_file(std::string_view vm_name) const;
  std::filesystem::path vm_runtime_dir(std::string_view vm_name) const;
};

// Throws UsageError naming `source` (the variable or flag it came from) and
// suggesting `example` unless `path` is absolute and, where it exists, a
// directory (a missing one is created when needed).
void check_location(const std::filesystem::path& path, std::string_view source,
                               std::string_view example);

inline constexpr std::string_view kDefaultConfigDir = "/etc/vmwarden";
inline constexpr std::string_view kDefaultStateDir = "/var/lib/vmwarden";
inline constexpr std::string_view kDefaultRuntimeDir = "/run/vmwarden";

}  // namespace vmwarden
