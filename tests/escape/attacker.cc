// The escape suite's attacker: each subcommand makes one attempt to get out
// of a sandbox. Exit 0 and "ok ..." on stdout when the attack worked; exit
// 10 with the errno name (e.g. "EPERM") on stdout when the kernel refused
// it. A seccomp filter that kills shows as death by SIGSYS instead. Exit 2:
// bad usage; exit 3: the attack could not even be set up.
//
// Started with QEMU's arguments (see compromised_vmm()), it plays a
// compromised VMM instead; started with the Rust virtiofsd's (see
// compromised_virtiofsd()), a compromised virtiofsd.
//
// Deliberately plain C-style code with raw syscalls: what is measured is
// exactly the one syscall the subcommand names.
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <linux/bpf.h>
#include <linux/sched.h>
#include <sched.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace {

constexpr int kDenied = 10;
constexpr int kUsage = 2;
constexpr int kSetupFailed = 3;

int denied(const char* what) {
  int error = errno;
  std::printf("%s\n", strerrorname_np(error) ? strerrorname_np(error) : "E?");
  std::fprintf(stderr, "attacker: %s: %s\n", what, strerror(error));
  return kDenied;
}

int setup_failed(const char* what) {
  std::fprintf(stderr, "attacker: setup: %s: %s\n", what, strerror(errno));
  return kSetupFailed;
}

int ok(const std::string& what) {
  std::printf("ok %s\n", what.c_str());
  return 0;
}

void ready() {
  std::printf("ready\n");
  std::fflush(stdout);
}

sockaddr_un abstract_address(const char* name, socklen_t& length) {
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::size_t size = strnlen(name, sizeof address.sun_path - 1);
  memcpy(address.sun_path + 1, name, size);  // sun_path[0] == 0: abstract
  length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + size);
  return address;
}

// A raw clone with no stack switch: the child only calls _exit.
int raw_clone(unsigned long flags) {
  long pid = syscall(SYS_clone, flags | SIGCHLD, nullptr, nullptr, nullptr, 0);
  if (pid < 0) return denied("clone");
  if (pid == 0) syscall(SYS_exit, 0);
  waitpid(static_cast<pid_t>(pid), nullptr, 0);
  return ok("clone");
}

// Reads up to size - 1 bytes of `path` into `buffer`, NUL-terminated; false
// with errno set when it cannot be opened or read.
bool read_through(const std::string& path, char* buffer, std::size_t size) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  ssize_t n = fd >= 0 ? read(fd, buffer, size - 1) : -1;
  buffer[n > 0 ? n : 0] = '\0';
  if (fd >= 0) close(fd);
  return n >= 0;
}

// /bin/true copied to `path` (mode 0755); false with errno set.
bool copy_true_to(const std::string& path) {
  int program = open("/bin/true", O_RDONLY | O_CLOEXEC);
  int target = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0755);
  bool copied = program >= 0 && target >= 0;
  char buffer[65536];
  for (ssize_t n; copied && (n = read(program, buffer, sizeof buffer)) != 0;)
    copied = n > 0 && write(target, buffer, static_cast<size_t>(n)) == n;
  int error = errno;
  if (program >= 0) close(program);
  if (target >= 0) close(target);
  errno = error;
  return copied;
}

// The outcome of one attempt of compromised_vmm(), as a line of its own.
void report(const char* attack, bool worked, const std::string& detail = {}) {
  if (worked) {
    std::printf("%s: ok%s%s\n", attack, detail.empty() ? "" : " ", detail.c_str());
  } else {
    std::printf("%s: %s\n", attack, strerrorname_np(errno) ? strerrorname_np(errno) : "E?");
  }
  std::fflush(stdout);
}

