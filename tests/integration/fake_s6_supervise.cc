// Stands in for s6-supervise in tests, doing what matters to vmwarden:
//   fake_s6_supervise [--lock-elsewhere] SERVICEDIR PROGRAM ARGS...
// creates SERVICEDIR/supervise/lock, holds an fcntl write lock on it (as
// s6-supervise does), then forks, and the child does setsid + chdir
// SERVICEDIR + exec PROGRAM, like s6-supervise starting `run` that execs
// straight into PROGRAM. Waits for the child and exits with its status.
//
// --lock-elsewhere: the lock is held by a separate helper process instead,
// so PROGRAM's parent is not the lock holder (a run script that forked).

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>

namespace {

[[noreturn]] void die(const char* what) {
  std::fprintf(stderr, "fake_s6_supervise: %s: %s\n", what, std::strerror(errno));
  _exit(111);
}

void take_lock(int fd) {
  struct flock lock {};
  lock.l_type = F_WRLCK;
  lock.l_whence = SEEK_SET;
  if (fcntl(fd, F_SETLK, &lock) < 0) die("fcntl F_SETLK");
}

}  // namespace

int main(int argc, char** argv) {
  // Dies with the test that started it.
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  int arg = 1;
  bool lock_elsewhere = false;
  if (arg < argc && std::strcmp(argv[arg], "--lock-elsewhere") == 0) {
    lock_elsewhere = true;
    ++arg;
  }
  if (argc - arg < 2) {
    std::fprintf(stderr, "usage: fake_s6_supervise [--lock-elsewhere] SERVICEDIR PROGRAM ARGS...\n");
    return 100;
  }
  std::string dir = argv[arg];
  std::string supervise = dir + "/supervise";
  if (mkdir(supervise.c_str(), 0700) < 0 && errno != EEXIST) die("mkdir supervise");
  int lock_fd = open((supervise + "/lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (lock_fd < 0) die("open supervise/lock");

  if (lock_elsewhere) {
    int ready[2];
    if (pipe2(ready, O_CLOEXEC) < 0) die("pipe2");
    pid_t holder = fork();
    if (holder < 0) die("fork");
    if (holder == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      take_lock(lock_fd);
      if (write(ready[1], "x", 1) != 1) die("write");
      while (true) pause();
    }
    char c;
    if (read(ready[0], &c, 1) != 1) die("lock holder");
  } else {
    take_lock(lock_fd);
  }

  pid_t child = fork();
  if (child < 0) die("fork");
  if (child == 0) {
    setsid();
    if (chdir(dir.c_str()) < 0) die("chdir");
    execv(argv[arg + 1], argv + arg + 1);
    die("execv");
  }
  int status = 0;
  while (waitpid(child, &status, 0) < 0) {
    if (errno != EINTR) die("waitpid");
  }
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return WEXITSTATUS(status);
}
