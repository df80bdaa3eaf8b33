// A listening unix socket created for somebody else: the supervisor binds it
// (in a directory the service need not be able to write) and hands the
// listening descriptor to the service, so the path is listening before the
// service even starts and no client can race its bind().
#pragma once

#include <sys/types.h>

#include <filesystem>

#include "common/unique_fd.h"

namespace vmwarden {

// A SOCK_STREAM unix socket bound at `path` (which must not exist), owned by
// uid:gid, mode 0600, listening, close-on-exec. Throws UsageError for a path
// that does not fit in a socket address, SystemError otherwise.
UniqueFd listen_unix_socket(const std::filesystem::path& path, uid_t uid, gid_t gid);

}  // namespace vmwarden
