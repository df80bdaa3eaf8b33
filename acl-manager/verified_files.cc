#include "acl-manager/verified_files.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>

#include "acl-manager/store.h"
#include "common/unique_fd.h"

namespace vmwarden::acl::detail {
namespace {

// The file: this magic, the scope's fields, the count, then each file's
// inode and ctime, sorted; native byte order (it never leaves the host).
constexpr char kMagic[8] = {'V', 'M', 'W', 'V', 'F', '0', '0', '1'};
constexpr std::size_t kScopeFields = sizeof(VerifiedScope) / sizeof(std::uint64_t);
constexpr std::size_t kHeader = sizeof kMagic + sizeof(VerifiedScope) + sizeof(std::uint64_t);
static_assert(sizeof(VerifiedScope) == kScopeFields * sizeof(std::uint64_t));
static_assert(sizeof(VerifiedFile) == 16);
// A tree of 64 Mi files; anything larger is not one of these files.
constexpr off_t kMostBytes = kHeader + (off_t{64} << 20) * sizeof(VerifiedFile);

}  // namespace

struct VerifiedFiles::Mapping {
  void* address = MAP_FAILED;
  std::size_t size = 0;
  // vmwarden replaces the file by a rename, never in place, so the mapping
  // keeps what was read (only a truncation by someone else would fault).
  Mapping(int fd, std::size_t bytes) : size(bytes) {
    // Populated at once: one call instead of a page fault per page.
    address = ::mmap(nullptr, bytes, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
  }
  ~Mapping() {
    if (address != MAP_FAILED) ::munmap(address, size);
  }
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;
};

VerifiedFiles::VerifiedFiles() = default;
VerifiedFiles::~VerifiedFiles() = default;
VerifiedFiles::VerifiedFiles(VerifiedFiles&&) noexcept = default;
VerifiedFiles& VerifiedFiles::operator=(VerifiedFiles&&) noexcept = default;

VerifiedFiles::VerifiedFiles(VerifiedScope scope, std::vector<VerifiedFile> files)
    : scope_(scope), owned_(std::move(files)) {
  std::sort(owned_.begin(), owned_.end());
  owned_.erase(std::unique(owned_.begin(), owned_.end()), owned_.end());
  files_ = owned_;
}

VerifiedFiles VerifiedFiles::load(const std::filesystem::path& file, const VerifiedScope& scope) {
  // Not through a symlink, and a FIFO in its place does not block.
  UniqueFd fd(::open(file.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
  struct stat st;
  if (!fd || ::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode) || st.st_size < static_cast<off_t>(kHeader) ||
      st.st_size > kMostBytes || (st.st_size - kHeader) % sizeof(VerifiedFile) != 0) {
    return {};
  }
  auto mapping = std::make_unique<Mapping>(fd.get(), static_cast<std::size_t>(st.st_size));
  if (mapping->address == MAP_FAILED) return {};
  const char* bytes = static_cast<const char*>(mapping->address);
  VerifiedScope kept;
  std::uint64_t count = 0;
  std::memcpy(&kept, bytes + sizeof kMagic, sizeof kept);
  std::memcpy(&count, bytes + sizeof kMagic + sizeof kept, sizeof count);
  if (std::memcmp(bytes, kMagic, sizeof kMagic) != 0 || !(kept == scope) ||
      count != (static_cast<std::uint64_t>(st.st_size) - kHeader) / sizeof(VerifiedFile)) {
    return {};
  }
  // The entries start 8-byte aligned (kHeader is), as VerifiedFile needs.
  std::span<const VerifiedFile> files(reinterpret_cast<const VerifiedFile*>(bytes + kHeader), count);
  // Written sorted and unique; anything else was not written by save().
  if (std::adjacent_find(files.begin(), files.end(), std::greater_equal<>()) != files.end()) return {};
  VerifiedFiles loaded;
  loaded.scope_ = scope;
  loaded.files_ = files;
  loaded.mapping_ = std::move(mapping);
  return loaded;
}

void VerifiedFiles::save(const std::filesystem::path& file) const {
  std::string content(kHeader + files_.size() * sizeof(VerifiedFile), '\0');
  std::uint64_t count = files_.size();
  std::memcpy(content.data(), kMagic, sizeof kMagic);
  std::memcpy(content.data() + sizeof kMagic, &scope_, sizeof scope_);
  std::memcpy(content.data() + sizeof kMagic + sizeof scope_, &count, sizeof count);
  if (!files_.empty()) std::memcpy(content.data() + kHeader, files_.data(), files_.size() * sizeof(VerifiedFile));
  make_directories(file.parent_path(), 0755);
  write_atomically(file.parent_path(), file.filename().string(), content, /*durable=*/false);
}

std::optional<std::size_t> VerifiedFiles::index_of(const VerifiedFile& file, std::size_t near) const {
  const std::size_t n = files_.size();
  if (n == 0) return std::nullopt;
  // Galloping from `near` to a range [low, high) that holds the first entry
  // not less than `file`, then a binary search in it.
  std::size_t low = 0, high = n, step = 1;
  near = std::min(near, n - 1);
  if (files_[near] < file) {
    low = near + 1;  // files_[low - 1] < file
    while (low + step <= n && files_[low + step - 1] < file) {
      low += step;
      step *= 2;
    }
    high = std::min(n, low + step);
  } else {
    high = near + 1;  // files_[high - 1] >= file
    while (step < high && !(files_[high - 1 - step] < file)) {
      high -= step;
      step *= 2;
    }
    low = step < high ? high - step : 0;
  }
  auto it = std::lower_bound(files_.begin() + static_cast<std::ptrdiff_t>(low),
                             files_.begin() + static_cast<std::ptrdiff_t>(high), file);
  if (it == files_.end() || *it != file) return std::nullopt;
  return static_cast<std::size_t>(it - files_.begin());
}

}  // namespace vmwarden::acl::detail
