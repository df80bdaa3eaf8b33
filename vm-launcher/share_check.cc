// A share against vmwarden's own directories. Their paths are compared
// first (cheap, and what the messages name); then, because a bind mount
// shows the same directory under another path, which directory of which
// filesystem the share shows, and each mount below it that the sandbox's
// copy of the share would take along.

#include "vm-launcher/share_check.h"

#include <sys/types.h>

#include <string_view>
#include <vector>

#include <fmt/core.h>

#include "acl-manager/acl.h"
#include "common/error.h"
#include "common/mountinfo.h"
#include "supervisor/sandbox.h"

namespace vmwarden::vm {
namespace {

// What a VM must not reach: a share may neither hold these nor lie in them.
// (The rest of the state directory holds VMs' own data: the demo's shares,
// a definition's.)
struct KeptFromVms {
  std::filesystem::path location;
  const char* what;
};

std::vector<KeptFromVms> kept_from_vms(const Locations& locations) {
  return {
      {locations.state_dir / "uids", "the UID registry"},
      {locations.state_dir / "grants", "the grant records"},
      {locations.state_dir / "runs", "the directories of `vmwarden run`'s runs"},
      {locations.runtime_dir, "the runtime directory (the UID leases, the VMMs' control sockets)"},
      {locations.config_dir, "the configuration directory (the VM definitions)"},
  };
}

// As it resolves: a location named through a symlink (/var/run) is the
// directory it leads to.
std::string resolved(const std::filesystem::path& path) {
  std::error_code error;
  std::filesystem::path real = std::filesystem::weakly_canonical(path, error);
  return (error ? path : real).lexically_normal().native();
}

// The part of `path` below `ancestor` ("" or "/a/b"); `path` is at or below it.
std::string_view below(std::string_view path, std::string_view ancestor) {
  return ancestor == "/" ? (path == "/" ? std::string_view() : path) : path.substr(ancestor.size());
}

// `dir` followed by `rest` ("" or "/a/b").
std::string joined(std::string_view dir, std::string_view rest) {
  if (rest.empty()) return std::string(dir);
  return dir == "/" ? std::string(rest) : fmt::format("{}{}", dir, rest);
}

// A directory by identity rather than by path: its filesystem (mountinfo's
// MAJ:MIN) and where it is in that filesystem (from the filesystem's root,
// as mountinfo's root field names directories). Every path that leads to
// it, through whichever mount, gives the same two.
struct Place {
  dev_t device = 0;
  std::string in_filesystem;
  const MountPoint* mount = nullptr;  // what it was reached through
};

class MountTable {
 public:
  MountTable() : mounts_(list_mounts(read_mountinfo())) {}

  // Where the existing directory `path` (absolute, resolved) is: on the
  // mount the kernel reaches it through, so however mounts were stacked.
  Place place_of(const std::string& path) const {
    int id = mount_id_of_path(path);
    for (const MountPoint& mount : mounts_) {
      if (mount.id == id && at_or_below(path, mount.path))
        return {mount.device, joined(mount.root, below(path, mount.path)), &mount};
    }
    throw UsageError(fmt::format("{}: its mount (id {}) is not where /proc/self/mountinfo lists it, so which "
                                 "directory it is cannot be told",
                                 path, id));
  }

  // The mounts at or below `path`, whose place is `place`, that a recursive
  // copy of it takes along (those mounted, directly or not, on its mount),
  // each as the whole directory it shows.
  std::vector<Place> places_below(const std::string& path, const Place& place) const {
    std::vector<Place> places;
    std::vector<int> parents{place.mount->id};
    while (!parents.empty()) {
      int parent = parents.back();
      parents.pop_back();
      for (const MountPoint& mount : mounts_) {
        if (mount.parent != parent || mount.id == parent || !at_or_below(mount.path, path)) continue;
        places.push_back({mount.device, mount.root, &mount});
        parents.push_back(mount.id);
      }
    }
    return places;
  }

