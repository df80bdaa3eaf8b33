#include "supervisor/memory.h"

#include <link.h>
#include <malloc.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>

namespace vmwarden::supervisor {
namespace {

int release_segments(dl_phdr_info* info, size_t, void* data) {
  // The first object reported is the executable itself; shared libraries are
  // shared with the rest of the system and cost little proportionally.
  bool& done = *static_cast<bool*>(data);
  if (done) return 1;
  done = true;
  uintptr_t page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  for (int i = 0; i < info->dlpi_phnum; ++i) {
    const ElfW(Phdr)& segment = info->dlpi_phdr[i];
    if (segment.p_type != PT_LOAD || (segment.p_flags & PF_W) != 0) continue;
    uintptr_t start = (info->dlpi_addr + segment.p_vaddr) & ~(page - 1);
    uintptr_t end = (info->dlpi_addr + segment.p_vaddr + segment.p_memsz + page - 1) & ~(page - 1);
    void* address = reinterpret_cast<void*>(start);
    // Read-only private file pages: dropping them loses nothing, the page
    // cache still has them, and the few the event loop runs come back.
    ::madvise(address, end - start, MADV_DONTNEED);
  }
  return 1;
}

}  // namespace

void release_startup_memory() {
  ::malloc_trim(0);
  bool done = false;
  ::dl_iterate_phdr(release_segments, &done);
}

}  // namespace vmwarden::supervisor
