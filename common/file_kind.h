// What st_mode says a file is, for messages refusing it: "a FIFO",
// "a directory", "a symlink"...
#pragma once

#include <sys/stat.h>

#include <string_view>

namespace vmwarden {

inline std::string_view file_kind(mode_t mode) {
  switch (mode & S_IFMT) {
    case S_IFREG: return "a regular file";
    case S_IFDIR: return "a directory";
    case S_IFLNK: return "a symlink";
    case S_IFIFO: return "a FIFO";
    case S_IFSOCK: return "a socket";
    case S_IFCHR: return "a character device";
    case S_IFBLK: return "a block device";
    default: return "a file of unknown type";
  }
}

}  // namespace vmwarden
