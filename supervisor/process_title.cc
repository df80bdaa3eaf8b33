#include "supervisor/process_title.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <string>

namespace vmwarden::supervisor {
namespace {

// Length of the argument area (argv strings, contiguous, NUL-terminated)
// as the kernel records it.
size_t argument_area_size() {
  int fd = ::open("/proc/self/cmdline", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  size_t total = 0;
  char buffer[4096];
  while (true) {
    ssize_t n = ::read(fd, buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    total += static_cast<size_t>(n);
  }
  ::close(fd);
  return total;
}

}  // namespace

void set_process_title(std::string_view comm, std::string_view title) {
  std::string name(comm.substr(0, 15));
  ::prctl(PR_SET_NAME, name.c_str());

  // glibc points program_invocation_name at argv[0], the start of the area.
  char* area = program_invocation_name;
  size_t size = argument_area_size();
  if (area == nullptr || size < 2) return;
  size_t length = std::min(title.size(), size - 2);
  std::memset(area, 0, size);
  std::memcpy(area, title.data(), length);
  // A non-NUL last byte tells the kernel the title was rewritten: it then
  // reports the area up to the first NUL instead of all of it, padding
  // included (fs/proc/base.c, get_mm_cmdline()).
  area[size - 1] = ' ';
}

}  // namespace vmwarden::supervisor
