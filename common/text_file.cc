#include "common/text_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "common/error.h"
#include "common/unique_fd.h"
#include "common/write_all.h"

namespace vmwarden {

void write_text_file(const std::filesystem::path& path, std::string_view text, mode_t mode) {
  // O_NOFOLLOW and O_NONBLOCK: a symlink is refused rather than written
  // through, a FIFO without a reader fails (ENXIO) rather than blocks.
  UniqueFd file(::open(path.c_str(), O_WRONLY | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, mode));
  if (!file) throw_errno("create", path.native());
  struct stat st {};
  check(::fstat(file.get(), &st), "stat", path.native());
  // Anything else (a FIFO with a reader, a device) is not truncated or
  // written to either.
  if (!S_ISREG(st.st_mode)) throw SystemError(EINVAL, "write " + path.native() + ": not a regular file");
  check(::ftruncate(file.get(), 0), "truncate", path.native());
  // The mode asked for, not what the umask leaves of it: others read these
  // files (s6-supervise runs the service's scripts, the demo's guest its
  // script).
  check(::fchmod(file.get(), mode), "chmod", path.native());
  if (!write_all(file.get(), text)) throw_errno("write", path.native());
  // A filesystem that writes back late (NFS) reports its failure here.
  check(::close(file.release()), "close", path.native());
}

}  // namespace vmwarden
