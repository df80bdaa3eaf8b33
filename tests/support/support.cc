#include "tests/support/support.h"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "common/error.h"
#include "common/process.h"
#include "common/unique_fd.h"

namespace vmwarden::testing {

TempDir::TempDir(std::string_view prefix) {
  const char* base = std::getenv("TMPDIR");
  std::filesystem::path parent = base != nullptr && *base != '\0' ? base : "/tmp";
  std::filesystem::create_directories(parent);
  std::string templ = (parent / (std::string(prefix) + ".XXXXXX")).string();
  if (::mkdtemp(templ.data()) == nullptr) throw_errno("mkdtemp", templ);
  path_ = templ;
}

TempDir::~TempDir() {
  std::error_code ignored;
  std::filesystem::remove_all(path_, ignored);  // remove_all never follows symlinks
}

void write_file(const std::filesystem::path& path, std::string_view content, mode_t mode) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode));
  if (!fd) throw_errno("open", path.string());
  std::string_view rest = content;
  while (!rest.empty()) {
    ssize_t n = ::write(fd.get(), rest.data(), rest.size());
    if (n < 0) throw_errno("write", path.string());
    rest.remove_prefix(static_cast<size_t>(n));
  }
  check(::fchmod(fd.get(), mode), "fchmod", path.string());
}

std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path.string());
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

std::string read_proc_file(const std::filesystem::path& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return {};
  std::string content;
  char buffer[4096];
  for (;;) {
    ssize_t n = ::read(fd.get(), buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return {};
    if (n == 0) return content;
    content.append(buffer, static_cast<std::size_t>(n));
  }
}

namespace {

// Starts argv (argv[0] looked up in PATH) with this process's environment
// and `extra_env` (added or replacing), `stdio` as its fds 0, 1 and 2, in
// `cwd` if given. It dies with the test (PDEATHSIG).
pid_t spawn(const std::vector<std::string>& argv, const std::map<std::string, std::string>& extra_env,
            const int (&stdio)[3], const std::optional<std::filesystem::path>& cwd = std::nullopt) {
  std::vector<std::string> env_strings;
  for (char** e = environ; *e != nullptr; ++e) {
    std::string entry(*e);
    if (!extra_env.contains(entry.substr(0, entry.find('=')))) env_strings.push_back(entry);
  }
  for (const auto& [key, value] : extra_env) env_strings.push_back(key + "=" + value);
  std::vector<char*> envp, args;
  for (auto& entry : env_strings) envp.push_back(entry.data());
  envp.push_back(nullptr);
  std::vector<std::string> argv_copy = argv;
  for (auto& arg : argv_copy) args.push_back(arg.data());
  args.push_back(nullptr);

  pid_t parent = ::getpid();
  pid_t pid = ::fork();
  if (pid < 0) throw_errno("fork");
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);
    for (int fd = 0; fd < 3; ++fd) ::dup2(stdio[fd], fd);
    if (cwd && ::chdir(cwd->c_str()) != 0) ::_exit(127);
    ::execvpe(args[0], args.data(), envp.data());
    dprintf(2, "exec %s: %s\n", args[0], strerror(errno));
    ::_exit(127);
  }
  return pid;
}

}  // namespace

CommandResult run_command(const std::vector<std::string>& argv, const CommandOptions& options) {
  auto [out_read, out_write] = make_pipe();
  auto [err_read, err_write] = make_pipe();
  auto [in_read, in_write] = make_pipe();

  pid_t pid = spawn(argv, options.extra_env, {in_read.get(), out_write.get(), err_write.get()}, options.cwd);
  in_read.reset();
  out_write.reset();
  err_write.reset();
  if (options.stdin_text) {
    std::string_view rest = *options.stdin_text;
    while (!rest.empty()) {
      ssize_t n = ::write(in_write.get(), rest.data(), rest.size());
      if (n <= 0) break;
      rest.remove_prefix(static_cast<size_t>(n));
    }
  }
  in_write.reset();

  CommandResult result;
  auto deadline = std::chrono::steady_clock::now() + options.timeout;
  pollfd fds[2] = {{out_read.get(), POLLIN, 0}, {err_read.get(), POLLIN, 0}};
  std::string* sinks[2] = {&result.out, &result.err};
  int open_count = 2;
  while (open_count > 0) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      kill_process(pid, SIGKILL);
      result.timed_out = true;
      break;
    }
    int ready = ::poll(fds, 2, static_cast<int>(left.count()));
    if (ready < 0 && errno != EINTR) throw_errno("poll");
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || fds[i].revents == 0) continue;
      char buffer[4096];
      ssize_t n = ::read(fds[i].fd, buffer, sizeof buffer);
      if (n > 0) {
        sinks[i]->append(buffer, static_cast<size_t>(n));
      } else if (n == 0 || errno != EINTR) {
        fds[i].fd = -1;
        --open_count;
      }
    }
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) throw_errno("waitpid");
  }
  if (WIFEXITED(status)) result.exit_code = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) result.signal = WTERMSIG(status);
  return result;
}