// Started in the VMM's place (vmwarden's QEMU command line begins with
// -name): a compromised VMM under the VMM's confinement, attacking the VM's
// real virtiofsd beside it. Same uid, no capabilities: what stands in the
// way is the VMM's own Landlock domain. The sibling is the first process
// of the sandbox, after the warden (pid 1), that exists (kill 0: success
// or EPERM, not ESRCH); /proc cannot be listed under the VMM's rules.
// Reports on stdout (the warden logs it as "vmm fd 1: ...") and exits 0
// once the warden waits for its readiness.
int compromised_vmm(int argc, char** argv) {
  pid_t self = getpid();
  pid_t sibling = 0;
  for (pid_t pid = 2; pid < 64 && sibling == 0; ++pid) {
    if (pid != self && (syscall(SYS_tgkill, pid, pid, 0) == 0 || errno == EPERM)) sibling = pid;
  }
  if (sibling == 0) {
    std::printf("no sibling found\n");
    return kSetupFailed;
  }
  std::string proc = "/proc/" + std::to_string(sibling);
  std::string share;
  for (int i = 1; i + 1 < argc; ++i) {
    std::string option = argv[i + 1];
    std::size_t path = option.find(",path="), tag = option.find(",tag=");
    if (path != std::string::npos && option.ends_with(".sock")) {
      std::string socket = option.substr(path + 6);
      share = socket.substr(0, socket.rfind('/')) + "/mnt" + share;
    }
    if (tag != std::string::npos) share += "/" + option.substr(tag + 5);
  }
  std::printf("sibling: %d\n", sibling);
  char buffer[256];
  bool comm = read_through(proc + "/comm", buffer, sizeof buffer);
  report("sibling comm", comm, comm ? std::string(buffer, strcspn(buffer, "\n")) : "");
  // virtiofsd's mount namespace holds the share it serves, at
  // RUNTIME_DIR/NAME/mnt/TAG (the directory of the vhost-user socket named on
  // the command line), the VMM's none. Through /proc/PID/root the VMM would
  // read (and, with a read-write share, write) the share all the same: it
  // owns virtiofsd's user namespace (same uid, the parent namespace), so no
  // dumpable flag or capability check stops it.
  bool read_share = read_through(proc + "/root" + share + "/marker", buffer, sizeof buffer);
  report("proc-root", read_share, read_share ? std::string(buffer, strcspn(buffer, "\n")) : "");
  // kill(2) is not in the qemu profile (death by SIGSYS); tgkill, which
  // QEMU's abort() needs, is. Signal 0: the permission check alone.
  report("tgkill", syscall(SYS_tgkill, sibling, sibling, 0) == 0);
  // Gone only once the warden's readiness probe has connected to the QMP
  // socket (fd 4, listening; the connection stays pending, unanswered):
  // the warden is then in its readiness wait, which sees the VMM exit
  // before it is ready. Exiting sooner, it could be reaped first.
  pollfd control{4, POLLIN, 0};
  while (poll(&control, 1, -1) < 0 && errno == EINTR) {
  }
  return 0;
}

// The names of the entries of directory `path`, sorted, separated by
// spaces; false with errno set when it cannot be listed.
bool list_directory(const std::string& path, std::string& names) {
  DIR* dir = opendir(path.c_str());
  if (dir == nullptr) return false;
  std::vector<std::string> found;
  while (dirent* entry = readdir(dir)) {
    std::string name = entry->d_name;
    if (name != "." && name != "..") found.push_back(name);
  }
  closedir(dir);
  std::sort(found.begin(), found.end());
  names.clear();
  for (const std::string& name : found) names += (names.empty() ? "" : " ") + name;
  return true;
}

