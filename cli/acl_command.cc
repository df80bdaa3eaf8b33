// vmwarden acl: symlink-safe grant / revoke / sweep / show of POSIX ACL
// entries for the registry's UIDs.

#include <fmt/core.h>

#include "acl-manager/acl.h"
#include "cli/cli.h"
#include "common/error.h"
#include "common/log.h"
#include "common/exit_status.h"
#include "common/printable.h"
#include "supervisor/runtime_dir.h"
#include "vm-launcher/names.h"
#include "vm-launcher/run.h"
#include "vm-launcher/share_check.h"

namespace vmwarden::cli {
namespace {

// Every path printed here goes through printable(): the names in a tree,
// and where a granted directory was renamed to, are a VM's choice (or that
// of whoever can rename in the tree's parent), terminal escapes included.
// (The report's own are escaped already; printable() leaves them as they are.)
int finish(const acl::Report& report, std::string_view what) {
  for (const std::string& path : report.hardlinks) {
    fmt::print(stderr, "vmwarden: skipped (more than one hard link): {}\n", printable(path));
  }
  for (const std::string& path : report.foreign) {
    fmt::print(stderr, "vmwarden: skipped (owned by neither the tree's owner nor a VM): {}\n", printable(path));
  }
  for (const std::string& error : report.errors) fmt::print(stderr, "vmwarden: {}\n", printable(error));
  for (const std::string& where : report.moved) {
    fmt::print("{}: a directory granted under this path is now at {}; walked there too\n", what, printable(where));
  }
  fmt::print("{}: {}\n", what, report.summary());
  return report.failed == 0 ? exit_status::kOk : exit_status::kFailure;
}

}  // namespace

void add_acl_command(CLI::App& app, Globals& globals) {
  CLI::App* acl = app.add_subcommand(
      "acl",
      "Grant, revoke, sweep, forget and show POSIX ACL entries for registry UIDs. Walks never follow "
      "symlinks and stay on the tree's mount unless --cross-mounts; grants skip (and report) "
      "non-directories with more than one hard link; revoke and sweep act on them too. Paths from the trees "
      "are printed escaped (control characters as \\xNN).");
  acl->require_subcommand(1);

  struct TreeOptions {
    std::string uid;
    std::string path;
    bool ro = false;
    bool rw = false;
    bool cross_mounts = false;
  };

  auto grant_options = std::make_shared<TreeOptions>();
  CLI::App* grant = acl->add_subcommand(
      "grant",
      "Give UID u:UID:r-X (--ro) or u:UID:rwX (--rw) on every directory and regular file under "
      "PATH, and the same default entry on every directory so that new files inherit it. The mask "
      "never lets through a bit it withholds from another entry (such a bit is withheld from UID "
      "too), and no other entry is modified. Records the grant under STATE_DIR/grants (after "
      "checking that PATH's filesystem supports POSIX ACLs), with the directory's file handle, so that "
      "revoke and sweep find it after a rename; a directory granted as PATH before that still exists "
      "stays in the record. A grant to an alias keeps the regular files it left right, by inode and ctime, under "
      "STATE_DIR/verified: the next grant of PATH leaves those still so unread (one statx each). PATH may not be / nor show "
      "vmwarden's own directories, as a VM's share may not.");
  grant->add_option("--uid", grant_options->uid, "An allocated UID in the range, or an alias")->required();
  grant->add_flag("--ro", grant_options->ro, "Read access (r-X)");
  grant->add_flag("--rw", grant_options->rw, "Read-write access (rwX)");
  grant->add_flag("--cross-mounts", grant_options->cross_mounts,
                  "Also descend into other mounts under PATH; kept in the grant record (a later grant without "
                  "it does not take it out), so that revoke and sweep do the same");
  grant->add_option("path", grant_options->path, "Absolute path of the tree (no symlinks on the way)")->required();
  grant->callback([&globals, grant_options] {
    globals.action = [&globals, grant_options] {
      if (grant_options->ro == grant_options->rw) throw UsageError("acl grant needs exactly one of --ro and --rw");
      // What a VM's share may not be, a grant may not cover either: / (every
      // file of the root filesystem) and vmwarden's own directories (a UID
      // granted the registry or the grant records could forge them).
      // Revoke and sweep still reach them, to clean up.
      try {
        (void)vm::checked_share(grant_options->path, globals.locations());
      } catch (const UsageError& error) {
        throw UsageError(fmt::format("acl grant: {}", error.what()));
      }
      acl::UidRegistry registry(globals.locations());
      uid_t uid = registry.resolve(grant_options->uid);
      acl::WalkOptions options{.cross_mounts = grant_options->cross_mounts};
      acl::Report report = acl::grant(registry, uid, grant_options->path,
                                      grant_options->rw ? acl::Access::rw : acl::Access::ro, options);
      return finish(report, fmt::format("grant {} {}", uid, printable(grant_options->path)));
    };
  });

  auto revoke_options = std::make_shared<TreeOptions>();
  CLI::App* revoke = acl->add_subcommand(
      "revoke",
      "Remove UID's access and default entries under PATH, recompute each mask as the smallest "
      "that serves the remaining entries, clear the set-user-ID bit of UID's files and the "
      "set-group-ID bit of its group's (so that nothing left there runs as UID), and drop the grant "
      "record (only the record, where PATH's filesystem has no POSIX ACLs). A directory granted under "
      "PATH and renamed away since is found by the file handle in its record and revoked where it is "
      "now, also when PATH itself is gone; when nothing granted as PATH is left, only the record is "
      "dropped. A damaged grant record of UID is warned about (its tree keeps its entries until it is "
      "mended). While UID is leased (its sandbox runs, and can move a directory it may write out of the "
      "walk's way and back), the record is kept, marked revoked: it grants nothing, and the first sweep "
      "(or revoke) once the lease is gone walks the tree again and drops it.");
  revoke->add_option("--uid", revoke_options->uid, "A UID in the range, or an alias")->required();
  revoke->add_flag("--cross-mounts", revoke_options->cross_mounts,
                   "Also descend into other mounts under PATH (done anyway if the grant record says so)");
  revoke->add_option("path", revoke_options->path, "Absolute path of the tree")->required();
  revoke->callback([&globals, revoke_options] {
    globals.action = [&globals, revoke_options] {
      acl::UidRegistry registry(globals.locations());
      uid_t uid = registry.resolve(revoke_options->uid);
      // A running VM writes in its rw shares while the walk goes by, and can
      // move a directory not walked yet into a part already walked.
      if (registry.is_leased(uid))
        log::warning("UID {} is leased by a running sandbox: a directory it moves during the revoke can keep its "
                     "entries; the grant record is kept, marked revoked, until a sweep or revoke once the "
                     "sandbox has stopped",
                     uid);
      acl::WalkOptions options{.cross_mounts = revoke_options->cross_mounts};
      acl::Report report = acl::revoke(registry, uid, revoke_options->path, options);
      std::string what = fmt::format("revoke {} {}", uid, printable(revoke_options->path));
      if (report.record_kept_revoked)
        fmt::print("{}: grant record kept, marked revoked: `vmwarden acl sweep` finishes the revoke once UID {} "
                   "has no lease\n",
                   what, uid);
      return finish(report, what);
    };
  });

  auto forget_options = std::make_shared<TreeOptions>();
  CLI::App* forget = acl->add_subcommand(
      "forget",
      "Take out of UID's grant record for PATH the directories whose filesystem is not mounted in this "
      "mount namespace (a disk that will not come back), without walking anything; revoke and sweep otherwise keep failing "
      "on them and keep the record. The record goes if nothing else is left of it; whatever else it "
      "covers is left for revoke. Any entries of UID still on that filesystem are then unknown to "
      "vmwarden; a single-use UID left without records goes back to the pool at the next sweep. Refused "
      "(exit 2, nothing changed) while a recorded directory's fate is unknown for another reason (a "
      "mount of its device covered, the kernel refusing), when none is out of reach, if UID is leased, "
      "or if there is no such record.");
  forget->add_option("--uid", forget_options->uid, "A UID in the range, or an alias")->required();
  forget->add_option("path", forget_options->path, "The tree's path, as recorded")->required();
  forget->callback([&globals, forget_options] {
    globals.action = [&globals, forget_options] {
      acl::UidRegistry registry(globals.locations());
      uid_t uid = registry.resolve(forget_options->uid);
      std::size_t roots = acl::forget(registry, uid, forget_options->path);
      fmt::print("forget {} {}: {} recorded director{} out of reach taken out of the grant record\n", uid,
                 printable(forget_options->path), roots, roots == 1 ? "y" : "ies");
      return exit_status::kOk;
    };
  });

  auto dry_run = std::make_shared<bool>(false);
  CLI::App* sweep = acl->add_subcommand(
      "sweep",
      "Remove the directories of runs killed with SIGKILL (STATE_DIR/runs/run-PID-HEX whose lock no run holds "
      "and whose PID no process has). Then, in every recorded tree, remove the entries (named user and group) "
      "of UIDs in the range that the "
      "registry handed out (not a host account's or group's) and that are neither leased "
      "nor an alias with a grant record (not one revoked while leased) for that tree (or one nested with it), "
      "and clear those UIDs' "
      "set-ID bits as revoke does (the clean-up after unclean shutdowns); then drop dead UIDs' "
      "records and release dead single-use UIDs; last, remove the runtime directories (RUNTIME_DIR/NAME, mode "
      "0700, marked trusted.vmwarden.runtime-dir when made, or owned by a UID of the range) whose lock no "
      "instance holds, which an instance killed before its "
      "warden started leaves behind. A directory renamed away since its grant is found by "
      "the file handle in its record and swept where it is now (of the dead UIDs whose records name it "
      "only). A tree of which nothing is left (its path gone or something else now, its recorded "
      "directories removed) loses the dead UIDs' records; one that fails otherwise (e.g. a symlink in "
      "its place where the record knows the tree by its path, or a recorded directory whose filesystem "
      "is not mounted here: see forget) keeps them, is reported, and the other trees are still swept (exit "
      "status 1). A damaged grant record (unreadable, without a \"path /absolute/tree\" line, or a copy under "
      "another file name than its path's key) is reported as FILE[:LINE] with what belongs there, and its UID is "
      "never released (exit status 1).");
  sweep->add_flag("--dry-run", *dry_run, "Print what would be removed; change nothing");
  sweep->callback([&globals, dry_run] {
    globals.action = [&globals, dry_run] {
      bool failed = false;
      std::string_view verb = *dry_run ? "would remove" : "removed";
      // Directories left behind: one line each; a failure fails the sweep.
      auto report_left_behind = [&](const supervisor::AbandonedDirs& dirs, std::string_view kind,
                                    std::string_view holder) {
        for (const std::filesystem::path& dir : dirs.removed) {
          fmt::print("{} the {} directory {}, which no {} holds\n", verb, kind, printable(dir.native()), holder);
        }
        for (const std::string& error : dirs.errors) fmt::print(stderr, "vmwarden: {}\n", printable(error));
        failed = failed || !dirs.errors.empty();
      };
      // First the directories of runs killed with SIGKILL: what was granted
      // in them goes with them, and the sweep then drops their records.
      supervisor::AbandonedDirs abandoned_runs = vm::remove_abandoned_runs(globals.locations(), *dry_run);
      report_left_behind(abandoned_runs, "run", "run");
      acl::UidRegistry registry(globals.locations());
      acl::SweepReport result = acl::sweep(registry, *dry_run);
      for (const auto& tree : result.trees) {
        // Escaped as finish() escapes: a record's path, and where its
        // directory is now, can hold what a VM named.
        std::string path = printable(tree.path.native());
        if (tree.missing) fmt::print("{}: missing\n", path);
        for (const std::string& where : tree.report.moved) {
          fmt::print("{}: a directory granted under this path is now at {}; swept there\n", path, printable(where));
        }
        for (auto [uid, count] : tree.report.removed) {
          fmt::print("{}: {} {} entr{} of UID {}\n", path, verb, count, count == 1 ? "y" : "ies", uid);
        }
        if (tree.report.setid_cleared != 0) {
          fmt::print("{}: {} the set-ID bits of {} file(s)\n", path, *dry_run ? "would clear" : "cleared",
                     tree.report.setid_cleared);
        }
        for (const std::string& error : tree.report.errors) fmt::print(stderr, "vmwarden: {}\n", printable(error));
        if (tree.report.failed != 0) fmt::print("{}: {} failure(s), its records kept\n", path, tree.report.failed);
        failed = failed || tree.report.failed != 0;
      }
      // A damaged record's tree is unknown: its UID stays allocated, and the
      // sweep fails until the record is mended or removed by hand.
      for (const std::string& damaged : result.damaged_records) {
        fmt::print(stderr, "vmwarden: damaged grant record, its UID kept: {}\n", printable(damaged));
      }
      failed = failed || !result.damaged_records.empty();
      // An instance killed between making its runtime directory and
      // starting its warden left the directory (owned by its UID) behind.
      const acl::UidRange& range = registry.range();
      supervisor::AbandonedDirs abandoned = supervisor::remove_abandoned_runtime_dirs(
          globals.locations().runtime_dir, [](std::string_view name) { return !vm::vm_name_problem(name); },
          [&range](uid_t owner) { return range.contains(owner); }, *dry_run);
      report_left_behind(abandoned, "runtime", "instance");
      if (!*dry_run) {
        for (uid_t uid : result.released) fmt::print("released single-use UID {}\n", uid);
        fmt::print("sweep: {} tree(s), {} record(s) dropped, {} UID(s) released, {} runtime and {} run director{} "
                   "removed\n",
                   result.trees.size(), result.records_removed, result.released.size(), abandoned.removed.size(),
                   abandoned_runs.removed.size(), abandoned_runs.removed.size() == 1 ? "y" : "ies");
      } else {
        for (uid_t uid : result.released) fmt::print("would release single-use UID {}\n", uid);
        fmt::print("sweep (dry run, nothing changed): {} tree(s), {} record(s) would be dropped, {} UID(s) would be "
                   "released, {} runtime and {} run director{} would be removed\n",
                   result.trees.size(), result.records_removed, result.released.size(), abandoned.removed.size(),
                   abandoned_runs.removed.size(), abandoned_runs.removed.size() == 1 ? "y" : "ies");
      }
      return failed ? exit_status::kFailure : exit_status::kOk;
    };
  });

  auto show_path = std::make_shared<std::string>();
  CLI::App* show = acl->add_subcommand(
      "show",
      "Print PATH's access and default ACL with numeric ids, naming the registry's UIDs on user and group "
      "entries. PATH is quoted with getfacl's octal escapes (\\ooo, a backslash too), so that the output goes back "
      "through setfacl --restore. Refused if PATH or any directory on the way is a symlink.");
  show->add_option("path", *show_path, "Absolute path")->required();
  show->callback([&globals, show_path] {
    globals.action = [&globals, show_path] {
      acl::UidRegistry registry(globals.locations());
      fmt::print("{}", acl::show(*show_path, &registry));
      return exit_status::kOk;
    };
  });
}

}  // namespace vmwarden::cli
