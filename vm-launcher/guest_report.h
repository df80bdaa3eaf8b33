// What the guest agent reports back through the report share: the program's
// exit status. The share is writable by the VM's UID, so the host reads it as
// untrusted input (doc/GUEST-AGENT.md, "Exit status").
#pragma once

#include <filesystem>
#include <optional>

namespace vmwarden::vm {

// The status (0-255) in report_dir/exit-status: a regular file reached
// without following a symlink, whose first line is a decimal number of at
// most 15 digits (leading zeros count; the agent writes "N\n"). Empty
// when there is none or it is anything else (a symlink, a FIFO or a
// directory in its place, text that is not a status); never blocks.
std::optional<int> read_reported_exit_status(const std::filesystem::path& report_dir);

}  // namespace vmwarden::vm
