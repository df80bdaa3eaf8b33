// The VM's runtime directory (sockets, pid files): on the host filesystem so
// that administrators and tests can see it, owned by the VM's UID, mode 0700,
// and removed on every exit path.
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <filesystem>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "common/unique_fd.h"

namespace vmwarden::supervisor {

// Removes `path` and everything below it, never following a symlink, with
// at most three descriptors open however deep it goes (a VM's writable
// directory can be made thousands of levels deep, past any descriptor
// limit). False if it did not exist; throws naming the path otherwise.
bool remove_directory_tree(const std::filesystem::path& path);

// Calls `each` with the name of every entry of the directory open as `dir`
// but "." and "..", until it returns false. Lists through a descriptor of
// its own: `dir`'s position is shared with whoever else lists it, and
// removals made meanwhile change the listing. `where` names the directory
// in errors.
void list_directory(int dir, const std::string& where, const std::function<bool(std::string_view name)>& each);

struct AbandonedDirs {
  std::vector<std::filesystem::path> removed;  // (dry run: would be)
  std::vector<std::string> errors;
};

// Removes the directories directly under `root` that `candidate` accepts
// (by name and lstat; a symlink is never a directory here, so it is
// neither followed nor removed) and whose flock no process holds: those
// that an instance holding its directory's lock for its lifetime left
// when it was killed. With dry_run removes nothing. None if `root` does not
// exist. A directory that cannot be checked or removed is reported in
// `errors`, and the others still are.
AbandonedDirs remove_unlocked_directories(
    const std::filesystem::path& root,
    const std::function<bool(std::string_view name, const struct stat& st)>& candidate, bool dry_run);

// remove_unlocked_directories() for the runtime directories under `root`:
// one SIGKILLed after making its directory and before its warden started
// leaves it, and a name used once (exec-PID) is never made again to clear
// it. Only directories of mode 0700 with a name `is_instance_name` accepts
// that carry the mark RuntimeDir::create puts on them (a trusted.*
// attribute, which only CAP_SYS_ADMIN sets) or, made where the mark could
// not be put, whose owner `owner_is_managed` accepts; under the lock
// RuntimeDir::create takes on `root`, so that a directory just made is not
// mistaken for one left behind.
AbandonedDirs remove_abandoned_runtime_dirs(const std::filesystem::path& root,
                                            const std::function<bool(std::string_view)>& is_instance_name,
                                            const std::function<bool(uid_t)>& owner_is_managed, bool dry_run);

class RuntimeDir {
 public:
  // Creates `path` (and missing parents, 0755) at mode 0700 owned by
  // uid:gid, marked as vmwarden's (see remove_abandoned_runtime_dirs), and holds an exclusive flock on it for as long as the returned
  // object, or a process that inherited its descriptors, lives. A directory
  // left behind by an instance that died without cleaning up is removed
  // first; one still locked by a running instance is an error.
  static RuntimeDir create(const std::filesystem::path& path, uid_t uid, gid_t gid);

  RuntimeDir(RuntimeDir&&) noexcept = default;
  RuntimeDir& operator=(RuntimeDir&&) = delete;
  ~RuntimeDir() { remove(); }

  const std::filesystem::path& path() const { return path_; }
  // The directory, opened in the host's mount namespace: what is made
  // through it lands on the host's mount, whatever the warden's namespace
  // shows there (a read-only view). -1 once removed.
  int fd() const { return dir_.get(); }

  // Removes the directory and everything in it without following symlinks.
  // Works through descriptors opened in the host's mount namespace, so it
  // also succeeds from the warden's namespace whatever is mounted there.
  // Idempotent; failures are logged, not thrown (it runs on exit paths).
  void remove() noexcept;

 private:
  RuntimeDir(std::filesystem::path path, UniqueFd parent, std::string name, UniqueFd dir)
      : path_(std::move(path)), parent_(std::move(parent)), name_(std::move(name)), dir_(std::move(dir)) {}

  std::filesystem::path path_;
  UniqueFd parent_;  // the containing directory, opened before any namespace change
  std::string name_;
  UniqueFd dir_;     // the directory itself, flock()ed
};

}  // namespace vmwarden::supervisor
