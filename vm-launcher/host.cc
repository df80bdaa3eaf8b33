// Host::detect(): where the VMMs and virtiofsd live, in one place. The order
// is: the VMWARDEN_* override, then PATH, then the locations distributions
// install to.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <initializer_list>
#include <string_view>

#include <fmt/core.h>

#include "common/error.h"
#include "common/unique_fd.h"
#include "vm-launcher/backend.h"

namespace vmwarden::vm {
namespace {

bool is_executable_file(const std::filesystem::path& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(path.c_str(), X_OK) == 0;
}

std::filesystem::path find_program(std::string_view variable, std::string_view name,
                                   std::initializer_list<std::string_view> standard_locations) {
  if (const char* value = std::getenv(std::string(variable).c_str()); value != nullptr) {
    // Set but empty is most likely an unset shell variable: refused, as an
    // empty VMWARDEN_*_DIR is, rather than quietly taken for "look on PATH".
    if (*value == '\0')
      throw UsageError(fmt::format("{} is set but empty; unset it to look for {} on PATH and in the standard "
                                   "locations, or set it to an absolute path",
                                   variable, name));
    std::filesystem::path path(value);
    if (!path.is_absolute() || !is_executable_file(path))
      throw UsageError(fmt::format("{}={} does not name an executable file by an absolute path; "
                                   "set it to e.g. /usr/bin/{} or unset it",
                                   variable, value, name));
    return path;
  }
  if (const char* search = std::getenv("PATH"); search != nullptr) {
    std::string_view rest = search;
    while (!rest.empty()) {
      size_t colon = rest.find(':');
      std::string_view dir = rest.substr(0, colon);
      rest = colon == std::string_view::npos ? std::string_view{} : rest.substr(colon + 1);
      // Relative PATH entries would make the result depend on the cwd.
      if (dir.empty() || dir.front() != '/') continue;
      std::filesystem::path candidate = std::filesystem::path(dir) / name;
      if (is_executable_file(candidate)) return candidate;
    }
  }
  for (std::string_view location : standard_locations)
    if (is_executable_file(location)) return location;
  return {};
}

}  // namespace

Host Host::detect() {
  Host host;
  host.qemu = find_program("VMWARDEN_QEMU", "qemu-system-x86_64", {"/usr/bin/qemu-system-x86_64"});
  host.crosvm = find_program("VMWARDEN_CROSVM", "crosvm", {"/usr/bin/crosvm", "/usr/local/bin/crosvm"});
  host.cloud_hypervisor = find_program("VMWARDEN_CLOUD_HYPERVISOR", "cloud-hypervisor",
                                       {"/usr/bin/cloud-hypervisor", "/usr/local/bin/cloud-hypervisor"});
  host.ch_remote =
      find_program("VMWARDEN_CH_REMOTE", "ch-remote", {"/usr/bin/ch-remote", "/usr/local/bin/ch-remote"});
  // The Rust virtiofsd first (/usr/libexec is where distributions put it),
  // then the C virtiofsd that QEMU up to 7.2 ships.
  host.virtiofsd = find_program("VMWARDEN_VIRTIOFSD", "virtiofsd",
                                {"/usr/libexec/virtiofsd", "/usr/lib/virtiofsd", "/usr/lib/qemu/virtiofsd"});
  host.kvm = kvm_usable();
  return host;
}

// The VMM runs as the VM's UID with no supplementary groups, so /dev/kvm
// is usable only when every user may read and write it (mode 0666, udev's
// default); a node left at 0600 or 0660 root:kvm means TCG. VMWARDEN_NO_KVM=1
// forces TCG, e.g. to run as the test machines without KVM do.
bool Host::kvm_usable() {
  if (const char* value = std::getenv("VMWARDEN_NO_KVM"); value != nullptr && std::string_view(value) == "1")
    return false;
  struct stat st {};
  if (::stat("/dev/kvm", &st) != 0 || !S_ISCHR(st.st_mode) || (st.st_mode & (S_IROTH | S_IWOTH)) != (S_IROTH | S_IWOTH))
    return false;
  UniqueFd fd(::open("/dev/kvm", O_RDWR | O_CLOEXEC));
  return static_cast<bool>(fd);
}

}  // namespace vmwarden::vm
