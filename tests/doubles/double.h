// Shared by the VMM and virtiofsd test doubles: they stand in for programs
// that cannot run on the test machines (crosvm, cloud-hypervisor, the Rust
// virtiofsd), record how they were called, and speak the real programs'
// control protocols. Plain POSIX, no vmwarden code: a double must not share
// the bugs of the code it tests.
#pragma once

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace double_support {

// The guest kernel's command line, as a VMM double was given it. A real
// kernel hands unknown NAME=VALUE parameters to init as environment; the
// doubles' simulated guest reads its flags from there too, so that a test can
// set them through a VM definition (`vmwarden supervise` gives the VMM a
// fixed environment of its own).
inline std::string& kernel_params() {
  static std::string params;
  return params;
}

inline bool flag(const char* name) {
  const char* value = std::getenv(name);
  if (value != nullptr && *value != '\0' && std::string_view(value) != "0") return true;
  std::string word = " " + std::string(name) + "=1 ";
  return (" " + kernel_params() + " ").find(word) != std::string::npos;
}

// Appends argv to $VMWARDEN_FAKE_RECORD: the arguments separated by NUL
// bytes, the call ended by a newline, written with one write(2) so that the
// lines of concurrent callers never mix.
inline void record(int argc, char** argv) {
  const char* file = std::getenv("VMWARDEN_FAKE_RECORD");
  if (file == nullptr || *file == '\0') return;
  std::string line;
  for (int i = 0; i < argc; ++i) {
    if (i > 0) line += '\0';
    line += argv[i];
  }
  line += '\n';
  int fd = ::open(file, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0 || ::write(fd, line.data(), line.size()) != static_cast<ssize_t>(line.size())) {
    std::fprintf(stderr, "%s: cannot record to %s: %s\n", argv[0], file, std::strerror(errno));
    std::exit(70);
  }
  ::close(fd);
}

[[noreturn]] inline void die(const std::string& message, int status = 1) {
  std::fprintf(stderr, "%s\n", message.c_str());
  std::exit(status);
}

inline sockaddr_un address_of(const std::string& path) {
  sockaddr_un address{};
  if (path.size() >= sizeof address.sun_path) die("socket path too long: " + path);
  address.sun_family = AF_UNIX;
  std::memcpy(address.sun_path, path.data(), path.size());
  return address;
}

inline int listen_at(const std::string& path, int type) {
  int fd = ::socket(AF_UNIX, type | SOCK_CLOEXEC, 0);
  sockaddr_un address = address_of(path);
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) < 0 || ::listen(fd, 8) < 0)
    die("cannot listen on " + path + ": " + std::strerror(errno));
  return fd;
}

