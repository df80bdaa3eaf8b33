// Host users and groups, looked up without loading NSS modules in-process:
// the vmwarden binary is static (cli/meson.build), and glibc cannot load
// modules such as libnss_systemd there (it crashes in them).
#pragma once

#include <sys/types.h>

#include <optional>
#include <string_view>
#include <vector>

namespace vmwarden {

struct Account {
  uid_t uid;
  gid_t gid;  // the primary group
};

// By name, in /etc/passwd and /etc/group.
std::optional<Account> find_user_in_files(std::string_view name);
std::optional<gid_t> find_group_in_files(std::string_view name);

// Whether `id` is a user or group id the system knows: /etc/passwd and
// /etc/group first, then every NSS source through getent(1), a dynamically
// linked program that can load them, run unprivileged (as nobody, without
// capabilities: run_program_unprivileged()). If getent cannot give a clear
// answer the id counts as known, so that a caller picking free ids skips it.
bool id_known_to_system(unsigned id);
// The same for many ids at once (one getent per database for all of them):
// those the system knows, sorted.
std::vector<unsigned> ids_known_to_system(const std::vector<unsigned>& ids);

}  // namespace vmwarden
