// The vmwarden command line: each subcommand lives in its own file and only
// translates flags into calls on the components' public interfaces.
#pragma once

#include <CLI/CLI.hpp>

#include <functional>
#include <string>

#include "common/locations.h"

namespace vmwarden::vm {
struct LaunchPlan;
struct LaunchAuditOptions;
}  // namespace vmwarden::vm

namespace vmwarden::cli {

struct Globals {
  std::string config_dir;
  std::string state_dir;
  std::string runtime_dir;
  bool verbose = false;

  // Set by the chosen subcommand's callback; main() runs it after parsing so
  // that parse errors and runtime errors are reported the same way.
  std::function<int()> action;

  // Flags first, then VMWARDEN_*_DIR, then the built-in defaults.
  Locations locations() const;
};

// --notify-fd of exec and supervise: returns `fd` once it is open and not
// 0-2; UsageError otherwise (checked before anything is leased or granted).
int checked_notify_fd(int fd);

void add_check_command(CLI::App& app, Globals& globals);
void add_exec_command(CLI::App& app, Globals& globals);
void add_supervise_command(CLI::App& app, Globals& globals);
void add_uid_command(CLI::App& app, Globals& globals);
void add_acl_command(CLI::App& app, Globals& globals);
void add_demo_command(CLI::App& app, Globals& globals);
void add_s6_command(CLI::App& app, Globals& globals);
void add_run_command(CLI::App& app, Globals& globals);
void add_audit_command(CLI::App& app, Globals& globals);

// `vmwarden audit` and `vmwarden exec --audit`: the plan's privileged steps
// and final confinement on stdout, as text or JSON.
void print_audit(const vm::LaunchPlan& plan, const vm::LaunchAuditOptions& options, bool json);

}  // namespace vmwarden::cli
