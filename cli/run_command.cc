// vmwarden run: one program in its own throwaway VM (vm-launcher/run.h).

#include <fmt/core.h>

#include "cli/cli.h"
#include "common/error.h"
#include "common/json_quote.h"
#include "vm-launcher/run.h"

namespace vmwarden::cli {

void add_run_command(CLI::App& app, Globals& globals) {
  auto options = std::make_shared<vm::RunOptions>();
  auto vmm = std::make_shared<std::string>("qemu");
  auto ro = std::make_shared<std::vector<std::string>>();
  auto rw = std::make_shared<std::vector<std::string>>();
  auto store = std::make_shared<std::vector<std::string>>();
  CLI::App* command = app.add_subcommand(
      "run",
      "Run PROGRAM in its own throwaway VM, under a single-use UID that it also has inside the guest, seeing only "
      "the directories passed (each at the same path as on the host). Exits with PROGRAM's status; its standard output "
      "and error come out together on standard output, as they come (64 MiB at most; "
      "when they cannot all be written there, a full disk or a reader gone, PROGRAM's exit 0 becomes 1). On every exit "
      "path, SIGINT and SIGTERM included (they power the VM off), the grants are revoked and the UID released; "
      "after a SIGKILL, `vmwarden acl sweep` cleans up. Needs an image with the guest agent "
      "(doc/GUEST-AGENT.md).");
  CLI::Option* image = command->add_option("--image", options->image, "Boot STATE_DIR/images/NAME/{vmlinuz,initrd.img}")
      ->type_name("NAME")
      ->capture_default_str();
  CLI::Option* kernel =
      command->add_option("--kernel", options->kernel, "Boot this kernel instead of an image")->type_name("FILE");
  command->add_option("--initramfs", options->initramfs, "With --kernel: the initramfs to boot it with")
      ->type_name("FILE")
      ->needs(kernel);
  image->excludes(kernel);
  command->add_option("--ro", *ro, "A directory the program may read (repeatable)")->type_name("DIR")->allow_extra_args(false);
  command->add_option("--rw", *rw, "A directory the program may read and write (repeatable)")->type_name("DIR")->allow_extra_args(false);
  command->add_option("--store", *store, "A store path, read-only; its bin/ goes first on PATH (repeatable)")
      ->type_name("PATH")
      ->allow_extra_args(false);
  command->add_flag("--store-lib", options->store_lib, "Also put the store paths' lib/ on LD_LIBRARY_PATH");
  command->add_flag("--scratch", options->scratch,
                    "A fresh private directory, the program's HOME, deleted when the run ends");
  command->add_option("--env", options->env, "KEY=VALUE for the program (repeatable; replaces PATH, HOME, USER, LOGNAME or an earlier --env of that KEY)")->type_name("KEY=VALUE")->allow_extra_args(false);
  command->add_flag("--wayland", options->wayland,
                    "Give the VM the host's Wayland socket ($XDG_RUNTIME_DIR/$WAYLAND_DISPLAY; crosvm only)");
  command->add_option("--vmm", *vmm, "qemu, crosvm or cloud-hypervisor")
      ->check(CLI::IsMember({"qemu", "crosvm", "cloud-hypervisor"}))
      ->capture_default_str();
  command->add_option("--timeout", options->timeout_s, "Seconds for the guest to power off before it is killed (2 to 3600); the "
                      "program gets SIGTERM, and SIGKILL T-3 s later (1 s for T up to 4)")
      ->check(CLI::Range(2, 3600))
      ->type_name("S")
      ->capture_default_str();
  command->add_option("--memory", options->memory_mib, "Guest memory in MiB")
      ->check(CLI::Range(64, 1 << 20))
      ->type_name("MIB")
      ->capture_default_str();
  auto audit = std::make_shared<bool>(false), json = std::make_shared<bool>(false);
  command->add_flag("--audit", *audit,
                    "Print every privileged step the run would take (its directory, the UID lease, ACL grants, "
                    "namespaces, mounts, uid switches, capability drops) with the capability each needs, and each "
                    "service's final confinement, as `vmwarden audit` does for a definition; no VM is started, nothing "
                    "is created, leased or granted (the one program it may run is a virtiofsd wrapper script's "
                    "--help, as uid 65534, to learn its dialect). Exit 0 once printed");
  command->add_flag("--json", *json,
                    "With --audit: print it as one JSON object (on an error: {\"audit\": \"vmwarden run\", "
                    "\"error\": MESSAGE}, with the exit status it has without --json)");
  command->add_option("command", options->command, "PROGRAM [ARGS...] (after --)")->required();
  command->callback([&globals, options, vmm, ro, rw, store, audit, json] {
    globals.action = [&globals, options, vmm, ro, rw, store, audit, json] {
      options->locations = globals.locations();
      if (!globals.state_dir.empty()) options->state_dir_setting = "--state-dir";
      options->vmm = *vmm == "crosvm" ? vm::Vmm::crosvm
                     : *vmm == "cloud-hypervisor" ? vm::Vmm::cloud_hypervisor
                                                  : vm::Vmm::qemu;
      options->ro.assign(ro->begin(), ro->end());
      options->rw.assign(rw->begin(), rw->end());
      options->store.assign(store->begin(), store->end());
      if (*json && !*audit) throw UsageError("--json goes with --audit");
      if (*audit) {
        try {
          vm::RunAudit planned = vm::audit_run(*options);
          print_audit(planned.plan, planned.options, *json);
          return 0;
        } catch (const std::exception& error) {
          // As `vmwarden audit --json`: one JSON object whatever happens.
          if (*json) fmt::print("{{\"audit\":\"vmwarden run\",\"error\":{}}}\n", json_quote(error.what()));
          throw;
        }
      }
      return vm::run_program_in_vm(*options);
    };
  });
}

}  // namespace vmwarden::cli
