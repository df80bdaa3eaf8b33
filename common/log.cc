#include "common/log.h"

#include <termios.h>
#include <unistd.h>

#include <cerrno>
#include <string>

#include "common/printable.h"
#include "common/write_all.h"

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

// The end of a line on stderr. A terminal that does not turn "\n" into
// "\r\n" itself (the caller's, while an interactive command's pty is
// relayed with it in raw mode) gets the carriage return from here, or each
// line would start where the last one ended. Asked at every line: the relay
// sets and restores raw mode while the warden and the outer log, and the
// warden cannot know when. Not a terminal (a pipe, s6-log): "\n".
std::string_view line_end() {
  termios modes{};
  if (::tcgetattr(STDERR_FILENO, &modes) != 0) return "\n";
  bool translates = (modes.c_oflag & OPOST) && (modes.c_oflag & ONLCR);
  return translates ? "\n" : "\r\n";
}

}  // namespace

void set_prefix(std::string_view prefix) { g_prefix = prefix; }
std::string_view prefix() { return g_prefix; }
void set_min_level(Level level) { g_min_level = level; }
bool enabled(Level level) { return level >= g_min_level; }

void write(Level level, std::string_view message) {
  if (!enabled(level)) return;
  int saved_errno = errno;
  std::string line;
  line.reserve(g_prefix.size() + message.size() + 16);
  line += g_prefix;
  line += ": ";
  line += level_tag(level);
  // Each line of a message of several ends as its last does. What a line
  // quotes (a definition's path, a share's name, an error from a service)
  // may hold what a terminal acts on, an 8-bit CSI or a bidirectional
  // override that reorders the line: escaped, as errors quote it.
  const std::string_view end = line_end();
  for (std::size_t next; (next = message.find('\n')) != std::string_view::npos; message.remove_prefix(next + 1)) {
    line += printable(message.substr(0, next));
    line += end;
  }
  line += printable(message);
  line += end;
  // One write(2) for a line under PIPE_BUF on a pipe; a longer one is
  // finished rather than cut. A failure has nowhere to be reported.
  (void)write_all(STDERR_FILENO, line);
  errno = saved_errno;
}

}  // namespace vmwarden::log
