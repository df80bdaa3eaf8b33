// A share swapped between its grant and the sandbox's start. Whoever can
// write the directory above a share can rename the share away and put a
// symlink (or another directory) under its name at any moment; the grant
// opened the share without following symlinks, and from then on the sandbox
// must use what the grant opened, never the name. Each test makes the swap
// at the worst moment: after the grant, before the warden's first lookup.
#include <fcntl.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <stdexcept>
#include <string>

#include <fmt/core.h>

#include "acl-manager/acl.h"
#include "acl-manager/uid_registry.h"
#include "common/error.h"
#include "common/locations.h"
#include "common/unique_fd.h"
#include "supervisor/sandbox.h"
#include "tests/support/support.h"
#include "vm-launcher/launch.h"
#include "vm-launcher/share_check.h"

namespace vmwarden::testing {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::Not;

struct Outcome {
  int status = -1;  // the sandbox's exit status, or 125 when it refused to start
  std::string out;  // the command's stdout
  std::string err;  // the outer's stderr
};

class SharePinTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root";
    // The single-use UID passes through the scratch tree to its shares.
    fs::permissions(root_.path(), fs::perms(0711));
    for (fs::path dir = root_.path(); dir != dir.parent_path(); dir = dir.parent_path()) {
      struct stat st {};
      ASSERT_EQ(::stat(dir.c_str(), &st), 0);
      ASSERT_NE(st.st_mode & S_IXOTH, 0U) << dir << " must be searchable by other users";
    }
    for (const char* dir : {"config", "state", "run", "parent/share", "outside"}) fs::create_directories(root_ / dir);
    write_file(root_ / "parent/share/marker", "the share\n");
    write_file(root_ / "outside/secret", "not shared\n", 0644);
  }

  fs::path share() const { return root_ / "parent/share"; }

  Locations locations() const { return {root_ / "config", root_ / "state", root_ / "run"}; }

  // A plan for a command whose rule on the share has `rights`, made from a
  // descriptor of the share, with a path that names the directory outside:
  // as if the name had changed between the warden's mount and the rule.
  std::function<vm::LaunchPlan(uid_t)> rule_with_another_path(supervisor::PathRights rights, std::string script) const {
    return [this, rights, script](uid_t uid) {
      vm::LaunchPlan plan = command(acl::Access::rw, script)(uid);
      auto pinned = std::make_shared<const UniqueFd>(::open(share().c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
      for (supervisor::PathRule& rule : plan.sandbox.services[0].confinement.landlock.paths) {
        if (rule.path == share()) {
          rule.path = root_ / "outside";
          rule.rights = rights;
          rule.pinned = pinned;
        }
      }
      plan.sandbox.mounts.clear();
      plan.grants.clear();
      return plan;
    };
  }

  // A command definition with the one share, as `vmwarden supervise` plans
  // it for `uid`.
  std::function<vm::LaunchPlan(uid_t)> command(acl::Access access, const std::string& script) const {
    vm::Definition definition;
    definition.name = "pin";
    definition.command = {"/bin/sh", "-c", script};
    definition.shutdown_timeout_s = 5;
    definition.shares.push_back({"data", share(), access == acl::Access::rw ? vm::Access::rw : vm::Access::ro});
    return [definition, locations = locations()](uid_t uid) {
      return vm::plan_launch(definition, uid, {.locations = locations});
    };
  }

  // What a test does around the run, in the child that is the outer
  // (`setup` before anything, `swap` between the grants and the sandbox's
  // start, `after` once the grants are revoked and the UID released, its
  // output appended to the command's).
  struct Hooks {
    std::function<void()> setup = [] {};
    std::function<void()> swap = [] {};
    std::function<void()> after = [] {};
  };

  // The plan for a UID (`plan_for`) leased, granted and run as `vmwarden
  // supervise` does. Runs in a child, which is the outer; the command's
  // output goes to `out`.
  Outcome run(const std::function<vm::LaunchPlan(uid_t)>& plan_for, const Hooks& hooks) {
    fs::path out = root_ / "out", err = root_ / "err";
    pid_t outer = ::fork();
    if (outer == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      int out_fd = ::open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
      int err_fd = ::open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
      if (out_fd < 0 || err_fd < 0 || ::dup2(out_fd, 1) < 0 || ::dup2(err_fd, 2) < 0) ::_exit(126);
      int status = 125;
      try {
        hooks.setup();
        {
          acl::UidRegistry registry(locations());
          acl::UidLease lease = registry.lease_single_use();
          vm::LaunchPlan plan = plan_for(lease.uid());
          acl::ScopedGrants grants(registry, lease.uid());
          vm::grant_shares(plan, grants);
          hooks.swap();
          status = supervisor::run_sandbox(plan.sandbox);
        }
        std::fflush(stdout);
        hooks.after();
      } catch (const std::exception& error) {
        std::fprintf(stderr, "%s\n", error.what());
      }
      std::fflush(stdout);
      std::fflush(stderr);
      ::_exit(status);
    }
    int status = 0;
    EXPECT_EQ(::waitpid(outer, &status, 0), outer);
    EXPECT_TRUE(WIFEXITED(status));
    return {WEXITSTATUS(status), read_file(out), read_file(err)};
  }

  // In the outer's own mount namespace (nothing reaches the host's): a
  // tmpfs on the share's parent, made shared (as / is on many hosts), the
  // share on it, and a world-writable tmpfs mounted below the share.
  void share_on_a_shared_mount_with_a_mount_below() const {
    fs::path parent = root_ / "parent";
    if (::unshare(CLONE_NEWNS) != 0 || ::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0)
      throw std::runtime_error("private mount namespace");
    if (::mount("tmpfs", parent.c_str(), "tmpfs", 0, "mode=0755") != 0) throw std::runtime_error("mount tmpfs");
    fs::create_directories(share() / "sub");
    write_file(share() / "marker", "the share\n");
    if (::mount("tmpfs", (share() / "sub").c_str(), "tmpfs", 0, "mode=1777") != 0)
      throw std::runtime_error("mount tmpfs below the share");
    write_file(share() / "sub/below", "on the mount below\n");
    if (::mount(nullptr, parent.c_str(), nullptr, MS_REC | MS_SHARED, nullptr) != 0)
      throw std::runtime_error("make shared");
  }

  // The share renamed away and a symlink to a directory it does not hold
  // put in its place.
  void swap_for_symlink() const {
    fs::rename(share(), root_ / "parent/moved");
    fs::create_directory_symlink(root_ / "outside", share());
  }

  // As above, the mount below the share made unbindable.
  void share_with_an_unbindable_mount_below() const {
    share_on_a_shared_mount_with_a_mount_below();
    if (::mount(nullptr, (share() / "sub").c_str(), nullptr, MS_UNBINDABLE, nullptr) != 0)
      throw std::runtime_error("make unbindable");
  }

  // `body` in a child of its own, in a private mount namespace: the bind
  // mounts it makes reach neither the host nor the other tests, and go with
  // the child. Returns what it printed, or the error that stopped it.
  std::string with_private_mounts(const std::function<void()>& body) const {
    fs::path out = root_ / "out";
    pid_t child = ::fork();
    if (child == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      int out_fd = ::open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
      if (out_fd < 0 || ::dup2(out_fd, 1) < 0) ::_exit(126);
      try {
        if (::unshare(CLONE_NEWNS) != 0 || ::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0)
          throw std::runtime_error("private mount namespace");
        body();
      } catch (const std::exception& error) {
        std::printf("error: %s\n", error.what());
      }
      std::fflush(stdout);
      ::_exit(0);
    }
    int status = 0;
    EXPECT_EQ(::waitpid(child, &status, 0), child);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
    return read_file(out);
  }

  // Only inside with_private_mounts().
  static void bind(const fs::path& source, const fs::path& target) {
    fs::create_directories(target);
    if (::mount(source.c_str(), target.c_str(), nullptr, MS_BIND, nullptr) != 0)
      throw std::runtime_error(
          fmt::format("bind {} on {}: {}", source.string(), target.string(), std::strerror(errno)));
  }

  // What checked_share() says of `tree`, as a line of output.
  static void print_verdict(const fs::path& tree, const Locations& locations, const fs::path& own = {}) {
    try {
      (void)vm::checked_share(tree, locations, own);
      std::printf("%s: accepted\n", tree.c_str());
    } catch (const UsageError& error) {
      std::printf("%s: refused: %s\n", tree.c_str(), error.what());
    }
  }

  // Matches print_verdict()'s line for `tree` refused with "TREE " + `says`.
  static ::testing::Matcher<const std::string&> refused(const fs::path& tree, const std::string& says) {
    return HasSubstr(tree.string() + ": refused: " + tree.string() + " " + says);
  }

  // vmwarden's own directories, all there: compared by identity.
  void make_state() const {
    for (const char* dir : {"state/uids/sub", "state/grants/1879048192", "state/runs/r1/config", "state/demo/rw"})
      fs::create_directories(root_ / dir);
  }

  TempDir root_{"vmwarden-share-pin"};
};

TEST_F(SharePinTest, AReadWriteShareSwappedForASymlinkAfterItsGrantIsRefused) {
  std::string script = fmt::format("cat {0}/secret; echo written > {0}/planted; echo ran", share().string());
  Outcome outcome = run(command(acl::Access::rw, script), {.swap = [this] { swap_for_symlink(); }});
  // It is mounted over its path from the grant's copy, and that path no
  // longer leads to the directory granted: the sandbox does not start.
  EXPECT_EQ(outcome.status, 125);
  EXPECT_THAT(outcome.err, HasSubstr(share().string() + " now goes through a symlink"));
  EXPECT_THAT(outcome.out, Not(HasSubstr("not shared")));
  EXPECT_THAT(outcome.out, Not(HasSubstr("ran")));
  EXPECT_FALSE(fs::exists(root_ / "outside/planted"));
}

// Between the warden's mount and the service's Landlock rule the name can
// still change: a granted tree's rule is made from the grant's descriptor,
// whatever its path names by then.
TEST_F(SharePinTest, ALandlockRuleWithADescriptorCoversThatDirectoryNotItsPath) {
  std::string script =
      fmt::format("cat {}/marker; cat {}/secret; echo done", share().string(), (root_ / "outside").string());
  Outcome outcome = run(rule_with_another_path(supervisor::PathRights::read_only(), script), {});
  EXPECT_EQ(outcome.status, 0) << outcome.err;
  EXPECT_EQ(outcome.out, "the share\ndone\n") << outcome.err;
}

// A write rule's path is also where its mount is made writable again (every
// other mount is read-only): one whose path no longer names the directory
// its descriptor pins is refused, rather than made writable.
TEST_F(SharePinTest, AWriteRuleWhosePathNamesAnotherDirectoryIsRefused) {
  std::string script = fmt::format("echo x > {}/planted; echo ran", (root_ / "outside").string());
  Outcome outcome = run(rule_with_another_path(supervisor::PathRights::read_write(), script), {});
  EXPECT_EQ(outcome.status, 125);
  EXPECT_THAT(outcome.err, HasSubstr((root_ / "outside").string() + " is another directory than the one checked"));
  EXPECT_THAT(outcome.out, Not(HasSubstr("ran")));
  EXPECT_FALSE(fs::exists(root_ / "outside/planted"));
}

TEST_F(SharePinTest, AReadOnlyShareSwappedForASymlinkAfterItsGrantIsRefused) {
  std::string script = fmt::format("cat {}/secret; echo ran", share().string());
  Outcome outcome = run(command(acl::Access::ro, script), {.swap = [this] { swap_for_symlink(); }});
  // Its read-only mount is made over its path, which no longer leads to the
  // directory granted: the sandbox does not start.
  EXPECT_EQ(outcome.status, 125);
  EXPECT_THAT(outcome.err, HasSubstr(share().string() + " now goes through a symlink"));
  EXPECT_THAT(outcome.out, Not(HasSubstr("not shared")));
  EXPECT_THAT(outcome.out, Not(HasSubstr("ran")));
}

TEST_F(SharePinTest, AReadOnlyShareReplacedByAnotherDirectoryAfterItsGrantIsRefused) {
  std::string script = fmt::format("cat {}/secret; echo ran", share().string());
  Outcome outcome = run(command(acl::Access::ro, script), {.swap = [this] {
                                                                fs::rename(share(), root_ / "parent/moved");
                                                                fs::rename(root_ / "outside", share());
                                                              }});
  EXPECT_EQ(outcome.status, 125);
  EXPECT_THAT(outcome.err, HasSubstr(share().string() + " is another directory"));
  EXPECT_THAT(outcome.out, Not(HasSubstr("ran")));
}

TEST_F(SharePinTest, AReadOnlyShareLeftAloneIsMountedReadOnly) {
  std::string script = fmt::format("cat {0}/marker; echo x > {0}/new || echo refused", share().string());
  Outcome outcome = run(command(acl::Access::ro, script), {});
  EXPECT_EQ(outcome.status, 0) << outcome.err;
  EXPECT_EQ(outcome.out, "the share\nrefused\n");
  EXPECT_FALSE(fs::exists(share() / "new"));
}

// A VM's daemons get a share's mount under the runtime dir instead of its
// path (plan_launch gives a VM share a mount without a target): the copy
// grant_shares() made, on a tmpfs only root can write.
TEST_F(SharePinTest, AVmShareSwappedAfterItsGrantIsStillTheShareAtItsMountPoint) {
  auto plan_for = [this](uid_t uid) {
    vm::LaunchPlan plan;
    plan.uid = uid;
    plan.grants.push_back({share(), acl::Access::rw});
    supervisor::SandboxSpec& spec = plan.sandbox;
    spec.name = "pin";
    spec.runtime_dir = root_ / "run/pin";
    spec.runtime_dir_uid = uid;
    spec.runtime_dir_gid = uid;
    spec.shutdown_timeout = std::chrono::seconds(5);
    spec.mounts.push_back({.source = share(), .name = "data", .readonly = false});
    fs::path point = supervisor::private_mount_point(spec, "data");
    supervisor::ServiceSpec service;
    service.name = "daemon";
    service.main = true;
    service.argv = {"/bin/sh", "-c",
                    fmt::format("cat {0}/marker; ls {0}; stat -c '%U %a' {1}; mkdir {1}/other 2>&1 || echo refused; "
                                "mv {0} {1}/x 2>&1 || echo refused; echo written > {0}/new",
                                point.string(), point.parent_path().string())};
    service.fds = {{1, 1}, {1, 2}};
    service.confinement.uid = uid;
    service.confinement.gid = uid;
    service.confinement.landlock.mode = supervisor::LandlockMode::off;
    spec.services.push_back(std::move(service));
    return plan;
  };
  Outcome outcome = run(plan_for, {.swap = [this] { swap_for_symlink(); }});
  EXPECT_EQ(outcome.status, 0) << outcome.err << outcome.out;
  EXPECT_THAT(outcome.out, HasSubstr("the share\nmarker\n"));
  EXPECT_THAT(outcome.out, Not(HasSubstr("secret")));
  EXPECT_THAT(outcome.out, HasSubstr("root 755"));
  EXPECT_THAT(outcome.out, HasSubstr("Read-only file system"));
  EXPECT_EQ(read_file(root_ / "parent/moved/new"), "written\n") << "the share is written, not what its name leads to";
  EXPECT_FALSE(fs::exists(root_ / "outside/new"));
  EXPECT_FALSE(fs::exists(root_ / "run/pin")) << "the runtime dir goes with the sandbox";
}

// The copies are private: where the share lies on a shared mount (the usual
// case on a host whose / is shared), a copy would otherwise stay a peer of
// the host's mounts, and a mount or unmount in the sandbox would reach the
// host (and a mount the host makes below a read-only share would appear in
// the sandbox, writable).
TEST_F(SharePinTest, TheCopyOfASharedMountIsPrivate) {
  std::string script = fmt::format("cat {0}/marker; grep -e ' {0} ' -e ' {0}/sub ' /proc/self/mountinfo",
                                   share().string());
  Outcome outcome = run(command(acl::Access::ro, script), {.setup = [this] { share_on_a_shared_mount_with_a_mount_below(); }});
  EXPECT_EQ(outcome.status, 0) << outcome.err;
  EXPECT_THAT(outcome.out, HasSubstr("the share\n"));
  EXPECT_THAT(outcome.out, HasSubstr(" " + share().string() + " ")) << "the copy is mounted";
  EXPECT_THAT(outcome.out, HasSubstr(" " + (share() / "sub").string() + " ")) << "with the mount below the share";
  EXPECT_THAT(outcome.out, Not(HasSubstr("shared:"))) << outcome.out;
}

// The grant and the revoke walk the share's own mount. A mount below a
// read-write share is in the copy (what it hides on the host stays hidden),
// read-only: the VM can leave nothing there (a set-user-ID file of its UID)
// that the revoke would not find.
TEST_F(SharePinTest, AMountBelowAReadWriteShareIsReadOnly) {
  std::string script = fmt::format("cat {0}/sub/below; touch {0}/sub/left 2>&1 || echo refused; touch {0}/top && echo top",
                                   share().string());
  Hooks hooks;
  hooks.setup = [this] { share_on_a_shared_mount_with_a_mount_below(); };
  hooks.after = [this] { std::printf("left on the mount below: %d\n", fs::exists(share() / "sub/left") ? 1 : 0); };
  Outcome outcome = run(command(acl::Access::rw, script), hooks);
  EXPECT_EQ(outcome.status, 0) << outcome.err;
  EXPECT_THAT(outcome.out, HasSubstr("on the mount below\n"));
  EXPECT_THAT(outcome.out, HasSubstr("Read-only file system"));
  EXPECT_THAT(outcome.out, HasSubstr("refused\ntop\nleft on the mount below: 0\n"));
}

// A share inside another: the outer is mounted first, whatever order they
// are given in, so the inner one is not hidden under it.
TEST_F(SharePinTest, AShareInsideAnotherIsMountedOnTopOfIt) {
  fs::create_directories(share() / "inner");
  vm::Definition definition;
  definition.name = "pin";
  definition.command = {"/bin/sh", "-c",
                        fmt::format("echo x > {0}/inner/new && echo inner; echo x > {0}/new 2>&1 || echo outer refused",
                                    share().string())};
  definition.shutdown_timeout_s = 5;
  definition.shares.push_back({"in", share() / "inner", vm::Access::rw});
  definition.shares.push_back({"out", share(), vm::Access::ro});
  auto plan_for = [definition, locations = locations()](uid_t uid) {
    return vm::plan_launch(definition, uid, {.locations = locations});
  };
  Outcome outcome = run(plan_for, {});
  EXPECT_EQ(outcome.status, 0) << outcome.err;
  EXPECT_EQ(outcome.out, "inner\nouter refused\n");
  EXPECT_THAT(outcome.err, HasSubstr("Read-only file system"));
  EXPECT_TRUE(fs::exists(share() / "inner/new"));
  EXPECT_FALSE(fs::exists(share() / "new"));
}

// A copy of a share's mounts leaves out an unbindable mount below it and
// would show the directory it covers, which no grant walked: refused.
TEST_F(SharePinTest, AShareWithAnUnbindableMountBelowItIsRefused) {
  Hooks hooks;
  hooks.setup = [this] { share_with_an_unbindable_mount_below(); };
  Outcome outcome = run(command(acl::Access::rw, "echo ran"), hooks);
  EXPECT_EQ(outcome.status, 125);
  EXPECT_THAT(outcome.err, HasSubstr(share().string() + " has an unbindable mount at or below it"));
  EXPECT_THAT(outcome.out, Not(HasSubstr("ran")));
}

// A share holding the state or the runtime directory would hand the VM the
// UID registry and grant records, or the VMMs' control sockets (its
// virtiofsd's copy of it would show them past the runtime dir's cover).
TEST_F(SharePinTest, AShareHoldingTheStateOrRuntimeDirectoryIsRefused) {
  auto expect_refused = [](const fs::path& tree, const Locations& held) {
    try {
      (void)vm::checked_share(tree, held);
      ADD_FAILURE() << tree << " accepted";
    } catch (const UsageError& error) {
      EXPECT_THAT(error.what(), HasSubstr("holds")) << error.what();
      EXPECT_THAT(error.what(), HasSubstr("share a directory beside it")) << error.what();
    }
  };
  expect_refused(root_.path(), locations());  // holds state/uids and run/
  // The rest of the state directory is VMs' own data (the demo's shares).
  fs::create_directories(root_ / "state/demo/rw");
  EXPECT_EQ(vm::checked_share(root_ / "state/demo/rw", locations()), root_ / "state/demo/rw");
  Locations runtime_inside = locations();
  runtime_inside.runtime_dir = share() / "run";
  expect_refused(share(), runtime_inside);
  // A share inside one of them: the registry, the leases, the definitions.
  for (const char* inside : {"state/uids", "state/grants/1879048192", "state/runs/other", "run/_uid-leases",
                             "config/vms"}) {
    fs::create_directories(root_ / inside);
    try {
      (void)vm::checked_share(root_ / inside, locations());
      ADD_FAILURE() << inside << " accepted";
    } catch (const UsageError& error) {
      EXPECT_THAT(error.what(), HasSubstr("which the VM would then reach")) << error.what();
    }
  }
  // vmwarden's own directory there (a run's) may hold shares.
  fs::create_directories(root_ / "state/runs/r1/config");
  EXPECT_EQ(vm::checked_share(root_ / "state/runs/r1/config", locations(), root_ / "state/runs/r1"),
            root_ / "state/runs/r1/config");
  // A location named through a symlink is where it leads.
  fs::create_directory_symlink(share(), root_ / "via-link");
  Locations through_link = locations();
  through_link.state_dir = root_ / "via-link/state";
  expect_refused(share(), through_link);
  EXPECT_EQ(vm::checked_share(share(), locations()), share());
}

// A bind mount shows a directory under another path: the registry mounted
// elsewhere is still the registry, compared by which directory of which
// filesystem it is.
TEST_F(SharePinTest, ABindMountOfTheUidRegistryElsewhereIsRefused) {
  make_state();
  fs::path mounted = root_ / "elsewhere/registry";
  std::string out = with_private_mounts([&] {
    bind(root_ / "state/uids", mounted);
    print_verdict(mounted, locations());
    print_verdict(mounted / "sub", locations());
  });
  std::string registry = (root_ / "state/uids").string();
  EXPECT_THAT(out, refused(mounted, "is " + registry + ", the UID registry, reached through the mount at " +
                                        mounted.string() + ", which the VM would then reach; share a directory "
                                        "outside it\n"));
  EXPECT_THAT(out, refused(mounted / "sub", "lies in " + registry + ", the UID registry, as " + registry +
                                                "/sub (through the mount at " + mounted.string() + ")"));
}

// A share takes the mounts below it along (its copy is recursive): one
// holding a bind mount of the grant records, or of a directory in them,
// would hand the VM the records.
TEST_F(SharePinTest, AShareHoldingABindMountOfTheGrantRecordsIsRefused) {
  make_state();
  fs::path other = root_ / "parent/other";
  std::string out = with_private_mounts([&] {
    bind(root_ / "state/grants", share() / "deep/records");
    bind(root_ / "state/grants/1879048192", other / "one");
    print_verdict(share(), locations());
    print_verdict(other, locations());
  });
  std::string grants = (root_ / "state/grants").string();
  EXPECT_THAT(out, refused(share(), "holds " + grants + ", the grant records, mounted at " +
                                        (share() / "deep/records").string() + " below it, which the VM would then "
                                        "reach; share a directory without that mount, or unmount it\n"));
  EXPECT_THAT(out, refused(other, fmt::format("holds {0}/one, a mount of {1}/1879048192 in {1}, the grant records",
                                              other.string(), grants)));
}

// The whole state directory mounted elsewhere: what lies in it is compared
// as the directory it is. Its VMs' data (the demo's shares) stays sharable
// that way, as does a run's own directory for that run.
TEST_F(SharePinTest, ABindMountOfTheStateDirectoryLeadsToTheRegistryAndIsRefusedThere) {
  make_state();
  fs::path state = root_ / "elsewhere/state";
  std::string out = with_private_mounts([&] {
    bind(root_ / "state", state);
    print_verdict(state / "uids", locations());
    print_verdict(state, locations());
    print_verdict(state / "runs/r1/config", locations());
    print_verdict(state / "runs/r1/config", locations(), root_ / "state/runs/r1");
    print_verdict(state / "demo/rw", locations());
  });
  std::string real = (root_ / "state").string();
  EXPECT_THAT(out, refused(state / "uids", "is " + real + "/uids, the UID registry, reached through the mount at " +
                                               state.string() + ", which the VM would then reach"));
  EXPECT_THAT(out, refused(state, fmt::format("holds {0}/uids, the UID registry, as {1}/uids (through the mount at "
                                              "{1}), which the VM would then reach; share a directory beside it\n",
                                              real, state.string())));
  EXPECT_THAT(out, refused(state / "runs/r1/config",
                           "lies in " + real + "/runs, the directories of `vmwarden run`'s runs, as " + real +
                               "/runs/r1/config"));
  EXPECT_THAT(out, HasSubstr(fmt::format("{}/runs/r1/config: accepted\n", state.string()))) << "the run's own";
  EXPECT_THAT(out, HasSubstr(fmt::format("{}/demo/rw: accepted\n", state.string())));
}

// A location not made yet (a fresh state directory: no registry, no grant
// recorded) is where it will be made: a bind mount of the state directory
// would show it then.
TEST_F(SharePinTest, ABindMountOfAStateDirectoryWithoutTheRegistryYetIsRefused) {
  fs::path state = root_ / "elsewhere/state";
  std::string out = with_private_mounts([&] {
    bind(root_ / "state", state);
    print_verdict(state, locations());
  });
  EXPECT_THAT(out, refused(state, "holds " + (root_ / "state/uids").string() + ", the UID registry, as " +
                                      (state / "uids").string()));
}

// Mounts that show no directory of vmwarden's change nothing: the demo's
// layout, a bind mount of another directory, and one inside a share.
TEST_F(SharePinTest, BindMountsOfUnrelatedDirectoriesAreAccepted) {
  make_state();
  fs::path mounted = root_ / "elsewhere/outside";
  std::string out = with_private_mounts([&] {
    bind(root_ / "outside", mounted);
    bind(root_ / "outside", share() / "outside");
    print_verdict(mounted, locations());
    print_verdict(root_ / "elsewhere", locations());
    print_verdict(share(), locations());
    print_verdict(root_ / "state/demo/rw", locations());
  });
  EXPECT_EQ(out, fmt::format("{}: accepted\n{}: accepted\n{}: accepted\n{}: accepted\n", mounted.string(),
                             (root_ / "elsewhere").string(), share().string(), (root_ / "state/demo/rw").string()));
}

// A run's own directory may hold its shares, named by their path; not a
// bind mount of the registry put inside it.
TEST_F(SharePinTest, ARunsOwnDirectoryMayHoldSharesButNotTheRegistry) {
  make_state();
  fs::path config = root_ / "state/runs/r1/config", own = root_ / "state/runs/r1";
  std::string out = with_private_mounts([&] {
    print_verdict(config, locations(), own);
    bind(root_ / "state/uids", config / "registry");
    print_verdict(config, locations(), own);
  });
  EXPECT_THAT(out, HasSubstr(fmt::format("{}: accepted\n", config.string())));
  EXPECT_THAT(out, refused(config, "holds " + (root_ / "state/uids").string() + ", the UID registry, mounted at " +
                                       (config / "registry").string() + " below it"));
}

// The same refusal before anything is leased or granted (what `exec`, `run`
// and `supervise` check a share with): a usage error.
TEST_F(SharePinTest, AShareWithAnUnbindableMountBelowItIsRefusedBeforeTheLease) {
  Hooks hooks;
  hooks.setup = [this] {
    share_with_an_unbindable_mount_below();
    try {
      (void)vm::checked_share(share(), locations());
      std::printf("accepted\n");
    } catch (const UsageError& error) {
      std::printf("refused: %s\n", error.what());
    }
    std::fflush(stdout);
    ::_exit(0);  // before the lease
  };
  Outcome outcome = run(command(acl::Access::rw, "echo ran"), hooks);
  EXPECT_EQ(outcome.status, 0) << outcome.err;
  EXPECT_THAT(outcome.out, HasSubstr("refused: " + share().string() + " has an unbindable mount at or below it"));
  EXPECT_TRUE(fs::is_empty(root_ / "state")) << "nothing leased";
}

// A share whose own mount is read-only on the host (a read-only bind mount,
// say) stays read-only in its copy, read-write share or not: the copy
// makes the share's own mount writable again only where it was writable.
// (A grant writes ACLs, so such a share is reached with entries already
// right; the copy is made directly here.)
TEST_F(SharePinTest, TheCopyOfAShareOnAReadOnlyMountStaysReadOnly) {
  Hooks hooks;
  hooks.setup = [this] {
    share_on_a_shared_mount_with_a_mount_below();
    if (::mount(share().c_str(), share().c_str(), nullptr, MS_BIND, nullptr) != 0 ||
        ::mount(nullptr, share().c_str(), nullptr, MS_REMOUNT | MS_BIND | MS_RDONLY, nullptr) != 0)
      throw std::runtime_error("bind the share read-only");
    for (const char* place : {"parent/share", "parent"}) {
      fs::path source = root_ / place, target = root_ / "outside";
      UniqueFd dir(::open(source.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
      UniqueFd copy = supervisor::detached_copy(dir.get(), source);
      if (::move_mount(copy.get(), "", AT_FDCWD, target.c_str(), MOVE_MOUNT_F_EMPTY_PATH) != 0)
        throw std::runtime_error("attach the copy");
      int fd = ::open((target / "new").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
      std::printf("%s: %s\n", place, fd >= 0 ? "written" : std::strerror(errno));
      if (fd >= 0) ::close(fd);
      if (::umount2(target.c_str(), MNT_DETACH) != 0) throw std::runtime_error("detach the copy");
    }
    std::fflush(stdout);
    ::_exit(0);
  };
  Outcome outcome = run(command(acl::Access::rw, "echo ran"), hooks);
  EXPECT_EQ(outcome.status, 0) << outcome.err;
  EXPECT_EQ(outcome.out, "parent/share: Read-only file system\nparent: written\n") << outcome.err;
}

}  // namespace
}  // namespace vmwarden::testing
