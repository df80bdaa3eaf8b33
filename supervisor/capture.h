// A service's output kept in a file of the runtime dir, bounded, or passed
// to the warden's log line by line (ServiceSpec::captures): the warden's
// side of the pipe.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "common/unique_fd.h"
#include "supervisor/sandbox.h"

namespace vmwarden::supervisor {

class Capture {
 public:
  // In the warden, before the service starts: the pipe, and spec.file made
  // afresh through `runtime_dir_fd` (whatever is there is replaced, no
  // symlink is followed), owned by uid:gid, mode 0600. `service` names the
  // service in log lines.
  Capture(const OutputCapture& spec, std::string service, int runtime_dir_fd, uid_t uid, gid_t gid);

  // The pipe's write end, for the service (at spec.child_fd). The warden's
  // copy must go once the service has its own, or the stream never ends.
  int write_end() const { return write_end_.get(); }
  void close_write_end() { write_end_.reset(); }
  // Nonblocking, for the warden's poll; -1 once the stream has ended.
  int read_end() const { return read_end_.get(); }

  // When read_end() polls readable: moves one buffer, at most, from the pipe
  // to the file, so that a service that writes without pause cannot hold
  // the warden's loop. Closes the read end at the end of the stream.
  void pump();
  // At shutdown, every writer gone: what is left in the pipe.
  void drain();

 private:
  bool read_once();  // false once nothing more can be read now
  void store(const char* data, std::size_t size);
  void start_file(bool replace);
  void give_up(const std::string& problem);
  void log_lines(const char* data, std::size_t size);
  void log_line(std::string_view line);
  void report_dropped();

  OutputCapture spec_;
  std::string service_;
  int dir_;
  uid_t uid_;
  gid_t gid_;
  std::string name_, rotated_name_;  // in the runtime dir
  UniqueFd read_end_, write_end_, file_;
  std::uint64_t in_file_ = 0;
  bool dropping_ = false;  // the file could not be written: the rest is read and dropped
  std::string partial_line_;  // to_log: what came after the last newline
  // to_log: what the service may still have logged now (a token bucket),
  // and what was dropped beyond it since the last line logged.
  double log_budget_;
  std::chrono::steady_clock::time_point budget_time_;
  std::uint64_t dropped_bytes_ = 0;
  std::chrono::steady_clock::time_point last_drop_report_{};
};

}  // namespace vmwarden::supervisor