namespace {

// getfacl -n's entry lines for `tree` that `keep` accepts.
template <typename Keep>
std::string acl_lines(const std::filesystem::path& tree, bool recursive, Keep keep) {
  std::vector<std::string> argv = {"getfacl", "-p", "-n", tree.string()};
  if (recursive) argv.insert(argv.begin() + 1, "-R");
  CommandResult result = run_command(argv);
  if (result.exit_code != 0 || result.out.find("# file:") == std::string::npos)
    throw std::runtime_error("getfacl failed on " + tree.string() + " (exit " + std::to_string(result.exit_code) +
                             "): " + result.err);
  std::string found;
  std::istringstream lines(result.out);
  for (std::string line; std::getline(lines, line);)
    if (!line.starts_with("#") && keep(line)) found += line + "\n";
  return found;
}

}  // namespace

std::string shell_words(const std::vector<std::string>& argv) {
  std::string line;
  for (const std::string& arg : argv) {
    if (!line.empty()) line += ' ';
    line += '\'';
    for (char c : arg) line += c == '\'' ? std::string("'\\''") : std::string(1, c);
    line += '\'';
  }
  return line;
}

CommandResult run_on_terminal(const std::string& script, const CommandOptions& options) {
  // Its input stays open until it ends: script(1) types a key of its own
  // into the pty at EOF.
  TerminalDialogue dialogue(script, options.extra_env);
  if (options.stdin_text) dialogue.type(*options.stdin_text);
  CommandResult result;
  result.exit_code = dialogue.finish(options.timeout);
  result.out = dialogue.output();
  return result;
}

TerminalDialogue::TerminalDialogue(const std::string& script, const std::map<std::string, std::string>& extra_env) {
  auto [keys_read, keys_write] = make_pipe();
  auto [screen_read, screen_write] = make_pipe();
  std::map<std::string, std::string> env = extra_env;
  env["SHELL"] = "/bin/sh";  // script(1) runs $SHELL -c
  pid_ = spawn({"script", "-qec", script, "/dev/null"}, env,
               {keys_read.get(), screen_write.get(), screen_write.get()});
  keys_ = std::move(keys_write);
  screen_ = std::move(screen_read);
}

TerminalDialogue::~TerminalDialogue() {
  if (pid_ > 0) {
    kill_process(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }
}

bool TerminalDialogue::read_some(std::chrono::milliseconds timeout) {
  pollfd entry{screen_.get(), POLLIN, 0};
  if (!screen_ || ::poll(&entry, 1, static_cast<int>(timeout.count())) <= 0) return false;
  char buffer[4096];
  ssize_t n = ::read(screen_.get(), buffer, sizeof buffer);
  if (n <= 0) {
    screen_.reset();
    return false;
  }
  output_.append(buffer, static_cast<std::size_t>(n));
  return true;
}

bool TerminalDialogue::wait_for(std::string_view marker, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (output_.find(marker) == std::string::npos) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0 || !read_some(left)) return false;
  }
  return true;
}

void TerminalDialogue::type(std::string_view keys) {
  while (!keys.empty()) {
    ssize_t n = check(::write(keys_.get(), keys.data(), keys.size()), "write", "(script's input)");
    keys.remove_prefix(static_cast<std::size_t>(n));
  }
}

int TerminalDialogue::finish(std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (screen_) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    read_some(left);
  }
  if (pid_ <= 0) return -1;
  if (screen_) kill_process(pid_, SIGKILL);  // past the deadline
  int status = 0;
  while (::waitpid(pid_, &status, 0) < 0)
    if (errno != EINTR) throw_errno("waitpid");
  pid_ = -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

std::string acl_entries_naming(unsigned uid, const std::filesystem::path& tree, bool recursive) {
  std::string id = ":" + std::to_string(uid) + ":";
  return acl_lines(tree, recursive, [&](const std::string& line) { return line.find(id) != std::string::npos; });
}

