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
#include "common/error.h"
#include "common/unique_fd.h"

namespace vmwarden::acl::detail {
namespace {

// The file: this magic, the scope's fields, the count, then each file's
// inode and its two ctime bounds, sorted by inode; native byte order (it
// never leaves the host).
constexpr char kMagic[8] = {'V', 'M', 'W', 'V', 'F', '0', '0', '2'};
constexpr std::size_t kScopeFields = sizeof(VerifiedScope) / sizeof(std::uint64_t);
constexpr std::size_t kHeader = sizeof kMagic + sizeof(VerifiedScope) + sizeof(std::uint64_t);
static_assert(sizeof(VerifiedScope) == kScopeFields * sizeof(std::uint64_t));
static_assert(sizeof(VerifiedFile) == 24);
// A tree of 64 Mi files; anything larger is not one of these files.
constexpr off_t kMostBytes = kHeader + (off_t{64} << 20) * sizeof(VerifiedFile);

}  // namespace

// Memory holding a set's file: mapped from the file (read-only), or
// anonymous (a Builder's, or a copy).
struct VerifiedFiles::Buffer {
  void* address = MAP_FAILED;
  std::size_t size = 0;
  char* bytes() const { return static_cast<char*>(address); }
  VerifiedFile* files() const { return reinterpret_cast<VerifiedFile*>(bytes() + kHeader); }

