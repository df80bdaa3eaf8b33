// The warden, PID 1 of the sandbox. It mounts the sandbox's /proc, starts
// the services stage by stage, reaps every process of the namespace (orphans
// of double forks included: they are reparented to it) and runs the
// shutdown sequence:
//   1. ask the main service to stop (its graceful_stop, else SIGTERM);
//      once it is gone, SIGTERM whatever else is left;
//   2. wait up to shutdown_timeout for the namespace to empty;
//   3. SIGKILL the rest;
//   4. exit, which makes the kernel tear the namespaces down.
// Triggers: SIGTERM/SIGINT/SIGHUP (forwarded by the outer), the exit of any
// service, or the death of the outer. In the last case nobody is left to
// report a status or to clean up, and s6 will start a new instance that
// needs the runtime dir: the sequence is bounded by kOrphanGrace instead of
// the full timeout, and the warden removes the runtime dir itself.
// Its loop also moves the captured output of services (a VMM's guest
// console) into their files, bounded (supervisor/capture.h).

#include "supervisor/warden.h"

#include <poll.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/error.h"
#include "common/exit_status.h"
#include "common/log.h"
#include "common/unique_fd.h"
#include "common/unix_socket.h"
#include "supervisor/capture.h"
#include "supervisor/memory.h"
#include "supervisor/mounts.h"
#include "supervisor/namespaces.h"
#include "supervisor/process_title.h"
#include "supervisor/runtime_dir_watch.h"
#include "supervisor/service.h"

namespace vmwarden::supervisor {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// How long the services get to stop after the outer died: short enough that
// the whole tree is gone well within a second.
constexpr milliseconds kOrphanGrace{200};

// How long a clean exit of a non-main service waits for the main service
// to exit too before it counts as a failure.
constexpr milliseconds kSettle{500};
// How long the main service's own forced stop may take once the shutdown
// timeout has passed, before SIGKILL.
constexpr milliseconds kForceStopGrace{1'000};

long long ms_between(Clock::time_point from, Clock::time_point to) {
  return std::chrono::duration_cast<milliseconds>(to - from).count();
}

std::string seconds(milliseconds duration) { return fmt::format("{:.1f} s", duration.count() / 1000.0); }

void noop_handler(int) {}

// Whether the child `pid` has exited, without reaping it (the event loop
// does, and logs its status) and without a descriptor, which a full
// descriptor table could refuse at the start of a shutdown.
bool exited_unreaped(pid_t pid) {
  siginfo_t info{};
  return ::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT) == 0 && info.si_pid == pid;
}

bool readable_now(int fd) {
  pollfd entry{fd, POLLIN, 0};
  return ::poll(&entry, 1, 0) > 0 && (entry.revents & (POLLIN | POLLHUP)) != 0;
}

class Warden {
 public:
  Warden(const SandboxSpec& spec, int outer_pidfd, RuntimeDir& runtime_dir)
      : spec_(spec), outer_pidfd_(outer_pidfd), runtime_dir_(runtime_dir) {}

  // Everything up to the exit status; throws only on setup failures (before
  // any service was started).
  int run();

  bool outer_gone() const { return outer_gone_; }

 private:
  std::vector<FdMapping> warden_made_fds(const ServiceSpec& service);
  void close_capture_write_ends(int stage);
  void start_services();
  bool start_stage(int stage);
  bool startup_may_go_on();
  void notify_ready();
  void event_loop();
  void read_signals();
  void reap();
  bool main_exits_within(milliseconds timeout);
  void begin_shutdown(const std::string& reason, milliseconds grace);
  void stop_remaining();
  void on_timeout();
  void repeat_graceful_stop();
  Clock::time_point graceful_stop_deadline() const;
  void on_outer_death();
  void check_runtime_dir();
  std::string main_name() const;
  int final_status();

  const SandboxSpec& spec_;
  int outer_pidfd_;
  RuntimeDir& runtime_dir_;
  std::vector<UniqueFd> sockets_;  // every service's listening sockets
  struct StageCapture {
    int stage;  // its service's
    Capture capture;
  };
  std::vector<StageCapture> captures_;
  UniqueFd signal_fd_;
  UniqueFd repeat_fd_;  // graceful_stop_repeat of the main service
  UniqueFd timer_fd_;
  std::optional<RuntimeDirWatch> runtime_dir_watch_;  // until it trips
  // The memory only the start needed is released once the loop has been
  // quiet this long (the runtime directory's periodic count aside).
  Clock::time_point quiet_until_ = Clock::now() + kIdleBeforeTrim;
  std::vector<pollfd> poll_fds_;
  std::vector<std::unique_ptr<Service>> services_;
  Service* main_ = nullptr;

