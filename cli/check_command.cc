// vmwarden check: validate VM definitions without acting on them.

#include <fmt/core.h>

#include "cli/cli.h"
#include "common/exit_status.h"
#include "vm-launcher/definition.h"
#include "vm-launcher/share_check.h"

namespace vmwarden::cli {

void add_check_command(CLI::App& app, Globals& globals) {
  struct Options {
    std::vector<std::string> targets;
    bool syntax_only = false;
    bool quiet = false;
  };
  auto options = std::make_shared<Options>();
  CLI::App* command = app.add_subcommand(
      "check",
      "Validate VM definitions. Each error is printed as FILE:LINE:COL: error: MESSAGE. Nothing is "
      "started and nothing on disk is changed. Exit 0 when every definition is valid, 2 otherwise.");
  command->add_option("definition", options->targets,
                      "A definition file (NAME.toml), or the NAME of one in CONFIG_DIR/vms/")
      ->required();
  command->add_flag("--syntax-only", options->syntax_only,
                    "Skip the checks that the kernel, initramfs, disks and shares exist (and that the shares "
                    "could be shared)");
  command->add_flag("-q,--quiet", options->quiet, "Print nothing for valid definitions");
  command->callback([&globals, options] {
    globals.action = [&globals, options] {
      Locations locations = globals.locations();
      // A share launching would refuse (vmwarden's own directories, an
      // unbindable mount below it, ...) is an error here too.
      vm::CheckOptions check{.check_filesystem = !options->syntax_only,
                             .share_refusal = [&locations](const std::filesystem::path& tree) {
                               return vm::share_refusal(tree, locations);
                             }};
      bool all_valid = true;
      for (const std::string& target : options->targets) {
        vm::ParseResult result = vm::load_definition(vm::resolve_definition(locations, target), check);
        for (const vm::Diagnostic& diagnostic : result.errors) {
          fmt::print(stderr, "{}\n", diagnostic.to_string());
        }
        if (!result.ok()) {
          all_valid = false;
        } else if (!options->quiet) {
          const vm::Definition& definition = *result.definition;
          std::string_view runs = definition.vmm ? vm::to_string(*definition.vmm) : "command";
          fmt::print("{}: valid ({} \"{}\", {} share(s), {} disk(s))\n", target, runs, definition.name,
                     definition.shares.size(), definition.disks.size());
        }
      }
      return all_valid ? exit_status::kOk : exit_status::kUsage;
    };
  });
}

}  // namespace vmwarden::cli