 private:
  std::vector<MountPoint> mounts_;
};

// The share (shown[0]) and the mounts below it against one kept location
// `kept` (at `location`, resolved) by identity; `own` is a run's own
// directory, which may hold shares.
void require_apart(const std::string& share, const std::vector<Place>& shown, const Place& kept,
                   const std::string& location, const char* what, const std::optional<Place>& own) {
  for (std::size_t i = 0; i < shown.size(); ++i) {
    const Place& place = shown[i];
    if (place.device != kept.device) continue;
    const MountPoint& mount = *place.mount;
    bool the_share = i == 0;
    if (at_or_below(kept.in_filesystem, place.in_filesystem)) {
      std::string reached = joined(mount.path, below(kept.in_filesystem, mount.root));
      if (the_share && kept.in_filesystem == place.in_filesystem)
        throw UsageError(fmt::format("{} is {}, {}, reached through the mount at {}, which the VM would then "
                                     "reach; share a directory outside it",
                                     share, location, what, mount.path));
      if (the_share)
        throw UsageError(fmt::format("{} holds {}, {}, as {} (through the mount at {}), which the VM would then "
                                     "reach; share a directory beside it",
                                     share, location, what, reached, mount.path));
      std::string where = reached == mount.path ? fmt::format("mounted at {} below it", reached)
                                                : fmt::format("as {} (through the mount at {} below it)", reached,
                                                              mount.path);
      throw UsageError(fmt::format("{} holds {}, {}, {}, which the VM would then reach; share a directory without "
                                   "that mount, or unmount it",
                                   share, location, what, where));
    }
    if (at_or_below(place.in_filesystem, kept.in_filesystem)) {
      if (own && own->device == place.device && at_or_below(place.in_filesystem, own->in_filesystem)) continue;
      std::string as = joined(location, below(place.in_filesystem, kept.in_filesystem));
      if (the_share)
        throw UsageError(fmt::format("{} lies in {}, {}, as {} (through the mount at {}), which the VM would then "
                                     "reach; share a directory outside it",
                                     share, location, what, as, mount.path));
      throw UsageError(fmt::format("{} holds {}, a mount of {} in {}, {}, which the VM would then reach; share a "
                                   "directory without that mount, or unmount it",
                                   share, mount.path, as, location, what));
    }
  }
}

// Where the location `path` (absolute, resolved) is, or will be made: a
// directory not made yet (no grant recorded so far, no run) goes into its
// nearest existing parent, on that one's filesystem, and a share reaching
// there already holds it.
Place place_to_be(const MountTable& mounts, const std::string& path) {
  std::filesystem::path existing = path;
  std::error_code error;
  while (!std::filesystem::exists(existing, error) && existing.has_relative_path()) existing = existing.parent_path();
  Place place = mounts.place_of(existing.native());
  place.in_filesystem = joined(place.in_filesystem, below(path, existing.native()));
  return place;
}

}  // namespace

std::filesystem::path checked_share(const std::filesystem::path& tree, const Locations& locations,
                                    const std::filesystem::path& own_state_subdir) {
  std::filesystem::path checked = acl::checked_tree(tree);
  if (checked == "/")
    throw UsageError("/ cannot be a share: its grant would rewrite the ACL of every file on the root filesystem, "
                     "and its copy would bring the host's /proc into the sandbox; share the directories needed");
  std::string share = checked.lexically_normal().native();
  std::string own = own_state_subdir.empty() ? std::string() : resolved(own_state_subdir);
  std::vector<KeptFromVms> kept = kept_from_vms(locations);
  std::vector<std::string> held_at;  // each location as it resolves
  for (const auto& [location, what] : kept) {
    std::string& held = held_at.emplace_back(resolved(location));
    if (held == share)
      throw UsageError(fmt::format("{} is {}, {}, which the VM would then reach; share a directory outside it", share,
                                   location.string(), what));
    if (at_or_below(held, share))
      throw UsageError(fmt::format("{} holds {}, {}, which the VM would then reach; share a directory beside it",
                                   share, location.string(), what));
    if (at_or_below(share, held) && (own.empty() || !at_or_below(share, own)))
      throw UsageError(fmt::format("{} lies in {}, {}, which the VM would then reach; share a directory outside it",
                                   share, location.string(), what));
  }
  // By identity. The share exists: checked_tree() opened it.
  MountTable mounts;
  std::vector<Place> shown{mounts.place_of(share)};
  std::vector<Place> below_share = mounts.places_below(share, shown.front());
  shown.insert(shown.end(), below_share.begin(), below_share.end());
  std::optional<Place> own_place;
  if (!own.empty()) own_place = place_to_be(mounts, own);
  for (std::size_t i = 0; i < kept.size(); ++i)
    require_apart(share, shown, place_to_be(mounts, held_at[i]), held_at[i], kept[i].what, own_place);
  supervisor::require_copyable_mounts(checked);
  return checked;
}

std::optional<std::string> share_refusal(const std::filesystem::path& tree, const Locations& locations) {
  try {
    (void)checked_share(tree, locations);
    return std::nullopt;
  } catch (const UsageError& error) {
    return error.what();
  } catch (const SystemError& error) {
    return fmt::format("{} cannot be checked as a share: {}", tree.string(), error.what());
  }
}

}  // namespace vmwarden::vm
