// Benchmark, run by hand (not by meson test):
//   build/tests/bench/exec_bench [ITERATIONS]
// 1. Wall time of `vmwarden exec -- /bin/true` with its full default
//    confinement (a single-use UID leased and released, Landlock domain with
//    scopes, the vm-daemon seccomp filter) against bubblewrap doing the same
//    namespace work, alternating in one run; prints the medians and the
//    ratio (target: <= 0.75), and what the confinement costs: the same exec
//    with --landlock off --seccomp-profile none, and that with a fixed
//    --uid 65534 (a given uid: no lease) as well.
// 2. VmRSS and Pss of the outer and the warden (and of bubblewrap's two
//    processes, for comparison) while a long command runs, 1.5 s after it
//    started (target: <= 1.5 MiB Pss each).

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "tests/support/support.h"

namespace {

using vmwarden::testing::TempDir;

pid_t spawn(const std::vector<std::string>& argv, int notify_write = -1) {
  std::vector<char*> args;
  for (const std::string& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
  args.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
  if (notify_write >= 0) posix_spawn_file_actions_adddup2(&actions, notify_write, 3);
  pid_t pid = -1;
  int rc = posix_spawn(&pid, args[0], &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) {
    std::fprintf(stderr, "cannot start %s: %s\n", args[0], std::strerror(rc));
    std::exit(1);
  }
  return pid;
}

int wait_for(pid_t pid) {
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
  }
  return status;
}

double run_once(const std::vector<std::string>& argv) {
  auto start = std::chrono::steady_clock::now();
  int status = wait_for(spawn(argv));
  double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    std::fprintf(stderr, "%s failed (wait status %#x)\n", argv[0].c_str(), status);
    std::exit(1);
  }
  return ms;
}

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  size_t n = values.size();
  return n % 2 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
}

long field_kib(const std::string& path, const std::string& key) {
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(key + ":", 0) == 0) return std::strtol(line.c_str() + key.size() + 1, nullptr, 10);
  }
  return -1;
}

pid_t first_child(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/task/" + std::to_string(pid) + "/children");
  pid_t child = -1;
  in >> child;
  return child;
}

void print_memory(const char* label, pid_t pid) {
  std::string base = "/proc/" + std::to_string(pid);
  std::printf("  %-22s pid %-7d VmRSS %5ld KiB   Pss %5ld KiB\n", label, pid, field_kib(base + "/status", "VmRSS"),
              field_kib(base + "/smaps_rollup", "Pss"));
}

// Starts a long-running sandbox, waits until its command runs, and prints
// the memory of the process and its first child.
void measure_memory(const char* name, std::vector<std::string> argv, bool notify) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) < 0) std::exit(1);
  pid_t outer = spawn(argv, notify ? fds[1] : -1);
  close(fds[1]);
  if (notify) {
    char c;
    if (read(fds[0], &c, 1) != 1) {
      std::fprintf(stderr, "%s did not become ready\n", name);
      std::exit(1);
    }
  }
  // The steady state: vmwarden releases its start-up memory after a quiet
  // second (supervisor/memory.h); bubblewrap has nothing to release.
  usleep(1'500'000);
  close(fds[0]);
  pid_t inner = first_child(outer);
  std::printf("%s:\n", name);
  print_memory("outer", outer);
  print_memory("PID 1 of the sandbox", inner);
  vmwarden::testing::kill_process(outer, SIGTERM);
  wait_for(outer);
}

}  // namespace

int main(int argc, char** argv) {
  int iterations = argc > 1 ? std::atoi(argv[1]) : 200;
  std::string vmwarden = vmwarden::testing::vmwarden_binary();
  // The runtime dirs on a tmpfs, as /run/vmwarden is on a usual host (this
  // machine's /run is on disk, where creating and evicting the directories
  // and lease files costs 0.1-2 ms a run): a tmpfs of the benchmark's own,
  // on a scratch dir outside /tmp and /dev/shm, which every sandbox hides.
  setenv("TMPDIR", "/var/tmp", 1);
  TempDir runtime("vmwarden-bench-run");
  vmwarden::testing::PrivateTmpfs runtime_tmpfs(runtime.path());
  setenv("VMWARDEN_RUNTIME_DIR", runtime.path().c_str(), 1);

  // The UID registry where a host keeps it, on disk (VMWARDEN_BENCH_STATE_DIR,
  // default: /var/tmp).
  const char* state_parent = std::getenv("VMWARDEN_BENCH_STATE_DIR");
  setenv("TMPDIR", state_parent != nullptr ? state_parent : "/var/tmp", 1);
  TempDir state("vmwarden-bench-state");
  setenv("VMWARDEN_STATE_DIR", state.path().c_str(), 1);
  setenv("TMPDIR", "/var/tmp", 1);
  TempDir config("vmwarden-bench-config");
  setenv("VMWARDEN_CONFIG_DIR", config.path().c_str(), 1);

  struct Variant {
    const char* label;
    std::vector<std::string> argv;
    std::vector<double> ms;
  };
  std::vector<Variant> variants = {
      {"vmwarden exec (default: full confinement)", {vmwarden, "exec", "--", "/bin/true"}, {}},
      {"  --landlock off --seccomp-profile none",
       {vmwarden, "exec", "--landlock", "off", "--seccomp-profile", "none", "--", "/bin/true"}, {}},
      {"  ... and --uid 65534 (no UID lease)",
       {vmwarden, "exec", "--uid", "65534", "--landlock", "off", "--seccomp-profile", "none", "--", "/bin/true"}, {}},
      {"bwrap",
       {"/usr/bin/bwrap", "--unshare-all", "--die-with-parent", "--ro-bind", "/", "/", "--proc", "/proc", "--dev",
        "/dev", "--tmpfs", "/tmp", "/bin/true"}, {}},
  };
  for (int i = 0; i < 5; ++i)  // warm the page cache
    for (Variant& variant : variants) run_once(variant.argv);
  for (int i = 0; i < iterations; ++i)
    for (Variant& variant : variants) variant.ms.push_back(run_once(variant.argv));
  std::vector<double> medians;
  std::printf("start-to-exit of /bin/true, %d runs each, interleaved:\n", iterations);
  for (Variant& variant : variants) {
    medians.push_back(median(variant.ms));
    std::printf("  %-44s median %.2f ms\n", variant.label, medians.back());
  }
  std::printf("  ratio vmwarden exec (full confinement)/bwrap %.2f (target <= 0.75)\n", medians[0] / medians[3]);
  std::printf("  ratio without confinement or lease/bwrap     %.2f\n", medians[2] / medians[3]);
  std::printf("  Landlock + seccomp cost %.2f ms, the single-use UID lease %.2f ms\n\n", medians[0] - medians[1],
              medians[1] - medians[2]);

  measure_memory("vmwarden exec -- /bin/sleep 30",
                 {vmwarden, "exec", "--notify-fd", "3", "--", "/bin/sleep", "30"}, true);
  measure_memory("bwrap ... /bin/sleep 30",
                 {"/usr/bin/bwrap", "--unshare-all", "--die-with-parent", "--ro-bind", "/", "/", "--proc", "/proc",
                  "--dev", "/dev", "--tmpfs", "/tmp", "/bin/sleep", "30"},
                 false);
  std::printf("(target: Pss <= 1536 KiB for the outer and the warden)\n");
  return 0;
}
