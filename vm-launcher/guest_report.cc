#include "vm-launcher/guest_report.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <charconv>
#include <sstream>
#include <string>

#include "common/unique_fd.h"
#include "vm-launcher/guest_manifest.h"
#include "vm-launcher/names.h"

namespace vmwarden::vm {

std::optional<int> read_reported_exit_status(const std::filesystem::path& report_dir) {
  // The directory itself is the host's (inside the root-owned run
  // directory); only what is in it can be the guest's.
  UniqueFd dir(::open(report_dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!dir) return std::nullopt;
  // O_NONBLOCK: a FIFO put in the file's place opens at once (and is then
  // refused as not regular) instead of waiting for a writer forever.
  std::string name(guest::kExitStatusFile);
  UniqueFd file(::openat(dir.get(), name.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC));
  struct stat st;
  if (!file || ::fstat(file.get(), &st) != 0 || !S_ISREG(st.st_mode)) return std::nullopt;
  // Longer than any first line it accepts, so that the number is seen to
  // end (at a newline, or at the end of a file shorter than the buffer)
  // rather than where the read stopped: "0000000013\n" is 13, not 0.
  char text[16];
  ssize_t length = ::read(file.get(), text, sizeof text);
  if (length <= 0) return std::nullopt;
  const char* end = text + length;
  int status = -1;
  auto [rest, error] = std::from_chars(text, end, status);
  if (error != std::errc() || rest == text || status < 0 || status > 255) return std::nullopt;
  bool line_ends = rest != end ? *rest == '\n' : length < static_cast<ssize_t>(sizeof text);
  if (!line_ends) return std::nullopt;
  return status;
}

std::map<std::string, std::string> read_key_values(const std::filesystem::path& file) {
  std::map<std::string, std::string> values;
  UniqueFd fd(::open(file.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC));
  struct stat st {};
  if (!fd || ::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode)) return values;
  std::string text(64 * 1024, '\0');
  ssize_t length = ::read(fd.get(), text.data(), text.size());
  text.resize(length > 0 ? static_cast<std::size_t>(length) : 0);
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    std::size_t equals = line.find('=');
    if (equals != std::string::npos) values[printable(line.substr(0, equals))] = printable(line.substr(equals + 1));
  }
  return values;
}

}  // namespace vmwarden::vm