  bool outer_gone_ = false;
  bool no_children_ = false;
  bool rest_stopped_ = false;
  bool killed_after_timeout_ = false;
  bool main_killed_after_timeout_ = false;
  std::optional<int> forced_status_;   // a failure to start overrides the main's status
  bool runtime_dir_overrun_ = false;   // killed for the entries made in the runtime directory
  std::optional<int> stop_signal_;     // the first stop request (SIGTERM, SIGINT, SIGHUP)
  std::optional<Clock::time_point> shutdown_started_;
  Clock::time_point deadline_;
  milliseconds grace_{0};
  // A shutdown someone asked for is logged step by step; a command that
  // simply exited on its own with nothing left behind is not worth a line.
  bool verbose_shutdown_ = false;
  bool trimmed_ = false;
};

int Warden::run() {
  sigset_t signals = warden_signals();
  // PID 1 drops signals it has no handler for, even a parent-death signal.
  struct sigaction action {};
  action.sa_handler = noop_handler;
  sigemptyset(&action.sa_mask);
  for (int sig : {SIGTERM, SIGINT, SIGHUP, SIGCHLD, kOuterDeathSignal}) {
    check(::sigaction(sig, &action, nullptr), "sigaction");
  }
  check(::sigprocmask(SIG_BLOCK, &signals, nullptr), "sigprocmask");
  signal_fd_ = UniqueFd(check(::signalfd(-1, &signals, SFD_CLOEXEC | SFD_NONBLOCK), "signalfd"));
  check(::prctl(PR_SET_PDEATHSIG, kOuterDeathSignal, 0, 0, 0), "prctl", "PR_SET_PDEATHSIG");
  // The outer may have died before the prctl, when no signal will come.
  if (readable_now(outer_pidfd_)) {
    outer_gone_ = true;
    throw std::runtime_error("the outer process exited before the warden started");
  }

  // Everything below relies on a PID namespace of its own: the services die
  // with the warden, its kill(-1) reaches nothing outside, and the
  // vm.memfd_noexec it raises (for good) is the namespace's, not the host's.
  if (::getpid() != 1)
    throw std::runtime_error(
        fmt::format("the warden is PID {} rather than PID 1 of a PID namespace of its own", ::getpid()));

  set_process_title("vmwarden-warden", fmt::format("vmwarden[{}/warden]", spec_.name));
  check(::chdir("/"), "chdir", "/");
  setup_warden_mounts(spec_);
  if (!forbid_executable_memfds())
    log::debug("this kernel has no vm.memfd_noexec (Linux 6.3): a service may execute a memfd");
  // The one service's mounts, here (see services_have_own_mount_namespaces).
  if (!services_have_own_mount_namespaces(spec_) && !spec_.services.empty())
    setup_service_mounts(service_mounts(spec_, spec_.services.front()));
  runtime_dir_watch_.emplace(runtime_dir_.fd());

  start_services();
  event_loop();
  for (StageCapture& entry : captures_) entry.capture.drain();
  int status = final_status();
  if (outer_gone_) {
    unmount_runtime_dir_mounts(spec_);
    runtime_dir_.remove();
  }
  return status;
}

// The service's listening sockets and capture pipes, as it will see them.
// The sockets are bound here rather than in the outer so that they belong
// to the sandbox's network namespace, where /proc/PID/net/unix (readiness
// probes) shows them. Before any service starts: a client started in a
// later stage can connect at once.
std::vector<FdMapping> Warden::warden_made_fds(const ServiceSpec& service) {
  std::vector<FdMapping> fds;
  for (const ListenSocket& socket : service.listen_sockets) {
    sockets_.push_back(listen_unix_socket(socket.path, service.confinement.uid, service.confinement.gid));
    fds.push_back({sockets_.back().get(), socket.child_fd});
  }
  for (const OutputCapture& capture : service.captures) {
    captures_.push_back({service.stage, Capture(capture, service.name, runtime_dir_.fd(), service.confinement.uid,
                                                service.confinement.gid)});
    fds.push_back({captures_.back().capture.write_end(), capture.child_fd});
  }
  return fds;
}

// Once a stage's services have their copies (or failed to start): the
// warden's own would keep their pipes from ever ending.
void Warden::close_capture_write_ends(int stage) {
  for (StageCapture& entry : captures_)
    if (entry.stage == stage) entry.capture.close_write_end();
}

void Warden::start_services() {
  // The one service of a sandbox of one has its mounts made already, here.
  const bool own_mounts = services_have_own_mount_namespaces(spec_);
  for (const ServiceSpec& spec : spec_.services) {
    services_.push_back(std::make_unique<Service>(spec, warden_made_fds(spec),
                                                  own_mounts ? service_mounts(spec_, spec)
                                                             : ServiceMounts{.own_namespace = false}));
    if (spec.main) main_ = services_.back().get();
    // A readiness wait can take seconds: what a service makes in the
    // runtime directory meanwhile (before its control socket, say) is
    // counted as the loop would.
    services_.back()->set_between_probes([this] {
      for (StageCapture& entry : captures_)
        if (entry.capture.read_end() >= 0 && readable_now(entry.capture.read_end())) entry.capture.pump();
      if (runtime_dir_watch_ && readable_now(runtime_dir_watch_->fd())) check_runtime_dir();
    });
  }
  std::vector<int> stages;
  for (const ServiceSpec& spec : spec_.services) stages.push_back(spec.stage);
  std::sort(stages.begin(), stages.end());
  stages.erase(std::unique(stages.begin(), stages.end()), stages.end());
  for (int stage : stages) {
    if (!startup_may_go_on() || !start_stage(stage)) return;
  }
  // Every stage started and was ready: that is what readiness says, even if
  // the command has exited since.
  notify_ready();
}

// Start-up runs before the event loop, and a stage's readiness wait can take
// seconds: between its steps, take in what the loop would (a stop signal,
// the outer's death, a service's exit), so that no later stage, the VMM
// above all, is started for nobody.
bool Warden::startup_may_go_on() {
  if (readable_now(signal_fd_.get())) read_signals();
  if (!outer_gone_ && readable_now(outer_pidfd_)) on_outer_death();
  if (runtime_dir_watch_ && readable_now(runtime_dir_watch_->fd())) check_runtime_dir();
  return !shutdown_started_;
}

bool Warden::start_stage(int stage) {
  std::vector<Service*> started;
  for (auto& service : services_)
    if (service->spec().stage == stage) started.push_back(service.get());
  // Every service of the stage but the last is forked and confines itself
  // on its own; the last shares the warden's memory (the cheaper start),
  // which suspends the warden until it has exec'd. Then each one's exec is
  // awaited, in order.
  std::size_t launched = 0;
  bool transient = false;
  try {
    for (; launched < started.size(); ++launched)
      started[launched]->launch(/*share_memory=*/launched + 1 == started.size());
  } catch (const SystemError& e) {
    // Out of processes, memory or descriptors: another try may well work,
    // so s6 should restart rather than give up.
    transient = e.code() == EAGAIN || e.code() == ENOMEM || e.code() == EMFILE || e.code() == ENFILE;
    log::error("{}", e.what());
  } catch (const std::exception& e) {
    log::error("{}", e.what());
  }
  bool failed = launched < started.size();
  for (std::size_t i = 0; i < launched; ++i) {
    try {
      started[i]->await_exec();
      log::debug("started {} (pid {})", started[i]->spec().name, started[i]->pid());
    } catch (const std::exception& e) {
      log::error("{}", e.what());
      failed = true;
    }
  }
  close_capture_write_ends(stage);
  if (failed) {
    forced_status_ = transient ? exit_status::kFailure : exit_status::kPermanent;
    // With no child at all, no SIGCHLD will ever say so: find out now.
    reap();
    begin_shutdown("a service failed to start", spec_.shutdown_timeout);
    return false;
  }
  Clock::time_point deadline = Clock::now() + spec_.ready_timeout;
  for (Service* service : started) {
    if (!service->spec().wait_ready) continue;
    if (!startup_may_go_on()) return false;
    try {
      service->spec().wait_ready(*service, deadline);
      service->mark_ready();
      log::debug("{} is ready", service->spec().name);
    } catch (const std::exception& e) {
      // The wait gave up for a stop (still pending: the signalfd has not
      // read it): take it in, which begins the shutdown; the service is not
      // at fault. A service that failed on its own is, whatever else is
      // pending.
      if (service->stop_requested()) {
        log::debug("{} stopped waiting for readiness: {}", service->spec().name, e.what());
        startup_may_go_on();
        return false;
      }
      // Killed with the rest for what it made in the runtime directory:
      // said already, and the status is that failure's.
      if (runtime_dir_overrun_) return false;
      log::error("{} did not become ready: {}", service->spec().name, e.what());
      forced_status_ = exit_status::kPermanent;
      begin_shutdown("a service did not become ready", spec_.shutdown_timeout);
      return false;
    }
  }
  return true;
}

void Warden::notify_ready() {
  if (!spec_.notify_fd) return;
  // s6 reads up to the newline; closing tells any other reader the same.
  ssize_t n;
  do {
    n = ::write(*spec_.notify_fd, "\n", 1);
  } while (n < 0 && errno == EINTR);
  if (n < 0) log::warning("cannot write the readiness notification to fd {}: {}", *spec_.notify_fd, strerror(errno));
  ::close(*spec_.notify_fd);
}

void Warden::event_loop() {
  while (!(no_children_ && (shutdown_started_ || !main_ || !main_->running()))) {
    // Refilled, not reallocated: the periodic count of the runtime directory
    // wakes the loop for good, and an allocation each time brings back the
    // allocator's pages the trim released (about 250 KiB of Pss).
    std::vector<pollfd>& fds = poll_fds_;
    fds.clear();
    fds.push_back({signal_fd_.get(), POLLIN, 0});
    if (!outer_gone_) fds.push_back({outer_pidfd_, POLLIN, 0});
    if (timer_fd_) fds.push_back({timer_fd_.get(), POLLIN, 0});
    if (repeat_fd_) fds.push_back({repeat_fd_.get(), POLLIN, 0});
    if (runtime_dir_watch_) fds.push_back({runtime_dir_watch_->fd(), POLLIN, 0});
    for (const StageCapture& entry : captures_)
      if (entry.capture.read_end() >= 0) fds.push_back({entry.capture.read_end(), POLLIN, 0});
    int timeout = trimmed_ ? -1 : static_cast<int>(std::max(0LL, ms_between(Clock::now(), quiet_until_)));
    int ready = ::poll(fds.data(), fds.size(), timeout);
    if (ready < 0) {
      if (errno == EINTR) continue;
      throw_errno("poll");
    }
    bool quiet = true;
    for (const pollfd& entry : fds) {
      if (entry.revents == 0) continue;
      if (runtime_dir_watch_ && entry.fd == runtime_dir_watch_->fd()) {
        check_runtime_dir();
        continue;
      }
      quiet = false;
      if (entry.fd == signal_fd_.get()) {
        read_signals();
      } else if (entry.fd == outer_pidfd_) {
        on_outer_death();
      } else if (timer_fd_ && entry.fd == timer_fd_.get()) {
        uint64_t expirations;
        if (::read(timer_fd_.get(), &expirations, sizeof expirations) > 0) on_timeout();
      } else if (repeat_fd_ && entry.fd == repeat_fd_.get()) {
        uint64_t expirations;
        if (::read(repeat_fd_.get(), &expirations, sizeof expirations) > 0) repeat_graceful_stop();
      } else {
        for (StageCapture& captured : captures_)
          if (captured.capture.read_end() == entry.fd) captured.capture.pump();
      }
    }
    if (!quiet) {
      quiet_until_ = Clock::now() + kIdleBeforeTrim;
    } else if (!trimmed_ && Clock::now() >= quiet_until_) {
      release_startup_memory();
      trimmed_ = true;
    }
  }
  if (shutdown_started_ && verbose_shutdown_) {
    log::info("all processes stopped {} ms after the shutdown began", ms_between(*shutdown_started_, Clock::now()));
  }
}

void Warden::read_signals() {
  signalfd_siginfo info;
  while (::read(signal_fd_.get(), &info, sizeof info) == sizeof info) {
    int sig = static_cast<int>(info.ssi_signo);
    if (sig == SIGCHLD) {
      reap();
    } else if (sig == kOuterDeathSignal) {
      on_outer_death();
    } else {
      verbose_shutdown_ = true;
      if (!stop_signal_) stop_signal_ = sig;
      begin_shutdown(fmt::format("SIG{} received", ::sigabbrev_np(sig)), spec_.shutdown_timeout);
    }
  }
  // SIGCHLDs coalesce; one more pass catches children that exited while the
  // queue was being read.
  reap();
}

void Warden::reap() {
  while (true) {
    int status = 0;
    pid_t pid = ::waitpid(-1, &status, WNOHANG);
    if (pid == 0) break;
    if (pid < 0) {
      if (errno == EINTR) continue;
      if (errno == ECHILD) no_children_ = true;
      break;
    }
    // Only a running service: the pid of one reaped before may since be
    // another process's (an orphan's, reparented to the warden).
    auto found = std::find_if(services_.begin(), services_.end(),
                              [pid](const auto& service) { return service->running() && service->pid() == pid; });
    if (found == services_.end()) {
      log::debug("reaped pid {} ({})", pid, describe_wait_status(status));
      continue;
    }
    Service& service = **found;
    service.exited(status);
    if (&service == main_ && killed_after_timeout_ && WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) {
      main_killed_after_timeout_ = true;
    }
    if (!shutdown_started_ && service.spec().wait_ready && !service.ready()) {
      // Gone before its readiness wait began (or while it ran, its exit
      // taken in first): the same permanent failure as a wait that failed,
      // the main service's (a VMM's) too.
      verbose_shutdown_ = true;
      forced_status_ = exit_status::kPermanent;
      log::error("{} did not become ready: it {} before it was ready", service.spec().name,
                 describe_wait_status(status));
    } else if (shutdown_started_) {
      auto level = verbose_shutdown_ ? log::Level::info : log::Level::debug;
      log::write(level, fmt::format("{} (pid {}) {} {} ms after the shutdown began", service.spec().name, pid,
                                    describe_wait_status(status), ms_between(*shutdown_started_, Clock::now())));
    } else if (&service == main_) {
      log::debug("{} (pid {}) {}", service.spec().name, pid, describe_wait_status(status));
    } else if (main_ && WIFEXITED(status) && WEXITSTATUS(status) == 0 &&
               (!main_->running() || main_exits_within(kSettle))) {
      // A daemon that serves the main service alone (virtiofsd) exits
      // cleanly as soon as the main one closes its connection, and may be
      // reaped first: that is the main service ending, not a failure.
      log::debug("{} (pid {}) exited with the main service", service.spec().name, pid);
    } else {
      verbose_shutdown_ = true;
      log::warning("{} (pid {}) {} while the sandbox was running", service.spec().name, pid,
                   describe_wait_status(status));
    }
  }
  if (!shutdown_started_) {
    for (const auto& service : services_) {
      if (service->pid() > 0 && !service->running()) {
        begin_shutdown(service->spec().name + " " + describe_wait_status(*service->wait_status()),
                       spec_.shutdown_timeout);
        break;
      }
    }
  }
  if (shutdown_started_ && main_ && !main_->running() && !no_children_) stop_remaining();
}

// Reaps the main service if it exits within `timeout`.
bool Warden::main_exits_within(milliseconds timeout) {
  Clock::time_point deadline = Clock::now() + timeout;
  while (true) {
    int status = 0;
    pid_t pid = ::waitpid(main_->pid(), &status, WNOHANG);
    if (pid == main_->pid()) {
      main_->exited(status);
      log::debug("{} (pid {}) {}", main_->spec().name, pid, describe_wait_status(status));
      return true;
    }
    if (pid < 0 && errno != EINTR) return false;
    if (Clock::now() >= deadline) return false;
    ::usleep(5000);
  }
}

void Warden::begin_shutdown(const std::string& reason, milliseconds grace) {
  Clock::time_point now = Clock::now();
  if (no_children_) {
    // The last process is already gone (a command that simply exited).
    if (!shutdown_started_) shutdown_started_ = now;
    return;
  }
  if (shutdown_started_) {
    if (now + grace >= deadline_) return;
    log::info("{}: shortening the shutdown to {} ms from now", reason, grace.count());
  } else {
    shutdown_started_ = now;
  }
  deadline_ = now + grace;
  grace_ = grace;
  if (!timer_fd_) timer_fd_ = UniqueFd(check(::timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK), "timerfd_create"));
  itimerspec when{};
  auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(grace).count();
  when.it_value.tv_sec = ns / 1'000'000'000;
  when.it_value.tv_nsec = std::max<long long>(ns % 1'000'000'000, ns == 0 ? 1 : 0);
  check(::timerfd_settime(timer_fd_.get(), 0, &when, nullptr), "timerfd_settime");
  if (now != *shutdown_started_) return;

  // A main service that has exited and is not reaped yet (a readiness wait
  // saw it go) is not asked to stop: its graceful stop would wait for an
  // answer that cannot come.
  if (main_ && main_->running() && !exited_unreaped(main_->pid())) {
    const ServiceSpec& main = main_->spec();
    log::info("{}: stopping {} (pid {}) with {}; waiting up to {}", reason, main.name, main_->pid(),
              main.graceful_stop ? "its graceful stop action" : "SIGTERM", seconds(grace));
    verbose_shutdown_ = true;
    try {
      if (main.graceful_stop) {
        main.graceful_stop(*main_, graceful_stop_deadline());
        if (main.graceful_stop_repeat.count() > 0) {
          repeat_fd_ = UniqueFd(
              check(::timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK), "timerfd_create"));
          auto period = std::chrono::duration_cast<std::chrono::nanoseconds>(main.graceful_stop_repeat).count();
          itimerspec every{};
          every.it_value.tv_sec = every.it_interval.tv_sec = period / 1'000'000'000;
          every.it_value.tv_nsec = every.it_interval.tv_nsec = period % 1'000'000'000;
          check(::timerfd_settime(repeat_fd_.get(), 0, &every, nullptr), "timerfd_settime");
        }
      } else {
        check(::kill(main_->pid(), SIGTERM), "kill SIGTERM", main.name);
      }
    } catch (const std::exception& e) {
      log::warning("graceful stop of {} failed ({}); sending SIGTERM", main.name, e.what());
      ::kill(main_->pid(), SIGTERM);
    }
  } else {
    log::write(verbose_shutdown_ ? log::Level::info : log::Level::debug,
               fmt::format("{}: shutting down; waiting up to {}", reason, seconds(grace)));
    stop_remaining();
  }
}

