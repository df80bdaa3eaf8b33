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
      "next `acl sweep` releases it unless `uid release` does first. An alias whose UID is outside the "
      "range, or whose record is damaged, is refused.");
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
      "holds its lease, and for a damaged record (left for a human to mend or remove). Its ACL entries stay until `acl revoke` or `acl sweep` removes them, and "
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
      "list",
      "List allocated UIDs, one row each with six columns, '-' for none: UID; STATE (allocated; "
      "out-of-range: allocated before the range changed, not used by VMs; damaged: its record is not "
      "\"alias NAME\" or \"single-use\", or repeats an alias, and is left alone, see the warning; released); "
      "KIND (alias or single-use); ALIAS; LEASE (the pid holding the lease); GRANTS (grant records, damaged ones and those revoked while leased, which a sweep drops, included).");
  list->add_flag("--all", *list_all,
                 "Also list released UIDs, least recently released first. Single-use allocations take a UID "
                 "never used before first, and skip released UIDs that still have grant records");
  list->callback([&globals, list_all] {
    globals.action = [&globals, list_all] {
      acl::UidRegistry registry(globals.locations());
      std::vector<acl::UidInfo> infos = registry.list(*list_all);
      std::stable_sort(infos.begin(), infos.end(), [](const acl::UidInfo& a, const acl::UidInfo& b) {
        if (a.allocated != b.allocated) return a.allocated;
        return a.allocated ? a.uid < b.uid : a.released_seq < b.released_seq;
      });
      // One token per column, so that awk '{print $4}' is the alias on
      // every row; the alias column as wide as the longest (64 at most).
      std::size_t alias_width = 5;
      for (const acl::UidInfo& info : infos) alias_width = std::max(alias_width, info.alias.size());
      auto row = [alias_width](const auto& uid, std::string_view state, std::string_view kind,
                               std::string_view alias, const auto& lease, const auto& grants) {
        fmt::print("{:<11} {:<12} {:<10} {:<{}} {:<8} {}\n", uid, state, kind, alias, alias_width, lease, grants);
      };
      row("UID", "STATE", "KIND", "ALIAS", "LEASE", "GRANTS");
      for (const acl::UidInfo& info : infos) {
        std::string_view state = !info.allocated                        ? "released"
                                 : !info.damage.empty()                 ? "damaged"
                                 : !registry.range().contains(info.uid) ? "out-of-range"
                                                                        : "allocated";
        std::string_view kind = "-";  // released, or a damaged record that names no valid alias
        if (info.allocated && !info.alias.empty())
          kind = "alias";
        else if (info.allocated && info.damage.empty())
          kind = "single-use";
        row(info.uid, state, kind, info.alias.empty() ? "-" : info.alias,
            info.leased_by ? std::to_string(*info.leased_by) : std::string("-"), info.grant_records);
      }
      return exit_status::kOk;
    };
  });
}

}  // namespace vmwarden::cli
