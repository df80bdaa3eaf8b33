// Stands in for the VMM in launch_bench: prints the CLOCK_MONOTONIC time at
// which it was exec'd (the end of the supervisor's own work) and exits.
#include <time.h>

#include <cstdio>

int main() {
  timespec now{};
  clock_gettime(CLOCK_MONOTONIC, &now);
  std::fprintf(stderr, "vmm-exec-ns=%lld\n", static_cast<long long>(now.tv_sec) * 1'000'000'000 + now.tv_nsec);
  return 0;
}
