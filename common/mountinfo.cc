#include "common/mountinfo.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <charconv>

#include "common/error.h"
#include "common/unique_fd.h"

namespace vmwarden {
namespace {

// Mount points in mountinfo escape space, tab, newline and backslash as \ooo.
std::string unescape(std::string_view field) {
  std::string out;
  out.reserve(field.size());
  for (std::size_t i = 0; i < field.size(); ++i) {
    if (field[i] == '\\' && i + 3 < field.size()) {
      std::string_view digits = field.substr(i + 1, 3);
      if (digits.find_first_not_of("01234567") == std::string_view::npos) {
        out += static_cast<char>((digits[0] - '0') * 64 + (digits[1] - '0') * 8 + (digits[2] - '0'));
        i += 3;
        continue;
      }
    }
    out += field[i];
  }
  return out;
}

// One line of mountinfo, as far as it is read here:
// ID PARENT MAJ:MIN ROOT MOUNT-POINT OPTIONS [OPTIONAL...] - TYPE SOURCE SUPER-OPTIONS
struct MountLine {
  std::string_view id;
  std::string_view parent;
  std::string_view device;  // MAJ:MIN
  std::string_view root;         // escaped
  std::string_view mount_point;  // escaped
  std::string_view options;      // per-mount options: "rw,relatime,idmapped"
  std::string_view fs_type;
  bool unbindable = false;
};

bool has_option(std::string_view options, std::string_view option) {
  while (!options.empty()) {
    std::size_t comma = options.find(',');
    if (options.substr(0, comma) == option) return true;
    options = comma == std::string_view::npos ? std::string_view() : options.substr(comma + 1);
  }
  return false;
}

template <typename Visit>
void for_each_mount(std::string_view mountinfo, Visit visit) {
  while (!mountinfo.empty()) {
    std::size_t end = mountinfo.find('\n');
    std::string_view line = mountinfo.substr(0, end);
    mountinfo = end == std::string_view::npos ? std::string_view() : mountinfo.substr(end + 1);
    MountLine mount;
    bool after_separator = false;
    for (int field = 0; !line.empty(); ++field) {
      std::size_t space = line.find(' ');
      std::string_view word = line.substr(0, space);
      line = space == std::string_view::npos ? std::string_view() : line.substr(space + 1);
      if (field == 0) mount.id = word;
      if (field == 1) mount.parent = word;
      if (field == 2) mount.device = word;
      if (field == 3) mount.root = word;
      if (field == 4) mount.mount_point = word;
      if (field == 5) mount.options = word;
      if (field >= 6 && !after_separator) {
        if (word == "-") {
          after_separator = true;
          continue;
        }
        if (word == "unbindable") mount.unbindable = true;
      } else if (after_separator) {
        mount.fs_type = word;
        break;
      }
    }
    visit(mount);
  }
}

dev_t parse_device(std::string_view text) {
  std::size_t colon = text.find(':');
  if (colon == std::string_view::npos) return 0;
  unsigned major_number = 0, minor_number = 0;
  std::from_chars(text.data(), text.data() + colon, major_number);
  std::from_chars(text.data() + colon + 1, text.data() + text.size(), minor_number);
  return makedev(major_number, minor_number);
}

int parse_id(std::string_view text) {
  int id = 0;
  std::from_chars(text.data(), text.data() + text.size(), id);
  return id;
}

MountPoint mount_point_of(const MountLine& mount) {
  return {.path = unescape(mount.mount_point),
          .id = parse_id(mount.id),
          .parent = parse_id(mount.parent),
          .device = parse_device(mount.device),
          .root = unescape(mount.root),
          .idmapped = has_option(mount.options, "idmapped")};
}

}  // namespace

bool at_or_below(std::string_view path, std::string_view ancestor) {
  if (ancestor == "/") return true;
  if (!ancestor.empty() && ancestor.back() == '/') ancestor.remove_suffix(1);
  return path == ancestor ||
         (path.size() > ancestor.size() && path.starts_with(ancestor) && path[ancestor.size()] == '/');
}

std::string read_mountinfo() {
  UniqueFd fd(::open("/proc/self/mountinfo", O_RDONLY | O_CLOEXEC));
  if (!fd) throw_errno("open", "/proc/self/mountinfo");
  std::string text;
  char buffer[8192];
  for (;;) {
    ssize_t n = ::read(fd.get(), buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw_errno("read", "/proc/self/mountinfo");
    if (n == 0) return text;
    text.append(buffer, static_cast<std::size_t>(n));
  }
}

bool has_unbindable_mount_at_or_below(std::string_view mountinfo, std::string_view path) {
  bool found = false;
  for_each_mount(mountinfo, [&](const MountLine& mount) {
    found = found || (mount.unbindable && at_or_below(unescape(mount.mount_point), path));
  });
  return found;
}

std::vector<MountPoint> mount_points_of_type(std::string_view mountinfo, std::string_view fs_type) {
  std::vector<MountPoint> ranked[5];
  for_each_mount(mountinfo, [&](const MountLine& mount) {
    if (mount.fs_type != fs_type) return;
    MountPoint point = mount_point_of(mount);
    int rank = point.idmapped ? 4 : (point.root == "/" ? 0 : 2) + (has_option(mount.options, "ro") ? 1 : 0);
    ranked[rank].push_back(std::move(point));
  });
  std::vector<MountPoint> points;
  for (const auto& group : ranked) points.insert(points.end(), group.begin(), group.end());
  return points;
}

std::vector<MountPoint> list_mounts(std::string_view mountinfo) {
  std::vector<MountPoint> mounts;
  for_each_mount(mountinfo, [&](const MountLine& mount) { mounts.push_back(mount_point_of(mount)); });
  return mounts;
}

int mount_id_of_path(const std::filesystem::path& path) {
  // statx names the mount as mountinfo does (STATX_MNT_ID, Linux 5.8); a
  // path looked up here, rather than matched against mount points, is on
  // whichever mount is on top, however the mounts were stacked or moved.
  struct statx st {};
  if (::statx(AT_FDCWD, path.c_str(), AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT, STATX_MNT_ID, &st) != 0)
    throw_errno("statx", path.string());
  if ((st.stx_mask & STATX_MNT_ID) == 0) throw_system_error(EOPNOTSUPP, "statx (mount id of)", path.string());
  return static_cast<int>(st.stx_mnt_id);
}

}  // namespace vmwarden
