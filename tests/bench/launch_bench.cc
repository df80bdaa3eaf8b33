// The supervisor's own overhead for a VM: from `vmwarden supervise NAME`
// being exec'd to the VMM being exec'd, with two shares (so two real C
// virtiofsd started, confined in their user namespaces and waited for) and
// the UID lease and ACL grants in between. The VMM is vmm_exec_stamp, which
// prints the moment of its exec and exits; everything before it is real.
//
//   sudo TMPDIR=/var/tmp build/tests/bench/launch_bench [RUNS]      (default 30)
//
// (definitions refuse paths under /tmp: TMPDIR must be elsewhere)
//
// Prints min/median/p90 in ms against the 15 ms target. CLOCK_MONOTONIC is
// the same in every PID namespace, so both ends use one clock.
#include <fcntl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include <fmt/core.h>

#include "tests/support/support.h"

namespace fs = std::filesystem;
using vmwarden::testing::read_file;
using vmwarden::testing::write_file;

namespace {

long long monotonic_ns() {
  timespec now{};
  clock_gettime(CLOCK_MONOTONIC, &now);
  return static_cast<long long>(now.tv_sec) * 1'000'000'000 + now.tv_nsec;
}

// One launch: returns the milliseconds from exec of vmwarden to exec of the VMM.
double one_launch(const fs::path& root, const fs::path& stamp) {
  fs::path log = root / "supervise.log";
  long long start = monotonic_ns();
  pid_t child = ::fork();
  if (child == 0) {
    ::setenv("VMWARDEN_CONFIG_DIR", (root / "config").c_str(), 1);
    ::setenv("VMWARDEN_STATE_DIR", (root / "state").c_str(), 1);
    ::setenv("VMWARDEN_RUNTIME_DIR", (root / "run").c_str(), 1);
    ::setenv("VMWARDEN_QEMU", stamp.c_str(), 1);
    int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ::dup2(fd, 2);
    std::string binary = vmwarden::testing::vmwarden_binary();
    ::execl(binary.c_str(), "vmwarden", "supervise", "bench", nullptr);
    ::_exit(127);
  }
  ::waitpid(child, nullptr, 0);
  std::string text = read_file(log);
  size_t at = text.find("vmm-exec-ns=");
  if (at == std::string::npos) {
    fmt::print(stderr, "the VMM was never started:\n{}\n", text);
    std::exit(1);
  }
  return (std::stoll(text.substr(at + 12)) - start) / 1e6;
}

}  // namespace

int main(int argc, char** argv) {
  int runs = argc > 1 ? std::atoi(argv[1]) : 30;
  if (::geteuid() != 0) {
    fmt::print(stderr, "launch_bench needs root\n");
    return 2;
  }
  fs::path stamp = fs::path(vmwarden::testing::vmwarden_binary()).parent_path() / "tests/bench/vmm_exec_stamp";
  vmwarden::testing::TempDir scratch("vmwarden-launch-bench");
  fs::path root = scratch.path();
  fs::permissions(root, fs::perms(0711));
  for (const char* dir : {"config/vms", "state", "run", "a", "b"}) fs::create_directories(root / dir);
  // The runtime dir on a tmpfs, as /run is on a usual host (this machine's
  // /run is on disk); the state dir stays on disk.
  vmwarden::testing::PrivateTmpfs runtime_tmpfs(root / "run");
  write_file(root / "kernel", "never booted");
  write_file(root / "config/vms/bench.toml",
             fmt::format("vmm = \"qemu\"\nkernel = \"{0}/kernel\"\n[uid]\nalias = \"bench\"\n"
                         "[[share]]\ntag = \"a\"\npath = \"{0}/a\"\naccess = \"rw\"\n"
                         "[[share]]\ntag = \"b\"\npath = \"{0}/b\"\naccess = \"ro\"\n",
                         root.string()));
  one_launch(root, stamp);  // warm: page cache, the alias's first allocation
  std::vector<double> ms;
  for (int i = 0; i < runs; ++i) ms.push_back(one_launch(root, stamp));
  std::sort(ms.begin(), ms.end());
  double median = ms[ms.size() / 2];
  fmt::print("vmwarden supervise start -> VMM exec, 2 shares (2 confined virtiofsd, waited for), {} runs:\n", runs);
  fmt::print("  min {:.1f} ms, median {:.1f} ms, p90 {:.1f} ms, max {:.1f} ms\n", ms.front(), median,
             ms[ms.size() * 9 / 10], ms.back());
  fmt::print("  median / 15 ms target: {:.2f}\n", median / 15.0);
  return 0;
}