void Warden::stop_remaining() {
  if (rest_stopped_ || no_children_) return;
  rest_stopped_ = true;
  if (kill_rest_of_namespace(SIGTERM) == 0) {
    verbose_shutdown_ = true;
    log::info("sent SIGTERM to the remaining processes {} ms after the shutdown began",
              ms_between(*shutdown_started_, Clock::now()));
  } else if (errno == ESRCH) {
    reap();  // nobody left: no SIGCHLD will come
  }
}

void Warden::on_timeout() {
  if (!shutdown_started_ || Clock::now() < deadline_) return;
  verbose_shutdown_ = true;
  killed_after_timeout_ = true;
  if (main_ && main_->running() && main_->spec().force_stop) {
    // Blocks the loop for at most kForceStopGrace (kOrphanGrace when the
    // outer is gone: the runtime dir and s6's next instance wait on this
    // warden): the VMM's own stop lets it exit on its own terms; whatever is
    // left is SIGKILLed right after.
    milliseconds force_grace = outer_gone_ ? kOrphanGrace : kForceStopGrace;
    log::warning("shutdown timeout of {} reached ({} ms after the shutdown began): stopping {} with its own stop "
                 "command, SIGKILL after {} ms",
                 seconds(grace_), ms_between(*shutdown_started_, Clock::now()), main_->spec().name,
                 force_grace.count());
    try {
      main_->spec().force_stop(*main_, Clock::now() + force_grace);
    } catch (const std::exception& e) {
      log::warning("forced stop of {} failed: {}", main_->spec().name, e.what());
    }
    log::info("sending SIGKILL to every remaining process");
  } else {
    log::warning("shutdown timeout of {} reached ({} ms after the shutdown began): sending SIGKILL to every "
                 "remaining process",
                 seconds(grace_), ms_between(*shutdown_started_, Clock::now()));
  }
  kill_rest_of_namespace(SIGKILL);
  timer_fd_.reset();
  // Nothing will wake the loop again if nobody was left to kill.
  reap();
}

