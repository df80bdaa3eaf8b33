// What the guest agent reports back through the report share: the program's
// exit status. The share is writable by the VM's UID, so the host reads it as
// untrusted input (doc/GUEST-AGENT.md, "Exit status").
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <map>
#include <optional>
#include <string>

namespace vmwarden::vm {

// The status (0-255) in report_dir/exit-status: a regular file reached
// without following a symlink, whose first line is a decimal number of at
// most 15 digits (leading zeros count; the agent writes "N\n"). Empty
// when there is none or it is anything else (a symlink, a FIFO or a
// directory in its place, text that is not a status); never blocks.
std::optional<int> read_reported_exit_status(const std::filesystem::path& report_dir);

// Relays report_dir/output (the program's standard output and error, as
// the guest agent copies them into the report share) to the descriptor
// `to` as the file grows, from a process forked at construction: made
// before the sandbox exists, so that no thread of this process is running
// when the warden is cloned. The file is read as untrusted input: a regular
// file reached without following a symlink, never waited on, at most
// guest::kOutputLimit bytes. finish() (or the destructor) lets the process
// copy what is left and waits for it; the stop signals blocked here stay
// blocked in it, so a Ctrl-C does not cut the output short. finish() says
// whether all of it was written to `to` (a write error other than a reader
// gone away is said on stderr by the relay; so is the limit, when reached).
class OutputRelay {
 public:
  OutputRelay(const std::filesystem::path& report_dir, int to);
  ~OutputRelay() { (void)finish(); }
  OutputRelay(const OutputRelay&) = delete;
  OutputRelay& operator=(const OutputRelay&) = delete;
  bool finish();

 private:
  pid_t pid_ = -1;
  bool relayed_ = false;
  int stop_ = -1;  // its end closed by finish(): the copier's cue
};

// KEY=VALUE lines a guest wrote to `file` (the demo's report), read as
// untrusted: a regular file reached without following a symlink, never
// waited on (a FIFO in its place gives nothing), its first 64 KiB only, and
// each key and value made printable (vm::printable(): no terminal escapes).
// Lines without '=' are skipped. Empty when there is no such file.
std::map<std::string, std::string> read_key_values(const std::filesystem::path& file);

}  // namespace vmwarden::vm
