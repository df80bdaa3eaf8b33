// `vmwarden demo`, step by step. The guest runs a script from the read-only
// share as the VM's UID (the image's init, tools/guest-init, switches to it)
// and writes what it saw into the read-write share; the demo then reads that
// report and checks it against what the host sees.

#include "vm-launcher/demo.h"

#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>

#include <fmt/core.h>

#include "acl-manager/uid_registry.h"
#include "common/error.h"
#include "common/log.h"
#include "common/process.h"
#include "common/text_file.h"
#include "vm-launcher/backend.h"
#include "vm-launcher/definition.h"
#include "vm-launcher/guest_report.h"

#ifndef VMWARDEN_SOURCE_DIR
#define VMWARDEN_SOURCE_DIR ""
#endif
#ifndef VMWARDEN_LIBEXEC_DIR
#define VMWARDEN_LIBEXEC_DIR ""
#endif

namespace vmwarden::vm {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr std::string_view kAlias = "demo";

// Runs in the guest, from the read-only share, as the VM's UID. Every check
// is made from inside; the host only reads the result.
constexpr std::string_view kGuestScript = R"SH(#!/bin/sh
# The vmwarden demo guest: report what this VM may do with its two shares.
rw=/mnt/rw
up=$(cut -d' ' -f1 /proc/uptime)
{
  echo "uid=$(id -u)"
  echo "uptime=$up"
  if msg=$(cat /mnt/ro/greeting.txt 2>&1); then echo "ro_read=ok $msg"; else echo "ro_read=failed $msg"; fi
  if err=$( (echo intruder > /mnt/ro/intruder.txt) 2>&1); then echo "ro_write=succeeded"; else echo "ro_write=refused $err"; fi
  if err=$( (echo "written by the guest at uptime $up s" > $rw/hello.txt) 2>&1); then echo "rw_write=ok"; else echo "rw_write=failed $err"; fi
} > $rw/report.tmp 2>&1
mv $rw/report.tmp $rw/report.txt
)SH";

constexpr std::string_view kGreeting = "hello from the host's read-only share";

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

void make_dir(const fs::path& path, mode_t mode) {
  fs::create_directories(path);
  check(::chmod(path.c_str(), mode), "chmod", path.string());
}

std::string definition_text(const fs::path& image, const fs::path& ro, const fs::path& rw, uid_t uid) {
  return fmt::format(R"TOML(# Written by `vmwarden demo`; rewritten on every run.
vmm = "qemu"
kernel = "{image}/vmlinuz"
initramfs = "{image}/initrd.img"
# tools/guest-init: mount both shares, run the script as the VM's UID, then
# stay up until the ACPI power button.
cmdline = "console=ttyS0 quiet vmwarden.share=ro@/mnt/ro vmwarden.share=rw@/mnt/rw vmwarden.run=/mnt/ro/run.sh vmwarden.uid={uid} vmwarden.idle=1"
memory_mib = 256
cpus = 1
shutdown_timeout_s = 20

[uid]
alias = "{alias}"

[[share]]
tag = "ro"
path = "{ro}"
access = "ro"

[[share]]
tag = "rw"
path = "{rw}"
access = "rw"
)TOML",
                     fmt::arg("image", image.string()), fmt::arg("uid", uid), fmt::arg("alias", kAlias),
                     fmt::arg("ro", ro.string()), fmt::arg("rw", rw.string()));
}

// The image, built once; the builder itself does nothing when up to date.
void build_image(const DemoOptions& options, const fs::path& image) {
  if (options.image_builder.empty())
    throw PermanentError("cannot find tools/build-guest-image; set VMWARDEN_IMAGE_BUILDER to its path");
  bool fresh = !fs::exists(image / "vmlinuz");
  fmt::print("guest image: {} ({})\n", image.string(),
             fresh ? "building it from Debian packages, about a minute" : "checking it is up to date");
  std::fflush(stdout);
  std::vector<std::string> env;
  for (const char* name : {"PATH", "VMWARDEN_IMAGE_CACHE", "VMWARDEN_KERNEL_PACKAGE", "http_proxy", "https_proxy"})
    if (const char* value = std::getenv(name)) env.push_back(fmt::format("{}={}", name, value));
  auto start = Clock::now();
  ProgramResult built = run_program({options.image_builder.string(), image.string()}, env, Clock::now() + 20min);
  if (!built.success())
    throw std::runtime_error(
        fmt::format("building the guest image failed ({}):\n{}", built.describe(), built.output));
  fmt::print("  ready in {:.1f} s\n", seconds_since(start));
  // The VMM runs as the VM's UID: the image must be readable by others.
  for (const char* file : {"vmlinuz", "initrd.img"}) check(::chmod((image / file).c_str(), 0644), "chmod", file);
}

pid_t start_supervise(const DemoOptions& options, const fs::path& definition) {
  std::fflush(stdout);
  pid_t child = ::fork();
  if (child < 0) throw_errno("fork");
  if (child == 0) {
    ::setenv("VMWARDEN_CONFIG_DIR", options.locations.config_dir.c_str(), 1);
    ::setenv("VMWARDEN_STATE_DIR", options.locations.state_dir.c_str(), 1);
    ::setenv("VMWARDEN_RUNTIME_DIR", options.locations.runtime_dir.c_str(), 1);
    ::execl(options.vmwarden.c_str(), "vmwarden", "supervise", definition.c_str(), nullptr);
    // The demo's report would otherwise say only "exited with status 127".
    log::error("exec {}: {}", options.vmwarden.string(), std::strerror(errno));
    ::_exit(127);
  }
  return child;
}

std::optional<int> poll_exit(pid_t child) {
  int status = 0;
  pid_t done = ::waitpid(child, &status, WNOHANG);
  if (done != child) return std::nullopt;
  return WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status);
}

}  // namespace

