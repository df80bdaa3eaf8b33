// vmwarden audit: what `vmwarden supervise NAME|FILE` would do with
// privilege, and each service's final confinement, before any of it runs.

#include <fmt/core.h>

#include <cstdio>
#include <optional>

#include "acl-manager/uid_registry.h"
#include "cli/cli.h"
#include "common/error.h"
#include "supervisor/sandbox_audit.h"
#include "vm-launcher/definition.h"
#include "vm-launcher/json.h"
#include "vm-launcher/launch.h"
#include "vm-launcher/launch_audit.h"
#include "vm-launcher/share_check.h"

namespace vmwarden::cli {
namespace {

struct AuditOptions {
  std::string target;
  bool json = false;
  bool s6 = false;  // as `supervise --s6` would run it
};

// The definition, valid apart from the files it names: a definition is
// audited before its images exist, and a missing file is reported as what
// will stop it from starting. Anything else wrong is a usage error.
// The diagnostics of an invalid definition travel with the error, so that
// --json can carry them too.
class InvalidDefinition : public UsageError {
 public:
  InvalidDefinition(const std::string& message, std::vector<std::string> diagnostics)
      : UsageError(message), diagnostics(std::move(diagnostics)) {}
  std::vector<std::string> diagnostics;
};

vm::Definition load(const std::filesystem::path& file, const Locations& locations, std::vector<std::string>& refusals) {
  vm::ParseResult parsed = vm::load_definition(file, {.check_filesystem = false});
  std::vector<std::string> diagnostics;
  for (const vm::Diagnostic& diagnostic : parsed.errors) {
    diagnostics.push_back(diagnostic.to_string());
    fmt::print(stderr, "{}\n", diagnostics.back());
  }
  if (!parsed.ok())
    throw InvalidDefinition(fmt::format("{}: invalid definition, nothing to audit", file.string()),
                            std::move(diagnostics));
  // Checked as launching will check it: a missing file, a share it
  // would refuse (vmwarden's own directories, ...).
  vm::CheckOptions full{.share_refusal = [&locations](const std::filesystem::path& tree) {
    return vm::share_refusal(tree, locations);
  }};
  for (const vm::Diagnostic& diagnostic : vm::load_definition(file, full).errors) {
    // Named by message alone: the file's location is not part of the plan.
    refusals.push_back(fmt::format("line {}: {}", diagnostic.line, diagnostic.message));
  }
  return std::move(*parsed.definition);
}

int audit_definition(const AuditOptions& options, const Locations& locations) {
  std::vector<std::string> refusals;
  vm::Definition definition = load(vm::resolve_definition(locations, options.target), locations, refusals);

  acl::UidRegistry registry(locations);
  vm::LaunchAuditOptions audit{
      .title = "definition " + definition.name,
      .locations = locations,
      .uid_source = definition.uid_alias.empty() ? vm::UidSource::single_use : vm::UidSource::alias,
      .uid_range = registry.range().to_string(),
      .checks_shares = definition.is_command(),
      .refusals = refusals,
  };
  for (const std::filesystem::path& file : {definition.kernel, definition.initramfs})
    if (!file.empty()) audit.files_read_as_uid.push_back(file);
  for (const vm::Disk& disk : definition.disks) audit.files_read_as_uid.push_back(disk.path);
  // A UID the registry does not have yet is planned with a stand-in from the
  // range and shown by a label; looking an alias up changes nothing.
  uid_t uid = registry.range().first;
  std::optional<uid_t> alias_uid;
  if (!definition.uid_alias.empty()) alias_uid = registry.find_alias(definition.uid_alias);
  if (alias_uid) uid = *alias_uid;
  audit.uid_is_placeholder = !alias_uid;

  vm::LaunchOptions launch;
  launch.locations = locations;
  // Under s6 a plain command's stdout and stderr are pipes the warden logs
  // (and chowns to its uid), not vmwarden's own descriptors: the audit of
  // what s6 runs must show those.
  launch.under_s6 = options.s6;
  std::optional<vm::LaunchPlan> plan;
  try {
    plan = vm::plan_launch(definition, uid, launch);
  } catch (const UsageError& e) {
    // What a backend refuses for this host (no Wayland socket, a virtiofsd
    // the VMM cannot use) is as permanent for supervise, which exits 125.
    throw PermanentError(fmt::format("{}: {}; supervise would not start it", options.target, e.what()));
  }
  print_audit(*plan, audit, options.json);
  return 0;
}

}  // namespace

void print_audit(const vm::LaunchPlan& plan, const vm::LaunchAuditOptions& options, bool json) {
  supervisor::SandboxAudit audit = vm::launch_audit(plan, options);
  std::string out = json ? supervisor::describe_sandbox_json(plan.sandbox, audit)
                         : supervisor::describe_sandbox_text(plan.sandbox, audit);
  std::fwrite(out.data(), 1, out.size(), stdout);
}

void add_audit_command(CLI::App& app, Globals& globals) {
  auto options = std::make_shared<AuditOptions>();
  CLI::App* command = app.add_subcommand(
      "audit",
      "Print, before anything runs, every privileged step `vmwarden supervise` would take for a definition "
      "(UID lease, ACL grants, runtime directory, namespaces, mounts, uid switches, capability drops), with the "
      "capability each needs, then each service's final confinement: uid/gid, capabilities, Landlock rights per "
      "path, scopes and TCP rule, seccomp profile, action and syscall count, namespaces. Lines starting with '!' "
      "flag what weakens the confinement (kept capabilities, dropped Landlock features, seccomp only "
      "logging). Nothing is leased, granted or created. Exit 0 once printed; 2 for an invalid definition; 125 "
      "for one this build cannot launch.");
  command->add_option("definition", options->target,
                      "A definition file (NAME.toml), or the NAME of one in CONFIG_DIR/vms/")
      ->required();
  command->add_flag("--json", options->json,
                    "Print one JSON object (on an error: {\"audit\": ..., \"error\": MESSAGE}, with \"diagnostics\": "
                    "[\"FILE:LINE:COL: ...\", ...] for an invalid definition, and the exit status it has without --json)");
  command->add_flag("--s6", options->s6,
                    "What `vmwarden supervise --s6` (an s6 service's run script) would do: a plain command's stdout "
                    "and stderr become pipes the warden logs, chowned to its uid; the readiness fd is read from "
                    "./notification-fd if there is one");
  command->callback([&globals, options] {
    globals.action = [&globals, options] {
      try {
        return audit_definition(*options, globals.locations());
      } catch (const std::exception& error) {
        if (options->json) {
          std::string diagnostics;
          if (const auto* invalid = dynamic_cast<const InvalidDefinition*>(&error)) {
            for (const std::string& diagnostic : invalid->diagnostics)
              diagnostics += (diagnostics.empty() ? "" : ",") + json_quote(diagnostic);
            diagnostics = ",\"diagnostics\":[" + diagnostics + "]";
          }
          fmt::print("{{\"audit\":{},\"error\":{}{}}}\n", json_quote(options->target), json_quote(error.what()),
                     diagnostics);
        }
        throw;
      }
    };
  });
}

}  // namespace vmwarden::cli
