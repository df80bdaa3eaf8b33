// vmwarden s6 service: write the s6 service directory for a VM definition
// (s6-services/service_dir.h).

#include <cstdlib>

#include <fmt/core.h>

#include "cli/cli.h"
#include "common/error.h"
#include "s6-services/service_dir.h"
#include "vm-launcher/definition.h"
#include "vm-launcher/share_check.h"

namespace vmwarden::cli {

void add_s6_command(CLI::App& app, Globals& globals) {
  struct Options {
    std::string target;
    std::string scandir;
    bool log = false;
  };
  auto options = std::make_shared<Options>();
  CLI::App* s6 = app.add_subcommand("s6", "Integrate with s6 supervision trees (doc/S6.md)");
  s6->require_subcommand(1);
  CLI::App* service = s6->add_subcommand(
      "service",
      "Write SCANDIR/NAME, an s6 service directory that runs `vmwarden supervise --s6` on the definition: run "
      "(execs vmwarden, so s6-supervise stays its parent), finish (exit 125 = permanent failure, not restarted; "
      "other failures restarted 2 s after they end), notification-fd (3: ready once the VMM runs and every share "
      "is served), down-signal (SIGTERM: graceful power-off), timeout-kill (shutdown_timeout_s + 10 s), "
      "timeout-finish, and with --log a log/ service running s6-log. The definition is validated first; nothing "
      "is written if it is invalid. Refuses a directory it did not write; rewriting its own is idempotent.");
  service->add_option("definition", options->target, "A definition file (NAME.toml), or the NAME of one in "
                                                       "CONFIG_DIR/vms/")
      ->required();
  service->add_option("--scandir", options->scandir, "The scan directory s6-svscan watches")->required();
  service->add_flag("--log", options->log, "Add a log/ service: s6-log with timestamps, rotated at 1 MB, 20 files");
  service->callback([&globals, options] {
    globals.action = [&globals, options] {
      Locations locations = globals.locations();
      std::filesystem::path file = vm::resolve_definition(locations, options->target);
      // Checked as `check` and `supervise` check it, a share that shows
      // vmwarden's own directories included.
      vm::CheckOptions check{.share_refusal = [&locations](const std::filesystem::path& tree) {
        return vm::share_refusal(tree, locations);
      }};
      vm::ParseResult parsed = vm::load_definition(file, check);
      for (const vm::Diagnostic& diagnostic : parsed.errors) fmt::print(stderr, "{}\n", diagnostic.to_string());
      if (!parsed.ok()) throw UsageError(fmt::format("{}: invalid definition, no service written", options->target));

      s6::ServiceOptions service_options;
      service_options.name = parsed.definition->name;
      service_options.definition = std::filesystem::absolute(file);
      service_options.scandir = options->scandir;
      service_options.vmwarden = std::filesystem::read_symlink("/proc/self/exe");
      service_options.shutdown_timeout_s = parsed.definition->shutdown_timeout_s;
      service_options.log = options->log;
      // The locations in force now are the ones the service will use.
      for (const char* name : {"VMWARDEN_CONFIG_DIR", "VMWARDEN_STATE_DIR", "VMWARDEN_RUNTIME_DIR"})
        if (const char* value = std::getenv(name)) service_options.environment[name] = value;
      if (!globals.config_dir.empty()) service_options.environment["VMWARDEN_CONFIG_DIR"] = locations.config_dir.string();
      if (!globals.state_dir.empty()) service_options.environment["VMWARDEN_STATE_DIR"] = locations.state_dir.string();
      if (!globals.runtime_dir.empty()) service_options.environment["VMWARDEN_RUNTIME_DIR"] = locations.runtime_dir.string();

      s6::WriteResult result = s6::write_service_dir(service_options);
      std::filesystem::path dir = std::filesystem::path(options->scandir) / service_options.name;
      fmt::print("{} {}\n",
                 result == s6::WriteResult::created   ? "created"
                 : result == s6::WriteResult::updated ? "updated"
                                                      : "unchanged",
                 dir.string());
      return 0;
    };
  });
}

}  // namespace vmwarden::cli