  // vmwarden replaces the file by a rename, never in place, so the mapping
  // keeps what was read (only a truncation by someone else would fault).
  // Populated at once: one call instead of a page fault per page.
  static std::unique_ptr<Buffer> of_file(int fd, std::size_t bytes) {
    auto buffer = std::make_unique<Buffer>();
    buffer->address = ::mmap(nullptr, bytes, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
    buffer->size = bytes;
    return buffer->address == MAP_FAILED ? nullptr : std::move(buffer);
  }
  // Address space only: pages are made as they are first written, in huge
  // pages where the kernel has them (one fault for 2 MB, not 512).
  static std::unique_ptr<Buffer> anonymous(std::size_t bytes) {
    auto buffer = std::make_unique<Buffer>();
    buffer->address = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    buffer->size = bytes;
    if (buffer->address == MAP_FAILED) return nullptr;
    ::madvise(buffer->address, bytes, MADV_HUGEPAGE);  // a hint: without, 4 KiB pages
    return buffer;
  }
  ~Buffer() {
    if (address != MAP_FAILED) ::munmap(address, size);
  }
};

VerifiedFiles::VerifiedFiles() = default;
VerifiedFiles::~VerifiedFiles() = default;
VerifiedFiles::VerifiedFiles(VerifiedFiles&&) noexcept = default;
VerifiedFiles& VerifiedFiles::operator=(VerifiedFiles&&) noexcept = default;

VerifiedFiles::VerifiedFiles(const VerifiedScope& scope, std::span<const VerifiedFile> files)
    : scope_(scope), buffer_(Buffer::anonymous(kHeader + files.size() * sizeof(VerifiedFile))) {
  if (!buffer_) throw_errno("mmap", "a set of verified files");
  if (!files.empty()) std::memcpy(buffer_->files(), files.data(), files.size() * sizeof(VerifiedFile));
  files_ = std::span<const VerifiedFile>(buffer_->files(), finish(*buffer_, files.size(), scope));
}

VerifiedFiles VerifiedFiles::load(const std::filesystem::path& file, const VerifiedScope& scope) {
  VerifiedFiles none;
  none.scope_ = scope;
  // Not through a symlink, and a FIFO in its place does not block.
  UniqueFd fd(::open(file.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
  struct stat st;
  if (!fd || ::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode) || st.st_size < static_cast<off_t>(kHeader) ||
      st.st_size > kMostBytes || (st.st_size - kHeader) % sizeof(VerifiedFile) != 0) {
    return none;
  }
  std::unique_ptr<Buffer> buffer = Buffer::of_file(fd.get(), static_cast<std::size_t>(st.st_size));
  if (!buffer) return none;
  const char* bytes = buffer->bytes();
  VerifiedScope kept;
  std::uint64_t count = 0;
  std::memcpy(&kept, bytes + sizeof kMagic, sizeof kept);
  std::memcpy(&count, bytes + sizeof kMagic + sizeof kept, sizeof count);
  if (std::memcmp(bytes, kMagic, sizeof kMagic) != 0 || !(kept == scope) ||
      count != (static_cast<std::uint64_t>(st.st_size) - kHeader) / sizeof(VerifiedFile)) {
    return none;
  }
  // The entries start 8-byte aligned (kHeader is), as VerifiedFile needs.
  std::span<const VerifiedFile> files(buffer->files(), count);
  // Written sorted by inode, one entry each, every range open; anything
  // else was not written by save().
  auto out_of_order = [](const VerifiedFile& a, const VerifiedFile& b) { return a.inode >= b.inode; };
  if (std::adjacent_find(files.begin(), files.end(), out_of_order) != files.end()) return none;
  auto empty_range = [](const VerifiedFile& f) { return f.ctime_after_ns >= f.ctime_before_ns; };
  if (std::any_of(files.begin(), files.end(), empty_range)) return none;
  VerifiedFiles loaded;
  loaded.scope_ = scope;
  loaded.files_ = files;
  loaded.buffer_ = std::move(buffer);
  return loaded;
}

void VerifiedFiles::save(const std::filesystem::path& file) const {
  // A set made empty (with no buffer) is saved as an empty set of its scope.
  if (!buffer_) return VerifiedFiles(scope_, {}).save(file);
  make_directories(file.parent_path(), 0755);
  // The buffer holds the file as it is to be: the header, then the entries.
  std::string_view content(buffer_->bytes(), kHeader + files_.size() * sizeof(VerifiedFile));
  write_atomically(file.parent_path(), file.filename().string(), content, /*durable=*/false);
}

VerifiedFiles::Builder::Builder() {
  capacity_ = std::size_t{1} << 24;
  buffer_ = Buffer::anonymous(kHeader + capacity_ * sizeof(VerifiedFile));
  if (!buffer_) full_ = true;
}

VerifiedFiles::Builder::~Builder() = default;

bool VerifiedFiles::Builder::add(std::span<const VerifiedFile> files) {
  if (files.empty()) return !full_;
  std::size_t at = used_.fetch_add(files.size());
  if (full_ || at > capacity_ || files.size() > capacity_ - at) {
    full_ = true;
    return false;
  }
  std::memcpy(buffer_->files() + at, files.data(), files.size() * sizeof(VerifiedFile));
  return true;
}

std::optional<VerifiedFiles> VerifiedFiles::Builder::build(const VerifiedScope& scope, std::int64_t end_ns) {
  if (full_) return std::nullopt;
  VerifiedFile* first = buffer_->files();
  VerifiedFile* last = first + used_.load();
  for (VerifiedFile* file = first; file != last; ++file) {
    if (file->ctime_before_ns == kUntilTheEnd) file->ctime_before_ns = end_ns;
  }
  last = std::remove_if(first, last, [](const VerifiedFile& f) { return f.ctime_after_ns >= f.ctime_before_ns; });
  VerifiedFiles set;
  set.scope_ = scope;
  set.files_ = std::span<const VerifiedFile>(first, finish(*buffer_, static_cast<std::size_t>(last - first), scope));
  set.buffer_ = std::move(buffer_);
  used_ = 0;
  full_ = true;  // nothing left to add to
  return set;
}

std::size_t VerifiedFiles::finish(Buffer& buffer, std::size_t count, const VerifiedScope& scope) {
  VerifiedFile* first = buffer.files();
  auto by_inode = [](const VerifiedFile& a, const VerifiedFile& b) { return a.inode < b.inode; };
  std::sort(first, first + count, by_inode);
  auto same_inode = [](const VerifiedFile& a, const VerifiedFile& b) { return a.inode == b.inode; };
  count = static_cast<std::size_t>(std::unique(first, first + count, same_inode) - first);
  std::uint64_t kept = count;
  std::memcpy(buffer.bytes(), kMagic, sizeof kMagic);
  std::memcpy(buffer.bytes() + sizeof kMagic, &scope, sizeof scope);
  std::memcpy(buffer.bytes() + sizeof kMagic + sizeof scope, &kept, sizeof kept);
  return count;
}

std::optional<std::size_t> VerifiedFiles::index_of(std::uint64_t inode, std::size_t near) const {
  const std::size_t n = files_.size();
  if (n == 0) return std::nullopt;
  // Galloping from `near` to a range [low, high) that holds the first entry
  // whose inode is not less than `inode`, then a binary search in it.
  auto below = [inode](const VerifiedFile& f) { return f.inode < inode; };
  std::size_t low = 0, high = n, step = 1;
  near = std::min(near, n - 1);
  if (below(files_[near])) {
    low = near + 1;  // files_[low - 1] is below
    while (low + step <= n && below(files_[low + step - 1])) {
      low += step;
      step *= 2;
    }
    high = std::min(n, low + step);
  } else {
    high = near + 1;  // files_[high - 1] is not below
    while (step < high && !below(files_[high - 1 - step])) {
      high -= step;
      step *= 2;
    }
    low = step < high ? high - step : 0;
  }
  auto it = std::partition_point(files_.begin() + static_cast<std::ptrdiff_t>(low),
                                 files_.begin() + static_cast<std::ptrdiff_t>(high), below);
  if (it == files_.end() || it->inode != inode) return std::nullopt;
  return static_cast<std::size_t>(it - files_.begin());
}

}  // namespace vmwarden::acl::detail
