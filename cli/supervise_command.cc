// vmwarden supervise: run one VM definition in its sandbox, in the
// foreground. This is the s6 entry point: `run` execs into it.

#include <fmt/core.h>

#include <optional>

#include "cli/cli.h"
#include "common/error.h"
#include "common/log.h"
#include "common/exit_status.h"
#include "vm-launcher/definition.h"
#include "vm-launcher/launch.h"

namespace vmwarden::cli {

void add_supervise_command(CLI::App& app, Globals& globals) {
  struct Options {
    std::string target;
    bool s6 = false;
    std::optional<int> notify_fd;
  };
  auto options = std::make_shared<Options>();
  CLI::App* command = app.add_subcommand(
      "supervise",
      "Run a VM definition in its sandbox in the foreground: lease the VM's UID, grant it ACLs on the shares, "
      "start the PID-1 warden and the VM's services, and shut everything down on SIGTERM, SIGINT or SIGHUP "
      "(SIGQUIT, SIGALRM, SIGUSR1, SIGUSR2 and SIGABRT are ignored). Exits with the main service's status; 125 (do not restart) for an invalid or missing definition.");
  command->add_option("definition", options->target,
                      "A definition file (NAME.toml), or the NAME of one in CONFIG_DIR/vms/")
      ->required();
  command->add_flag("--s6", options->s6,
                    "Started by s6-supervise: refuse to run (exit 125) unless the parent holds ./supervise/lock and "
                    "./timeout-kill, if set, leaves shutdown_timeout_s + 10 s, and report readiness on the fd named "
                    "in ./notification-fd");
  command->add_option("--notify-fd", options->notify_fd,
                      "Write a newline to this fd and close it once every service is ready")
      ->type_name("FD");
  command->callback([&globals, options] {
    globals.action = [&globals, options] {
      // A logger that stops reading must not hold up a stop (doc/S6.md).
      log::never_block_on_a_pipe();
      vm::LaunchOptions launch{.locations = globals.locations(), .under_s6 = options->s6};
      if (options->notify_fd) {
        if (options->s6) throw UsageError("--notify-fd and --s6 exclude each other (s6 names the fd)");
        launch.notify_fd = checked_notify_fd(*options->notify_fd);
      }
      // An invalid definition cannot fix itself: exit 125 so that s6 does
      // not restart the service in a loop.
      vm::ParseResult parsed = vm::load_definition(vm::resolve_definition(launch.locations, options->target));
      for (const vm::Diagnostic& diagnostic : parsed.errors) fmt::print(stderr, "{}\n", diagnostic.to_string());
      if (!parsed.ok()) {
        throw PermanentError(fmt::format("{}: invalid definition, not started", options->target));
      }
      // Every later line names the VM, those before the sandbox starts (the
      // grants, a refusal) as the sandbox's own do.
      log::set_prefix(fmt::format("vmwarden[{}]", parsed.definition->name));
      try {
        return vm::launch(*parsed.definition, launch);
      } catch (const UsageError& e) {
        // A definition the backends refuse is as permanent as one the
        // validator refuses: exit 125 so that s6 does not restart it.
        throw PermanentError(fmt::format("{}: {}; not started", options->target, e.what()));
      }
    };
  });
}

}  // namespace vmwarden::cli
