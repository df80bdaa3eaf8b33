// The terminal of an interactive service (ServiceSpec::terminal_fds): a new
// pty, opened by the outer from the host's /dev/ptmx, whose slave the
// service gets instead of the caller's terminal, and the outer's relay
// between the two. The service never holds the caller's terminal, so its
// TIOCSPGRP, tcsetattr, window size and kill(0) reach only its own pty and
// process group; Ctrl-C reaches it through the pty's line discipline.
#pragma once

#include <thread>

#include <termios.h>

#include "common/unique_fd.h"
#include "supervisor/sandbox.h"

namespace vmwarden::supervisor {

// The caller's terminal of the service with terminal_fds: the parent_fd
// mapped to its stdout, else its stderr, else its stdin, whichever is on the
// terminal. -1 when no service has a terminal.
int caller_terminal(const SandboxSpec& spec);

// Whether the caller's keys are the service's: its stdin and its stdout are
// both on the terminal (in `cmd | reader` the keys are the reader's).
bool relays_input(const SandboxSpec& spec);

// `spec` with each service's terminal_fds mapped from `slave` instead.
SandboxSpec with_pty_slave(const SandboxSpec& spec, int slave);

class PtyRelay {
 public:
  // Opens a new pty pair whose slave has the window size and modes of
  // `terminal` (the caller's, left as it is until start()). SIGWINCH must be
  // blocked, in every thread, from before this on: start() reads it from a
  // signalfd, and one that came in between is still pending then.
  // `with_input`: the service's stdin is the terminal, so the caller's keys
  // are relayed to it (when vmwarden is in the terminal's foreground).
  PtyRelay(int terminal, bool with_input);
  PtyRelay(const PtyRelay&) = delete;
  PtyRelay& operator=(const PtyRelay&) = delete;
  // finish(), then the caller's terminal's modes back.
  ~PtyRelay();

  int slave() const { return slave_.get(); }

  // In the warden, a clone of the outer: the master is the outer's alone
  // (the warden passes the slave on).
  void close_master() { master_.reset(); }

  // Once the warden holds the slave: closes the outer's copy (so that the
  // master reads EIO once every holder is gone), puts the caller's terminal
  // in raw mode (its keys, Ctrl-C included, then go to the pty's line
  // discipline) and relays on a thread of its own until finish().
  void start();

  // Once the sandbox has ended: relays what the service wrote last, then
  // stops the thread. Idempotent.
  void finish() noexcept;

 private:
  void relay() noexcept;  // the thread
  void restore_modes() noexcept;

  int terminal_;
  bool terminal_readable_;
  UniqueFd master_;
  UniqueFd slave_;
  UniqueFd stop_;  // an eventfd: finish() asks the thread to drain and return
  termios saved_modes_{};
  bool raw_ = false;
  std::thread thread_;
};

}  // namespace vmwarden::supervisor
