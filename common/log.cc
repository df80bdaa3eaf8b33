#include "common/log.h"

#include <unistd.h>

#include <cerrno>
#include <string>

namespace vmwarden::log {
namespace {

// Plain statics: logging must work in a forked child without locks or
// allocation surprises from a half-copied logger object.
std::string g_prefix = "vmwarden";
Level g_min_level = Level::info;

std::string_view level_tag(Level level) {
  switch (level) {
    case Level::debug: return "debug: ";
    case Level::info: return "";
    case Level::warning: return "warning: ";
    case Level::error: return "error: ";
  }
  return "";
}

}  // namespace

void set_prefix(std::string_view prefix) { g_prefix = prefix; }
std::string_view prefix() { return g_prefix; }
void set_min_level(Level level) { g_min_level = level; }
bool enabled(Level level) { return level >= g_min_level; }

void write(Level level, std::string_view message) {
  if (!enabled(level)) return;
  std::string line;
  line.reserve(g_prefix.size() + message.size() + 16);
  line += g_prefix;
  line += ": ";
  line += level_tag(level);
  line += message;
  line += '\n';
  int saved_errno = errno;
  // A short write to a pipe of a line under PIPE_BUF cannot happen; for longer
  // lines finish the write rather than drop the tail.
  std::string_view rest = line;
  while (!rest.empty()) {
    ssize_t n = ::write(STDERR_FILENO, rest.data(), rest.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      break;
    }
    rest.remove_prefix(static_cast<size_t>(n));
  }
  errno = saved_errno;
}

}  // namespace vmwarden::log
