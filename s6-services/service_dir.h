// s6 service directories for VM definitions: what `vmwarden s6 service`
// writes, so that s6-supervise runs `vmwarden supervise --s6 NAME` with the
// conventions s6 users expect (readiness on notification-fd, SIGTERM to
// stop, exit 125 to stop restarting, s6-log for the log).
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>

#include "common/locations.h"

namespace vmwarden::s6 {

struct ServiceOptions {
  std::string name;                     // the VM's name, also the service's
  std::filesystem::path definition;     // resolved, already validated
  std::filesystem::path scandir;        // the service goes to scandir/name
  std::filesystem::path vmwarden;       // absolute path of the binary to exec
  std::uint32_t shutdown_timeout_s = 30;
  bool log = false;                     // add log/ with s6-log
  // Written into `run` when set (tests and non-default layouts).
  std::map<std::string, std::string> environment;
};

// The files of the service directory, relative path -> (contents, mode).
struct ServiceFile {
  std::string contents;
  unsigned mode = 0644;
};
std::map<std::string, ServiceFile> service_files(const ServiceOptions& options);

enum class WriteResult { created, updated, unchanged };

// Writes scandir/name. A new directory is assembled under a dot-name (which
// s6-svscan ignores) and renamed into place; an existing one must carry the
// marker this writes (`.vmwarden-service`), else UsageError and nothing is
// touched; its files are then replaced one by one, atomically. Throws
// UsageError for a missing scandir.
WriteResult write_service_dir(const ServiceOptions& options);

}  // namespace vmwarden::s6