// A VMM taken over by its guest, trying to write to its runtime directory
// (VMWARDEN_FAKE_FILL_RUNTIME): each attempt's outcome goes to stderr (the
// VM's log).
//
// VMWARDEN_FAKE_BIND_SOCKETS: binds sockets there (flood-0, flood-1, ...)
// until one fails, which it reports, or the VMM is killed.
//
// VMWARDEN_FAKE_SERIAL_SYMLINK: replaces serial.log (the warden's, open in
// the warden already) with a symlink to DIR/../../outside/console (the
// tests' tree puts the runtime directory at ROOT/run/NAME) and makes
// serial.log.1 a hard link to that symlink: the warden's rotation, a
// rename of serial.log to serial.log.1, then does nothing (the two are one
// file), and the serial.log it creates next is the symlink, unless it
// refuses one.
inline void fill_runtime_dir_if_asked(const std::string& dir) {
  if (flag("VMWARDEN_FAKE_SERIAL_SYMLINK")) {
    std::string log = dir + "/serial.log";
    auto outcome = [](int rc) { return rc >= 0 ? std::string("done") : std::string(std::strerror(errno)); };
    std::string removed = outcome(::unlink(log.c_str()));
    std::string linked = outcome(::symlink("../../outside/console", log.c_str()));
    std::string hard_linked = outcome(::link(log.c_str(), (log + ".1").c_str()));
    std::fprintf(stderr, "fake VMM: serial.log: unlink: %s; symlink: %s; link to serial.log.1: %s\n", removed.c_str(),
                 linked.c_str(), hard_linked.c_str());
  }
  if (flag("VMWARDEN_FAKE_BIND_SOCKETS")) {
    for (long i = 0;; ++i) {
      std::string path = dir + "/flood-" + std::to_string(i);
      sockaddr_un address{};
      address.sun_family = AF_UNIX;
      if (path.size() >= sizeof address.sun_path) die("socket path too long: " + path);
      std::memcpy(address.sun_path, path.c_str(), path.size() + 1);
      int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
      if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) < 0) {
        std::fprintf(stderr, "fake VMM: bind socket %ld: %s\n", i, std::strerror(errno));
        if (fd >= 0) ::close(fd);
        break;
      }
      ::close(fd);
    }
  }
  if (!flag("VMWARDEN_FAKE_FILL_RUNTIME")) return;
  auto outcome = [](int rc) { return rc >= 0 ? std::string("done") : std::string(std::strerror(errno)); };
  int file = ::open((dir + "/junk").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
  std::string created = outcome(file);
  if (file >= 0) ::close(file);
  int log = ::open((dir + "/serial.log").c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
  std::string appended = outcome(log);
  if (log >= 0) ::close(log);
  std::string made_dir = outcome(::mkdir((dir + "/junk.d").c_str(), 0700));
  std::string linked = outcome(::symlink("/", (dir + "/junk.link").c_str()));
  // mnt, the warden's tmpfs of the shares' mount points, root's (the VM has
  // a share in the tests that ask this).
  int in_mnt = ::open((dir + "/mnt/junk").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
  std::string created_in_mnt = outcome(in_mnt);
  if (in_mnt >= 0) ::close(in_mnt);
  std::fprintf(stderr, "fake VMM: fill the runtime directory: create junk: %s; append to serial.log: %s; mkdir: %s; "
               "symlink: %s; create in mnt: %s\n", created.c_str(), appended.c_str(), made_dir.c_str(), linked.c_str(),
               created_in_mnt.c_str());
}

inline std::string directory_of(const std::string& path) { return path.substr(0, path.rfind('/')); }

// A VMM's control socket at `path`; with VMWARDEN_FAKE_CONTROL_SYMLINK=1
// the socket is bound at PATH.real and `path` is a symlink to it, as a
// compromised VMM could arrange.
inline int listen_for_control(const std::string& path, int type) {
  fill_runtime_dir_if_asked(directory_of(path));
  if (!flag("VMWARDEN_FAKE_CONTROL_SYMLINK")) return listen_at(path, type);
  std::string real = path + ".real";
  int fd = listen_at(real, type);
  if (::symlink(real.c_str(), path.c_str()) != 0) die("cannot symlink " + path + ": " + std::strerror(errno));
  return fd;
}

// A control socket the caller bound and gave as descriptor `fd`, which must
// be listening (as the VMM checks). `path` is where the caller bound it:
// with VMWARDEN_FAKE_CONTROL_SYMLINK=1 the VMM puts a symlink there to a
// socket of its own, as a compromised one could.
inline int given_control_socket(int fd, const std::string& path, int type) {
  int accepting = 0;
  socklen_t length = sizeof accepting;
  if (::getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &accepting, &length) != 0 || accepting != 1)
    die("the control socket's descriptor " + std::to_string(fd) + " is not a listening socket");
  fill_runtime_dir_if_asked(directory_of(path));
  if (!flag("VMWARDEN_FAKE_CONTROL_SYMLINK")) return fd;
  std::string real = path + ".real";
  int own = listen_at(real, type);
  ::unlink(path.c_str());
  if (::symlink(real.c_str(), path.c_str()) != 0) die("cannot symlink " + path + ": " + std::strerror(errno));
  return own;
}

// -1 with errno set on failure.
inline int connect_to(const std::string& path, int type) {
  int fd = ::socket(AF_UNIX, type | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_un address = address_of(path);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) < 0) {
    int saved = errno;
    ::close(fd);
    errno = saved;
    return -1;
  }
  return fd;
}

