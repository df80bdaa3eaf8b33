#include "tests/integration/service.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>

#include "common/error.h"
#include "common/process.h"

namespace vmwarden::testing {

TestService::TestService(supervisor::ServiceSpec spec, bool confine, std::function<void()> in_child)
    : spec_(std::move(spec)) {
  std::string log = (log_dir_ / "output").string();
  std::vector<std::string> args = spec_.argv, env = spec_.environment.build(environ);
  std::vector<char*> argv, envp;
  for (auto& arg : args) argv.push_back(arg.data());
  argv.push_back(nullptr);
  for (auto& entry : env) envp.push_back(entry.data());
  envp.push_back(nullptr);
  started_ = std::chrono::steady_clock::now();
  pid_ = check(::fork(), "fork");
  if (pid_ != 0) return;
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  rlimit no_core{0, 0};
  ::setrlimit(RLIMIT_CORE, &no_core);
  int out = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (out < 0 || ::dup2(out, 1) < 0 || ::dup2(out, 2) < 0) ::_exit(126);
  try {
    // Park the inherited fds above every target, then put them in place.
    std::vector<int> parked;
    for (const auto& mapping : spec_.fds)
      parked.push_back(check(::fcntl(mapping.parent_fd, F_DUPFD_CLOEXEC, 200), "dup"));
    for (size_t i = 0; i < parked.size(); ++i) check(::dup2(parked[i], spec_.fds[i].child_fd), "dup2");
    for (int fd = 3; fd < 200; ++fd) {
      bool mapped = false;
      for (const auto& mapping : spec_.fds) mapped = mapped || mapping.child_fd == fd;
      if (!mapped) ::fcntl(fd, F_SETFD, FD_CLOEXEC);
    }
    if (in_child) in_child();
    if (::chdir(spec_.cwd.c_str()) != 0) throw_errno("chdir", spec_.cwd.string());
    if (confine) supervisor::apply_confinement(spec_.confinement);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "service setup: %s\n", e.what());
    ::_exit(125);
  }
  ::execve(argv[0], argv.data(), envp.data());
  std::fprintf(stderr, "execve %s: %s\n", argv[0], std::strerror(errno));
  ::_exit(127);
}

TestService::~TestService() {
  if (pid_ > 0 && running()) {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }
}

std::optional<ServiceExit> TestService::wait_exit(std::chrono::steady_clock::time_point deadline) {
  if (exit_) return exit_;
  if (!PidFd(pid_).wait_exited(deadline)) return std::nullopt;
  int status = 0;
  check(::waitpid(pid_, &status, 0), "waitpid");
  ServiceExit result;
  if (WIFEXITED(status)) result.exit_code = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) result.signal = WTERMSIG(status);
  exit_ = result;
  return exit_;
}

std::string TestService::output() const {
  std::error_code error;
  if (!std::filesystem::exists(log_dir_ / "output", error)) return {};
  return read_file(log_dir_ / "output");
}

WaitOutcome run_wait(const std::function<void(const supervisor::RunningService&,
                                              std::chrono::steady_clock::time_point)>& wait_ready,
                     const supervisor::RunningService& service) {
  auto start = std::chrono::steady_clock::now();
  WaitOutcome outcome;
  try {
    wait_ready(service, start + std::chrono::seconds(120));
  } catch (const std::runtime_error& e) {
    outcome.error = e.what();
  }
  outcome.took = std::chrono::steady_clock::now() - start;
  return outcome;
}

uid_t service_uid() { return 3'200'000 + static_cast<uid_t>(::getpid() % 100'000); }

std::filesystem::path copy_program(const char* variable, const std::filesystem::path& dir) {
  const char* source = std::getenv(variable);
  if (source == nullptr) throw std::runtime_error(std::string(variable) + " is not set");
  std::filesystem::path target = dir / std::filesystem::path(source).filename();
  std::filesystem::copy_file(source, target, std::filesystem::copy_options::overwrite_existing);
  std::filesystem::permissions(target, std::filesystem::perms(0755));
  return target;
}

}  // namespace vmwarden::testing
