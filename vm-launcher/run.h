// `vmwarden run`: one program in its own throwaway VM. A transient
// definition is written and validated like any other; the VM gets a
// single-use UID, read-only and read-write grants on the directories asked
// for, a read-only config share holding the guest agent's manifest
// (guest_manifest.h) and a private report share for the exit status. The
// program runs inside as that same UID; when it exits the VM powers off,
// the grants are revoked, the UID released and the run's directory removed.
#pragma once

#include <chrono>
#include <filesystem>
#include <string>
#include <vector>

#include "common/locations.h"
#include "supervisor/runtime_dir.h"
#include "vm-launcher/definition.h"
#include "vm-launcher/launch.h"
#include "vm-launcher/launch_audit.h"

namespace vmwarden::vm {

struct RunOptions {
  Locations locations;
  // Where locations.state_dir came from, named when it cannot hold the
  // run's directory: "VMWARDEN_STATE_DIR" or "--state-dir".
  std::string state_dir_setting = "VMWARDEN_STATE_DIR";
  std::string image = "default";       // STATE_DIR/images/IMAGE/{vmlinuz,initrd.img}
  std::filesystem::path kernel;        // instead of an image
  std::filesystem::path initramfs;
  std::vector<std::filesystem::path> ro, rw, store;
  bool scratch = false;                // a fresh private dir, the program's HOME, deleted afterwards
  bool store_lib = false;              // the store paths' lib/ on LD_LIBRARY_PATH
  std::vector<std::string> env;        // KEY=VALUE for the program
  bool wayland = false;
  Vmm vmm = Vmm::qemu;
  std::uint32_t timeout_s = 30;        // graceful power-off before the kill
  std::uint32_t memory_mib = 512;
  std::vector<std::string> command;    // PROGRAM ARGS...
};

// Runs the program and returns its exit status (128+N when killed by signal
// N; 125 when the VM could not start). Throws UsageError for bad options,
// before anything is created.
int run_program_in_vm(const RunOptions& options);

// `vmwarden run --audit`: the plan launch() would follow for the run's
// transient definition, and the run's own steps around it. The options are
// checked as for a run (UsageError); nothing is created, leased or granted.
struct RunAudit {
  LaunchPlan plan;
  LaunchAuditOptions options;
};
RunAudit audit_run(const RunOptions& options);

// Removes the run directories (STATE_DIR/runs/run-PID-HEX) that no run
// holds: a `vmwarden run` killed with SIGKILL leaves its directory, scratch
// included. A directory is taken only if its lock is free and no process
// has its PID (a run between making and locking it, or one started by a
// vmwarden that did not lock it); never through a symlink, however deep.
// With dry_run removes nothing. One that cannot be checked or removed is
// reported in `errors`, and the others still are.
supervisor::AbandonedDirs remove_abandoned_runs(const Locations& locations, bool dry_run);

}  // namespace vmwarden::vm
