#include "common/accounts.h"

#include <grp.h>
#include <pwd.h>
#include <unistd.h>

#include <charconv>
#include <chrono>
#include <cstdio>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "common/error.h"
#include "common/process.h"

namespace vmwarden {
namespace {

// Calls `match` on each entry of a passwd- or group-format file until it
// returns true; returns whether one did. A missing file has no entries; one
// that cannot be opened or read is an error, not "no such user".
template <typename Entry, typename Match>
bool scan(const char* path, Entry* (*next)(FILE*), Match match) {
  FILE* file = std::fopen(path, "re");
  if (file == nullptr) {
    if (errno == ENOENT) return false;
    throw_errno("open", path);
  }
  bool found = false;
  while (Entry* entry = next(file)) {
    if ((found = match(*entry))) break;
  }
  // The entry functions return null at the end and on a read error alike.
  int read_error = std::ferror(file) ? errno : 0;
  std::fclose(file);
  if (!found && read_error != 0) throw_system_error(read_error, "read", path);
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

std::vector<unsigned> ids_known_to_system(const std::vector<unsigned>& ids) {
  std::set<unsigned> wanted(ids.begin(), ids.end());
  std::set<unsigned> known;
  scan<passwd>("/etc/passwd", ::fgetpwent, [&](const passwd& entry) {
    if (wanted.contains(entry.pw_uid)) known.insert(entry.pw_uid);
    return false;
  });
  scan<group>("/etc/group", ::fgetgrent, [&](const group& entry) {
    if (wanted.contains(entry.gr_gid)) known.insert(entry.gr_gid);
    return false;
  });
  std::vector<std::string> ask;
  for (unsigned id : wanted)
    if (!known.contains(id)) ask.push_back(std::to_string(id));
  if (ask.empty() || ::access(kGetent, X_OK) != 0) return {known.begin(), known.end()};  // only the files databases exist

  // One getent per database for every id: it prints the entries it found
  // and exits 2 when some key had none. Unprivileged: a lookup needs no
  // privilege, and getent loads whatever NSS modules nsswitch.conf names.
  // A child that cannot be made unprivileged exits 127: no clear answer.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  for (const char* database : {"passwd", "group"}) {
    std::vector<std::string> argv = {kGetent, database};
    argv.insert(argv.end(), ask.begin(), ask.end());
    ProgramResult result = run_program_unprivileged(argv, {}, deadline);
    if (result.exit_code != 0 && result.exit_code != 2) {
      // No clear answer: count every id as known, so that none is handed out.
      for (const std::string& id : ask) known.insert(static_cast<unsigned>(std::stoul(id)));
      break;
    }
    std::istringstream lines(result.output);
    for (std::string line; std::getline(lines, line);) {
      // NAME:PASSWORD:ID:...
      std::size_t first = line.find(':');
      std::size_t second = first == std::string::npos ? first : line.find(':', first + 1);
      if (second == std::string::npos) continue;
      std::size_t end = line.find(':', second + 1);
      std::string field = line.substr(second + 1, end == std::string::npos ? end : end - second - 1);
      unsigned id = 0;
      auto [stop, error] = std::from_chars(field.data(), field.data() + field.size(), id);
      if (error == std::errc() && stop == field.data() + field.size() && wanted.contains(id)) known.insert(id);
    }
  }
  return {known.begin(), known.end()};
}

bool id_known_to_system(unsigned id) { return !ids_known_to_system({id}).empty(); }

}  // namespace vmwarden