// One attempt blocks the loop; about a second is plenty for a control socket
// that answers, and it never runs past the shutdown deadline.
Clock::time_point Warden::graceful_stop_deadline() const {
  using namespace std::chrono_literals;
  return std::min(Clock::now() + 1s, deadline_);
}

void Warden::repeat_graceful_stop() {
  if (!main_ || !main_->running() || Clock::now() >= deadline_) {
    repeat_fd_.reset();
    return;
  }
  try {
    main_->spec().graceful_stop(*main_, graceful_stop_deadline());
    log::debug("asked {} to stop again", main_->spec().name);
  } catch (const std::exception& e) {
    log::debug("repeated graceful stop of {} failed: {}", main_->spec().name, e.what());
  }
}

// A sandbox that makes entries without bound in its runtime directory (the
// host's /run) is compromised or broken: no grace period, in which it would
// go on making them; every process is killed at once, and the status says
// it failed.
void Warden::check_runtime_dir() {
  try {
    if (!runtime_dir_watch_->over_limit()) return;
  } catch (const std::exception& e) {
    log::warning("cannot count the entries of the runtime directory: {}; they are no longer bounded", e.what());
    runtime_dir_watch_.reset();
    return;
  }
  log::error("the sandbox made more than the {} entries it may in its runtime directory {} (each one an inode of "
             "the host's filesystem there): killing every process of the sandbox",
             RuntimeDirWatch::kEntryLimit, runtime_dir_.path().string());
  runtime_dir_watch_.reset();
  runtime_dir_overrun_ = true;
  verbose_shutdown_ = true;
  forced_status_ = exit_status::kFailure;
  if (!shutdown_started_) shutdown_started_ = Clock::now();
  // Reaped as SIGCHLD comes (this may run inside a readiness wait); with
  // nobody left to kill none will.
  if (kill_rest_of_namespace(SIGKILL) < 0 && errno == ESRCH) reap();
}

