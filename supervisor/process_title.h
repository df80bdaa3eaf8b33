// What `ps` shows for the outer and the warden: "vmwarden[NAME]" and
// "vmwarden[NAME/warden]" instead of the command line they were started with.
#pragma once

#include <string_view>

namespace vmwarden::supervisor {

// Sets the thread name (comm, 15 bytes) and rewrites the process's argument
// area in place, truncated to the length of the original command line.
// Best effort: a title is cosmetic and never a reason to fail.
void set_process_title(std::string_view comm, std::string_view title);

}  // namespace vmwarden::supervisor
