// Benchmark, run by hand (not by meson test):
//   build/tests/bench/exec_bench [ITERATIONS]
// 1. Wall time of `vmwarden exec -- /bin/true` against bubblewrap doing the
//    same namespace work, alternating in one run; prints both medians and the
//    ratio (target: <= 0.75).
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
  kill(outer, SIGTERM);
  wait_for(outer);
}

}  // namespace

int main(int argc, char** argv) {
  int iterations = argc > 1 ? std::atoi(argv[1]) : 200;
  std::string vmwarden = vmwarden::testing::vmwarden_binary();
  // The runtime dirs on a tmpfs, as /run/vmwarden is on a usual host: on a
  // disk filesystem, evicting the removed directory alone costs 0.1-2 ms.
  setenv("TMPDIR", "/dev/shm", 1);
  TempDir runtime("vmwarden-bench");
  setenv("VMWARDEN_RUNTIME_DIR", runtime.path().c_str(), 1);

  std::vector<std::string> ours = {vmwarden, "exec", "--uid", "0", "--", "/bin/true"};
  std::vector<std::string> peer = {"/usr/bin/bwrap", "--unshare-all", "--die-with-parent", "--ro-bind", "/", "/",
                                   "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "/bin/true"};
  for (int i = 0; i < 5; ++i) {  // warm the page cache
    run_once(ours);
    run_once(peer);
  }
  std::vector<double> ours_ms, peer_ms;
  for (int i = 0; i < iterations; ++i) {
    ours_ms.push_back(run_once(ours));
    peer_ms.push_back(run_once(peer));
  }
  double ours_median = median(ours_ms), peer_median = median(peer_ms);
  std::printf("start-to-exit of /bin/true, %d runs each, alternating:\n", iterations);
  std::printf("  vmwarden exec  median %.2f ms\n", ours_median);
  std::printf("  bwrap          median %.2f ms\n", peer_median);
  std::printf("  ratio vmwarden/bwrap %.2f (target <= 0.75)\n\n", ours_median / peer_median);

  measure_memory("vmwarden exec -- /bin/sleep 30",
                 {vmwarden, "exec", "--uid", "0", "--notify-fd", "3", "--", "/bin/sleep", "30"}, true);
  measure_memory("bwrap ... /bin/sleep 30",
                 {"/usr/bin/bwrap", "--unshare-all", "--die-with-parent", "--ro-bind", "/", "/", "--proc", "/proc",
                  "--dev", "/dev", "--tmpfs", "/tmp", "/bin/sleep", "30"},
                 false);
  std::printf("(target: Pss <= 1536 KiB for the outer and the warden)\n");
  return 0;
}
