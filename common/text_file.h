// A whole small file written in one go, or an error that names the write
// and the path: a full disk is "write PATH: No space left on device", never
// a file cut short and reported as written (as a stream, which reports a
// failed write only if asked after its buffer was flushed, easily leaves).
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <string_view>

namespace vmwarden {

// Creates `path` or truncates it, gives it exactly `mode` (whatever the
// umask), and writes `text` to it. Refuses a symlink or anything but a
// regular file at `path`, changing nothing there.
void write_text_file(const std::filesystem::path& path, std::string_view text, mode_t mode = 0644);

}  // namespace vmwarden
