// What the guest agent reports back through the report share: the program's
// exit status. The share is writable by the VM's UID, so the host reads it as
// untrusted input (doc/GUEST-AGENT.md, "Exit status").
#pragma once

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

// KEY=VALUE lines a guest wrote to `file` (the demo's report), read as
// untrusted: a regular file reached without following a symlink, never
// waited on (a FIFO in its place gives nothing), its first 64 KiB only, and
// each key and value made printable (vm::printable(): no terminal escapes).
// Lines without '=' are skipped. Empty when there is no such file.
std::map<std::string, std::string> read_key_values(const std::filesystem::path& file);

}  // namespace vmwarden::vm