// A connect to the pathname unix socket `path`; false with errno set when
// refused.
bool connect_path(const std::string& path) {
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  // A path longer than sun_path (a deep scratch directory) is reached
  // through its directory, opened O_PATH: /proc/self/fd/N/NAME.
  int directory = -1;
  std::string reachable = path;
  if (path.size() >= sizeof address.sun_path) {
    std::size_t slash = path.rfind('/');
    directory = open(path.substr(0, slash).c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (directory < 0) return false;
    reachable = "/proc/self/fd/" + std::to_string(directory) + path.substr(slash);
    if (reachable.size() >= sizeof address.sun_path) {
      close(directory);
      errno = ENAMETOOLONG;
      return false;
    }
  }
  strcpy(address.sun_path, reachable.c_str());
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  bool connected = fd >= 0 && connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0;
  int error = errno;
  if (fd >= 0) close(fd);
  if (directory >= 0) close(directory);
  errno = error;
  return connected;
}

// The Rust virtiofsd's --help, for a vmwarden that runs it to learn the
// dialect (the binary holds this text, which is where it looks first).
constexpr const char* kVirtiofsdHelp =
    "Usage: virtiofsd --shared-dir <SHARED_DIR> --fd <FD> [OPTIONS]\n";

// Started in virtiofsd's place (vmwarden's Rust virtiofsd command line
// begins with --fd=3, the listening vhost-user socket): a compromised
// virtiofsd under virtiofsd's confinement (its own user namespace over the
// VM's uid, mount namespace, Landlock domain, vm-daemon seccomp profile),
// attacking the real QEMU beside it, which runs as the same uid.
//
// QEMU connects to the socket while it builds the machine, then, realizing
// the vhost-user-fs device, sends VHOST_USER_GET_FEATURES and waits for
// the answer, however long it takes: unanswered, it stays there, alive,
// its QMP monitor up. The attacks run in that state; the connection's
// peer credentials name QEMU's pid, which the attacks then try to reach.
// Closing the connection unanswered makes QEMU give up the device and exit
// (status 1); that waits for a file named release in the share, so that
// the test can look at the held QEMU from outside this confinement.
// Reports on stdout (the warden logs them as "virtiofsd-TAG fd 1: ..."),
// "done" once QEMU may be looked at, "end" last, then exit 0.
int compromised_virtiofsd(int argc, char** argv) {
  std::string shared_dir;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg.starts_with("--shared-dir=")) shared_dir = arg.substr(13);
  }
  // RUNTIME_DIR/NAME/mnt/TAG: the VM's runtime directory is two levels up.
  std::string runtime = shared_dir.substr(0, shared_dir.rfind('/'));
  runtime = runtime.substr(0, runtime.rfind('/'));
  int frontend = accept4(3, nullptr, nullptr, SOCK_CLOEXEC);
  if (frontend < 0) return setup_failed("accept");
  ucred peer{};
  socklen_t size = sizeof peer;
  if (getsockopt(frontend, SOL_SOCKET, SO_PEERCRED, &peer, &size) != 0) return setup_failed("SO_PEERCRED");
  // QEMU's first request (12 bytes of header, request 1: GET_FEATURES):
  // read, so that QEMU is known to be waiting for the answer.
  char request[12];
  if (recv(frontend, request, sizeof request, MSG_WAITALL) != sizeof request) return setup_failed("recv");
  pid_t qemu = peer.pid;
  std::string proc = "/proc/" + std::to_string(qemu);
  std::printf("qemu: pid %d, request %d\n", qemu, request[0]);
  char buffer[256];

  // Find QEMU in /proc, as one would without the peer's credentials.
  std::string names;
  bool listed = list_directory("/proc", names);
  bool found = listed && (" " + names + " ").find(" " + std::to_string(qemu) + " ") != std::string::npos;
  if (listed && !found) errno = ENOENT;
  report("proc-list", found, found ? "lists " + std::to_string(qemu) : "");
  bool comm = read_through(proc + "/comm", buffer, sizeof buffer);
  report("qemu comm", comm, comm ? std::string(buffer, strcspn(buffer, "\n")) : "");
  bool environ_read = read_through(proc + "/environ", buffer, sizeof buffer);
  report("environ", environ_read, environ_read ? std::string(buffer) : "");
  // /proc/PID/mem: the first mapping of /proc/PID/maps, read.
  int memory = open((proc + "/mem").c_str(), O_RDONLY | O_CLOEXEC);
  if (memory >= 0) {
    bool mapped = read_through(proc + "/maps", buffer, sizeof buffer);
    unsigned long long start = mapped ? std::strtoull(buffer, nullptr, 16) : 0;
    char bytes[4];
    ssize_t n = pread(memory, bytes, sizeof bytes, static_cast<off_t>(start));
    char detail[64];
    std::snprintf(detail, sizeof detail, "read %zd bytes at 0x%llx", n, start);
    report("mem", n == sizeof bytes, detail);
    close(memory);
  } else {
    report("mem", false);
  }
  // Its mount namespace, through /proc/PID/root: the runtime directory with
  // QEMU's QMP socket, which this one's namespace covers with an empty tmpfs.
  bool root_listed = list_directory(proc + "/root" + runtime, names);
  report("proc-root", root_listed, root_listed ? names : "");
  report("proc-root qmp", connect_path(proc + "/root" + runtime + "/control.sock"));
  bool runtime_listed = list_directory(runtime, names);
  report("runtime dir", runtime_listed, runtime_listed ? names : "");
  report("qmp", connect_path(runtime + "/control.sock"));
  // Signal 0: the permission check alone.
  report("kill", kill(qemu, 0) == 0);
  report("tgkill", syscall(SYS_tgkill, qemu, qemu, 0) == 0);
  int pidfd = static_cast<int>(syscall(SYS_pidfd_open, qemu, 0));
  report("pidfd_send_signal", pidfd >= 0 && syscall(SYS_pidfd_send_signal, pidfd, 0, nullptr, 0) == 0);
  if (pidfd >= 0) close(pidfd);
  // ptrace is in the vm-daemon deny list: tried in a child, so that a
  // seccomp kill takes the child, not the rest of the list. SEIZE does not
  // stop QEMU, and the child's exit detaches it.
  pid_t child = fork();
  if (child == 0) _exit(ptrace(PTRACE_SEIZE, qemu, nullptr, nullptr) == 0 ? 0 : errno);
  int status = 0;
  if (child < 0 || waitpid(child, &status, 0) != child) return setup_failed("fork and wait");
  if (WIFSIGNALED(status)) {
    const char* name = sigabbrev_np(WTERMSIG(status));
    std::printf("ptrace: killed by SIG%s\n", name ? name : "?");
    std::fflush(stdout);
  } else {
    errno = WEXITSTATUS(status);
    report("ptrace", WEXITSTATUS(status) == 0);
  }
  // Every abstract socket of the network namespace (QEMU's, the warden's),
  // as its /proc/net/unix lists them ('@' first), and a connect to each.
  FILE* unix_sockets = std::fopen("/proc/self/net/unix", "re");
  if (unix_sockets == nullptr) {
    report("abstract list", false);
  } else {
    int abstract = 0;
    char line[512];
    while (std::fgets(line, sizeof line, unix_sockets) != nullptr) {
      const char* at = strchr(line, '@');
      if (at == nullptr) continue;
      std::string name(at + 1, strcspn(at + 1, "\n"));
      socklen_t length = 0;
      sockaddr_un address = abstract_address(name.c_str(), length);
      int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
      bool connected = fd >= 0 && connect(fd, reinterpret_cast<sockaddr*>(&address), length) == 0;
      if (fd >= 0) close(fd);
      report(("abstract @" + name).c_str(), connected);
      ++abstract;
    }
    std::fclose(unix_sockets);
    std::printf("abstract sockets: %d\n", abstract);
  }
  std::printf("done\n");
  std::fflush(stdout);
  // QEMU is held until the test has looked at it from outside this
  // confinement: until the share holds a file named release (at most 20 s).
  std::string release = shared_dir + "/release";
  for (int i = 0; i < 400 && access(release.c_str(), F_OK) != 0; ++i) usleep(50'000);
  // Last, as it ends QEMU where it works: a signal through SIGIO, which
  // needs no kill(2). A socket of a pair is given QEMU as its owner and
  // SIGKILL as the signal its I/O sends; a byte written to the other end
  // sends it. Nothing reports a refusal (the kernel drops the signal): QEMU
  // killed shows as its end of the vhost-user connection closing.
  int pair[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0) return setup_failed("socketpair");
  if (fcntl(pair[0], F_SETOWN, qemu) != 0) {
    report("sigio", false);
  } else {
    if (fcntl(pair[0], F_SETSIG, SIGKILL) != 0 || fcntl(pair[0], F_SETFL, O_ASYNC | O_NONBLOCK) != 0)
      return setup_failed("fcntl");
    if (write(pair[1], "x", 1) != 1) return setup_failed("write");
    pollfd hangup{frontend, POLLIN, 0};
    bool closed = poll(&hangup, 1, 1000) == 1 && recv(frontend, buffer, sizeof buffer, MSG_DONTWAIT) <= 0;
    std::printf("sigio: %s\n", closed ? "ok QEMU killed" : "QEMU alive a second later");
  }
  std::printf("end\n");
  std::fflush(stdout);
  close(frontend);
  return 0;
}
}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: attacker COMMAND ARGS...\n");
    return kUsage;
  }
  std::string command = argv[1];
  if (command == "-name") return compromised_vmm(argc, argv);
  if (command.starts_with("--fd=")) return compromised_virtiofsd(argc, argv);
  if (command == "--help") {
    std::printf("%s", kVirtiofsdHelp);
    return 0;
  }
  auto arg = [&](int i) -> const char* {
    if (i + 1 >= argc) {
      std::fprintf(stderr, "attacker %s: missing argument %d\n", command.c_str(), i);
      std::exit(kUsage);
    }
    return argv[i + 1];
  };

  if (command == "signal") {  // signal PID [SIGNAL]
    pid_t pid = atoi(arg(1));
    // kill(0) and kill(-N) reach process groups, kill(-1) every process the
    // caller may signal: a test that lost its target's pid must never turn
    // into one of those.
    if (pid <= 0) {
      std::fprintf(stderr, "attacker signal: refusing pid %d (only a single process, pid > 0)\n", pid);
      std::exit(kUsage);
    }
    int signal = argc > 3 ? atoi(argv[3]) : SIGKILL;
    if (kill(pid, signal) != 0) return denied("kill");
    return ok("signalled");
  }
  if (command == "bind-abstract" || command == "connect-abstract") {
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return setup_failed("socket");
    socklen_t length = 0;
    sockaddr_un address = abstract_address(arg(1), length);
    if (command == "connect-abstract") {
      if (connect(fd, reinterpret_cast<sockaddr*>(&address), length) != 0) return denied("connect");
      return ok("connected");
    }
    if (bind(fd, reinterpret_cast<sockaddr*>(&address), length) != 0) return setup_failed("bind");
    if (listen(fd, 8) != 0) return setup_failed("listen");
    ready();
    for (;;) pause();
  }
  if (command == "connect-path") {  // connect-path PATH: a pathname unix socket
    if (!connect_path(arg(1))) return errno == ENAMETOOLONG ? setup_failed("socket path too long") : denied("connect");
    return ok("connected");
  }
  if (command == "sleep") {
    ready();
    for (;;) pause();
  }
  if (command == "ptrace") {
    pid_t pid = atoi(arg(1));
    // SEIZE does not stop the target; exiting detaches it.
    if (ptrace(PTRACE_SEIZE, pid, nullptr, nullptr) != 0) return denied("ptrace(PTRACE_SEIZE)");
    return ok("attached");
  }
  if (command == "read") {
    int fd = open(arg(1), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return denied("open");
    char byte;
    if (read(fd, &byte, 1) < 0) return denied("read");
    return ok("read");
  }
  if (command == "write") {
    int fd = open(arg(1), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) return denied("open");
    if (write(fd, "x", 1) != 1) return denied("write");
    return ok("written");
  }
  // Opening for writing only, nothing written: for kernel interfaces where
  // a write that got through would act (the SysRq trigger, a host-wide
  // sysctl).
  if (command == "open-write") {
    int fd = open(arg(1), O_WRONLY | O_CLOEXEC);
    if (fd < 0) return denied("open");
    close(fd);
    return ok("opened for writing");
  }
  if (command == "truncate") {
    if (truncate(arg(1), 0) != 0) return denied("truncate");
    return ok("truncated");
  }
  // What Landlock (up to ABI 7) does not cover: a file's metadata.
  if (command == "chmod") {  // chmod PATH: set-user-ID and writable by all
    if (chmod(arg(1), 04777) != 0) return denied("chmod");
    return ok("chmodded");
  }
  if (command == "chown") {  // chown PATH: to the caller
    if (lchown(arg(1), getuid(), getgid()) != 0) return denied("lchown");
    return ok("chowned");
  }
  if (command == "xattr") {  // xattr PATH: a user.* attribute
    if (setxattr(arg(1), "user.attacker", "x", 1, 0) != 0) return denied("setxattr");
    return ok("xattr set");
  }
  if (command == "acl") {  // acl PATH: an access ACL u::rw g::r o::rw
    const unsigned char acl[] = {2, 0, 0, 0, 1, 0, 6, 0, 0xff, 0xff, 0xff, 0xff, 4, 0, 4, 0,
                                 0xff, 0xff, 0xff, 0xff, 0x20, 0, 6, 0, 0xff, 0xff, 0xff, 0xff};
    if (setxattr(arg(1), "system.posix_acl_access", acl, sizeof acl, 0) != 0) return denied("setxattr ACL");
    return ok("acl set");
  }
  if (command == "utimes") {  // utimes PATH: back to 1970
    struct timeval times[2] = {{1, 0}, {1, 0}};
    if (utimes(arg(1), times) != 0) return denied("utimes");
    return ok("times set");
  }
  if (command == "memfd-exec") {  // memfd-exec [exec]: /bin/true copied into a memfd (made MFD_EXEC), executed
    unsigned flags = argc > 2 && std::string(arg(1)) == "exec" ? 0x10U /* MFD_EXEC */ : 0U;
    int memory = memfd_create("attacker", flags);
    if (memory < 0) return denied("memfd_create");
    int program = open("/bin/true", O_RDONLY | O_CLOEXEC);
    if (program < 0) return setup_failed("open /bin/true");
    char buffer[65536];
    for (ssize_t n; (n = read(program, buffer, sizeof buffer)) > 0;)
      if (write(memory, buffer, static_cast<size_t>(n)) != n) return setup_failed("write");
    pid_t child = fork();
    if (child == 0) {
      char* argv[] = {const_cast<char*>("true"), nullptr};
      syscall(SYS_execveat, memory, "", argv, environ, AT_EMPTY_PATH);
      _exit(errno);
    }
    int status = 0;
    if (waitpid(child, &status, 0) != child || !WIFEXITED(status)) return setup_failed("waitpid");
    if (WEXITSTATUS(status) != 0) {
      errno = WEXITSTATUS(status);
      return denied("execveat");
    }
    return ok("executed");
  }
  if (command == "loader-exec") {  // loader-exec DIR: /bin/true copied to DIR/prog, run by the dynamic loader
    std::string copy = std::string(arg(1)) + "/prog";
    if (!copy_true_to(copy)) return setup_failed("copy /bin/true to DIR/prog");
    pid_t child = fork();
    if (child == 0) {
      int null = open("/dev/null", O_WRONLY);
      dup2(null, 2);  // the loader's own complaint
      execl("/lib64/ld-linux-x86-64.so.2", "ld.so", copy.c_str(), nullptr);
      _exit(126);
    }
    int status = 0;
    if (waitpid(child, &status, 0) != child || !WIFEXITED(status)) return setup_failed("waitpid");
    if (WEXITSTATUS(status) == 126) return setup_failed("exec the loader");
    if (WEXITSTATUS(status) != 0) {
      errno = EACCES;  // the loader could not map it
      return denied("map DIR/prog executable");
    }
    return ok("executed");
  }
  if (command == "exec-copy") {  // exec-copy DIR: /bin/true copied to DIR/prog (mode 0755) and executed
    std::string copy = std::string(arg(1)) + "/prog";
    if (!copy_true_to(copy)) return setup_failed("copy /bin/true to DIR/prog");
    pid_t child = fork();
    if (child == 0) {
      execl(copy.c_str(), "prog", nullptr);
      _exit(errno);
    }
    int status = 0;
    if (waitpid(child, &status, 0) != child || !WIFEXITED(status)) return setup_failed("waitpid");
    if (WEXITSTATUS(status) != 0) {
      errno = WEXITSTATUS(status);
      return denied("execve DIR/prog");
    }
    return ok("executed");
  }
  if (command == "mknod-char") {  // mknod-char PATH MAJOR MINOR (0 0: an overlayfs whiteout, no CAP_MKNOD needed)
    dev_t device = makedev(static_cast<unsigned>(std::atoi(arg(2))), static_cast<unsigned>(std::atoi(arg(3))));
    if (mknod(arg(1), S_IFCHR | 0666, device) != 0) return denied("mknod");
    return ok("made a character device");
  }
  if (command == "bpf") {  // bpf: BPF_MAP_CREATE of a one-entry array
    union bpf_attr attr {};
    attr.map_type = BPF_MAP_TYPE_ARRAY;
    attr.key_size = 4;
    attr.value_size = 4;
    attr.max_entries = 1;
    long fd = syscall(SYS_bpf, BPF_MAP_CREATE, &attr, sizeof attr);
    if (fd < 0) return denied("bpf(BPF_MAP_CREATE)");
    close(static_cast<int>(fd));
    return ok("bpf map created");
  }
  if (command == "mount") {  // mount TARGET
    if (mount("vmwarden-attack", arg(1), "tmpfs", 0, "size=16k") != 0) return denied("mount");
    return ok("mounted");
  }
  if (command == "unshare-user") {
    if (unshare(CLONE_NEWUSER) != 0) return denied("unshare(CLONE_NEWUSER)");
    return ok("unshared");
  }
  if (command == "clone-newuser") return raw_clone(CLONE_NEWUSER);
  if (command == "securebits") {  // securebits [FLIP]: prints them; first, with FLIP, flips those bits
    if (argc > 2) {
      unsigned long flip = std::strtoul(arg(1), nullptr, 0);
      long bits = prctl(PR_GET_SECUREBITS, 0, 0, 0, 0);
      if (bits < 0) return setup_failed("prctl(PR_GET_SECUREBITS)");
      if (prctl(PR_SET_SECUREBITS, static_cast<unsigned long>(bits) ^ flip, 0, 0, 0) != 0)
        return denied("prctl(PR_SET_SECUREBITS)");
    }
    long bits = prctl(PR_GET_SECUREBITS, 0, 0, 0, 0);
    if (bits < 0) return denied("prctl(PR_GET_SECUREBITS)");
    char text[32];
    std::snprintf(text, sizeof text, "securebits 0x%lx", static_cast<unsigned long>(bits));
    return ok(text);
  }
  if (command == "clone3") {
    clone_args args{};
    args.exit_signal = SIGCHLD;
    long pid = syscall(SYS_clone3, &args, sizeof args);
    if (pid < 0) return denied("clone3");
    if (pid == 0) syscall(SYS_exit, 0);
    waitpid(static_cast<pid_t>(pid), nullptr, 0);
    return ok("clone3");
  }
  if (command == "setns") {  // setns /proc/PID/ns/KIND
    int fd = open(arg(1), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return denied("open");
    if (setns(fd, 0) != 0) return denied("setns");
    return ok("joined");
  }
  if (command == "load-module") {
    // Garbage, not a module: a kernel that lets us try answers ENOEXEC or
    // EINVAL (the loader parsed it); EPERM means the capability check
    // refused; ENOSYS means this kernel has no module support at all.
    static const char garbage[] = "not an ELF module";
    if (syscall(SYS_init_module, garbage, sizeof garbage, "") != 0) {
      if (errno == ENOEXEC || errno == EINVAL) return ok(std::string("reached the loader: ") + strerrorname_np(errno));
      return denied("init_module");
    }
    return ok("loaded");
  }
  if (command == "setuid-exec") {
    execl(arg(1), arg(1), nullptr);
    return denied("execve");
  }
  if (command == "proc-read") {  // proc-read PID [status|environ|...]
    std::string path = std::string("/proc/") + arg(1) + "/" + (argc > 3 ? argv[3] : "status");
    int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return denied("open");
    char buffer[64];
    if (read(fd, buffer, sizeof buffer) < 0) return denied("read");
    return ok("read " + path);
  }
  if (command == "tcp-connect") {  // tcp-connect ADDRESS PORT
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return setup_failed("socket");
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(static_cast<uint16_t>(atoi(arg(2))));
    if (inet_pton(AF_INET, arg(1), &address.sin_addr) != 1) return kUsage;
    if (connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) return denied("connect");
    return ok("connected");
  }
  if (command == "i386-syscall") {
    // getpid through the 32-bit entry point (int 0x80, i386 number 20).
    long result = 20;
    asm volatile("int $0x80" : "+a"(result) : : "memory");
    if (result < 0) {
      errno = static_cast<int>(-result);
      return denied("int 0x80");
    }
    return ok("i386 getpid");
  }
  if (command == "personality") {  // personality VALUE: set it, then read it back
    unsigned long value = std::strtoul(arg(1), nullptr, 0);
    long old = syscall(SYS_personality, value);
    if (old < 0) return denied("personality");
    long now = syscall(SYS_personality, 0xffffffffUL);
    char text[64];
    std::snprintf(text, sizeof text, "persona 0x%lx", static_cast<unsigned long>(now));
    return ok(text);
  }
  if (command == "prlimit") {  // prlimit PID: an RLIMIT_CPU of 1 s, which kills a busy process
    rlimit one_second{1, 1};
    if (syscall(SYS_prlimit64, atoi(arg(1)), RLIMIT_CPU, &one_second, nullptr) != 0) return denied("prlimit64");
    return ok("limited");
  }
  if (command == "setpriority") {  // setpriority process|user WHO: the lowest priority
    int which = std::string(arg(1)) == "user" ? PRIO_USER : PRIO_PROCESS;
    if (syscall(SYS_setpriority, which, atoi(arg(2)), 19) != 0) return denied("setpriority");
    return ok("reniced");
  }
  if (command == "setaffinity") {  // setaffinity PID: pinned to CPU 0
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(0, &one);
    if (syscall(SYS_sched_setaffinity, atoi(arg(1)), sizeof one, &one) != 0) return denied("sched_setaffinity");
    return ok("pinned");
  }
  if (command == "ioctl") {  // ioctl REQUEST: on stdin, with a byte to push, as TIOCSTI takes
    unsigned long long request = std::strtoull(arg(1), nullptr, 0);
    char byte = 'x';
    if (syscall(SYS_ioctl, 0, request, &byte) < 0) return denied("ioctl");
    return ok("ioctl done");
  }
  if (command == "socket" || command == "socketpair") {  // socket[pair] FAMILY: stream, else datagram (any upper bits)
    unsigned long long family = std::strtoull(arg(1), nullptr, 0);
    int pair[2];
    auto make = [&](int type) {
      return command == "socket" ? syscall(SYS_socket, family, type | SOCK_CLOEXEC, 0)
                                 : syscall(SYS_socketpair, family, type | SOCK_CLOEXEC, 0, pair);
    };
    long result = make(SOCK_STREAM);
    if (result < 0 && errno == ESOCKTNOSUPPORT) result = make(SOCK_DGRAM);
    if (result < 0) return denied(command.c_str());
    return ok(command);
  }
  if (command == "x32-syscall") {
    long result = syscall(0x40000000 | SYS_getpid);
    if (result < 0) return denied("x32 getpid");
    return ok("x32 getpid");
  }
  std::fprintf(stderr, "attacker: unknown command %s\n", command.c_str());
  return kUsage;
}
