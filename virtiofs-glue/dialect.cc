// Which virtiofsd is this? Both print their options for --help and exit 0:
// the C daemon documents "-o source=PATH", the Rust one "--shared-dir".
// That help text is in the binary itself, so the binary is searched for it
// first (in one pass, a few tenths of a millisecond); only when it holds neither or both (a
// wrapper script, a compressed binary) is --help run, which costs a process
// start on every `vmwarden supervise`. That run is unprivileged: uid and gid
// 65534 (nobody), no supplementary groups, no capabilities, no_new_privs and
// the default seccomp deny list, as it happens before any confinement is
// planned (and during `vmwarden audit`).
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <map>
#include <optional>
#include <tuple>

#include <fmt/core.h>

#include "common/error.h"
#include "common/process.h"
#include "common/unique_fd.h"
#include "supervisor/confinement.h"
#include "virtiofs-glue/virtiofsd.h"

namespace vmwarden::virtiofs {

namespace {

constexpr std::string_view kRustMarker = "--shared-dir";
constexpr std::string_view kCMarker = "-o source=";

std::optional<Dialect> dialect_from_contents(const std::filesystem::path& binary, const struct stat& st) {
  constexpr off_t kLargest = 256 << 20;
  if (st.st_size <= 0 || st.st_size > kLargest) return std::nullopt;
  UniqueFd fd(::open(binary.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return std::nullopt;
  size_t size = static_cast<size_t>(st.st_size);
  void* data = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd.get(), 0);
  if (data == MAP_FAILED) return std::nullopt;
  // One pass for both markers (each starts with '-'), stopping once both
  // were seen: half the work of searching for each in turn.
  bool rust = false, c = false;
  const char* cursor = static_cast<const char*>(data);
  const char* end = cursor + size;
  while (!(rust && c) && (cursor = static_cast<const char*>(::memchr(cursor, '-', end - cursor))) != nullptr) {
    std::string_view rest(cursor, static_cast<size_t>(end - cursor));
    rust = rust || rest.starts_with(kRustMarker);
    c = c || rest.starts_with(kCMarker);
    ++cursor;
  }
  ::munmap(data, size);
  if (rust == c) return std::nullopt;
  return rust ? Dialect::rust : Dialect::c;
}

}  // namespace

std::string_view to_string(Dialect dialect) { return dialect == Dialect::c ? "c" : "rust"; }

Dialect detect_dialect(const std::filesystem::path& binary) {
  struct stat st {};
  if (!binary.is_absolute() || ::stat(binary.c_str(), &st) != 0 || !S_ISREG(st.st_mode))
    throw PermanentError(fmt::format("virtiofsd {} is not an existing program given by an absolute path",
                                     binary.native()));
  // A replaced binary (same path, new inode or mtime) is detected afresh.
  using Key = std::tuple<std::string, dev_t, ino_t, long, long>;
  static std::map<Key, Dialect> cache;
  Key key{binary.native(), st.st_dev, st.st_ino, st.st_mtim.tv_sec, st.st_mtim.tv_nsec};
  if (auto found = cache.find(key); found != cache.end()) return found->second;

  if (auto dialect = dialect_from_contents(binary, st)) {
    cache.emplace(key, *dialect);
    return *dialect;
  }
  // Unprivileged as getent is (common/process.h), with the default seccomp
  // deny list on top, as PID 1 of a PID namespace of its own in an empty
  // network namespace: a wrapper that forks and detaches (an attack left one
  // running on the host's loopback network as uid 65534) dies with it, at
  // the latest at the deadline. No Landlock: it would need every path a
  // wrapper may use; the uid already keeps it from writing anything of root's.
  ProgramResult result = run_program_unprivileged(
      {binary.native(), "--help"}, {"LC_ALL=C"}, std::chrono::steady_clock::now() + std::chrono::seconds(10),
      [] { supervisor::load_seccomp_policy(supervisor::SeccompPolicy{}); }, ChildNamespaces::own_pid_and_network);
  Dialect dialect;
  if (result.output.find(kRustMarker) != std::string::npos)
    dialect = Dialect::rust;
  else if (result.output.find(kCMarker) != std::string::npos)
    dialect = Dialect::c;
  else
    throw PermanentError(fmt::format(
        "{} does not look like virtiofsd: its --help ({}) mentions neither --shared-dir (the Rust "
        "virtiofsd) nor -o source= (QEMU's C virtiofsd); set VMWARDEN_VIRTIOFSD to a virtiofsd",
        binary.native(), result.describe()));
  cache.emplace(key, dialect);
  return dialect;
}

}  // namespace vmwarden::virtiofs
