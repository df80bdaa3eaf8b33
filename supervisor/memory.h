// Keeping the long-lived supervisor processes small.
#pragma once

#include <chrono>

namespace vmwarden::supervisor {

// How long the outer and the warden wait, idle, before release_startup_memory().
inline constexpr std::chrono::milliseconds kIdleBeforeTrim{1000};

// Gives back what only the start needed: free heap, and the binary's code and
// read-only data pages. Command-line parsing, locale setup and the start
// path touch much code once, and the kernel maps it 64 KiB at a time around
// each fault, so starting leaves far more mapped than the event loop will
// ever run (about 1.8 MiB Pss in the outer). Called once, after a quiet
// second, so that a short sandbox never pays for the pages coming back.
void release_startup_memory();

}  // namespace vmwarden::supervisor
