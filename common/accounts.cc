#include "common/accounts.h"

#include <grp.h>
#include <pwd.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <string>

#include "common/process.h"

namespace vmwarden {
namespace {

// Calls `match` on each entry of a passwd- or group-format file until it
// returns true; returns whether one did.
template <typename Entry, typename Match>
bool scan(const char* path, Entry* (*next)(FILE*), Match match) {
  FILE* file = std::fopen(path, "re");
  if (file == nullptr) return false;
  bool found = false;
  while (Entry* entry = next(file)) {
    if ((found = match(*entry))) break;
  }
  std::fclose(file);
  return found;
}

constexpr const char* kGetent = "/usr/bin/getent";

}  // namespace

std::optional<Account> find_user_in_files(std::string_view name) {
  std::optional<Account> found;
  scan<passwd>("/etc/passwd", ::fgetpwent, [&](const passwd& entry) {
    if (name != entry.pw_name) return false;
    found = Account{entry.pw_uid, entry.pw_gid};
    return true;
  });
  return found;
}

std::optional<gid_t> find_group_in_files(std::string_view name) {
  std::optional<gid_t> found;
  scan<group>("/etc/group", ::fgetgrent, [&](const group& entry) {
    if (name != entry.gr_name) return false;
    found = entry.gr_gid;
    return true;
  });
  return found;
}

bool id_known_to_system(unsigned id) {
  if (scan<passwd>("/etc/passwd", ::fgetpwent, [&](const passwd& entry) { return entry.pw_uid == id; }) ||
      scan<group>("/etc/group", ::fgetgrent, [&](const group& entry) { return entry.gr_gid == id; })) {
    return true;
  }
  if (::access(kGetent, X_OK) != 0) return false;  // only the files databases exist
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  for (const char* database : {"passwd", "group"}) {
    ProgramResult result = run_program({kGetent, database, std::to_string(id)}, {}, deadline);
    if (result.exit_code == 2) continue;  // getent: no such key
    return true;                          // found (0), or no clear answer
  }
  return false;
}

}  // namespace vmwarden