void Warden::on_outer_death() {
  if (outer_gone_) return;
  outer_gone_ = true;
  verbose_shutdown_ = true;
  log::warning("the outer process is gone");
  begin_shutdown("the outer process died", std::min(spec_.shutdown_timeout, kOrphanGrace));
}

int Warden::final_status() {
  if (forced_status_) return *forced_status_;
  // Stopped before the main service ran: the stop's status, as a main
  // service that died of it would give (s6 then reads a requested stop).
  if (!main_ || !main_->wait_status()) return stop_signal_ ? 128 + *stop_signal_ : exit_status::kFailure;
  int status = exit_status_of(*main_->wait_status());
  if (main_killed_after_timeout_) {
    log::warning("{} was killed with SIGKILL after the shutdown timeout of {}; exit status {}", main_->spec().name,
                 seconds(grace_), status);
  } else if (verbose_shutdown_) {
    log::info("exit status {}", status);
  }
  return status;
}

}  // namespace

sigset_t warden_signals() {
  sigset_t set;
  sigemptyset(&set);
  for (int sig : {SIGTERM, SIGINT, SIGHUP, SIGCHLD, kOuterDeathSignal}) sigaddset(&set, sig);
  return set;
}

bool stop_signal_pending() {
  sigset_t pending;
  if (::sigpending(&pending) != 0) return false;
  for (int sig : {SIGTERM, SIGINT, SIGHUP, kOuterDeathSignal})
    if (sigismember(&pending, sig) == 1) return true;
  return false;
}

void run_warden(const SandboxSpec& spec, int outer_pidfd, RuntimeDir& runtime_dir) {
  log::set_prefix(fmt::format("vmwarden[{}/warden]", spec.name));
  int status = exit_status::kPermanent;
  bool outer_gone = false;
  try {
    Warden warden(spec, outer_pidfd, runtime_dir);
    try {
      status = warden.run();
      ::_exit(status);
    } catch (...) {
      outer_gone = warden.outer_gone();
      throw;
    }
  } catch (const std::exception& e) {
    log::error("{}", e.what());
  }
  // A failure in the warden itself: nothing in the namespace may outlive it.
  kill_rest_of_namespace(SIGKILL);
  while (::waitpid(-1, nullptr, 0) > 0 || errno == EINTR) {
  }
  if (outer_gone || readable_now(outer_pidfd)) {
    unmount_runtime_dir_mounts(spec);
    runtime_dir.remove();
  }
  ::_exit(status);
}

}  // namespace vmwarden::supervisor
