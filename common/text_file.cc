#include "common/text_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>

#include "common/error.h"
#include "common/unique_fd.h"

namespace vmwarden {

void write_text_file(const std::filesystem::path& path, std::string_view text, mode_t mode) {
  UniqueFd file(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode));
  if (!file) throw_errno("create", path.native());
  while (!text.empty()) {
    ssize_t n = ::write(file.get(), text.data(), text.size());
    if (n < 0 && errno == EINTR) continue;
    check(n, "write", path.native());
    text.remove_prefix(static_cast<std::size_t>(n));
  }
  // A filesystem that writes back late (NFS) reports its failure here.
  check(::close(file.release()), "close", path.native());
}

}  // namespace vmwarden
