// vmwarden uid: the per-VM UID registry (aliases, single-use UIDs, leases).

#include <fmt/core.h>

#include "acl-manager/uid_registry.h"
#include "cli/cli.h"
#include "common/exit_status.h"

namespace vmwarden::cli {

void add_uid_command(CLI::App& app, Globals& globals) {
  CLI::App* command = app.add_subcommand(
      "uid",
      "Manage the per-VM UID registry under STATE_DIR/uids. UIDs come from CONFIG_DIR/uid-range "
      "(default 1879048192-1879113727); a UID that exists in the user or group database or in "
      "/etc/subuid or /etc/subgid is never handed out.");
  command->require_subcommand(1);

  struct AllocOptions {
    std::string alias;
  };
  auto alloc_options = std::make_shared<AllocOptions>();
  CLI::App* alloc = command->add_subcommand(
      "alloc",
      "Print a UID. With --alias NAME: the alias's persistent UID, allocated on first use. Without: "
      "a fresh single-use UID (one never used before if any is left, else the least recently released "
      "one without grant records); as nothing holds its lease, the "
      "next `acl sweep` releases it unless `uid release` does first.");
  CLI::Option* alias_option =
      alloc->add_option("--alias", alloc_options->alias, "Alias name ([a-z][a-z0-9_.-]{0,63}: a lowercase letter first)");
  alloc->callback([&globals, alloc_options, alias_option] {
    bool with_alias = alias_option->count() > 0;
    globals.action = [&globals, alloc_options, with_alias] {
      acl::UidRegistry registry(globals.locations());
      uid_t uid = with_alias ? registry.allocate_alias(alloc_options->alias) : registry.allocate_single_use();
      fmt::print("{}\n", uid);
      return exit_status::kOk;
    };
  });

  auto release_target = std::make_shared<std::string>();
  CLI::App* release = command->add_subcommand(
      "release",
      "Return an allocated UID (a number, or an alias name) to the pool. Refused while a running VM "
      "holds its lease. Its ACL entries stay until `acl revoke` or `acl sweep` removes them, and "
      "it is not reused while grant records remain.");
  release->add_option("uid", *release_target, "UID or alias")->required();
  release->callback([&globals, release_target] {
    globals.action = [&globals, release_target] {
      acl::UidRegistry registry(globals.locations());
      uid_t uid = registry.resolve(*release_target);
      registry.release(uid);
      std::size_t records = registry.grant_records(uid).size();
      if (records != 0) {
        fmt::print(stderr, "vmwarden: UID {} still has {} grant record(s); `vmwarden acl sweep` removes its entries\n",
                   uid, records);
      }
      return exit_status::kOk;
    };
  });

  auto list_all = std::make_shared<bool>(false);
  CLI::App* list = command->add_subcommand(
      "list", "List allocated UIDs: kind (alias NAME or single-use), the pid holding the lease, grant records.");
  list->add_flag("--all", *list_all, "Also list released UIDs, in reuse order");
  list->callback([&globals, list_all] {
    globals.action = [&globals, list_all] {
      acl::UidRegistry registry(globals.locations());
      std::vector<acl::UidInfo> infos = registry.list(*list_all);
      std::stable_sort(infos.begin(), infos.end(), [](const acl::UidInfo& a, const acl::UidInfo& b) {
        if (a.allocated != b.allocated) return a.allocated;
        return a.allocated ? a.uid < b.uid : a.released_seq < b.released_seq;
      });
      fmt::print("{:<11} {:<10} {:<20} {:<10} {}\n", "UID", "STATE", "KIND", "LEASE", "GRANTS");
      for (const acl::UidInfo& info : infos) {
        std::string kind = info.allocated ? (info.alias.empty() ? "single-use" : "alias " + info.alias) : "-";
        std::string lease = info.leased_by ? fmt::format("pid {}", *info.leased_by) : "-";
        fmt::print("{:<11} {:<10} {:<20} {:<10} {}\n", info.uid, info.allocated ? "allocated" : "released", kind,
                   lease, info.grant_records);
      }
      return exit_status::kOk;
    };
  });
}

}  // namespace vmwarden::cli