// For sockets and files alike; SIGPIPE is ignored in every double.
inline void write_all(int fd, std::string_view data) {
  static const bool sigpipe_ignored = (::signal(SIGPIPE, SIG_IGN), true);
  (void)sigpipe_ignored;
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    data.remove_prefix(static_cast<size_t>(n));
  }
}

// The value of "key=value" in a "k=v,k=v" option list, or "".
inline std::string option_value(std::string_view options, std::string_view key) {
  while (!options.empty()) {
    size_t comma = options.find(',');
    std::string_view item = options.substr(0, comma);
    if (item.size() > key.size() && item.substr(0, key.size()) == key && item[key.size()] == '=')
      return std::string(item.substr(key.size() + 1));
    if (comma == std::string_view::npos) break;
    options.remove_prefix(comma + 1);
  }
  return {};
}

// The simulated guest's console, on `fd` (the VMM's serial output): a boot
// line; with VMWARDEN_FAKE_CONSOLE_FLOOD, then, from a thread of its own as
// a vCPU's would (the control socket keeps being served), what a guest that
// writes its console without end does: kFloodBytes of numbered lines
// ("console line 00000000\n", ...), then kFloodEnd.
inline constexpr std::size_t kFloodBytes = 8 << 20;
inline constexpr std::string_view kFloodEnd = "fake guest: end of the flood\n";

inline void write_console(int fd) {
  write_all(fd, "fake guest booted\n");
  if (!flag("VMWARDEN_FAKE_CONSOLE_FLOOD")) {
    ::close(fd);
    return;
  }
  std::thread([fd] {
    std::string chunk;
    std::size_t written = 0;
    for (unsigned line = 0; written < kFloodBytes; ++line) {
      char text[32];
      int n = std::snprintf(text, sizeof text, "console line %08u\n", line);
      chunk.append(text, static_cast<std::size_t>(n));
      if (chunk.size() >= 64 * 1024) {
        write_all(fd, chunk);
        written += chunk.size();
        chunk.clear();
      }
    }
    write_all(fd, chunk);
    write_all(fd, kFloodEnd);
    ::close(fd);
  }).detach();
}

}  // namespace double_support

namespace double_support {

// Reads one HTTP message (head and Content-Length body) from `fd`; "" at
// end of stream.
inline std::string read_http_message(int fd) {
  std::string text;
  char chunk[4096];
  for (;;) {
    size_t head_end = text.find("\r\n\r\n");
    if (head_end != std::string::npos) {
      size_t length = 0;
      size_t at = text.find("Content-Length:");
      if (at != std::string::npos && at < head_end) length = std::strtoul(text.c_str() + at + 15, nullptr, 10);
      if (text.size() >= head_end + 4 + length) return text;
    }
    ssize_t n = ::recv(fd, chunk, sizeof chunk, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return text;
    text.append(chunk, static_cast<size_t>(n));
  }
}

// What a VMM's control program taken over by its VMM (it parses the VMM's
// replies) would try: leave a file in every share's copy under the runtime
// directory of `socket`, which its Landlock rule covers. The copies must not
// be mounted where it runs; the test looks for the files in the shares.
inline void try_to_write_into_the_shares(const std::string& socket) {
  std::string mnt = socket.substr(0, socket.rfind('/')) + "/mnt";
  DIR* dir = ::opendir(mnt.c_str());
  if (dir == nullptr) return;
  while (const dirent* entry = ::readdir(dir)) {
    std::string name = entry->d_name;
    if (name == "." || name == "..") continue;
    int fd = ::open((mnt + "/" + name + "/left-by-a-control-program").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (fd >= 0) ::close(fd);
  }
  ::closedir(dir);
}

}  // namespace double_support
