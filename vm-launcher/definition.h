// A VM definition: one plain value parsed from NAME.toml and validated before
// anything acts on it. Every later component consumes this type, never TOML.
// The keys are documented in doc/CONFIGURATION.md.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/environment.h"

namespace vmwarden::vm {

enum class Vmm { qemu, crosvm, cloud_hypervisor };
enum class Access { ro, rw };
enum class LandlockMode { required, best_effort };
enum class SeccompMode { kill, log };

struct Disk {
  std::filesystem::path path;
  bool readonly = true;
};

// A host directory served to the guest by its own virtiofsd (for a VM), or
// made reachable to the command at the same path (for a plain command).
struct Share {
  std::string tag;
  std::filesystem::path path;
  Access access = Access::ro;
};

// Each disk and share is a PCI device of the VM (QEMU's q35 has about 30
// free slots), and each share a grant and a virtiofsd: far more than any VM
// uses would be a mistake, refused at its position.
inline constexpr std::size_t kMaxDisks = 8;
inline constexpr std::size_t kMaxShares = 16;

struct Definition {
  std::string name;  // from the file name, NAME.toml

  // Exactly one of these is set: a VM run by a VMM, or a plain command run in
  // the same sandbox (a per-VM helper daemon).
  std::optional<Vmm> vmm;
  std::vector<std::string> command;
  EnvironmentRule environment;  // a command's: vmwarden's own unless [environment] says otherwise

  std::filesystem::path kernel;
  std::filesystem::path initramfs;  // empty: none
  std::string cmdline;
  std::uint32_t memory_mib = 512;
  std::uint32_t cpus = 1;
  std::uint32_t shutdown_timeout_s = 30;

  std::string uid_alias;  // empty: a single-use UID for each run

  std::vector<Disk> disks;
  std::vector<Share> shares;

  bool wayland = false;

  LandlockMode landlock = LandlockMode::required;
  SeccompMode seccomp = SeccompMode::kill;
  bool network = false;

  bool is_command() const { return !vmm.has_value(); }
};

// One problem found in a definition, reported as FILE:LINE:COL: error: MESSAGE.
struct Diagnostic {
  std::string file;
  std::uint32_t line = 1;
  std::uint32_t column = 1;
  std::string message;

  std::string to_string() const;
};

struct ParseResult {
  std::optional<Definition> definition;  // set only when errors is empty
  std::vector<Diagnostic> errors;

  bool ok() const { return errors.empty(); }
};

struct CheckOptions {
  // Check that the kernel, initramfs, disks and shares exist and have the
  // right file type. Off for `vmwarden check --syntax-only`.
  bool check_filesystem = true;
  // With check_filesystem, for each share that exists: why launching would
  // refuse it, or nothing. `vmwarden check` and `audit` pass
  // vm::share_refusal() (vm-launcher/share_check.h), which the parser does
  // not call itself: it is built without the launcher (for the fuzzer).
  std::function<std::optional<std::string>(const std::filesystem::path&)> share_refusal;
};

// Parses and validates `text`. `file_name` is used in diagnostics and gives
// the VM its name: the base name without ".toml".
ParseResult parse_definition(std::string_view text, const std::string& file_name,
                             const CheckOptions& options = {});

// Reads `file` and parses it. An unreadable file is one diagnostic, not an
// exception.
ParseResult load_definition(const std::filesystem::path& file, const CheckOptions& options = {});

std::string_view to_string(Vmm vmm);
std::string_view to_string(Access access);
std::string_view to_string(LandlockMode mode);
std::string_view to_string(SeccompMode mode);

}  // namespace vmwarden::vm

namespace vmwarden {
struct Locations;
}

namespace vmwarden::vm {

// `vmwarden supervise NAME|FILE`: an argument with a '/' or ending in ".toml"
// is a file; anything else is the name of a definition in the config dir.
std::filesystem::path resolve_definition(const Locations& locations, std::string_view name_or_file);

}  // namespace vmwarden::vm
