// vmwarden demo: boot a real guest under the full sandbox and show what it
// can and cannot do (vm-launcher/demo.h).

#include <unistd.h>

#include "cli/cli.h"
#include "common/error.h"
#include "vm-launcher/demo.h"

namespace vmwarden::cli {

void add_demo_command(CLI::App& app, Globals& globals) {
  auto timeout = std::make_shared<int>(180);
  CLI::App* command = app.add_subcommand(
      "demo",
      "Build a small guest image from Debian packages (once, into STATE_DIR/demo/image), write a demo definition "
      "with a read-only and a read-write share (STATE_DIR/demo/demo.toml), boot it with `vmwarden supervise` "
      "under the full sandbox, and report: boot time, what the guest could read and write, the owner on the host "
      "of the file it wrote, and the clean power-off on SIGTERM. Needs root, QEMU and virtiofsd; runs under TCG "
      "when /dev/kvm is not usable. Exits 0 when every check passed.");
  command->add_option("--timeout", *timeout, "Seconds to wait for the guest's report")
      ->check(CLI::Range(10, 3600))
      ->type_name("S")
      ->capture_default_str();
  command->callback([&globals, timeout] {
    globals.action = [&globals, timeout] {
      if (::geteuid() != 0) throw UsageError("the demo needs root: run it with sudo");
      vm::DemoOptions options;
      options.locations = globals.locations();
      options.vmwarden = std::filesystem::read_symlink("/proc/self/exe");
      options.image_builder = vm::find_image_builder();
      options.timeout = std::chrono::seconds(*timeout);
      return vm::run_demo(options);
    };
  });
}

}  // namespace vmwarden::cli