std::string named_acl_entries(const std::filesystem::path& tree, bool recursive) {
  // "user:1879048192:r-x", "default:group:7:rwx"; the owner's "user::rwx" is
  // not named.
  return acl_lines(tree, recursive, [](const std::string& line) {
    for (const char* tag : {"user:", "group:"}) {
      std::size_t at = line.find(tag);
      if (at != std::string::npos) {
        std::size_t id = at + std::strlen(tag);
        if (id < line.size() && line[id] >= '0' && line[id] <= '9') return true;
      }
    }
    return false;
  });
}

namespace {
std::string required_env(const char* name) {
  const char* value = std::getenv(name);
  if (value == nullptr || *value == '\0') {
    throw std::runtime_error(std::string(name) + " is not set; run the tests through `meson test`");
  }
  return value;
}
}  // namespace

std::string vmwarden_binary() { return required_env("VMWARDEN_BIN"); }
std::filesystem::path source_dir() { return required_env("VMWARDEN_SOURCE_DIR"); }

int kill_process(pid_t pid, int signal) {
  if (pid <= 1) {
    std::fprintf(stderr, "test bug: refusing to send signal %d to pid %d (not one process of the test's)\n", signal,
                 static_cast<int>(pid));
    std::abort();
  }
  return ::kill(pid, signal);
}

std::vector<std::string> directory_names(const std::filesystem::path& dir) {
  std::vector<std::string> names;
  std::error_code error;
  for (const auto& entry : std::filesystem::directory_iterator(dir, error)) names.push_back(entry.path().filename());
  std::sort(names.begin(), names.end());
  return names;
}

UniqueFd listen_on_abstract_socket(std::string_view name) {
  sockaddr_un address{};
  if (name.empty() || name.size() >= sizeof address.sun_path) throw std::invalid_argument("bad abstract socket name");
  address.sun_family = AF_UNIX;
  std::memcpy(address.sun_path + 1, name.data(), name.size());  // sun_path[0] == 0: abstract
  auto length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + name.size());
  UniqueFd listener(check(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0), "socket"));
  check(::bind(listener.get(), reinterpret_cast<sockaddr*>(&address), length), "bind abstract", name);
  check(::listen(listener.get(), 8), "listen on abstract", name);
  return listener;
}

std::vector<ProcessInfo> processes_where(const std::function<bool(const std::vector<std::string>& argv)>& matches) {
  std::vector<ProcessInfo> found;
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    pid_t pid = std::atoi(entry.path().filename().c_str());
    if (pid <= 0 || pid == ::getpid()) continue;
    std::string cmdline = read_proc_file(entry.path() / "cmdline");
    ProcessInfo process{pid, {}};
    for (std::size_t start = 0, end; (end = cmdline.find('\0', start)) != std::string::npos; start = end + 1) {
      process.argv.push_back(cmdline.substr(start, end - start));
    }
    if (!process.argv.empty() && matches(process.argv)) found.push_back(std::move(process));
  }
  return found;
}

std::set<pid_t> process_tree(pid_t root) {
  std::set<pid_t> tree;
  std::vector<pid_t> parents = {root};
  while (!parents.empty()) {
    pid_t parent = parents.back();
    parents.pop_back();
    if (!tree.insert(parent).second) continue;
    std::error_code error;
    for (const auto& task : std::filesystem::directory_iterator("/proc/" + std::to_string(parent) + "/task", error)) {
      std::ifstream children(task.path() / "children");
      for (pid_t child; children >> child;) parents.push_back(child);
    }
  }
  return tree;
}

bool process_gone(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(stat, line)) return true;
  std::size_t end = line.rfind(')');
  return end != std::string::npos && end + 2 < line.size() && line[end + 2] == 'Z';
}

bool some_argument_contains(const std::vector<std::string>& argv, std::string_view text) {
  return std::ranges::any_of(argv, [&](const std::string& arg) { return arg.find(text) != std::string::npos; });
}

PrivateTmpfs::PrivateTmpfs(std::filesystem::path dir) : dir_(std::move(dir)) {
  check(::unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)");
  check(::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr), "make mount propagation private on", "/");
  check(::mount("tmpfs", dir_.c_str(), "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=64m"), "mount tmpfs on",
        dir_.string());
}

PrivateTmpfs::~PrivateTmpfs() { ::umount2(dir_.c_str(), MNT_DETACH); }

}  // namespace vmwarden::testing
