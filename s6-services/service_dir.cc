// The service directory's files are generated from one table here; the
// installed templates (s6-services/templates/) are the same text with
// placeholders, and a test keeps the two in step.

#include "s6-services/service_dir.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <ctime>
#include <fstream>
#include <sstream>

#include <fmt/core.h>

#include "common/error.h"
#include "common/text_file.h"

namespace vmwarden::s6 {
namespace {

namespace fs = std::filesystem;

constexpr std::string_view kMarker = ".vmwarden-service";

// Single-quoted for sh: the only character that needs care is the quote.
std::string sh_quote(std::string_view text) {
  std::string out = "'";
  for (char c : text) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

std::string read_all(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// A failed write (a full disk) leaves neither the temporary file nor a
// directory it made for it: in a service directory, a log/ without its run
// would have s6-supervise retry it forever.
void write_atomically(const fs::path& base, const std::string& name, const ServiceFile& file) {
  fs::path path = base / name, parent = path.parent_path();
  // The directory a service file (e.g. "log/run") lies in, made 0755 like
  // the service directory itself whatever the umask: s6-svscan and
  // s6-supervise (and whoever reads the logs) go through it.
  bool made_parent = false;
  if (parent != base) {
    made_parent = fs::create_directories(parent);
    check(::chmod(parent.c_str(), 0755), "chmod", parent.string());
  }
  fs::path temporary = parent / fmt::format(".{}.tmp-{}", path.filename().string(), ::getpid());
  try {
    write_text_file(temporary, file.contents, file.mode);
    check(::rename(temporary.c_str(), path.c_str()), "rename", path.string());
  } catch (...) {
    ::unlink(temporary.c_str());
    if (made_parent) ::rmdir(parent.c_str());
    throw;
  }
}

}  // namespace

std::map<std::string, ServiceFile> service_files(const ServiceOptions& options) {
  std::map<std::string, ServiceFile> files;
  std::string environment;
  for (const auto& [key, value] : options.environment)
    environment += fmt::format("export {}={}\n", key, sh_quote(value));

  // exec, never fork: s6-supervise must stay vmwarden's parent (vmwarden
  // checks it through supervise/lock).
  files["run"] = {fmt::format("#!/bin/sh\n"
                              "# Written by `vmwarden s6 service {name}`; rewritten when it runs again.\n"
                              "{redirect}{environment}"
                              "exec {vmwarden} supervise --s6 {definition}\n",
                              fmt::arg("name", options.name),
                              fmt::arg("redirect", options.log ? "exec 2>&1\n" : ""),
                              fmt::arg("environment", environment),
                              fmt::arg("vmwarden", sh_quote(options.vmwarden.string())),
                              fmt::arg("definition", sh_quote(options.definition.string()))),
                  0755};

  // $1: the exit code (256 when killed by a signal), $2: the signal. Its
  // stderr, like the run script's, goes to the logger with --log.
  files["finish"] = {
      fmt::format("#!/bin/sh\n"
                  "# Written by `vmwarden s6 service`. 125 from vmwarden means the VM can never\n"
                  "# start as defined (invalid definition, unmet `landlock = \"required\"`, a\n"
                  "# share its UID cannot reach): pass it on, and s6-supervise stops\n"
                  "# restarting. Any other exit is restarted 2 s after it (s6-supervise's own\n"
                  "# second between two starts has passed by then), unless the service was\n"
                  "# stopped on purpose (s6-svc -d, s6-svscanctl -t): no restart follows, so no\n"
                  "# pause.\n"
                  "{redirect}"
                  "case \"$1\" in\n"
                  "  0) exit 0 ;;\n"
                  "  125) echo \"vmwarden: permanent failure, not restarting (s6-svc -u after fixing it)\" >&2; exit 125 ;;\n"
                  "esac\n"
                  "[ \"$(s6-svstat -o wantedup . 2>/dev/null)\" = false ] && exit 0\n"
                  "sleep 2\n",
                  fmt::arg("redirect", options.log ? "exec 2>&1\n" : "")),
      0755};
  files["notification-fd"] = {"3\n"};
  files["down-signal"] = {"SIGTERM\n"};
  // s6-supervise's own backstop, above vmwarden's shutdown timeout (vmwarden
  // SIGKILLs its tree at shutdown_timeout_s; this catches vmwarden itself).
  // The margin covers the warden's last graceful-stop attempt (at most 1 s),
  // the kernel tearing the namespace down and the outer revoking grants and
  // releasing the lease: 10 s, so a slow revoke is not cut short by SIGKILL
  // (supervisor::kS6KillMargin: `supervise --s6` refuses less).
  files["timeout-kill"] = {fmt::format("{}\n", (options.shutdown_timeout_s + 10) * 1000)};
  files["timeout-finish"] = {"5000\n"};
  files[std::string(kMarker)] = {fmt::format("vmwarden s6 service {}\n", options.name)};
  if (options.log) {
    // n20: keep 20 archived files, s1000000: rotate at 1 MB, T: ISO 8601
    // timestamps; the logs go to log/main.
    files["log/run"] = {"#!/bin/sh\n"
                        "# Written by `vmwarden s6 service --log`.\n"
                        "exec s6-log -b n20 s1000000 T ./main\n",
                        0755};
  }
  return files;
}

WriteResult write_service_dir(const ServiceOptions& options) {
  if (!fs::is_directory(options.scandir))
    throw UsageError(fmt::format("scandir {} is not a directory; create it (and run s6-svscan on it) first",
                                 options.scandir.string()));
  fs::path dir = options.scandir / options.name;
  auto files = service_files(options);

  std::error_code error;
  if (fs::exists(fs::symlink_status(dir, error))) {
    if (!fs::is_directory(fs::symlink_status(dir)) || !fs::exists(dir / kMarker))
      throw UsageError(fmt::format("{} exists and was not written by vmwarden (no {} in it); remove it or choose "
                                   "another scandir",
                                   dir.string(), kMarker));
    bool changed = false;
    for (const auto& [name, file] : files) {
      fs::path path = dir / name;
      struct stat st {};
      if (::stat(path.c_str(), &st) == 0 && read_all(path) == file.contents && (st.st_mode & 07777) == file.mode)
        continue;
      write_atomically(dir, name, file);
      changed = true;
    }
    // --log dropped since the last time: the log service goes. s6-svscan
    // supervises any log/ subdirectory, run script or not, so the directory
    // is moved aside (the logs in it kept), not just emptied of its script.
    if (!options.log && fs::is_directory(fs::symlink_status(dir / "log"))) {
      fs::remove(dir / "log/run");
      fs::path kept = dir / fmt::format("log.old-{}", ::time(nullptr));
      check(::rename((dir / "log").c_str(), kept.c_str()), "rename", (dir / "log").string());
      changed = true;
    }
    return changed ? WriteResult::updated : WriteResult::unchanged;
  }

  // Assembled under a dot-name, which s6-svscan skips, then renamed: the
  // scanner never sees a half-written service.
  fs::path staging = options.scandir / fmt::format(".{}.new-{}", options.name, ::getpid());
  fs::remove_all(staging);
  try {
    fs::create_directory(staging);
    check(::chmod(staging.c_str(), 0755), "chmod", staging.string());
    for (const auto& [name, file] : files) {
      write_atomically(staging, name, file);
    }
    check(::rename(staging.c_str(), dir.c_str()), "rename", dir.string());
  } catch (...) {
    fs::remove_all(staging, error);
    throw;
  }
  return WriteResult::created;
}

}  // namespace vmwarden::s6
