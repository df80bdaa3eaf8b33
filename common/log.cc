#include "common/log.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <string>

#include <fmt/core.h>

#include "common/printable.h"
#include "common/write_all.h"

namespace vmwarden::log {
namespace {

// Plain statics: logging must work in a forked child without locks or
// allocation surprises from a half-copied logger object.
std::string g_prefix = "vmwarden";
Level g_min_level = Level::info;
// See never_block_on_a_pipe(): the non-blocking descriptor (-1: write to
// stderr and wait as long as it takes), the lines dropped since the log last
// took one, and whether the last line written was cut short.
int g_pipe = -1;
std::uint64_t g_dropped = 0;
bool g_cut = false;
constexpr std::chrono::milliseconds kLongestWait{500};

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

// Writes what it can of `data` to g_pipe, waiting for room up to
// kLongestWait, and not at all while lines are being dropped. True if all of
// it went; else g_cut says whether a part did.
bool write_within_limit(std::string_view data) {
  auto deadline = std::chrono::steady_clock::now() + kLongestWait;
  bool started = false;
  while (!data.empty()) {
    ssize_t written = ::write(g_pipe, data.data(), data.size());
    if (written > 0) {
      data.remove_prefix(static_cast<std::size_t>(written));
      started = true;
      continue;
    }
    if (written < 0 && errno == EINTR) continue;
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (written < 0 && errno == EAGAIN && g_dropped == 0 && left.count() > 0) {
      pollfd room{g_pipe, POLLOUT, 0};
      (void)::poll(&room, 1, static_cast<int>(left.count()));
      continue;
    }
    g_cut = g_cut || started;
    return false;
  }
  g_cut = false;
  return true;
}

// A line, after the count of those dropped before it (on a line of its own,
// after the end of one cut short), or dropped and counted itself.
void write_or_drop(std::string_view line) {
  if (g_dropped > 0) {
    std::string notice = fmt::format("{}{}: warning: {} line{} of vmwarden's log dropped: the log did not take "
                                     "them within {} ms\n",
                                     g_cut ? "\n" : "", g_prefix, g_dropped, g_dropped == 1 ? "" : "s",
                                     kLongestWait.count());
    if (!write_within_limit(notice)) {
      ++g_dropped;
      return;
    }
    g_dropped = 0;
  }
  if (!write_within_limit(line)) ++g_dropped;
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
  if (g_pipe < 0)
    (void)write_all(STDERR_FILENO, line);
  else
    write_or_drop(line);
  errno = saved_errno;
}

void never_block_on_a_pipe() {
  struct stat st {};
  if (g_pipe >= 0 || ::fstat(STDERR_FILENO, &st) != 0 || !S_ISFIFO(st.st_mode)) return;
  // Opening a pipe through /proc makes a new open file description of it,
  // whose O_NONBLOCK is this process's alone (children inherit it only until
  // they exec: CLOEXEC).
  int fd = ::open("/proc/self/fd/2", O_WRONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd >= 0) g_pipe = fd;
}

}  // namespace vmwarden::log
