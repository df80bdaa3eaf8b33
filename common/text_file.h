// A whole small file written in one go, or an error that names the write
// and the path: a full disk is "write PATH: No space left on device", never
// a file cut short and reported as written (as a stream, which reports a
// failed write only if asked after its buffer was flushed, easily leaves).
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <string_view>

namespace vmwarden {

// Creates `path` (with `mode`, through the umask) or truncates it, and
// writes `text` to it.
void write_text_file(const std::filesystem::path& path, std::string_view text, mode_t mode = 0644);

}  // namespace vmwarden
