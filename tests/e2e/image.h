// The test guest image (tools/build-guest-image, with the guest agent),
// built once per build tree and shared by the end-to-end tests.
#pragma once

#include <sys/stat.h>

#include <cstdlib>
#include <filesystem>
#include <optional>
#include <stdexcept>

#include "tests/support/support.h"

namespace vmwarden::testing {

inline std::filesystem::path guest_image() {
  namespace fs = std::filesystem;
  static std::optional<fs::path> image;
  if (image) return *image;
  const char* configured = std::getenv("VMWARDEN_TEST_IMAGE_DIR");
  fs::path dir = configured != nullptr ? fs::path(configured) : fs::path(vmwarden_binary()).parent_path() / "guest-image";
  CommandOptions options;
  options.timeout = std::chrono::minutes(20);
  // The builder is idempotent: it does nothing when the image is up to date.
  CommandResult built = run_command({(source_dir() / "tools/build-guest-image").string(), dir.string()}, options);
  if (built.exit_code != 0) throw std::runtime_error("build-guest-image failed:\n" + built.err);
  for (const char* file : {"vmlinuz", "initrd.img"}) fs::permissions(dir / file, fs::perms(0644));
  image = dir;
  return dir;
}

}  // namespace vmwarden::testing
