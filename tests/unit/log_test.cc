// log::write's line ends: "\r\n" for every line of a message on a terminal
// that does not turn "\n" into "\r\n" itself (the caller's, raw while a pty
// is relayed), plain "\n" on one that does.
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <termios.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <string>

#include "common/error.h"
#include "common/log.h"
#include "common/unique_fd.h"

namespace vmwarden {
namespace {

// What log::write puts on a new pty's slave, set up as `raw` says, as
// stderr; read back from the master.
std::string logged_on_a_pty(bool raw, std::string_view message) {
  UniqueFd master(check(::posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC), "posix_openpt"));
  check(::grantpt(master.get()), "grantpt");
  check(::unlockpt(master.get()), "unlockpt");
  UniqueFd slave(check(::open(::ptsname(master.get()), O_RDWR | O_NOCTTY | O_CLOEXEC), "open", "the pty's slave"));
  termios modes{};
  check(::tcgetattr(slave.get(), &modes), "tcgetattr");
  if (raw) ::cfmakeraw(&modes);
  modes.c_lflag &= ~static_cast<tcflag_t>(ECHO);
  check(::tcsetattr(slave.get(), TCSANOW, &modes), "tcsetattr");

  UniqueFd saved_stderr(check(::fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 3), "dup", "stderr"));
  check(::dup2(slave.get(), STDERR_FILENO), "dup2");
  log::set_prefix("test");
  log::write(log::Level::info, message);
  check(::dup2(saved_stderr.get(), STDERR_FILENO), "dup2");

  // The line discipline may hand it over in pieces: read until it has been
  // quiet for a while.
  std::string text;
  char buffer[256];
  for (pollfd ready{master.get(), POLLIN, 0}; ::poll(&ready, 1, 200) > 0;) {
    ssize_t n = ::read(master.get(), buffer, sizeof buffer);
    if (n <= 0) break;
    text.append(buffer, static_cast<std::size_t>(n));
  }
  return text;
}

TEST(Log, EveryLineOfAMessageEndsInACarriageReturnOnARawTerminal) {
  EXPECT_EQ(logged_on_a_pty(/*raw=*/true, "one\ntwo"), "test: one\r\ntwo\r\n");
}

TEST(Log, ATerminalThatTranslatesGetsPlainNewlines) {
  // The line discipline's own \n -> \r\n, once.
  EXPECT_EQ(logged_on_a_pty(/*raw=*/false, "one\ntwo"), "test: one\r\ntwo\r\n");
}

// A path quoted in a log line (a share's, a kernel's) passes a
// definition's checks with a C1 control or a bidirectional override in it:
// the terminal gets them escaped, as an error quotes them.
TEST(Log, ControlCharactersInAMessageAreEscaped) {
  EXPECT_EQ(logged_on_a_pty(/*raw=*/true, "granted ro on /s\xc2\x9b" "2J\xe2\x80\xae\x1b[31m\nnext"),
            "test: granted ro on /s\\xc2\\x9b2J\\xe2\\x80\\xae\\x1b[31m\r\nnext\r\n");
}

}  // namespace
}  // namespace vmwarden