fs::path find_image_builder() {
  if (const char* value = std::getenv("VMWARDEN_IMAGE_BUILDER"); value != nullptr) {
    // Set but empty: an unset shell variable, most likely (as for VMWARDEN_QEMU).
    if (*value == '\0')
      throw UsageError("VMWARDEN_IMAGE_BUILDER is set but empty; unset it to use tools/build-guest-image, or set it "
                       "to the builder's path");
    return value;
  }
  for (fs::path candidate : {fs::path(VMWARDEN_SOURCE_DIR) / "tools/build-guest-image",
                             fs::path(VMWARDEN_LIBEXEC_DIR) / "build-guest-image"}) {
    if (candidate.is_absolute() && ::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return {};
}

int run_demo(const DemoOptions& options) {
  const fs::path base = options.locations.state_dir / "demo";
  const fs::path image = base / "image", ro = base / "ro", rw = base / "rw";
  // Searchable by the VM's UID (it must reach the shares and the image);
  // the read-write share itself is root's and private: only the ACL grant
  // lets the VM in.
  make_dir(options.locations.state_dir, 0755);
  make_dir(base, 0755);
  make_dir(image, 0755);
  build_image(options, image);

  acl::UidRegistry registry(options.locations);
  uid_t uid = registry.lease_alias(std::string(kAlias)).uid();

  make_dir(ro, 0755);
  write_text_file(ro / "greeting.txt", kGreeting, 0644);
  write_text_file(ro / "run.sh", kGuestScript, 0755);
  make_dir(rw, 0700);
  for (const auto& entry : fs::directory_iterator(rw)) fs::remove_all(entry.path());
  fs::remove(ro / "intruder.txt");

  const fs::path definition = base / "demo.toml";
  write_text_file(definition, definition_text(image, ro, rw, uid), 0644);
  ParseResult parsed = load_definition(definition);
  for (const Diagnostic& diagnostic : parsed.errors) fmt::print(stderr, "{}\n", diagnostic.to_string());
  if (!parsed.ok()) throw PermanentError("the demo definition is invalid");

  // As the launch decides it: the VMM runs as the VM's UID, which root's
  // access to /dev/kvm says nothing about.
  fmt::print("VM \"demo\": QEMU ({}), UID {} (alias \"{}\"), definition {}\n",
             Host::kvm_usable() ? "KVM" : "TCG, KVM not usable: doc/VMM.md", uid, kAlias,
             definition.string());
  fmt::print("  share ro: {} (read-only)\n  share rw: {} (read-write, mode 0700 root: reachable through the ACL "
             "grant only)\n",
             ro.string(), rw.string());
  fmt::print("starting `vmwarden supervise`...\n");
  auto start = Clock::now();
  pid_t child = start_supervise(options, definition);

  // The guest reports once; until then, the supervisor must keep running.
  const fs::path report_file = rw / "report.txt";
  std::optional<int> early_exit;
  while (!fs::exists(report_file)) {
    if ((early_exit = poll_exit(child))) break;
    if (Clock::now() - start > options.timeout) break;
    std::this_thread::sleep_for(20ms);
  }
  double boot = seconds_since(start);
  if (early_exit) {
    fmt::print("FAILED: vmwarden supervise exited with status {} before the guest reported\n", *early_exit);
    return 1;
  }
  if (!fs::exists(report_file)) {
    fmt::print("FAILED: no report from the guest within {} s; stopping it\n", options.timeout.count());
    ::kill(child, SIGTERM);
    while (::waitpid(child, nullptr, 0) < 0 && errno == EINTR) {
    }
    return 1;
  }

  auto report = read_key_values(report_file);
  fmt::print("guest ran its command {:.2f} s after `vmwarden supervise` started (guest kernel uptime {} s)\n", boot,
             report["uptime"]);

  bool ok = true;
  auto verdict = [&ok](bool good, std::string_view text) {
    ok = ok && good;
    fmt::print("  {} {}\n", good ? "ok  " : "FAIL", text);
  };
  verdict(report["uid"] == std::to_string(uid), fmt::format("the guest command runs as uid {}", report["uid"]));
  verdict(report["ro_read"] == fmt::format("ok {}", kGreeting),
          fmt::format("it read the read-only share: \"{}\"", report["ro_read"]));
  verdict(report["ro_write"].starts_with("refused") && !fs::exists(ro / "intruder.txt"),
          fmt::format("its write to the read-only share was {}", report["ro_write"]));
  struct stat st {};
  bool written = report["rw_write"] == "ok" && ::stat((rw / "hello.txt").c_str(), &st) == 0;
  verdict(written && st.st_uid == uid,
          written ? fmt::format("it wrote {}, owned on the host by uid {}:{}", (rw / "hello.txt").string(), st.st_uid,
                                st.st_gid)
                  : fmt::format("it could not write to the read-write share: {}", report["rw_write"]));

  fmt::print("sending SIGTERM to vmwarden supervise (ACPI power button to the guest)...\n");
  auto stop = Clock::now();
  ::kill(child, SIGTERM);
  int status = -1;
  while (Clock::now() - stop < 60s) {
    if (auto exited = poll_exit(child)) {
      status = *exited;
      break;
    }
    std::this_thread::sleep_for(5ms);
  }
  if (status < 0) {
    ::kill(child, SIGKILL);
    while (::waitpid(child, nullptr, 0) < 0 && errno == EINTR) {
    }
  }
  verdict(status == 0, fmt::format("the guest powered off and vmwarden exited with status {} {:.2f} s after SIGTERM",
                                   status, seconds_since(stop)));
  fmt::print("{}\n", ok ? "demo passed" : "demo FAILED");
  return ok ? 0 : 1;
}

}  // namespace vmwarden::vm
