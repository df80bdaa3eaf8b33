// Which virtiofsd is this? Both print their options for --help and exit 0:
// the C daemon documents "-o source=PATH", the Rust one "--shared-dir".
#include <sys/stat.h>

#include <map>
#include <tuple>

#include <fmt/core.h>

#include "common/error.h"
#include "common/process.h"
#include "virtiofs-glue/virtiofsd.h"

namespace vmwarden::virtiofs {

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

  ProgramResult result = run_program({binary.native(), "--help"}, {"LC_ALL=C"},
                                     std::chrono::steady_clock::now() + std::chrono::seconds(10));
  Dialect dialect;
  if (result.output.find("--shared-dir") != std::string::npos)
    dialect = Dialect::rust;
  else if (result.output.find("-o source=") != std::string::npos)
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
