// acl-manager against the real kernel, as root: a racing attacker, hard
// links, kill -9 at random points, concurrent allocation, inheritance, exact
// revoke, sweep, and bad input through the real `vmwarden` binary.

#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <linux/capability.h>
#include <signal.h>
#include <sched.h>
#include <linux/fs.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/inotify.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <fmt/core.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <fstream>
#include <functional>
#include <cstring>
#include <map>
#include <optional>
#include <random>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include "acl-manager/acl.h"
#include "acl-manager/acl_entries.h"
#include "acl-manager/batch_io.h"
#include "acl-manager/nodev_view.h"
#include "acl-manager/uid_registry.h"
#include "acl-manager/walk.h"
#include "acl-manager/xattr_at.h"
#include "common/unique_fd.h"
#include "tests/support/support.h"

namespace vmwarden::acl {
namespace {

using namespace std::chrono_literals;
using testing::TempDir;

struct Env {
  TempDir temp{"vmwarden-acl"};
  Locations locations{temp / "config", temp / "state", temp / "run"};
  std::filesystem::path tree = temp / "tree";

  std::map<std::string, std::string> env() const {
    return {{"VMWARDEN_CONFIG_DIR", locations.config_dir.string()},
            {"VMWARDEN_STATE_DIR", locations.state_dir.string()},
            {"VMWARDEN_RUNTIME_DIR", locations.runtime_dir.string()}};
  }
  testing::CommandResult vmwarden(std::vector<std::string> args) const {
    args.insert(args.begin(), testing::vmwarden_binary());
    testing::CommandOptions options;
    options.extra_env = env();
    return testing::run_command(args, options);
  }
};

void make_tree(const std::filesystem::path& root, int dirs, int files) {
  std::filesystem::create_directories(root);
  for (int d = 0; d < dirs; ++d) {
    std::filesystem::path dir = root / fmt::format("d{}", d);
    std::filesystem::create_directories(dir / "sub");
    for (int f = 0; f < files; ++f) testing::write_file(dir / fmt::format("f{}", f), "data", f % 5 ? 0644 : 0755);
    testing::write_file(dir / "sub/inner", "data");
  }
}

// env.tree (one directory, two files) and a smaller second tree, temp/NAME.
std::filesystem::path make_two_trees(const Env& env, const char* name) {
  make_tree(env.tree, 1, 2);
  std::filesystem::path second = env.temp / name;
  make_tree(second, 1, 1);
  return second;
}

// What most record tests start from: a tree of `dirs` x `files` at
// env.tree granted `access` to one UID, the alias `alias` if given, else a
// single-use UID. Taken apart with `auto& [env, registry, uid] = ...`.
struct GrantedTree {
  Env env;
  UidRegistry registry{env.locations};
  uid_t uid;

  GrantedTree(int dirs, int files, Access access, const char* alias = nullptr) {
    make_tree(env.tree, dirs, files);
    uid = alias ? registry.allocate_alias(alias) : registry.allocate_single_use();
    grant(registry, uid, env.tree, access);
  }
};

// A small script owned by owner:group at `mode`, set-ID bits included (a
// plain chmod after the chown: a chown clears them).
void write_owned_file(const std::filesystem::path& file, uid_t owner, gid_t group, mode_t mode) {
  testing::write_file(file, "#!/bin/sh\n");
  ASSERT_EQ(::chown(file.c_str(), owner, group), 0);
  ASSERT_EQ(::chmod(file.c_str(), mode), 0);
}

bool has_acl(const std::filesystem::path& path) {
  return ::lgetxattr(path.c_str(), "system.posix_acl_access", nullptr, 0) >= 0 ||
         ::lgetxattr(path.c_str(), "system.posix_acl_default", nullptr, 0) >= 0;
}

// getfacl's own view, physical walk, numeric ids.
std::string getfacl(const std::filesystem::path& path) {
  auto result = testing::run_command({"getfacl", "-R", "-P", "-n", "-p", path.string()});
  EXPECT_EQ(result.exit_code, 0) << result.err;
  return result.out;
}

// Lines of getfacl output naming user `uid` (access and default entries).
std::size_t count_entries(const std::string& getfacl_output, uid_t uid) {
  std::size_t count = 0;
  std::istringstream lines(getfacl_output);
  std::string needle = fmt::format("user:{}:", uid);
  for (std::string line; std::getline(lines, line);) {
    if (line.starts_with(needle) || line.starts_with("default:" + needle)) ++count;
  }
  return count;
}

// In-range UIDs with entries in the output.
std::set<uid_t> uids_in(const std::string& getfacl_output, const UidRange& range) {
  std::set<uid_t> uids;
  std::regex entry("^(default:)?user:([0-9]+):");
  std::istringstream lines(getfacl_output);
  for (std::string line; std::getline(lines, line);) {
    std::smatch match;
    if (std::regex_search(line, match, entry)) {
      uid_t uid = static_cast<uid_t>(std::stoul(match[2]));
      if (range.contains(uid)) uids.insert(uid);
    }
  }
  return uids;
}

// Runs `fn` in a child with the identity of `uid` (no supplementary groups);
// returns its exit code.
int as_user(uid_t uid, const std::function<int()>& fn) {
  pid_t pid = ::fork();
  if (pid == 0) {
    if (::setgroups(0, nullptr) != 0 || ::setresgid(uid, uid, uid) != 0 || ::setresuid(uid, uid, uid) != 0) ::_exit(99);
    ::_exit(fn());
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

// A thread that changes the tree under the walk until stopped, counting
// what it did. The subclass starts it in its constructor.
class SwapLoop {
 public:
  void stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  long swaps() const { return swaps_; }

 protected:
  std::atomic<bool> stop_{false};
  std::atomic<long> swaps_{0};
  std::thread thread_;
};

// Grants (ro and rw in turn) and revokes `tree` while `attacker` swaps, until
// it has made 5000 swaps, at least `min_walks` walks ran and their opens met
// at least `min_symlinks_at_open` symlinks, or 40 s passed; then stops it.
// What the walks reported, summed.
struct RaceWalks {
  long walks = 0;
  Report seen;
};
RaceWalks walk_during(SwapLoop& attacker, UidRegistry& registry, uid_t uid, const std::filesystem::path& tree,
                      long min_walks, std::uint64_t min_symlinks_at_open = 0) {
  RaceWalks result;
  auto deadline = std::chrono::steady_clock::now() + 40s;
  while ((attacker.swaps() < 5000 || result.walks < min_walks || result.seen.symlinks_at_open < min_symlinks_at_open) &&
         std::chrono::steady_clock::now() < deadline) {
    result.seen += grant(registry, uid, tree, result.walks % 2 ? Access::rw : Access::ro);
    result.seen += revoke(registry, uid, tree);
    result.walks += 2;
  }
  attacker.stop();
  return result;
}

// Events in `mask` read from a non-blocking inotify descriptor since the
// last call (0 when none).
int count_events(int inotify_fd, std::uint32_t mask) {
  int count = 0;
  alignas(inotify_event) char buffer[4096];
  for (ssize_t n; (n = ::read(inotify_fd, buffer, sizeof buffer)) > 0;) {
    for (ssize_t offset = 0; offset < n;) {
      auto* event = reinterpret_cast<inotify_event*>(buffer + offset);
      if (event->mask & mask) ++count;
      offset += static_cast<ssize_t>(sizeof(inotify_event) + event->len);
    }
  }
  return count;
}

// Swaps directories and files in the tree for symlinks to outside targets,
// and back, as fast as it can. Half the links are absolute and half relative
// (../../outside from the victim's directory): RESOLVE_NO_XDEV alone refuses
// an absolute link (it jumps to the root's mount) but not a relative one,
// which stays on the tree's mount. Half the swaps move the victim away and
// create the link under its name (which is missing for a moment), half
// exchange it with a link made beside it (RENAME_EXCHANGE: the name is
// never missing, so an open finds either the victim or the link).
class Attacker : public SwapLoop {
 public:
  Attacker(const std::filesystem::path& tree, const std::filesystem::path& outside_dir,
           const std::filesystem::path& outside_file)
  {
    thread_ = std::thread([=, this] {
          for (int k = 0; !stop_; ++k) {
            std::filesystem::path dir = tree / fmt::format("d{}", k % 4);
            bool swap_dir = k % 2 == 0;
            std::filesystem::path victim = swap_dir ? dir / "sub" : dir / fmt::format("f{}", k % 7);
            const std::filesystem::path& outside = swap_dir ? outside_dir : outside_file;
            bool relative = (k / 4) % 2 == 1, exchange = (k / 8) % 2 == 1;
            std::filesystem::path target = relative ? outside.lexically_relative(dir) : outside;
            // Leave the trap in place briefly so walks run into it.
            auto linger = [k] { std::this_thread::sleep_for(std::chrono::microseconds(k % 3 == 0 ? 50 : 0)); };
            if (exchange) {
              std::filesystem::path link = victim.string() + ".link";
              if (::symlink(target.c_str(), link.c_str()) != 0) continue;
              if (::renameat2(AT_FDCWD, link.c_str(), AT_FDCWD, victim.c_str(), RENAME_EXCHANGE) == 0) {
                ++swaps_;
                linger();
                // Back; only then is `link` the symlink again.
                if (::renameat2(AT_FDCWD, link.c_str(), AT_FDCWD, victim.c_str(), RENAME_EXCHANGE) != 0) continue;
              }
              ::unlink(link.c_str());
              continue;
            }
            std::filesystem::path away = victim.string() + ".away";
            if (::rename(victim.c_str(), away.c_str()) == 0) {
              if (::symlink(target.c_str(), victim.c_str()) == 0) {
                ++swaps_;
                linger();
                ::unlink(victim.c_str());
              }
              ::rename(away.c_str(), victim.c_str());
            }
          }
        });
  }
  ~Attacker() { stop(); }
};

// getfacl text with every mention of `root` removed, to compare two trees.
std::string without_root(std::string text, const std::filesystem::path& root) {
  for (std::size_t at; (at = text.find(root.string())) != std::string::npos;) text.erase(at, root.string().size());
  return text;
}

// Walks without the nodev view (every file pinned O_PATH) while alive.
struct WithoutNodevView {
  WithoutNodevView() { detail::force_no_nodev_view(true); }
  ~WithoutNodevView() { detail::force_no_nodev_view(false); }
  WithoutNodevView(const WithoutNodevView&) = delete;
  WithoutNodevView& operator=(const WithoutNodevView&) = delete;
};

void symlink_race() {
  Env env;
  make_tree(env.tree, 4, 30);
  std::filesystem::path outside_dir = env.temp / "outside";
  std::filesystem::create_directories(outside_dir);
  testing::write_file(outside_dir / "secret", "secret", 0600);
  std::filesystem::path outside_file = env.temp / "outside-file";
  testing::write_file(outside_file, "secret", 0600);

  // A walk that reached an outside target and changed its ACL sets off
  // IN_ATTRIB there, even if a later revoke took the ACL away again.
  UniqueFd inotify(::inotify_init1(IN_NONBLOCK | IN_CLOEXEC));
  ASSERT_TRUE(inotify);
  for (const auto& path : {outside_dir, outside_dir / "secret", outside_file}) {
    ASSERT_GE(::inotify_add_watch(inotify.get(), path.c_str(), IN_ATTRIB), 0) << path;
  }

  UidRegistry registry(env.locations);
  uid_t uid = registry.allocate_alias("race");
  RaceWalks race;
  {
    Attacker attacker(env.tree, outside_dir, outside_file);
    // Until the opens met 25 links: how many meet one in 5000 swaps varies
    // with the machine's load (a few to a few dozen). At 5, a walk whose
    // opens for reading followed links went unseen about half the time.
    race = walk_during(attacker, registry, uid, env.tree, 100, 25);
    std::printf("race: %ld walks, %ld swaps, %lu symlinks met at an open (%lu listed), %lu vanished\n", race.walks,
                attacker.swaps(), static_cast<unsigned long>(race.seen.symlinks_at_open),
                static_cast<unsigned long>(race.seen.skipped_symlinks - race.seen.symlinks_at_open),
                static_cast<unsigned long>(race.seen.vanished));
    EXPECT_GE(attacker.swaps(), 2000);
  }
  // Only an open that refused to follow a link counts: symlinks the listing
  // showed are never opened, and a vanished name was not one.
  EXPECT_GT(race.seen.symlinks_at_open, 0u) << "no open of the walks met (and refused) the attacker's links";
  EXPECT_EQ(count_events(inotify.get(), IN_ATTRIB), 0) << "an outside target's attributes changed during the race";
  for (const auto& path : {outside_dir, outside_dir / "secret", outside_file}) {
    EXPECT_FALSE(has_acl(path)) << path << " gained an ACL";
  }
  EXPECT_EQ(std::filesystem::status(outside_dir / "secret").permissions(), std::filesystem::perms(0600));
  EXPECT_EQ(count_entries(getfacl(env.temp / "outside"), uid), 0u);
}

TEST(AclRace, SymlinkSwapsNeverReachTheOutsideTarget) { symlink_race(); }

// The same with every file pinned O_PATH, as where the nodev view cannot be had.
TEST(AclRace, SymlinkSwapsNeverReachTheOutsideTargetWithoutTheNodevView) {
  WithoutNodevView without;
  symlink_race();
}

// Renames a device node and a FIFO in under the names of files of the tree,
// and back, as fast as it can.
class SpecialSwapper : public SwapLoop {
 public:
  SpecialSwapper(const std::filesystem::path& tree, const std::filesystem::path& device,
                 const std::filesystem::path& fifo)
  {
    thread_ = std::thread([=, this] {
          for (int k = 0; !stop_; ++k) {
            std::filesystem::path victim = tree / fmt::format("d{}", k % 4) / fmt::format("f{}", k % 7);
            std::filesystem::path away = victim.string() + ".away";
            const std::filesystem::path& special = k % 2 == 0 ? device : fifo;
            if (::rename(victim.c_str(), away.c_str()) != 0) continue;
            if (::rename(special.c_str(), victim.c_str()) == 0) {
              ++swaps_;
              std::this_thread::sleep_for(std::chrono::microseconds(k % 3 == 0 ? 50 : 0));
              ::rename(victim.c_str(), special.c_str());
            }
            ::rename(away.c_str(), victim.c_str());
          }
        });
  }
  ~SpecialSwapper() { stop(); }
};

// IN_OPEN events on the watched node since the last call (0 when none).
int count_opens(int inotify_fd) { return count_events(inotify_fd, IN_OPEN); }

struct SpecialFiles {
  std::filesystem::path device, fifo;
  UniqueFd inotify;
  bool ok = false;
};

// A /dev/null node and a FIFO in the tree (d0/dev, not among the victims),
// and an inotify watch for opens of the node.
SpecialFiles make_special_files(const std::filesystem::path& tree) {
  SpecialFiles files;
  std::filesystem::create_directories(tree / "d0/dev");
  files.device = tree / "d0/dev/null";
  files.fifo = tree / "d0/dev/fifo";
  if (::mknod(files.device.c_str(), S_IFCHR | 0666, makedev(1, 3)) != 0) return files;
  if (::mkfifo(files.fifo.c_str(), 0600) != 0) return files;
  files.inotify = UniqueFd(::inotify_init1(IN_NONBLOCK | IN_CLOEXEC));
  if (!files.inotify || ::inotify_add_watch(files.inotify.get(), files.device.c_str(), IN_OPEN) < 0) return files;
  // The test is only meaningful where the node can be opened at all.
  UniqueFd probe(::open(files.device.c_str(), O_RDONLY | O_CLOEXEC));
  if (!probe) return files;
  probe.reset();
  files.ok = count_opens(files.inotify.get()) == 1;
  return files;
}

// Files are opened for reading only through the nodev view, so a device node
// renamed in under a file's name is never opened (and a FIFO does not block
// the walk); the device and the FIFO gain no ACL.
TEST(AclRace, DevicesRenamedInUnderFileNamesAreNeverOpened) {
  Env env;
  make_tree(env.tree, 4, 30);
  SpecialFiles special = make_special_files(env.tree);
  if (!special.ok) GTEST_SKIP() << "cannot create and open a device node here";

  UidRegistry registry(env.locations);
  uid_t uid = registry.allocate_alias("devices");
  RaceWalks race;
  {
    SpecialSwapper swapper(env.tree, special.device, special.fifo);
    race = walk_during(swapper, registry, uid, env.tree, 400);
    std::printf("devices: %ld walks, %ld swaps, %lu special files met\n", race.walks, swapper.swaps(),
                static_cast<unsigned long>(race.seen.skipped_special));
    EXPECT_GE(swapper.swaps(), 2000);
  }
  EXPECT_EQ(count_opens(special.inotify.get()), 0) << "the walk opened the device node";
  EXPECT_FALSE(has_acl(special.device));
  EXPECT_FALSE(has_acl(special.fifo));
  EXPECT_EQ(race.seen.failed, 0u);
}

// The control: opening each name listed as a regular file for reading, as
// the walk does but without the nodev view, does reach the device node.
TEST(AclRace, AnOpenOutsideTheNodevViewReachesTheDevice) {
  Env env;
  make_tree(env.tree, 4, 30);
  SpecialFiles special = make_special_files(env.tree);
  if (!special.ok) GTEST_SKIP() << "cannot create and open a device node here";
  SpecialSwapper swapper(env.tree, special.device, special.fifo);
  auto deadline = std::chrono::steady_clock::now() + 30s;
  int opens = 0;
  while (opens == 0 && std::chrono::steady_clock::now() < deadline) {
    for (int d = 0; d < 4; ++d) {
      UniqueFd dir(::open((env.tree / fmt::format("d{}", d)).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
      if (!dir) continue;
      for (const auto& entry : std::filesystem::directory_iterator(env.tree / fmt::format("d{}", d))) {
        if (!entry.is_regular_file()) continue;
        UniqueFd fd(::openat(dir.get(), entry.path().filename().c_str(),
                             O_RDONLY | O_NONBLOCK | O_NOCTTY | O_NOFOLLOW | O_CLOEXEC));
      }
    }
    opens += count_opens(special.inotify.get());
  }
  swapper.stop();
  EXPECT_GT(opens, 0) << "the control never reached the device; the test above would prove nothing";
}

// The attack is real: a walk that checks each name with lstat and sets the
// ACL by path afterwards (setfacl's walk stats every entry first, then acts
// on it by name) is redirected to the outside target. Each directory is
// checked whole before its files are set, so the walk meets the attacker's
// traps often enough to land within the deadline even on a loaded machine.
TEST(AclRace, ThePathBasedWalkFallsForTheSameAttack) {
  Env env;
  make_tree(env.tree, 4, 30);
  std::filesystem::path outside_dir = env.temp / "outside";
  std::filesystem::create_directories(outside_dir);
  std::filesystem::path outside_file = env.temp / "outside-file";
  testing::write_file(outside_file, "secret", 0600);
  std::string value;
  {
    // u::rw-,u:1879048192:r--,g::---,m::r--,o::---
    const unsigned char bytes[] = {2, 0, 0, 0, 1, 0, 6, 0, 255, 255, 255, 255, 2, 0, 4, 0, 0, 0, 0, 0x70,
                                   4, 0, 0, 0, 255, 255, 255, 255, 0x10, 0, 4, 0, 255, 255, 255, 255,
                                   0x20, 0, 0, 0, 255, 255, 255, 255};
    value.assign(reinterpret_cast<const char*>(bytes), sizeof bytes);
  }
  Attacker attacker(env.tree, outside_dir, outside_file);
  auto deadline = std::chrono::steady_clock::now() + 30s;
  bool reached = false;
  std::vector<std::filesystem::path> checked;
  while (!reached && std::chrono::steady_clock::now() < deadline) {
    for (int d = 0; d < 4; ++d) {
      checked.clear();
      std::error_code ec;
      for (const auto& entry : std::filesystem::directory_iterator(env.tree / fmt::format("d{}", d), ec)) {
        struct stat st;
        if (::lstat(entry.path().c_str(), &st) == 0 && S_ISREG(st.st_mode)) checked.push_back(entry.path());
      }
      for (const auto& path : checked)
        ::setxattr(path.c_str(), "system.posix_acl_access", value.data(), value.size(), 0);
    }
    reached = has_acl(outside_file);
  }
  attacker.stop();
  EXPECT_TRUE(reached) << "the control attack did not land; the race test would prove nothing";
}

TEST(AclHardlink, AnOutsideFileLinkedIntoTheTreeGainsNoEntry) {
  Env env;
  make_tree(env.tree, 1, 3);
  std::filesystem::path outside = env.temp / "outside-file";
  testing::write_file(outside, "secret", 0600);
  std::filesystem::create_hard_link(outside, env.tree / "d0/link");

  UidRegistry registry(env.locations);
  uid_t uid = registry.allocate_alias("hl");
  Report report = grant(registry, uid, env.tree, Access::rw);
  EXPECT_EQ(report.skipped_hardlinks, 1u);
  ASSERT_EQ(report.hardlinks.size(), 1u);
  EXPECT_EQ(report.hardlinks[0], (env.tree / "d0/link").string());
  EXPECT_FALSE(has_acl(outside));
  EXPECT_GT(count_entries(getfacl(env.tree), uid), 0u);

  // Without the check the outside file would have been changed: setfacl does.
  auto result = testing::run_command({"setfacl", "-R", "-m", fmt::format("u:{}:rX", uid + 1), env.tree.string()});
  ASSERT_EQ(result.exit_code, 0) << result.err;
  EXPECT_TRUE(has_acl(outside));
}

// A rename needs no access to the object moved: whoever can write the tree
// (or a directory the object lies in) can move a third party's file or
// directory into it. A grant leaves such objects alone, and does not enter
// such a directory; VMs' own objects (any UID of the managed range) are
// granted. Revoke acts on all.
TEST(AclRename, AThirdPartysObjectMovedIntoTheTreeGainsNoEntry) {
  Env env;
  make_tree(env.tree, 1, 1);
  UidRegistry registry(env.locations);
  uid_t uid = registry.allocate_alias("mv");
  const uid_t third_party = 4242;
  std::filesystem::path file = env.tree / "d0/bobs-file", dir = env.tree / "d0/bobs-dir";
  testing::write_file(file, "secret", 0600);
  std::filesystem::create_directory(dir);
  testing::write_file(dir / "inner", "secret", 0644);  // root's, but came in with the directory
  testing::write_file(env.tree / "d0/vms-own", "mine", 0600);
  testing::write_file(env.tree / "d0/earlier-vms", "an earlier single-use UID's", 0600);
  ASSERT_EQ(::chown(file.c_str(), third_party, third_party), 0);
  ASSERT_EQ(::chown(dir.c_str(), third_party, third_party), 0);
  ASSERT_EQ(::chown((env.tree / "d0/vms-own").c_str(), uid, uid), 0);
  ASSERT_EQ(::chown((env.tree / "d0/earlier-vms").c_str(), uid + 5, uid + 5), 0);

  Report report = grant(registry, uid, env.tree, Access::rw);
  EXPECT_EQ(report.skipped_foreign, 2u) << report.summary();
  EXPECT_THAT(report.foreign, ::testing::UnorderedElementsAre(file.string(), dir.string()));
  EXPECT_FALSE(has_acl(file));
  EXPECT_FALSE(has_acl(dir));
  EXPECT_FALSE(has_acl(dir / "inner"));
  EXPECT_EQ(count_entries(getfacl(env.tree / "d0/vms-own"), uid), 1u);
  EXPECT_EQ(count_entries(getfacl(env.tree / "d0/earlier-vms"), uid), 1u);
  EXPECT_EQ(count_entries(getfacl(env.tree / "d0/f0"), uid), 1u);

  // The CLI names them.
  auto again = env.vmwarden({"acl", "grant", "--uid", "mv", "--rw", env.tree.string()});
  EXPECT_EQ(again.exit_code, 0) << again.err;
  EXPECT_NE(again.err.find("skipped (owned by neither the tree's owner nor a VM): " + file.string()),
            std::string::npos)
      << again.err;

  // An entry there from before (however it got there) is still revoked.
  ASSERT_EQ(testing::run_command({"setfacl", "-m", fmt::format("u:{}:r", uid), file.string()}).exit_code, 0);
  Report revoked = revoke(registry, uid, env.tree);
  EXPECT_EQ(revoked.skipped_foreign, 0u);
  EXPECT_EQ(count_entries(getfacl(env.tree), uid), 0u);
}

// Nested grants of one UID share the inner tree's objects: allowed, but
// said, at the grant and at the revoke.
TEST(AclNested, GrantsOnNestedTreesOfOneUidAreWarnedAbout) {
  Env env;
  make_tree(env.tree, 1, 1);
  ASSERT_EQ(env.vmwarden({"uid", "alloc", "--alias", "nest"}).exit_code, 0);
  ASSERT_EQ(env.vmwarden({"acl", "grant", "--uid", "nest", "--rw", env.tree.string()}).exit_code, 0);
  auto inner = env.vmwarden({"acl", "grant", "--uid", "nest", "--ro", (env.tree / "d0").string()});
  EXPECT_EQ(inner.exit_code, 0) << inner.err;
  EXPECT_NE(inner.err.find(fmt::format("it lies inside {}, granted rw to the same UID", env.tree.string())),
            std::string::npos)
      << inner.err;
  auto outer = env.vmwarden({"acl", "revoke", "--uid", "nest", env.tree.string()});
  EXPECT_EQ(outer.exit_code, 0) << outer.err;
  EXPECT_NE(outer.err.find(fmt::format("it holds {}, granted ro to the same UID", (env.tree / "d0").string())),
            std::string::npos)
      << outer.err;
  // A sibling is not nested.
  std::filesystem::create_directory(env.temp / "tree2");
  auto sibling = env.vmwarden({"acl", "grant", "--uid", "nest", "--ro", (env.temp / "tree2").string()});
  EXPECT_EQ(sibling.exit_code, 0) << sibling.err;
  EXPECT_EQ(sibling.err.find("same UID"), std::string::npos) << sibling.err;
}

// A revoke while the UID's sandbox runs can miss what the VM moves out of
// the walk's way (AclRace...SwappedDirectories): said when the UID is
// leased, not otherwise.
TEST(AclRevoke, WarnsWhenTheUidIsLeased) {
  Env env;
  make_tree(env.tree, 1, 1);
  UidRegistry registry(env.locations);
  uid_t uid = registry.allocate_alias("running");
  {
    UidLease lease = registry.lease_alias("running");
    grant(registry, uid, env.tree, Access::rw);
    auto revoked = env.vmwarden({"acl", "revoke", "--uid", "running", env.tree.string()});
    EXPECT_EQ(revoked.exit_code, 0) << revoked.err;
    EXPECT_NE(revoked.err.find(fmt::format("UID {} is leased by a running sandbox", uid)), std::string::npos)
        << revoked.err;
  }
  grant(registry, uid, env.tree, Access::rw);
  auto revoked = env.vmwarden({"acl", "revoke", "--uid", "running", env.tree.string()});
  EXPECT_EQ(revoked.exit_code, 0) << revoked.err;
  EXPECT_EQ(revoked.err.find("is leased"), std::string::npos) << revoked.err;
}

// A revoke while the UID is leased keeps the grant record, marked revoked:
// a directory the VM moved out of the walk's way and back in after it kept
// its entries, and the first sweep once the lease is gone finds it there (a
// sweep walks recorded trees only) and drops the record. A grant of the
// tree makes the record a grant again.
TEST(AclRevoke, WhileLeasedKeepsTheRecordForTheSweepToFinish) {
  Env env;
  make_tree(env.tree, 2, 2);
  UidRegistry registry(env.locations);
  uid_t uid = registry.allocate_alias("running");
  std::filesystem::path aside = env.temp / "aside";
  {
    UidLease lease = registry.lease_alias("running");
    grant(registry, uid, env.tree, Access::rw);
    std::filesystem::rename(env.tree / "d0", aside);  // out of the walk's way...
    auto revoked = env.vmwarden({"acl", "revoke", "--uid", "running", env.tree.string()});
    EXPECT_EQ(revoked.exit_code, 0) << revoked.err;
    EXPECT_NE(revoked.out.find("grant record kept, marked revoked"), std::string::npos) << revoked.out;
    std::filesystem::rename(aside, env.tree / "d0");  // ...and back once it has passed
    ASSERT_GT(count_entries(getfacl(env.tree), uid), 0u) << "the directory moved aside was walked";
    std::vector<GrantRecord> records = registry.grant_records(uid);
    ASSERT_EQ(records.size(), 1u);
    EXPECT_TRUE(records[0].revoked);
    // Still leased: the sweep leaves the UID's entries and the record.
    EXPECT_EQ(sweep(registry).records_removed, 0u);
    EXPECT_GT(count_entries(getfacl(env.tree), uid), 0u);
    EXPECT_EQ(registry.grant_records(uid).size(), 1u);
  }
  auto swept = env.vmwarden({"acl", "sweep"});
  EXPECT_EQ(swept.exit_code, 0) << swept.err;
  EXPECT_EQ(count_entries(getfacl(env.tree), uid), 0u) << swept.out;
  EXPECT_TRUE(registry.grant_records(uid).empty()) << swept.out;
  EXPECT_TRUE(registry.find(uid)->allocated) << "the alias stays";

  // Granted again while leased after such a revoke: a grant, not revoked.
  UidLease lease = registry.lease_alias("running");
  grant(registry, uid, env.tree, Access::ro);
  ASSERT_EQ(registry.grant_records(uid).size(), 1u);
  EXPECT_FALSE(registry.grant_records(uid)[0].revoked);
  EXPECT_EQ(revoke(registry, uid, env.tree).failed, 0u);
  ASSERT_EQ(registry.grant_records(uid).size(), 1u);
  EXPECT_TRUE(registry.grant_records(uid)[0].revoked);
  grant(registry, uid, env.tree, Access::ro);
  ASSERT_EQ(registry.grant_records(uid).size(), 1u);
  EXPECT_FALSE(registry.grant_records(uid)[0].revoked) << "a grant is a grant again";
  EXPECT_GT(count_entries(getfacl(env.tree), uid), 0u);
}

// The walk keeps each of its threads on one CPU while it runs (doc/ACL.md,
// "Performance"), the calling thread included: afterwards the caller runs
// where it could before, whether that was every CPU or fewer. A walk that
// pinned the caller and left it so would hold a sandbox's outer (and what
// it starts) to one CPU.
TEST(AclWalk, TheCallersCpusAreGivenBack) {
  Env env;
  make_tree(env.tree, 8, 20);
  UidRegistry registry(env.locations);
  uid_t uid = registry.allocate_alias("cpus");
  cpu_set_t before;
  ASSERT_EQ(::sched_getaffinity(0, sizeof before, &before), 0);
  std::vector<cpu_set_t> masks{before};
  if (CPU_COUNT(&before) > 1) {
    cpu_set_t fewer;
    CPU_ZERO(&fewer);
    for (int cpu = CPU_SETSIZE - 1; cpu >= 0; --cpu) {
      if (CPU_ISSET(cpu, &before)) {
        CPU_SET(cpu, &fewer);  // the highest only: not the CPU a walk pins first
        break;
      }
    }
    masks.push_back(fewer);
  }
  for (const cpu_set_t& mask : masks) {
    ASSERT_EQ(::sched_setaffinity(0, sizeof mask, &mask), 0);
    grant(registry, uid, env.tree, Access::ro);
    revoke(registry, uid, env.tree);
    cpu_set_t after;
    ASSERT_EQ(::sched_getaffinity(0, sizeof after, &after), 0);
    EXPECT_TRUE(CPU_EQUAL(&after, &mask)) << CPU_COUNT(&after) << " CPUs after the walk, " << CPU_COUNT(&mask)
                                          << " before";
  }
  ASSERT_EQ(::sched_setaffinity(0, sizeof before, &before), 0);
  EXPECT_EQ(count_entries(getfacl(env.tree), uid), 0u);
}

// A chain 1,100 levels deep with two more directories beside each level's
// next one (a shape a VM can build in a read-write share): on one thread,
// every directory with subdirectories still queued holds a descriptor, one
// per level. Under the usual soft limit of 1024 the walk failed below
// that depth (the UID's entries and a set-ID file left for every later
// revoke and sweep); it now raises the limit for itself, and puts it back.
TEST(AclDeepTree, ATreeBranchingAtEveryLevelIsWalkedToTheBottom) {
  Env env;
  std::filesystem::create_directories(env.tree);
  constexpr int kDepth = 1100;
  std::filesystem::path bottom = env.tree;
  {
    UniqueFd dir(::open(env.tree.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    ASSERT_TRUE(dir);
    for (int level = 0; level < kDepth; ++level) {
      for (const char* name : {"a", "b", "c"}) ASSERT_EQ(::mkdirat(dir.get(), name, 0755), 0) << level;
      // The chain goes on in the one listed last, which the walk enters
      // first: the other two stay queued, holding this level's descriptor.
      std::string last;
      DIR* stream = ::fdopendir(::openat(dir.get(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
      ASSERT_NE(stream, nullptr);
      while (struct dirent* entry = ::readdir(stream)) {
        if (entry->d_name[0] != '.') last = entry->d_name;
      }
      ::closedir(stream);
      bottom /= last;
      dir = UniqueFd(::openat(dir.get(), last.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
      ASSERT_TRUE(dir);
    }
    UniqueFd setid(::openat(dir.get(), "setid", O_CREAT | O_WRONLY | O_CLOEXEC, 0755));
    ASSERT_TRUE(setid);
  }
  UidRegistry registry(env.locations);
  uid_t uid = registry.allocate_alias("deep");
  struct rlimit saved {};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &saved), 0);
  // The soft limit systemd and s6 services usually get; the hard one as it
  // is (raising it takes CAP_SYS_RESOURCE, which the walk uses where it
  // has it, up to fs.nr_open).
  ASSERT_GE(saved.rlim_max, 4u * kDepth) << "a hard limit this low leaves the test nothing to show";
  const struct rlimit usual = {1024, saved.rlim_max};
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &usual), 0);
  WalkOptions one_thread{.threads = 1};
  Report granted = grant(registry, uid, env.tree, Access::rw, one_thread);
  struct rlimit after {};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &after), 0);
  EXPECT_EQ(after.rlim_cur, 1024u) << "the limit is put back";
  EXPECT_EQ(after.rlim_max, saved.rlim_max);
  EXPECT_EQ(granted.failed, 0u) << (granted.errors.empty() ? "" : granted.errors.front());
  EXPECT_EQ(granted.changed, 3u * kDepth + 2);
  // What the VM leaves at the bottom.
  ASSERT_EQ(::chown((bottom / "setid").c_str(), uid, uid), 0);
  ASSERT_EQ(::chmod((bottom / "setid").c_str(), 06755), 0);
  registry.release(uid);  // a single-use UID now: the sweep clears its set-ID bits
  SweepReport swept = sweep(registry);
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &saved), 0);
  ASSERT_EQ(swept.trees.size(), 1u);
  EXPECT_EQ(swept.trees[0].report.failed, 0u)
      << (swept.trees[0].report.errors.empty() ? "" : swept.trees[0].report.errors.front());
  EXPECT_EQ(testing::acl_entries_naming(uid, bottom / "setid", false), "");
  struct stat st {};
  ASSERT_EQ(::stat((bottom / "setid").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0755u) << "the set-ID bits at the bottom";
}

// The VM itself can make a second link to a file it may read and write
// (fs.protected_hardlinks allows that): revoke must still remove its entry
// there before dropping the record.
TEST(AclHardlink, RevokeRemovesTheEntryOfAFileTheUidLinkedItself) {
  Env env;
  make_tree(env.tree, 1, 2);
  UidRegistry registry(env.locations);
  uid_t uid = registry.allocate_alias("linker");
  ASSERT_EQ(env.vmwarden({"acl", "grant", "--uid", "linker", "--rw", env.tree.string()}).exit_code, 0);
  std::filesystem::path target = env.tree / "d0/sub/inner", link = env.tree / "f-link";
  // What the VM can do (it may read and write the file); made here as root,
  // since the UID cannot reach the scratch directory's parents.
  std::filesystem::create_hard_link(target, link);
  struct stat st {};
  ASSERT_EQ(::stat(link.c_str(), &st), 0);
  ASSERT_EQ(st.st_nlink, 2u);

  auto revoked = env.vmwarden({"acl", "revoke", "--uid", "linker", env.tree.string()});
  EXPECT_EQ(revoked.exit_code, 0) << revoked.err;
  EXPECT_EQ(revoked.out.find("hard-linked"), std::string::npos) << revoked.out;
  EXPECT_EQ(count_entries(getfacl(env.tree), uid), 0u) << getfacl(target);
  EXPECT_TRUE(registry.grant_records(uid).empty());
}

// Makes a tree and allocates `alias`, then runs `body` in a child with its
// own mount namespace (so the mount dies with it) and a tmpfs on
// tree/d0/sub holding a file "on-other-fs"; returns the child's exit status
// (90/91: setup failed).
using MountBody = std::function<int(UidRegistry&, uid_t, const std::filesystem::path& mountpoint)>;
int with_tmpfs_below(const Env& env, const char* alias, const MountBody& body) {
  make_tree(env.tree, 1, 2);
  UidRegistry registry(env.locations);
  uid_t uid = registry.allocate_alias(alias);
  pid_t pid = ::fork();
  if (pid == 0) {
    if (::unshare(CLONE_NEWNS) != 0 || ::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) ::_exit(90);
    std::filesystem::path mountpoint = env.tree / "d0/sub";
    if (::mount("tmpfs", mountpoint.c_str(), "tmpfs", 0, "mode=0755") != 0) ::_exit(91);
    testing::write_file(mountpoint / "on-other-fs", "x");
    ::_exit(body(registry, uid, mountpoint));
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

TEST(AclMounts, TheWalkStaysOnItsMountUnlessAsked) {
  Env env;
  int status = with_tmpfs_below(env, "mounts", [&](UidRegistry& registry, uid_t uid, const std::filesystem::path& mountpoint) {
    Report one = grant(registry, uid, env.tree, Access::ro);
    if (one.skipped_mounts != 1) return 92;
    if (has_acl(mountpoint / "on-other-fs") || has_acl(mountpoint)) return 93;
    if (!has_acl(env.tree / "d0/f1")) return 94;
    Report cross = grant(registry, uid, env.tree, Access::ro, WalkOptions{.cross_mounts = true});
    if (cross.skipped_mounts != 0) return 95;
    if (!has_acl(mountpoint / "on-other-fs")) return 96;
    return 0;
  });
  EXPECT_EQ(status, 0) << "90/91: setup, 92/93: crossed a mount, 94: no grant, 95/96: did not cross";
}

// --cross-mounts is kept in the grant record: a re-grant without it keeps
// it there, and a revoke without it still reaches the entries below the mount.
TEST(AclMounts, RevokeCrossesMountsWhenTheRecordSaysSo) {
  Env env;
  int status = with_tmpfs_below(env, "crossing", [&](UidRegistry& registry, uid_t uid, const std::filesystem::path& mountpoint) {
    grant(registry, uid, env.tree, Access::ro, WalkOptions{.cross_mounts = true});
    if (count_entries(getfacl(mountpoint / "on-other-fs"), uid) != 1) return 92;
    grant(registry, uid, env.tree, Access::rw);
    auto records = registry.grant_records(uid);
    if (records.size() != 1 || !records[0].cross_mounts) return 93;
    if (records[0].access != Access::rw) return 94;
    Report report = revoke(registry, uid, env.tree);
    if (report.skipped_mounts != 0) return 95;
    if (count_entries(getfacl(mountpoint / "on-other-fs"), uid) != 0) return 96;
    if (count_entries(getfacl(env.tree), uid) != 0) return 97;
    return 0;
  });
  EXPECT_EQ(status, 0) << "90/91: setup, 92: no cross grant, 93: the re-grant downgraded the record, "
                                       "94: access not rewritten, 95/96: revoke did not cross, 97: entries left";
}

// The temporary files of atomic record writes now in `dir` (".tmp-*").
std::set<std::string> temporaries_in(const std::filesystem::path& dir) {
  std::set<std::string> names;
  for (const std::string& name : testing::directory_names(dir)) {
    if (name.starts_with(".tmp-")) names.insert(name);
  }
  return names;
}

// Waits up to `timeout` for an inotify event in `mask` on a name that starts
// with `prefix`, or for `pid` to exit (not reaped); true if the event came.
bool wait_for_event(int inotify_fd, std::uint32_t mask, std::string_view prefix, pid_t pid,
                    std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  alignas(inotify_event) char buffer[4096];
  while (std::chrono::steady_clock::now() < deadline) {
    for (ssize_t n; (n = ::read(inotify_fd, buffer, sizeof buffer)) > 0;) {
      for (ssize_t offset = 0; offset < n;) {
        auto* event = reinterpret_cast<inotify_event*>(buffer + offset);
        if ((event->mask & mask) && event->len > 0 && std::string_view(event->name).starts_with(prefix)) return true;
        offset += static_cast<ssize_t>(sizeof(inotify_event) + event->len);
      }
    }
    siginfo_t info{};
    if (::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT) == 0 && info.si_pid == pid) {
      return false;
    }
    pollfd poll_fd{inotify_fd, POLLIN, 0};
    ::poll(&poll_fd, 1, 5);
  }
  return false;
}

// Random kills of `vmwarden uid alloc` (single-use and alias), and of
// `vmwarden acl grant` and `revoke` of single-use UIDs on two trees: env.tree,
// which the alias `keep` is granted too, and a second tree no alias has a
// record for, so that sweep walks it only for the records the killed runs
// left. After each killed grant or revoke, entries of its UID on its tree
// must come with a grant record for that tree (the record is written before
// the walk and dropped after it): an entry without a record is one no sweep
// would look for once another UID's record no longer brings it there. Kills of
// allocations of new aliases are aimed at their record write (from the
// moment its temporary file appears), and some must leave the temporary
// behind: a kill inside the write.
TEST(AclCrash, KillNineAtRandomPointsLeavesARegistryThatLoadsAndSweepsClean) {
  GrantedTree granted(20, 25, Access::ro, "keep");
  auto& [env, registry, keep] = granted;
  std::filesystem::path unshared = env.temp / "unshared";
  make_tree(unshared, 20, 25);
  const std::filesystem::path trees[] = {env.tree, unshared};
  std::filesystem::path allocated_dir = env.locations.state_dir / "uids/allocated";
  std::filesystem::path grants_dir = env.locations.state_dir / "grants";
  UniqueFd inotify(::inotify_init1(IN_NONBLOCK | IN_CLOEXEC));
  ASSERT_TRUE(inotify);
  ASSERT_GE(::inotify_add_watch(inotify.get(), allocated_dir.c_str(), IN_CREATE | IN_MOVED_TO), 0);

  std::mt19937 random(std::random_device{}());
  std::vector<uid_t> single_use;        // printed by completed `uid alloc`
  std::map<std::string, uid_t> aliases;  // alias -> printed UID
  int killed = 0, completed = 0, partial = 0, orphaned = 0;
  int aimed = 0, in_alias_write = 0, in_grant_write = 0;
  std::set<std::string> temporaries_seen;
  const std::size_t full = 20 * (1 + 25 + 1 + 1) + 1 + 20 * 2 + 1;  // access + default entries of a whole grant
  // How long each kind of run takes uninterrupted; kills land uniformly in
  // [0, 1.3 x that], so every phase of the run is hit. A new alias's record
  // write (from its temporary file's creation to its rename) is timed too.
  std::map<int, std::chrono::microseconds> duration;
  std::chrono::microseconds alias_write{1000};
  int alias_runs = 0;

  auto has_record = [&](uid_t uid, const std::filesystem::path& tree) {
    auto records = registry.grant_records(uid);
    return std::any_of(records.begin(), records.end(), [&](const GrantRecord& record) { return record.tree == tree; });
  };
  // A UID for a grant (one without a record for the tree, if any: a killed
  // grant then shows whether its record comes first) or a revoke (one with).
  auto pick = [&](const std::filesystem::path& tree, bool with_record) {
    std::vector<uid_t> candidates;
    for (uid_t uid : single_use) {
      if (has_record(uid, tree) == with_record) candidates.push_back(uid);
    }
    const std::vector<uid_t>& from = candidates.empty() ? single_use : candidates;
    return from[random() % from.size()];
  };
  // New temporaries of record writes since the last call, in allocated/ and in grants/UID/.
  auto new_temporaries = [&](const std::filesystem::path& dir) {
    int count = 0;
    for (const std::string& name : temporaries_in(dir)) count += temporaries_seen.insert(name).second;
    return count;
  };

  // One run of `op` on `tree`; kill_after empty: let it finish. aim: count
  // kill_after from the moment a new alias's temporary record file appears.
  auto run_once = [&](int op, const std::filesystem::path& tree, std::optional<std::chrono::microseconds> kill_after,
                      bool aim) {
    std::vector<std::string> args{testing::vmwarden_binary()};
    std::string alias;
    uid_t target = 0;
    // No single-use UID yet to grant or revoke (every allocation so far was
    // killed): allocate one instead (pick() would divide by zero).
    if ((op == 2 || op == 3) && single_use.empty()) op = 0;
    if (op == 0) {
      args.insert(args.end(), {"uid", "alloc"});
    } else if (op == 1) {
      // Half of them an alias of eight (mostly there already: its UID must
      // not change), half a new one, whose record is written.
      alias = aim ? fmt::format("new{}", alias_runs) : fmt::format("a{}", random() % 8);
      ++alias_runs;
      args.insert(args.end(), {"uid", "alloc", "--alias", alias});
    } else {
      target = pick(tree, op == 3);
      if (op == 2) {
        args.insert(args.end(), {"acl", "grant", "--uid", std::to_string(target), "--rw", tree.string()});
      } else {
        args.insert(args.end(), {"acl", "revoke", "--uid", std::to_string(target), tree.string()});
      }
    }
    count_events(inotify.get(), 0);  // drops earlier events
    int out[2];
    ASSERT_EQ(::pipe2(out, O_CLOEXEC), 0);
    auto start = std::chrono::steady_clock::now();
    pid_t pid = ::fork();
    if (pid == 0) {
      ::dup2(out[1], 1);
      for (const auto& [key, value] : env.env()) ::setenv(key.c_str(), value.c_str(), 1);
      std::vector<char*> argv;
      for (std::string& arg : args) argv.push_back(arg.data());
      argv.push_back(nullptr);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    ::close(out[1]);
    if (aim) {
      bool writing = wait_for_event(inotify.get(), IN_CREATE, ".tmp-", pid, 10s);
      auto written = std::chrono::steady_clock::now();
      if (kill_after) {
        aimed += writing;
        std::this_thread::sleep_for(*kill_after);
        testing::kill_process(pid, SIGKILL);
      } else if (writing && wait_for_event(inotify.get(), IN_MOVED_TO, "", pid, 10s)) {
        alias_write = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - written);
      }
    } else if (kill_after) {
      std::this_thread::sleep_for(*kill_after);
      testing::kill_process(pid, SIGKILL);
    }
    int status = 0;
    ::waitpid(pid, &status, 0);
    if (!kill_after && !aim) {
      duration[op] = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - start);
    }
    std::string printed;
    char buffer[64];
    for (ssize_t n; (n = ::read(out[0], buffer, sizeof buffer)) > 0;) printed.append(buffer, n);
    ::close(out[0]);
    if (WIFSIGNALED(status)) {
      ++killed;
      if (op == 1) in_alias_write += new_temporaries(allocated_dir);
      if (op >= 2) {
        in_grant_write += new_temporaries(grants_dir / std::to_string(target));
        std::size_t n = count_entries(getfacl(tree), target);
        if (n != 0 && n != full) ++partial;
        // (Named for the first three: the entries stay, and later checks find them again.)
        if (n != 0 && !has_record(target, tree) && ++orphaned <= 3) {
          ADD_FAILURE() << "a killed " << args[2] << " left " << n << " entries of UID " << target << " on " << tree
                        << " without a grant record for it";
        }
      }
    } else {
      ++completed;
      ASSERT_EQ(WEXITSTATUS(status), 0) << args[1] << " " << args[2];
    }
    // Whatever printed a UID had made it durable before printing.
    if (op <= 1 && !printed.empty() && printed.back() == '\n') {
      uid_t uid = static_cast<uid_t>(std::stoul(printed));
      if (alias.empty()) {
        single_use.push_back(uid);
      } else if (!aliases.emplace(alias, uid).second) {
        EXPECT_EQ(aliases[alias], uid) << "alias " << alias << " changed UID";
      }
    }
  };
  for (int op = 0; op < 4; ++op) run_once(op, env.tree, std::nullopt, false);
  run_once(1, env.tree, std::nullopt, /*aim=*/true);
  killed = completed = 0;

  constexpr int kRuns = 200;
  for (int run = 0; run < kRuns; ++run) {
    int op = run % 4;
    const std::filesystem::path& tree = trees[run / 4 % 2];
    // Every other alias allocation is a new alias, killed within (or just
    // after) the write of its record.
    bool aim = op == 1 && run / 4 % 2 == 1;
    auto limit = aim ? alias_write.count() + 1 : duration[op].count() * 13 / 10 + 1;
    run_once(op, tree, std::chrono::microseconds(random() % limit), aim);
  }
  std::printf("crash: %d runs, %d killed, %d completed, %d walks left half-done, %zu single-use UIDs allocated; "
              "%d kills aimed at a new alias's record write (%ld us), %d inside an alias's record write, %d inside a grant record's; "
              "uninterrupted alloc %ld us, grant %ld us, revoke %ld us\n",
              kRuns, killed, completed, partial, single_use.size(), aimed, static_cast<long>(alias_write.count()),
              in_alias_write, in_grant_write, static_cast<long>(duration[0].count()),
              static_cast<long>(duration[2].count()), static_cast<long>(duration[3].count()));
  EXPECT_GT(killed, kRuns / 4);
  EXPECT_GT(partial, 0) << "no kill landed inside a walk; the test would prove little";
  EXPECT_GT(in_alias_write, 0) << "no kill landed inside an alias's record write; the test would prove little";
  EXPECT_EQ(orphaned, 0) << "killed runs left entries without a grant record (a grant walked before it recorded?)";

  // The registry loads, and nothing was handed out twice.
  std::vector<UidInfo> infos = registry.list(true);
  std::set<uid_t> distinct(single_use.begin(), single_use.end());
  EXPECT_EQ(distinct.size(), single_use.size()) << "a UID was handed out twice";
  std::set<std::string> alias_names;
  for (const UidInfo& info : infos) {
    if (!info.allocated) continue;
    EXPECT_FALSE(distinct.count(info.uid) && !info.alias.empty()) << "single-use UID reused as alias";
    if (!info.alias.empty()) {
      EXPECT_TRUE(alias_names.insert(info.alias).second) << "alias twice: " << info.alias;
    }
  }
  for (uid_t uid : single_use) {
    auto info = registry.find(uid);
    ASSERT_TRUE(info && info->allocated) << uid << " was printed but is not allocated";
  }
  for (const auto& [alias, uid] : aliases) EXPECT_EQ(registry.find_alias(alias), uid);
  EXPECT_EQ(env.vmwarden({"uid", "list", "--all"}).exit_code, 0);

  auto sweep_result = env.vmwarden({"acl", "sweep"});
  ASSERT_EQ(sweep_result.exit_code, 0) << sweep_result.err;
  std::string after = getfacl(env.tree);
  std::set<uid_t> left = uids_in(after, registry.range());
  EXPECT_EQ(left, std::set<uid_t>{keep}) << "entries of dead single-use UIDs survived the sweep";
  EXPECT_EQ(count_entries(after, keep), full) << "the alias's own grant must survive";
  EXPECT_EQ(uids_in(getfacl(unshared), registry.range()), std::set<uid_t>{})
      << "entries of dead single-use UIDs survived the sweep of the tree no alias has";
  for (const UidInfo& info : registry.list()) {
    EXPECT_FALSE(info.alias.empty()) << "dead single-use UID " << info.uid << " still allocated after sweep";
  }
}

TEST(AclConcurrency, FiftyConcurrentAllocationsGetFiftyUids) {
  Env env;
  struct Child {
    pid_t pid;
    int out;
    bool alias;
  };
  std::vector<Child> children;
  // 50 single-use allocations and 10 of one alias, all started at once.
  for (int i = 0; i < 60; ++i) {
    int out[2];
    ASSERT_EQ(::pipe2(out, O_CLOEXEC), 0);
    pid_t pid = ::fork();
    if (pid == 0) {
      ::dup2(out[1], 1);
      for (const auto& [key, value] : env.env()) ::setenv(key.c_str(), value.c_str(), 1);
      std::string binary = testing::vmwarden_binary();
      if (i % 6 != 5) {
        ::execl(binary.c_str(), binary.c_str(), "uid", "alloc", nullptr);
      } else {
        ::execl(binary.c_str(), binary.c_str(), "uid", "alloc", "--alias", "shared", nullptr);
      }
      ::_exit(127);
    }
    ::close(out[1]);
    children.push_back({pid, out[0], i % 6 == 5});
  }
  std::vector<uid_t> single_use;
  std::set<uid_t> shared;
  for (const Child& child : children) {
    std::string printed;
    char buffer[64];
    for (ssize_t n; (n = ::read(child.out, buffer, sizeof buffer)) > 0;) printed.append(buffer, n);
    ::close(child.out);
    int status;
    ::waitpid(child.pid, &status, 0);
    ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    uid_t uid = static_cast<uid_t>(std::stoul(printed));
    if (child.alias) {
      shared.insert(uid);
    } else {
      single_use.push_back(uid);
    }
  }
  ASSERT_EQ(single_use.size(), 50u);
  EXPECT_EQ(std::set<uid_t>(single_use.begin(), single_use.end()).size(), 50u) << "a UID was handed out twice";
  EXPECT_EQ(shared.size(), 1u) << "one alias, one UID";
  EXPECT_FALSE(std::set<uid_t>(single_use.begin(), single_use.end()).count(*shared.begin()));
  UidRegistry registry(env.locations);
  EXPECT_EQ(registry.list().size(), 51u);
}

// A release that comes while a grant records itself must not hand the UID
// out again before the grant's entries are gone: the grant checks the
// allocation and records under the registry's lock, so the release waits,
// and the UID then has a record that keeps it out of the pool. The grant's
// fsyncs are slowed (strace) to hold the window open; the range is that one
// UID, so a reuse would show.
TEST(AclConcurrency, AReleaseDuringAGrantLeavesTheUidOutOfThePool) {
  if (::access("/usr/bin/strace", X_OK) != 0) GTEST_SKIP() << "strace is not installed (./bootstrap installs it)";
  Env env;
  make_tree(env.tree, 1, 2);
  std::filesystem::create_directories(env.locations.config_dir);
  testing::write_file(env.locations.config_dir / "uid-range", "1879048192-1879048192\n");
  auto alloc = env.vmwarden({"uid", "alloc"});
  ASSERT_EQ(alloc.exit_code, 0) << alloc.err;
  std::string uid = alloc.out.substr(0, alloc.out.find('\n'));

  pid_t granting = ::fork();
  if (granting == 0) {
    for (const auto& [key, value] : env.env()) ::setenv(key.c_str(), value.c_str(), 1);
    std::string binary = testing::vmwarden_binary();
    ::execlp("strace", "strace", "-f", "-qq", "-o", "/dev/null", "-e", "trace=fsync", "-e",
             "inject=fsync:delay_enter=1500000", "--", binary.c_str(), "acl", "grant", "--uid", uid.c_str(), "--rw",
             env.tree.c_str(), nullptr);
    ::_exit(127);
  }
  // The record's temporary file appears before its (slowed) fsync.
  std::filesystem::path records = env.locations.state_dir / "grants" / uid;
  auto writing = [&] {
    for (const std::string& name : testing::directory_names(records)) {
      if (name.starts_with(".tmp-")) return true;
    }
    return false;
  };
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (!writing() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  ASSERT_TRUE(writing()) << "the grant never wrote its record";
  auto release = env.vmwarden({"uid", "release", uid});
  auto again = env.vmwarden({"uid", "alloc"});
  int status = 0;
  ASSERT_EQ(::waitpid(granting, &status, 0), granting);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  EXPECT_EQ(release.exit_code, 0) << release.err;
  EXPECT_NE(again.exit_code, 0) << "UID " << uid << " was handed out again while a grant to it was being recorded";
  EXPECT_NE(again.err.find("0 allocated, 1 not allocated but still with grant records"), std::string::npos)
      << again.err;
}

TEST(AclInheritance, AFileCreatedAfterTheGrantIsUsableByTheUid) {
  Env env;
  std::filesystem::create_directories(env.tree / "inner");
  std::filesystem::permissions(env.tree, std::filesystem::perms(0700));
  std::filesystem::permissions(env.tree / "inner", std::filesystem::perms(0700));
  UidRegistry registry(env.locations);
  uid_t rw = registry.allocate_alias("writer");
  uid_t ro = registry.allocate_alias("reader");
  std::filesystem::permissions(env.temp.path(), std::filesystem::perms(0755));

  auto can_read = [&](uid_t uid, const std::filesystem::path& path) {
    return as_user(uid, [&] { return ::open(path.c_str(), O_RDONLY) >= 0 ? 0 : 1; }) == 0;
  };
  auto can_write = [&](uid_t uid, const std::filesystem::path& path) {
    return as_user(uid, [&] { return ::open(path.c_str(), O_WRONLY) >= 0 ? 0 : 1; }) == 0;
  };
  testing::write_file(env.tree / "inner/before", "x", 0600);
  EXPECT_FALSE(can_read(rw, env.tree / "inner/before")) << "the test would prove nothing";

  grant(registry, rw, env.tree, Access::rw);
  grant(registry, ro, env.tree, Access::ro);
  EXPECT_TRUE(can_read(rw, env.tree / "inner/before"));

  // Created afterwards by someone else, with an ordinary mode and umask.
  mode_t old_umask = ::umask(022);
  testing::write_file(env.tree / "inner/later", "x", 0644);
  std::filesystem::create_directories(env.tree / "inner/newdir");
  testing::write_file(env.tree / "inner/newdir/deeper", "x", 0664);
  ::umask(old_umask);

  EXPECT_TRUE(can_read(rw, env.tree / "inner/later"));
  EXPECT_TRUE(can_write(rw, env.tree / "inner/newdir/deeper"));
  EXPECT_TRUE(can_read(ro, env.tree / "inner/newdir/deeper"));
  EXPECT_FALSE(can_write(ro, env.tree / "inner/newdir/deeper"));
  EXPECT_EQ(as_user(rw, [&] {
              return ::open((env.tree / "inner/newdir/by-vm").c_str(), O_CREAT | O_WRONLY, 0600) >= 0 ? 0 : 1;
            }),
            0);
}

void setfacl(std::vector<std::string> args) {
  args.insert(args.begin(), "setfacl");
  auto result = testing::run_command(args);
  ASSERT_EQ(result.exit_code, 0) << result.err;
}

TEST(AclRevoke, RemovesExactlyItsOwnEntriesAndKeepsTheMaskRule) {
  Env env;
  make_tree(env.tree, 3, 4);
  // Existing ACLs: a named user and group, default entries, and one file
  // whose mask a chmod narrowed below what its named user was given.
  setfacl({"-R", "-m", "u:1000:rwX,g:100:rX", env.tree.string()});
  setfacl({"-d", "-m", "u:1000:rwx", (env.tree / "d1").string()});
  setfacl({"-m", "u:1001:rwx", (env.tree / "d2/f1").string()});
  std::filesystem::permissions(env.tree / "d2/f1", std::filesystem::perms(0640));  // mask r--
  std::string before = getfacl(env.tree);

  UidRegistry registry(env.locations);
  uid_t a = registry.allocate_alias("a");
  uid_t b = registry.allocate_alias("b");
  grant(registry, a, env.tree, Access::rw);
  std::string narrowed = getfacl(env.tree / "d2/f1");
  EXPECT_NE(narrowed.find("user:1001:rwx\t#effective:r--"), std::string::npos) << narrowed;
  EXPECT_NE(narrowed.find(fmt::format("user:{}:r--", a)), std::string::npos) << "w is withheld by the mask: " << narrowed;
  EXPECT_NE(narrowed.find("group::r--"), std::string::npos) << "the owning group gained: " << narrowed;

  revoke(registry, a, env.tree);
  EXPECT_EQ(getfacl(env.tree), before) << "grant + revoke must restore every ACL exactly";

  grant(registry, b, env.tree, Access::ro);
  std::string only_b = getfacl(env.tree);
  grant(registry, a, env.tree, Access::rw);
  revoke(registry, a, env.tree);
  std::string after = getfacl(env.tree);
  EXPECT_EQ(count_entries(after, a), 0u);
  EXPECT_EQ(count_entries(after, b), count_entries(only_b, b));
  revoke(registry, b, env.tree);
  EXPECT_EQ(getfacl(env.tree), before);
  EXPECT_TRUE(registry.grant_records().empty());
}

// A batch of files reads each ACL into a buffer of its own, of up to 62
// entries: a larger one is read again on its own, and comes out as any
// other. Grant, re-grant and revoke of a directory of 100 files (two
// batches where io_uring reads them, one where it does not), two of them
// with 80 named entries.
TEST(AclRevoke, FilesWithMoreEntriesThanABatchReadsAreEditedAlike) {
  for (bool uring : {true, false}) {
    SCOPED_TRACE(uring ? "with io_uring" : "without io_uring");
    detail::force_no_io_uring(!uring);
    Env env;
    make_tree(env.tree, 1, 100);
    std::string many;
    for (int i = 0; i < 80; ++i) many += fmt::format("{}u:{}:r", i ? "," : "", 70000 + i);
    setfacl({"-m", many, (env.tree / "d0/f7").string()});
    setfacl({"-m", many, (env.tree / "d0/f99").string()});
    std::string before = getfacl(env.tree);
    UidRegistry registry(env.locations);
    uid_t uid = registry.allocate_alias("many");
    Report granted = grant(registry, uid, env.tree, Access::ro);
    EXPECT_EQ(granted.failed, 0u);
    EXPECT_EQ(granted.changed, 1u + 1 + 100 + 2);  // root, d0, its files, sub and inner
    std::string after = getfacl(env.tree);
    EXPECT_EQ(count_entries(after, uid), 104u + 3) << "an access entry each, and defaults on the 3 directories";
    for (const char* file : {"d0/f7", "d0/f99"}) {
      std::string acl = getfacl(env.tree / file);
      EXPECT_NE(acl.find(fmt::format("user:{}:r--", uid)), std::string::npos) << acl;
      EXPECT_NE(acl.find("user:70079:r--"), std::string::npos) << acl;
    }
    Report again = grant(registry, uid, env.tree, Access::ro);
    EXPECT_EQ(again.changed, 0u);
    EXPECT_EQ(again.unchanged, granted.changed);
    Report revoked = revoke(registry, uid, env.tree);
    EXPECT_EQ(revoked.failed, 0u);
    EXPECT_EQ(getfacl(env.tree), before);
  }
  detail::force_no_io_uring(false);
}

// An owner's own default ACL with no named entries (here: new files private
// to others, whatever the umask) is a rule of theirs, not something a grant
// made: grant + revoke leaves it, and so it stays on a directory made while
// the grant held, which inherited it. A default ACL the grant made goes: on
// each directory it made it on (marked), also one that existed below an
// owner's rule with no ACL of its own, and on the VM's directories made
// below, which inherited it; the VM cannot mark a directory itself.
TEST(AclRevoke, KeepsTheOwnersDefaultAclWithNoNamedEntries) {
  Env env;
  make_tree(env.tree, 2, 1);
  std::filesystem::permissions(env.temp.path(), std::filesystem::perms(0755));
  setfacl({"-d", "-m", "o::---", env.tree.string()});
  setfacl({"-d", "-m", "g::---", (env.tree / "d1").string()});
  auto default_acl = [](const std::filesystem::path& dir) {
    auto result = testing::run_command({"getfacl", "-d", "-c", "-n", dir.string()});
    EXPECT_EQ(result.exit_code, 0) << result.err;
    return result.out;
  };
  std::string before = getfacl(env.tree);
  std::string owners_default = default_acl(env.tree);
  ASSERT_NE(owners_default.find("other::---"), std::string::npos) << owners_default;
  ASSERT_EQ(default_acl(env.tree / "d0/sub"), "") << "below the owner's rule, with none of its own";

  UidRegistry registry(env.locations);
  uid_t uid = registry.allocate_single_use();
  grant(registry, uid, env.tree, Access::rw);
  // Made while the grant holds: by the owner below the owner's default ACL,
  // and by the VM below the one the grant made on d0, with its attempt at
  // the mark (which needs CAP_SYS_ADMIN).
  std::filesystem::create_directory(env.tree / "later");
  ASSERT_EQ(as_user(uid, [&] {
              std::string own = (env.tree / "d0/by-vm").string();
              if (::mkdir(own.c_str(), 0755) != 0) return 1;
              if (::mkdir((own + "/deeper").c_str(), 0755) != 0) return 1;
              return ::setxattr(own.c_str(), "trusted.vmwarden.granted-default", "", 0, 0) != 0 && errno == EPERM ? 0
                                                                                                                  : 2;
            }),
            0);
  ASSERT_NE(default_acl(env.tree / "d0/by-vm").find(fmt::format("user:{}:", uid)), std::string::npos);

  revoke(registry, uid, env.tree);
  EXPECT_EQ(default_acl(env.tree), owners_default);
  EXPECT_EQ(default_acl(env.tree / "later"), owners_default) << "inherited from the owner's rule";
  EXPECT_NE(default_acl(env.tree / "d1").find("group::---"), std::string::npos) << default_acl(env.tree / "d1");
  for (const char* made : {"d0", "d0/sub", "d0/by-vm", "d0/by-vm/deeper"}) {
    EXPECT_EQ(default_acl(env.tree / made), "") << made << ": the grant's default ACL stays";
  }
  std::filesystem::remove(env.tree / "later");
  std::filesystem::remove_all(env.tree / "d0/by-vm");
  EXPECT_EQ(getfacl(env.tree), before) << "grant + revoke must restore every ACL exactly";

  // A VM's directory loses the default ACL it inherited from the grant's even
  // when the grant's is gone already (a revoke killed in between, then run
  // again).
  grant(registry, uid, env.tree, Access::rw);
  ASSERT_EQ(as_user(uid, [&] { return ::mkdir((env.tree / "d0/by-vm").c_str(), 0755); }), 0);
  setfacl({"-k", (env.tree / "d0").string()});
  ASSERT_EQ(::removexattr((env.tree / "d0").c_str(), "trusted.vmwarden.granted-default"), 0);
  revoke(registry, uid, env.tree);
  EXPECT_EQ(default_acl(env.tree / "d0/by-vm"), "");
  std::filesystem::remove(env.tree / "d0/by-vm");
  EXPECT_EQ(getfacl(env.tree), before);

  // The owner drops their rule from the root afterwards: the next grant
  // makes the default ACL there, and its revoke takes it away again.
  setfacl({"-k", env.tree.string()});
  std::string without_rule = getfacl(env.tree);
  grant(registry, uid, env.tree, Access::rw);
  revoke(registry, uid, env.tree);
  EXPECT_EQ(getfacl(env.tree), without_rule) << "a mark left from before decided for a default ACL it did not make";

  // While granted, the owner replaces the default ACL the grant made with a
  // rule of their own: it stays through the revoke, and the next grant and
  // revoke (the grant drops the mark it finds on such a rule).
  grant(registry, uid, env.tree, Access::rw);
  setfacl({"-k", env.tree.string()});
  setfacl({"-d", "-m", "o::---", env.tree.string()});
  revoke(registry, uid, env.tree);
  grant(registry, uid, env.tree, Access::rw);
  revoke(registry, uid, env.tree);
  EXPECT_EQ(default_acl(env.tree), owners_default);
}

// The ACL attribute `name` of `path` (never followed), decoded; nullopt
// where there is none.
std::optional<detail::Entries> acl_of(const std::filesystem::path& path, const char* name) {
  char buffer[1024];
  ssize_t size = ::lgetxattr(path.c_str(), name, buffer, sizeof buffer);
  if (size < 0) {
    EXPECT_EQ(errno, ENODATA) << path << ": " << name;
    return std::nullopt;
  }
  detail::Entries entries;
  EXPECT_TRUE(detail::decode(std::string_view(buffer, static_cast<std::size_t>(size)), entries)) << path;
  return entries;
}

// "u::rwx,u:ID:rwx,g::r-x,m::rwx,o::---" for `entries`, "none" for nullopt.
std::string text_of(const std::optional<detail::Entries>& entries) {
  if (!entries) return "none";
  std::string text;
  for (const detail::Entry& entry : *entries) {
    const char* tag = entry.tag == detail::kUserObj || entry.tag == detail::kUser ? "u"
                      : entry.tag == detail::kGroupObj || entry.tag == detail::kGroup ? "g"
                      : entry.tag == detail::kMask ? "m"
                                                   : "o";
    bool named = entry.tag == detail::kUser || entry.tag == detail::kGroup;
    text += fmt::format("{}{}:{}:{}{}{}", text.empty() ? "" : ",", tag, named ? std::to_string(entry.id) : "",
                        entry.perm & detail::kRead ? 'r' : '-', entry.perm & detail::kWrite ? 'w' : '-',
                        entry.perm & detail::kExecute ? 'x' : '-');
  }
  return text;
}

bool has_granted_default_mark(const std::filesystem::path& path) {
  return ::lgetxattr(path.c_str(), "trusted.vmwarden.granted-default", nullptr, 0) >= 0;
}

// Whether `entries` name `uid` as a user or a group (a VM's gid is its uid).
bool names(const std::optional<detail::Entries>& entries, uid_t uid) {
  return entries && std::any_of(entries->begin(), entries->end(), [uid](const detail::Entry& entry) {
           return (entry.tag == detail::kUser || entry.tag == detail::kGroup) && entry.id == uid;
         });
}

// The arenas of DirectorySwapper: in each, the tree's owner's directories
// are moved by the VM into a directory of its own, v<K>, where it can
// rename them for as long as it likes: the revoke takes the VM's write
// access to an owner's directory before it opens what lies in it, so only a
// parent the VM owns still lets it rename there while the walk decides on
// the children.
struct Arena {
  std::filesystem::path owners, vms;  // o<K> (the owner's), v<K> (the VM's)
  ino_t own = 0, marked = 0;          // inode numbers, found wherever they end up
  detail::Entries own_rule;           // the owner's default ACL on `own`
};

// A process of the VM's UID that, once the VM has moved each arena's `own`
// (the owner's directory with the owner's own default ACL, no mark) and
// `marked` (the owner's directory whose default ACL the grant made) into
// v<K>, beside two directories it made (vm1, vm2), swaps them there as fast
// as it can, one change at a time and in turn: RENAME_EXCHANGE of own and
// vm1, of marked and vm2, of own and marked, and three plain renames
// through a spare name (own and vm1 change places, the name missing for a
// moment). A forked child (setresuid) with its counters in shared memory;
// stop() ends it and returns its exit status (0: it ran).
class DirectorySwapper {
 public:
  DirectorySwapper(uid_t uid, const std::vector<Arena>& arenas, int cpu) {
    void* shared = ::mmap(nullptr, sizeof(Shared), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (shared == MAP_FAILED) throw std::system_error(errno, std::generic_category(), "mmap");
    shared_ = new (shared) Shared;
    // Every path is built before the fork.
    struct Paths {
      std::string vms, from_own, from_marked, own, marked, vm1, vm2, spare, vm1_file, vm2_file;
    };
    std::vector<Paths> paths;
    for (const Arena& arena : arenas) {
      paths.push_back({arena.vms, arena.owners / "own", arena.owners / "marked", arena.vms / "own",
                       arena.vms / "marked", arena.vms / "vm1", arena.vms / "vm2", arena.vms / "spare",
                       arena.vms / "vm1/f", arena.vms / "vm2/f"});
    }
    pid_ = ::fork();
    if (pid_ < 0) {
      int error = errno;
      ::munmap(shared_, sizeof(Shared));
      throw std::system_error(error, std::generic_category(), "fork");
    }
    if (pid_ > 0) return;
    if (::setgroups(0, nullptr) != 0 || ::setresgid(uid, uid, uid) != 0 || ::setresuid(uid, uid, uid) != 0) ::_exit(90);
    if (cpu >= 0) {
      cpu_set_t set;
      CPU_ZERO(&set);
      CPU_SET(cpu, &set);
      if (::sched_setaffinity(0, sizeof set, &set) != 0) ::_exit(96);
    }
    for (const Paths& p : paths) {
      if (::mkdir(p.vms.c_str(), 0755) != 0 || ::mkdir(p.vm1.c_str(), 0755) != 0 || ::mkdir(p.vm2.c_str(), 0755) != 0)
        ::_exit(91);
      // Not empty: a rename onto an empty directory would replace it.
      for (const std::string& file : {p.vm1_file, p.vm2_file}) {
        int fd = ::open(file.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
        if (fd < 0) ::_exit(92);
        ::close(fd);
      }
      // Through the grant: write access to o<K> and to the directory moved.
      if (::rename(p.from_own.c_str(), p.own.c_str()) != 0 || ::rename(p.from_marked.c_str(), p.marked.c_str()) != 0)
        ::_exit(93);
    }
    // The walk's open of v<K> says that it decides on what lies there next:
    // the swaps go there for a while (a walk holding a directory for
    // microseconds is otherwise seldom met).
    int events = ::inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (events < 0) ::_exit(94);
    std::map<int, std::size_t> arena_of;
    for (std::size_t k = 0; k < paths.size(); ++k) {
      int watch = ::inotify_add_watch(events, paths[k].vms.c_str(), IN_OPEN);
      if (watch < 0) ::_exit(95);
      arena_of[watch] = k;
    }
    shared_->ready = true;
    auto exchange = [](const std::string& a, const std::string& b) {
      return ::renameat2(AT_FDCWD, a.c_str(), AT_FDCWD, b.c_str(), RENAME_EXCHANGE) == 0;
    };
    // own and vm1 change places through the spare name; false (undone as
    // far as it went) if a step failed.
    auto three_renames = [](const Paths& p) {
      if (::rename(p.own.c_str(), p.spare.c_str()) != 0) return false;
      if (::rename(p.vm1.c_str(), p.own.c_str()) != 0) {
        ::rename(p.spare.c_str(), p.own.c_str());
        return false;
      }
      return ::rename(p.spare.c_str(), p.vm1.c_str()) == 0;
    };
    std::size_t focus = 0, focus_left = 0, next = 0;
    alignas(inotify_event) char buffer[4096];
    for (std::size_t k = 0; !shared_->stop.load(std::memory_order_relaxed); ++k) {
      for (ssize_t n; (n = ::read(events, buffer, sizeof buffer)) > 0;) {
        for (ssize_t offset = 0; offset < n;) {
          auto* event = reinterpret_cast<inotify_event*>(buffer + offset);
          offset += static_cast<ssize_t>(sizeof(inotify_event) + event->len);
          if (auto it = arena_of.find(event->wd); it != arena_of.end() && (event->mask & IN_OPEN)) {
            focus = it->second;
            focus_left = 64;
          }
        }
      }
      const Paths& p = paths[focus_left > 0 ? focus : next++ % paths.size()];
      if (focus_left > 0) --focus_left;
      bool swapped = false;
      switch (k % 4) {
        case 0: swapped = exchange(p.own, p.vm1); break;
        case 1: swapped = exchange(p.marked, p.vm2); break;
        case 2: swapped = exchange(p.own, p.marked); break;
        case 3: swapped = three_renames(p); break;
      }
      if (swapped) shared_->swaps.fetch_add(1, std::memory_order_relaxed);
    }
    ::_exit(0);
  }
  ~DirectorySwapper() {
    stop();
    ::munmap(shared_, sizeof(Shared));
  }
  DirectorySwapper(const DirectorySwapper&) = delete;
  DirectorySwapper& operator=(const DirectorySwapper&) = delete;

  // Whether the child made its directories, moved the owner's and is
  // swapping; false if it exited first, or is not swapping after 10 s.
  bool wait_until_swapping() {
    auto deadline = std::chrono::steady_clock::now() + 10s;
    while (!shared_->ready || swaps() < 100) {
      if (::waitpid(pid_, &status_, WNOHANG) == pid_) {
        pid_ = -1;
        return false;
      }
      if (std::chrono::steady_clock::now() > deadline) return false;
      std::this_thread::sleep_for(100us);
    }
    return true;
  }
  long swaps() const { return shared_->swaps.load(std::memory_order_relaxed); }
  int stop() {
    if (pid_ > 0) {
      shared_->stop = true;
      if (::waitpid(pid_, &status_, 0) != pid_) status_ = -1;
      pid_ = -1;
    }
    return WIFEXITED(status_) ? WEXITSTATUS(status_) : 128 + WTERMSIG(status_);
  }

 private:
  struct Shared {
    std::atomic<bool> ready{false};
    std::atomic<bool> stop{false};
    std::atomic<long> swaps{0};
  };
  static_assert(std::atomic<bool>::is_always_lock_free && std::atomic<long>::is_always_lock_free,
                "shared between processes");
  Shared* shared_ = nullptr;
  pid_t pid_ = -1;
  int status_ = 0;
};

// Each directory of the tree by inode number (no symlink followed).
std::map<ino_t, std::filesystem::path> directories_by_inode(const std::filesystem::path& tree) {
  std::map<ino_t, std::filesystem::path> found;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(tree)) {
    struct stat st;
    if (::lstat(entry.path().c_str(), &st) == 0 && S_ISDIR(st.st_mode)) found[st.st_ino] = entry.path();
  }
  return found;
}

// Wrong decisions on default ACLs, counted for the report.
struct Misdecisions {
  int owners_rule_dropped = 0;  // an owner's own default ACL taken away
  int default_kept = 0;         // a default ACL the grant made, or a VM's directory's, left
};

// What a revoke or sweep must leave on the tree's directories: each one it
// reached (no ACL of it names the UID) keeps the owner's own default ACL
// if it is an arena's `own`, and has no default ACL and no mark otherwise
// (none had one before the grant; the VM's inherited the grant's).
// `reached_all` asks that it reached them all; `wrong` (if given) counts
// the wrong decisions. Returns how many directories it did not reach.
int expect_default_acls_right(const std::filesystem::path& tree, uid_t uid, const std::vector<Arena>& arenas,
                              bool reached_all, Misdecisions* wrong) {
  std::map<ino_t, std::filesystem::path> dirs = directories_by_inode(tree);
  std::map<ino_t, const detail::Entries*> owners_rules;
  for (const Arena& arena : arenas) {
    owners_rules[arena.own] = &arena.own_rule;
    EXPECT_TRUE(dirs.count(arena.own) && dirs.count(arena.marked)) << "a directory of " << arena.vms << " is gone";
  }
  int missed = 0;
  for (const auto& [inode, path] : dirs) {
    std::optional<detail::Entries> access = acl_of(path, "system.posix_acl_access");
    std::optional<detail::Entries> default_acl = acl_of(path, "system.posix_acl_default");
    if (names(access, uid) || names(default_acl, uid)) {
      // Not reached: moved out of the walk's way while it went by.
      ++missed;
      EXPECT_FALSE(reached_all) << path << " keeps entries of UID " << uid << ": " << text_of(access) << "; default "
                                << text_of(default_acl);
      continue;
    }
    struct stat st {};
    EXPECT_EQ(::lstat(path.c_str(), &st), 0) << path;
    std::string what = fmt::format("{} (owner {}, inode {})", path.string(), st.st_uid, inode);
    EXPECT_FALSE(has_granted_default_mark(path)) << what;
    if (auto rule = owners_rules.find(inode); rule != owners_rules.end()) {
      EXPECT_EQ(text_of(default_acl), text_of(*rule->second)) << what << ": the owner's own default ACL changed";
      if (wrong && default_acl != *rule->second) ++wrong->owners_rule_dropped;
    } else {
      EXPECT_FALSE(default_acl) << what << ": a default ACL the grant made, or the VM's, stays: "
                                << text_of(default_acl);
      if (wrong && default_acl) ++wrong->default_kept;
    }
  }
  return missed;
}

// The VM's UID renames, inside a read-write tree, directories it owns and
// the owner's (one with the owner's own default ACL, `d:o::---` or
// `d:g::---`, set before the grant: no mark; one whose default ACL the
// grant made, marked) into each other's places, thousands of times, while
// the UID's grant is revoked (or swept, the UID being dead). Whichever
// directory the walk holds is the one it decides for: the owner's rule
// stays wherever that directory ends up, the grant's default ACL and its
// mark go, as does the one on each of the VM's directories, and nothing
// outside the tree changes. A walk that decided by the path (an fstatat of
// the name, a removal by name) falls for it (doc/ACL.md). The VM can also
// move a directory out of the walk's way while it goes by, as it can always
// with a tree it may write: a second revoke, with the VM stopped, finds
// those, and must then leave everything as above.
void expect_swaps_change_no_decision(bool by_sweep) {
  Env env;
  std::filesystem::permissions(env.temp.path(), std::filesystem::perms(0755));
  std::filesystem::path outside = env.temp / "outside";
  make_tree(outside, 2, 2);
  setfacl({"-R", "-m", "u:1000:rX", outside.string()});
  setfacl({"-d", "-m", "o::---", (outside / "d0").string()});
  std::string outside_before = getfacl(outside);
  struct stat temp_before;
  ASSERT_EQ(::lstat(env.temp.path().c_str(), &temp_before), 0);

  // The walk's workers on one CPU, the VM's process on another (a VM runs
  // on CPUs of its own): the swaps then meet the walk while it decides.
  cpu_set_t all;
  ASSERT_EQ(::sched_getaffinity(0, sizeof all, &all), 0);
  struct RestoreAffinity {
    cpu_set_t set;
    ~RestoreAffinity() { ::sched_setaffinity(0, sizeof set, &set); }
  } restore{all};
  int attacker_cpu = -1;
  for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
    if (!CPU_ISSET(cpu, &all)) continue;
    if (attacker_cpu >= 0) {
      cpu_set_t walk;
      CPU_ZERO(&walk);
      CPU_SET(cpu, &walk);
      ASSERT_EQ(::sched_setaffinity(0, sizeof walk, &walk), 0);
      break;
    }
    attacker_cpu = cpu;
  }

  UidRegistry registry(env.locations);
  constexpr int kArenas = 32;
  long swaps = 0;
  int rounds = 0, missed = 0;
  Misdecisions wrong;
  // At least 6 rounds and 4000 swaps: a few seconds on a quiet machine, and
  // as long as that takes on a busy one (a load that slows the attacker
  // must not weaken the attack), up to a minute.
  auto deadline = std::chrono::steady_clock::now() + 60s;
  while ((rounds < 6 || swaps < 4000) && std::chrono::steady_clock::now() < deadline) {
    ++rounds;
    std::filesystem::remove_all(env.tree);
    make_tree(env.tree, 16, 8);  // what else the walk has to do meanwhile
    std::vector<Arena> arenas(kArenas);
    for (int k = 0; k < kArenas; ++k) {
      Arena& arena = arenas[k];
      arena.owners = env.tree / fmt::format("o{}", k);
      arena.vms = env.tree / fmt::format("v{}", k);
      for (const char* name : {"own", "marked"}) {
        std::filesystem::create_directories(arena.owners / name);
        testing::write_file(arena.owners / name / "f", "data");
      }
      // New files private to others (or to the group): the owner's rule.
      arena.own_rule = detail::from_mode(k % 2 ? 0705 : 0750);
      std::string rule;
      detail::encode(arena.own_rule, rule);
      std::filesystem::path own = arena.owners / "own";
      ASSERT_EQ(::setxattr(own.c_str(), "system.posix_acl_default", rule.data(), rule.size(), 0), 0);
      ASSERT_EQ(text_of(acl_of(own, "system.posix_acl_default")), text_of(arena.own_rule));
      struct stat st;
      ASSERT_EQ(::lstat(own.c_str(), &st), 0);
      arena.own = st.st_ino;
      ASSERT_EQ(::lstat((arena.owners / "marked").c_str(), &st), 0);
      arena.marked = st.st_ino;
    }
    uid_t uid = registry.allocate_single_use();
    grant(registry, uid, env.tree, Access::rw);
    ASSERT_TRUE(has_granted_default_mark(arenas[0].owners / "marked"));
    ASSERT_FALSE(has_granted_default_mark(arenas[0].owners / "own"));
    ASSERT_TRUE(names(acl_of(arenas[0].owners / "own", "system.posix_acl_default"), uid));

    {
      DirectorySwapper swapper(uid, arenas, attacker_cpu);
      ASSERT_TRUE(swapper.wait_until_swapping()) << "the VM's UID could not set up its directories: exit "
                                                 << swapper.stop();
      if (by_sweep) {
        SweepReport swept = sweep(registry);
        ASSERT_EQ(swept.trees.size(), 1u);
        EXPECT_EQ(swept.trees[0].report.failed, 0u) << swept.trees[0].report.summary();
      } else {
        Report report = revoke(registry, uid, env.tree);
        EXPECT_EQ(report.failed, 0u) << report.summary();
      }
      swaps += swapper.swaps();
      ASSERT_EQ(swapper.stop(), 0);
    }
    missed += expect_default_acls_right(env.tree, uid, arenas, /*reached_all=*/false, &wrong);
    // The VM stopped: what it kept out of the walk's way is found now.
    revoke(registry, uid, env.tree);
    expect_default_acls_right(env.tree, uid, arenas, /*reached_all=*/true, nullptr);
    EXPECT_EQ(count_entries(getfacl(env.tree), uid), 0u);
    if (::testing::Test::HasFailure()) break;
  }
  std::printf("%s: %d rounds, %ld swaps, %d directories moved out of the walk's way; decided wrong: %d owner's "
              "rules dropped, %d other default ACLs kept\n",
              by_sweep ? "sweep" : "revoke", rounds, swaps, missed, wrong.owners_rule_dropped, wrong.default_kept);
  EXPECT_GE(swaps, 2000);
  EXPECT_EQ(getfacl(outside), outside_before) << "something outside the tree changed";
  struct stat temp_after;
  ASSERT_EQ(::lstat(env.temp.path().c_str(), &temp_after), 0);
  EXPECT_EQ(temp_after.st_mode, temp_before.st_mode);
  EXPECT_FALSE(has_acl(env.temp.path()));
}

TEST(AclRace, SwappedDirectoriesChangeNoDefaultAclDecisionOfARevoke) { expect_swaps_change_no_decision(false); }

TEST(AclRace, SwappedDirectoriesChangeNoDefaultAclDecisionOfASweep) { expect_swaps_change_no_decision(true); }

// A VM may give its own group (its gid is its uid) access to its files and
// directories, default entries included: the UID's next holder would have
// it. Revoke removes those named-group entries too.
TEST(AclRevoke, RemovesTheEntriesTheVmGaveItsOwnGroup) {
  GrantedTree granted(1, 1, Access::rw);
  auto& [env, registry, uid] = granted;
  std::filesystem::permissions(env.temp.path(), std::filesystem::perms(0755));
  std::filesystem::path dir = env.tree / "d0/by-vm";
  ASSERT_EQ(as_user(uid, [&] {
              if (::mkdir(dir.c_str(), 0700) != 0) return 1;
              int fd = ::open((dir / "file").c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
              if (fd < 0) return 2;
              ::close(fd);
              return 0;
            }),
            0);
  std::string group = fmt::format("g:{}:rwx", uid);
  auto setfacl_as_vm = [&](std::vector<std::string> args) {
    return as_user(uid, [&] {
      std::vector<char*> argv;
      std::string program = "/usr/bin/setfacl";
      argv.push_back(program.data());
      for (std::string& arg : args) argv.push_back(arg.data());
      argv.push_back(nullptr);
      ::execv(program.c_str(), argv.data());
      return 127;
    });
  };
  ASSERT_EQ(setfacl_as_vm({"-m", group, (dir / "file").string()}), 0);
  ASSERT_EQ(setfacl_as_vm({"-d", "-m", group, dir.string()}), 0);
  ASSERT_NE(getfacl(dir).find(fmt::format("group:{}:rwx", uid)), std::string::npos) << getfacl(dir);

  revoke(registry, uid, env.tree);
  std::string after = getfacl(env.tree);
  EXPECT_EQ(after.find(fmt::format("group:{}:", uid)), std::string::npos) << after;
  EXPECT_EQ(count_entries(after, uid), 0u) << after;
}

// A VM can leave a set-user-ID file of its UID in a read-write share (its
// virtiofsd lets it chmod its own files). Whoever runs it later would act as
// that UID: as the next VM given a single-use UID. Revoking the UID's access
// clears it, whatever the file's ACL says, on the pinned path with and
// without the nodev view; nothing else changes.
void expect_revoke_clears_the_uids_set_id_bits() {
  Env env;
  make_tree(env.tree, 1, 1);
  UidRegistry registry(env.locations);
  uid_t uid = registry.allocate_single_use();
  std::filesystem::path dir = env.tree / "d0";
  auto make = [&](const char* name, uid_t owner, gid_t group, mode_t mode) {
    write_owned_file(dir / name, owner, group, mode);
    return dir / name;
  };
  std::filesystem::path setuid_with_acl = make("setuid", uid, uid, 04755);
  std::filesystem::path setgid = make("setgid", 0, uid, 02755);
  std::filesystem::path setuid_bare = make("bare", uid, uid, 06750);
  std::filesystem::path roots = make("roots", 0, 0, 04755);
  // Root's set-user-ID file in the UID's group: only the group's bit goes.
  std::filesystem::path both = make("both", 0, uid, 06755);
  // The UID's own directory keeps its set-group-ID bit.
  ASSERT_EQ(::chown(dir.c_str(), uid, uid), 0);
  ASSERT_EQ(::chmod(dir.c_str(), 02755), 0);
  grant(registry, uid, env.tree, Access::rw);
  // The VM removed its own file's ACL: nothing for revoke to remove there.
  ASSERT_EQ(::removexattr(setuid_bare.c_str(), "system.posix_acl_access"), 0);
  auto mode_of = [](const std::filesystem::path& path) {
    struct stat st {};
    EXPECT_EQ(::lstat(path.c_str(), &st), 0);
    return st.st_mode & 07777;
  };

  // The grant widened the masks (group bits) to rwx; revoke narrows them
  // back. The set-ID bits are what this is about.
  mode_t bare_mode = mode_of(setuid_bare);
  EXPECT_EQ(bare_mode, 06770u);

  Report dry = revoke(registry, uid, env.tree, {.dry_run = true});
  EXPECT_EQ(dry.setid_cleared, 4u);
  EXPECT_EQ(mode_of(setuid_bare), bare_mode) << "--dry-run changed a mode";

  Report report = revoke(registry, uid, env.tree);
  EXPECT_EQ(report.setid_cleared, 4u) << report.summary();
  EXPECT_NE(report.summary().find("4 files cleared of set-ID bits"), std::string::npos) << report.summary();
  EXPECT_EQ(mode_of(setuid_with_acl), 0755u);
  EXPECT_EQ(mode_of(setgid), 0755u);
  EXPECT_EQ(mode_of(setuid_bare), 0770u) << "only the set-ID bits go";
  EXPECT_EQ(mode_of(roots), 04755u) << "another owner's set-user-ID file is left alone";
  EXPECT_EQ(mode_of(both), 04755u);
  EXPECT_EQ(mode_of(dir), 02755u) << "a directory's set-group-ID bit is left alone";
  EXPECT_EQ(count_entries(getfacl(env.tree), uid), 0u);
  EXPECT_FALSE(has_acl(setuid_with_acl)) << "grant + revoke leaves no ACL where there was none";
}

TEST(AclRevoke, ClearsTheSetIdBitsOfTheUidsFiles) { expect_revoke_clears_the_uids_set_id_bits(); }

TEST(AclRevoke, ClearsTheSetIdBitsOfTheUidsFilesWithoutTheNodevView) {
  detail::force_no_nodev_view(true);
  expect_revoke_clears_the_uids_set_id_bits();
  detail::force_no_nodev_view(false);
}

// `acl grant` refuses what a VM's share may not be: vmwarden's own
// directories (a UID granted the registry or the grant records could forge
// them), and / (refused the same way; not run here, where a broken refusal
// would walk the host's root filesystem). Nothing is granted or recorded.
TEST(AclCli, GrantRefusesVmwardensOwnDirectories) {
  Env env;
  make_tree(env.tree, 1, 1);
  UidRegistry registry(env.locations);
  registry.allocate_alias("cli");
  for (const std::filesystem::path& own : {env.locations.state_dir, env.locations.state_dir / "uids"}) {
    SCOPED_TRACE(own.string());
    auto refused = env.vmwarden({"acl", "grant", "--uid", "cli", "--ro", own.string()});
    EXPECT_EQ(refused.exit_code, 2) << refused.err;
    EXPECT_THAT(refused.err, ::testing::HasSubstr("acl grant: "));
    EXPECT_EQ(count_entries(getfacl(own), *registry.find_alias("cli")), 0u);
  }
  EXPECT_TRUE(registry.grant_records(*registry.find_alias("cli")).empty());
  auto granted = env.vmwarden({"acl", "grant", "--uid", "cli", "--ro", env.tree.string()});
  EXPECT_EQ(granted.exit_code, 0) << granted.err;
}

// A FIFO, a socket or a device node the VM makes in a granted tree inherits
// the UID's entry from the default ACL. A grant gives such files nothing,
// but a revoke and a sweep remove that entry, through an O_PATH pin: the
// device node is never opened (no IN_OPEN), the FIFO never waited on.
void expect_removal_reaches_special_files(bool by_sweep) {
  Env env;
  make_tree(env.tree, 1, 1);
  UidRegistry registry(env.locations);
  uid_t uid = registry.allocate_single_use();
  grant(registry, uid, env.tree, Access::rw);
  std::filesystem::path dir = env.tree / "d0";
  std::filesystem::path fifo = dir / "fifo", socket_path = dir / "sock", device = dir / "null";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0660), 0);
  UniqueFd listener(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  ASSERT_LT(socket_path.string().size(), sizeof address.sun_path);
  std::strcpy(address.sun_path, socket_path.c_str());
  ASSERT_EQ(::bind(listener.get(), reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
  std::vector<std::filesystem::path> special = {fifo, socket_path};
  UniqueFd inotify(::inotify_init1(IN_NONBLOCK | IN_CLOEXEC));
  bool have_device = ::mknod(device.c_str(), S_IFCHR | 0666, makedev(1, 3)) == 0;
  if (have_device) {
    special.push_back(device);
    ASSERT_GE(::inotify_add_watch(inotify.get(), device.c_str(), IN_OPEN), 0);
  }
  for (const auto& path : special)
    ASSERT_EQ(count_entries(getfacl(path), uid), 1u) << path << ": the default ACL gave it the UID's entry";

  // Another grant (an alias) gives them nothing.
  uid_t other = registry.allocate_alias("specials");
  Report granted = grant(registry, other, env.tree, Access::ro);
  EXPECT_EQ(granted.skipped_special, special.size()) << granted.summary();
  for (const auto& path : special) EXPECT_EQ(count_entries(getfacl(path), other), 0u) << path;

  if (by_sweep) {
    // As after a SIGKILL: nothing revoked, and nothing holds the UID's lease.
    SweepReport swept = sweep(registry);
    for (const auto& tree : swept.trees) EXPECT_EQ(tree.report.failed, 0u) << tree.report.summary();
  } else {
    Report report = revoke(registry, uid, env.tree);
    EXPECT_EQ(report.failed, 0u) << report.summary();
    EXPECT_EQ(report.skipped_special, 0u) << report.summary();
  }
  for (const auto& path : special) EXPECT_EQ(count_entries(getfacl(path), uid), 0u) << path;
  struct stat st {};
  ASSERT_EQ(::lstat(fifo.c_str(), &st), 0);
  EXPECT_TRUE(S_ISFIFO(st.st_mode));
  if (have_device) EXPECT_EQ(count_opens(inotify.get()), 0) << "the walk opened the device node";
}

TEST(AclRevoke, RemovesTheUidsEntryFromFifosSocketsAndDeviceNodes) { expect_removal_reaches_special_files(false); }

// Exchanges FIFOs and regular files of one directory (renameat2
// RENAME_EXCHANGE), pair by pair, as fast as it can: a FIFO then lies under
// a name the walk listed as a regular file, which it opens O_RDONLY through
// the nodev view.
class FifoExchanger : public SwapLoop {
 public:
  FifoExchanger(const std::filesystem::path& dir, int pairs) {
    thread_ = std::thread([=, this] {
      for (int k = 0; !stop_; ++k) {
        std::string file = (dir / fmt::format("a{}", k % pairs)).string();
        std::string fifo = (dir / fmt::format("f{}", k % pairs)).string();
        if (::renameat2(AT_FDCWD, file.c_str(), AT_FDCWD, fifo.c_str(), RENAME_EXCHANGE) == 0) ++swaps_;
      }
    });
  }
  ~FifoExchanger() { stop(); }
};

// A revoke edits a FIFO whichever way the walk met it: one swapped in under
// a regular file's name was skipped (and kept the UID's entry) while the
// removal pinned special files only O_PATH. No revoke may report a special
// file skipped.
TEST(AclRace, ARevokeSkipsNoFifoSwappedInUnderAFilesName) {
  Env env;
  make_tree(env.tree, 1, 1);
  UidRegistry registry(env.locations);
  uid_t uid = registry.allocate_alias("exchanger");
  std::filesystem::path dir = env.tree / "d0" / "own";
  ASSERT_TRUE(std::filesystem::create_directory(dir));
  constexpr int kPairs = 30;
  for (int i = 0; i < kPairs; ++i) {
    ASSERT_EQ(::mkfifo((dir / fmt::format("f{}", i)).c_str(), 0660), 0);
    testing::write_file(dir / fmt::format("a{}", i), "");
  }
  // Many more names, so that the walk's batches of opens take a while.
  for (int i = 0; i < 1500; ++i) testing::write_file(dir / fmt::format("x{}", i), "");
  std::uint64_t skipped = 0;
  long swaps = 0;
  for (int round = 0; round < 8; ++round) {
    grant(registry, uid, env.tree, Access::rw);
    FifoExchanger exchanger(dir, kPairs);
    Report report = revoke(registry, uid, env.tree);
    exchanger.stop();
    swaps += exchanger.swaps();
    EXPECT_EQ(report.failed, 0u) << report.summary();
    skipped += report.skipped_special;
  }
  std::printf("fifo exchange: %ld swaps in 8 revokes\n", swaps);
  EXPECT_GT(swaps, 0);
  EXPECT_EQ(skipped, 0u) << "a revoke skipped a special file";
}

TEST(AclSweep, RemovesADeadUidsEntryFromFifosSocketsAndDeviceNodes) { expect_removal_reaches_special_files(true); }

// An id of the range the registry never handed out is a host account or
// group's (the registry keeps those out): a sweep leaves its entries, user
// and group, and removes the dead VM's.
TEST(AclSweep, LeavesTheEntriesOfIdsTheRegistryNeverHandedOut) {
  GrantedTree granted(1, 2, Access::rw);
  auto& [env, registry, dead] = granted;
  uid_t host = registry.range().last;  // never handed out
  setfacl({"-R", "-m", fmt::format("u:{0}:rX,g:{0}:rX", host), env.tree.string()});
  registry.release(dead);
  auto sweep = env.vmwarden({"acl", "sweep"});
  ASSERT_EQ(sweep.exit_code, 0) << sweep.err;
  std::string after = getfacl(env.tree);
  EXPECT_EQ(count_entries(after, dead), 0u) << after;
  EXPECT_NE(after.find(fmt::format("user:{}:r-x", host)), std::string::npos) << after;
  EXPECT_NE(after.find(fmt::format("group:{}:r-x", host)), std::string::npos) << after;
}

TEST(AclSweep, KeepsLeasedAndRecordedAliasEntriesOnly) {
  Env env;
  make_tree(env.tree, 2, 3);
  std::filesystem::path other = env.temp / "other";
  make_tree(other, 1, 2);
  UidRegistry registry(env.locations);
  uid_t alias = registry.allocate_alias("work");
  UidLease live = registry.lease_single_use();
  uid_t dead = registry.allocate_single_use();
  grant(registry, alias, env.tree, Access::rw);
  grant(registry, live.uid(), env.tree, Access::ro);
  grant(registry, dead, env.tree, Access::ro);
  grant(registry, dead, other, Access::ro);
  // A set-user-ID file the dead UID left, and one of the live UID's.
  std::filesystem::path dead_setuid = env.tree / "d0/dead-setuid", live_setuid = env.tree / "d0/live-setuid";
  write_owned_file(dead_setuid, dead, dead, 04755);
  write_owned_file(live_setuid, live.uid(), live.uid(), 04755);
  // The alias has entries in `other` but no record there (a leftover).
  auto result = testing::run_command({"setfacl", "-R", "-m", fmt::format("u:{}:rX", alias), other.string()});
  ASSERT_EQ(result.exit_code, 0);

  std::string tree_before = getfacl(env.tree), other_before = getfacl(other);
  auto dry = env.vmwarden({"acl", "sweep", "--dry-run"});
  ASSERT_EQ(dry.exit_code, 0) << dry.err;
  EXPECT_NE(dry.out.find(fmt::format("{}: would remove", env.tree.string())), std::string::npos) << dry.out;
  EXPECT_NE(dry.out.find(fmt::format("entries of UID {}", dead)), std::string::npos) << dry.out;
  EXPECT_EQ(dry.out.find(fmt::format("entries of UID {}", live.uid())), std::string::npos) << dry.out;
  EXPECT_NE(dry.out.find(fmt::format("{}: would remove", other.string())), std::string::npos) << dry.out;
  // The records it would drop and the UID it would release, as the sweep
  // below then does.
  EXPECT_NE(dry.out.find(fmt::format("would release single-use UID {}\n", dead)), std::string::npos) << dry.out;
  EXPECT_NE(dry.out.find("2 tree(s), 2 record(s) would be dropped, 1 UID(s) would be released"), std::string::npos)
      << dry.out;
  EXPECT_NE(dry.out.find(fmt::format("{}: would clear the set-ID bits of 1 file(s)", env.tree.string())),
            std::string::npos)
      << dry.out;
  EXPECT_EQ(getfacl(env.tree), tree_before) << "--dry-run changed something";
  EXPECT_EQ(getfacl(other), other_before);
  EXPECT_TRUE(registry.find(dead)->allocated);
  EXPECT_EQ(registry.grant_records(dead).size(), 2u);

  auto swept = env.vmwarden({"acl", "sweep"});
  ASSERT_EQ(swept.exit_code, 0) << swept.err;
  EXPECT_NE(swept.out.find(fmt::format("released single-use UID {}\n", dead)), std::string::npos) << swept.out;
  EXPECT_NE(swept.out.find("2 tree(s), 2 record(s) dropped, 1 UID(s) released"), std::string::npos) << swept.out;
  std::string tree_after = getfacl(env.tree), other_after = getfacl(other);
  EXPECT_EQ(uids_in(tree_after, registry.range()), (std::set<uid_t>{alias, live.uid()}));
  EXPECT_TRUE(uids_in(other_after, registry.range()).empty()) << other_after;
  EXPECT_NE(swept.out.find(fmt::format("{}: cleared the set-ID bits of 1 file(s)", env.tree.string())),
            std::string::npos)
      << swept.out;
  EXPECT_EQ(std::filesystem::status(dead_setuid).permissions(), std::filesystem::perms(0755));
  EXPECT_EQ(std::filesystem::status(live_setuid).permissions(),
            std::filesystem::perms(0755) | std::filesystem::perms::set_uid);
  EXPECT_FALSE(registry.find(dead)->allocated) << "the dead single-use UID is released";
  EXPECT_TRUE(registry.grant_records(dead).empty());
  EXPECT_EQ(registry.grant_records(alias).size(), 1u);
}

// An alias's grant on a tree inside another UID's recorded tree: sweeping
// the outer tree for a dead UID leaves the alias's entries, and its files'
// set-ID bits, in the inner one alone.
TEST(AclSweep, AnAliasGrantedATreeInsideASweptTreeKeepsItsEntriesAndBits) {
  Env env;
  make_tree(env.tree, 1, 1);
  std::filesystem::path inner = env.tree / "d0";
  UidRegistry registry(env.locations);
  uid_t alias = registry.allocate_alias("build");
  uid_t dead = registry.allocate_single_use();
  grant(registry, dead, env.tree, Access::ro);
  grant(registry, alias, inner, Access::rw);
  std::filesystem::path tool = inner / "tool";
  write_owned_file(tool, alias, alias, 04755);
  std::size_t alias_entries = count_entries(getfacl(inner), alias);
  ASSERT_GT(alias_entries, 0u);

  auto swept = env.vmwarden({"acl", "sweep"});
  ASSERT_EQ(swept.exit_code, 0) << swept.err;
  EXPECT_EQ(count_entries(getfacl(env.tree), dead), 0u);
  EXPECT_EQ(count_entries(getfacl(inner), alias), alias_entries) << swept.out;
  EXPECT_EQ(std::filesystem::status(tool).permissions(), std::filesystem::perms(0755) | std::filesystem::perms::set_uid);
  EXPECT_EQ(registry.grant_records(alias).size(), 1u);
}

// Every row of `uid list` has the same six fields, '-' for none, so that
// awk '{print $4}' is the alias on each, and the columns line up past a
// 64-character alias.
TEST(UidCli, ListHasOneFieldPerColumn) {
  Env env;
  std::string long_alias = "a" + std::string(63, 'b');
  ASSERT_EQ(env.vmwarden({"uid", "alloc", "--alias", long_alias}).exit_code, 0);
  auto single = env.vmwarden({"uid", "alloc"});
  ASSERT_EQ(single.exit_code, 0);
  std::string released = single.out.substr(0, single.out.find('\n'));
  ASSERT_EQ(env.vmwarden({"uid", "release", released}).exit_code, 0);
  UidRegistry registry(env.locations);
  UidLease lease = registry.lease_alias("work");
  auto list = env.vmwarden({"uid", "list", "--all"});
  ASSERT_EQ(list.exit_code, 0) << list.err;
  std::map<std::string, std::vector<std::string>> rows;
  std::set<std::vector<std::size_t>> columns;  // where each row's fields start
  std::istringstream lines(list.out);
  for (std::string line; std::getline(lines, line);) {
    std::vector<std::string> fields;
    std::vector<std::size_t> starts;
    for (std::size_t at = line.find_first_not_of(' '); at != std::string::npos; at = line.find_first_not_of(' ', at)) {
      std::size_t end = std::min(line.find(' ', at), line.size());
      starts.push_back(at);
      fields.push_back(line.substr(at, end - at));
      at = end;
    }
    ASSERT_EQ(fields.size(), 6u) << line;
    rows[fields[0]] = fields;
    columns.insert(starts);
  }
  EXPECT_EQ(columns.size(), 1u) << "not aligned:\n" << list.out;
  using Row = std::vector<std::string>;
  EXPECT_EQ(rows["UID"], (Row{"UID", "STATE", "KIND", "ALIAS", "LEASE", "GRANTS"}));
  EXPECT_EQ(rows[std::to_string(lease.uid())],
            (Row{std::to_string(lease.uid()), "allocated", "alias", "work", std::to_string(::getpid()), "0"}));
  EXPECT_EQ(rows[std::to_string(*registry.find_alias(long_alias))][3], long_alias);
  EXPECT_EQ(rows[released], (Row{released, "released", "-", "-", "-", "0"}));
}

// The UID `uid alloc` prints is its answer: when it cannot be written (a
// full disk, here /dev/full), the command fails and says so, rather than
// exit 0 with the UID lost in the stdio buffer.
TEST(UidCli, AnAnswerThatCannotBeWrittenFailsTheCommand) {
  Env env;
  testing::CommandOptions options;
  options.extra_env = env.env();
  for (std::string args : {"uid alloc --alias full", "uid list --all"}) {
    auto result = testing::run_command({"/bin/sh", "-c", "exec \"$0\" " + args + " >/dev/full",
                                        testing::vmwarden_binary()},
                                       options);
    EXPECT_EQ(result.exit_code, 1) << args << ": " << result.err;
    EXPECT_NE(result.err.find("write standard output: No space left on device"), std::string::npos)
        << args << ": " << result.err;
  }
  // A reader gone (the pipe's read end closed before anything is written,
  // as after `| head -1`): the same status, without a message.
  auto piped = testing::run_command(
      {"/usr/bin/python3", "-c",
       "import os, subprocess, sys\n"
       "r, w = os.pipe(); os.close(r)\n"
       "p = subprocess.run([sys.argv[1], 'uid', 'list', '--all'], stdout=w, stderr=subprocess.PIPE)\n"
       "sys.stdout.write(f'{p.returncode}:{p.stderr.decode()}')\n",
       testing::vmwarden_binary()},
      options);
  EXPECT_EQ(piped.out, "1:") << piped.err;
  // Written where it can be, the alias's UID is the one it was given.
  auto again = env.vmwarden({"uid", "alloc", "--alias", "full"});
  ASSERT_EQ(again.exit_code, 0) << again.err;
  EXPECT_FALSE(again.out.empty());
}

TEST(AclCli, BadInputIsRefusedWithExitTwoAndChangesNothing) {
  Env env;
  make_tree(env.tree, 1, 2);
  std::filesystem::create_directory_symlink(env.tree, env.temp / "via-link");
  ASSERT_EQ(env.vmwarden({"uid", "alloc", "--alias", "work"}).exit_code, 0);
  // A single-use UID has no alias: an empty --uid must not name it.
  ASSERT_EQ(env.vmwarden({"uid", "alloc"}).exit_code, 0);
  auto snapshot = [&] {
    std::string state;
    for (const auto& entry : std::filesystem::recursive_directory_iterator(env.locations.state_dir)) {
      state += entry.path().string() + "\n";
      if (entry.is_regular_file()) state += testing::read_file(entry.path());
    }
    return state + getfacl(env.tree);
  };
  std::string before = snapshot();
  struct Case {
    std::vector<std::string> args;
    std::string message;
  };
  std::vector<Case> cases{
      {{"acl", "grant", "--uid", "work", "--ro", (env.temp / "missing").string()}, "no such directory"},
      {{"acl", "grant", "--uid", "work", "--ro", "tree"}, "relative path"},
      {{"acl", "grant", "--uid", "1000", "--ro", env.tree.string()},
       fmt::format("outside the managed range 1879048192-1879113727 (the default; {} changes it)",
                   (env.locations.config_dir / "uid-range").string())},
      {{"acl", "grant", "--uid", "wrok", "--ro", env.tree.string()}, "did you mean \"work\""},
      {{"acl", "grant", "--uid", "work", "--ro", (env.temp / "via-link").string()}, "symlink"},
      // On the way, not only at the end: the grant would reach whatever the
      // link is made to point at.
      {{"acl", "grant", "--uid", "work", "--ro", (env.temp / "via-link/d0").string()}, "goes through a symlink"},
      {{"acl", "grant", "--uid", "work", "--ro", "--rw", env.tree.string()}, "exactly one of --ro and --rw"},
      {{"acl", "grant", "--uid", "1879048200", "--ro", env.tree.string()}, "not allocated"},
      {{"acl", "revoke", "--uid", "nobody-here", env.tree.string()}, "unknown alias"},
      {{"uid", "release", "1879048300"}, "not allocated"},
      {{"uid", "release", "42"}, "outside the managed range"},
      {{"uid", "alloc", "--alias", "Bad/Name"}, "invalid alias"},
      {{"uid", "alloc", "--alias", ""}, "--alias was given an empty value"},
      {{"uid", "alloc", "--alias", "1abc"}, "starting with a lowercase letter"},
      {{"uid", "alloc", "--alias", "1879048200"}, "starting with a lowercase letter"},
      {{"acl", "grant", "--uid", "work", "--ro", (env.temp / "via-link/../tree").string()}, "must not contain \"..\""},
      {{"acl", "revoke", "--uid", "work", (env.tree / "d0/..").string()}, "must not contain \"..\""},
      {{"acl", "show", "relative"}, "relative path"},
      {{"acl", "show", (env.temp / "via-link/d0/f1").string()}, "goes through a symlink"},
      {{"acl", "show", (env.temp / "via-link").string()}, "a symlink"},
      {{"acl", "grant", "--uid", "work", "--ro", "/proc"}, "does not support POSIX ACLs"},
      {{"acl", "show", "/proc/1"}, "/proc/1: its filesystem does not support POSIX ACLs"},
      {{"acl", "grant", "--uid", "", "--rw", env.tree.string()}, "--uid was given an empty value"},
      {{"acl", "revoke", "--uid", "-1", env.tree.string()}, "invalid UID \"-1\""},
      {{"uid", "release", ""}, "invalid UID \"\""},
      {{"--state-dir", "", "uid", "list"}, "--state-dir was given an empty value"},
      {{"--state-dir", (env.temp / std::string(256, 'a')).string(), "uid", "list"},
       "is 256 bytes long; a file name has at most 255"},
  };
  for (const Case& c : cases) {
    auto result = env.vmwarden(c.args);
    EXPECT_EQ(result.exit_code, 2) << c.args[0] << " " << c.args[1] << ": " << result.err;
    EXPECT_NE(result.err.find(c.message), std::string::npos) << result.err;
  }
  // A location variable set but empty (an unset shell variable) is not
  // taken for "the default", which is the system's own state.
  testing::CommandOptions options;
  options.extra_env = env.env();
  options.extra_env["VMWARDEN_STATE_DIR"] = "";
  auto result = testing::run_command({testing::vmwarden_binary(), "uid", "release", "work"}, options);
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_NE(result.err.find("VMWARDEN_STATE_DIR is set but empty"), std::string::npos) << result.err;
  EXPECT_EQ(snapshot(), before);

  // A location that is a file, and a uid-range file that is a directory,
  // are usage errors that say what belongs there (they were ENOTDIR and
  // EISDIR from whichever open came first, exit 1).
  std::filesystem::path plain_file = env.temp / "plain-file";
  testing::write_file(plain_file, "not a directory\n");
  for (auto [flag, variable] : {std::pair{"--state-dir", "VMWARDEN_STATE_DIR"},
                                std::pair{"--runtime-dir", "VMWARDEN_RUNTIME_DIR"},
                                std::pair{"--config-dir", "VMWARDEN_CONFIG_DIR"}}) {
    auto by_flag = env.vmwarden({flag, plain_file.string(), "uid", "list"});
    EXPECT_EQ(by_flag.exit_code, 2) << by_flag.err;
    EXPECT_THAT(by_flag.err, ::testing::HasSubstr(std::string(flag) + " " + plain_file.string() +
                                                  " is not a directory; give a directory"));
    testing::CommandOptions by_variable;
    by_variable.extra_env = env.env();
    by_variable.extra_env[variable] = plain_file.string();
    auto result = testing::run_command({testing::vmwarden_binary(), "uid", "list"}, by_variable);
    EXPECT_EQ(result.exit_code, 2) << result.err;
    EXPECT_THAT(result.err, ::testing::HasSubstr(std::string(variable) + " " + plain_file.string() +
                                                 " is not a directory"));
  }
  std::filesystem::path range_dir = std::filesystem::path(env.env().at("VMWARDEN_CONFIG_DIR")) / "uid-range";
  std::filesystem::create_directories(range_dir);
  auto range = env.vmwarden({"uid", "alloc"});
  std::filesystem::remove(range_dir);
  EXPECT_EQ(range.exit_code, 2) << range.err;
  EXPECT_THAT(range.err, ::testing::HasSubstr("uid-range is not a regular file: it should hold the UID range as "
                                              "FIRST-LAST, e.g. 1879048192-1879113727"));
  EXPECT_EQ(snapshot(), before);

  // Against a state directory that does not exist yet, neither a dry-run
  // sweep nor a refused release creates it.
  testing::CommandOptions fresh;
  fresh.extra_env = env.env();
  fresh.extra_env["VMWARDEN_STATE_DIR"] = (env.temp / "no-state").string();
  auto dry = testing::run_command({testing::vmwarden_binary(), "acl", "sweep", "--dry-run"}, fresh);
  EXPECT_EQ(dry.exit_code, 0) << dry.err;
  EXPECT_NE(dry.out.find("sweep (dry run, nothing changed): 0 tree(s)"), std::string::npos) << dry.out;
  auto release = testing::run_command({testing::vmwarden_binary(), "uid", "release", "1879048200"}, fresh);
  EXPECT_EQ(release.exit_code, 2) << release.err;
  EXPECT_NE(release.err.find("not allocated"), std::string::npos) << release.err;
  EXPECT_FALSE(std::filesystem::exists(env.temp / "no-state"));
}

// The record files' crash safety as the kernel sees it, traced with strace:
// each durable record reaches its name only after its content is fsynced,
// and its directory is fsynced after the rename (or unlink), so a power
// failure leaves the old record or the whole new one.
std::vector<std::string> traced_store_calls(const Env& env, const std::vector<std::string>& args) {
  std::filesystem::path trace = env.temp / "trace";
  std::vector<std::string> argv{"strace", "-f", "-qq", "-y", "-e", "trace=fsync,fdatasync,rename,renameat2,unlink,unlinkat",
                                "-o", trace.string(), "--", testing::vmwarden_binary()};
  argv.insert(argv.end(), args.begin(), args.end());
  testing::CommandOptions options;
  options.extra_env = env.env();
  auto result = testing::run_command(argv, options);
  EXPECT_EQ(result.exit_code, 0) << result.err;
  std::vector<std::string> calls;
  std::istringstream lines(testing::read_file(trace));
  for (std::string line; std::getline(lines, line);) {
    // "PID call(...) = RESULT": the pid dropped, and only calls that succeeded.
    std::size_t call = line.find_first_not_of(' ', line.find(' '));
    if (call != std::string::npos && line.ends_with(" = 0")) calls.push_back(line.substr(call));
  }
  return calls;
}

// Whether `calls` holds a line matching each pattern, in this order.
::testing::AssertionResult in_order(const std::vector<std::string>& calls, const std::vector<std::string>& patterns) {
  auto call = calls.begin();
  for (const std::string& pattern : patterns) {
    std::regex wanted(pattern);
    call = std::find_if(call, calls.end(), [&](const std::string& line) { return std::regex_search(line, wanted); });
    if (call == calls.end()) {
      std::string all;
      for (const std::string& line : calls) all += "  " + line + "\n";
      return ::testing::AssertionFailure() << "no call matching " << pattern << " (in order) among:\n" << all;
    }
    ++call;
  }
  return ::testing::AssertionSuccess();
}

std::string quoted(const std::filesystem::path& path) {
  return std::regex_replace(path.string(), std::regex(R"([.^$|()\[\]{}*+?\\])"), R"(\$&)");
}

TEST(AclDurability, RecordsAreFsyncedBeforeTheyAreNamedAndTheirDirectoriesAfter) {
  if (::access("/usr/bin/strace", X_OK) != 0) GTEST_SKIP() << "strace is not installed (./bootstrap installs it)";
  Env env;
  make_tree(env.tree, 1, 1);
  std::filesystem::path uids = env.locations.state_dir / "uids/allocated";
  std::filesystem::path grants = env.locations.state_dir / "grants";

  // An alias's allocation: temporary file fsynced, renamed, directory fsynced.
  auto calls = traced_store_calls(env, {"uid", "alloc", "--alias", "work"});
  auto record = testing::directory_names(uids);
  ASSERT_EQ(record.size(), 1u);
  std::string uid = record[0];
  EXPECT_TRUE(in_order(calls, {"^fsync\\(\\d+<" + quoted(uids) + "/\\.tmp-[^>]*>\\)",
                               "^rename\\(\"" + quoted(uids) + "/\\.tmp-[^\"]*\", \"" + quoted(uids / uid) + "\"\\)",
                               "^fsync\\(\\d+<" + quoted(uids) + ">\\)"}));

  // The first grant of a UID: grants/ fsynced once grants/UID is in it,
  // then the record as above.
  calls = traced_store_calls(env, {"acl", "grant", "--uid", "work", "--ro", env.tree.string()});
  std::filesystem::path records = grants / uid;
  auto keys = testing::directory_names(records);
  ASSERT_EQ(keys.size(), 1u);
  EXPECT_TRUE(in_order(calls, {"^fsync\\(\\d+<" + quoted(grants) + ">\\)",
                               "^fsync\\(\\d+<" + quoted(records) + "/\\.tmp-[^>]*>\\)",
                               "^rename\\(\"" + quoted(records) + "/\\.tmp-[^\"]*\", \"" + quoted(records / keys[0]) + "\"\\)",
                               "^fsync\\(\\d+<" + quoted(records) + ">\\)"}));

  // A revoke: the record unlinked, then its directory fsynced.
  calls = traced_store_calls(env, {"acl", "revoke", "--uid", "work", env.tree.string()});
  EXPECT_TRUE(in_order(calls, {"^unlink(at)?\\(.*" + quoted(records / keys[0]) + "\"",
                               "^fsync\\(\\d+<" + quoted(records) + ">\\)"}));
  EXPECT_FALSE(std::filesystem::exists(records / keys[0]));
}

// A record of a tree without ACL support (written before grant checked
// that) can be revoked: there is no entry to remove, only the record.
TEST(AclNoAclSupport, RevokeDropsTheRecordOfATreeWithoutAcls) {
  Env env;
  UidRegistry registry(env.locations);
  uid_t uid = registry.allocate_alias("proc");
  registry.add_grant_record(GrantRecord{uid, "/proc", Access::ro, false});
  auto result = env.vmwarden({"acl", "revoke", "--uid", "proc", "/proc"});
  EXPECT_EQ(result.exit_code, 0) << result.err;
  EXPECT_TRUE(registry.grant_records(uid).empty());
}

// One bad tree (no ACL support) does not stop the sweep of the others: the
// good one is cleaned and its record dropped, the bad one is reported and
// keeps its record.
TEST(AclSweep, ATreeThatFailsIsReportedAndTheOthersAreStillSwept) {
  GrantedTree granted(1, 2, Access::ro);
  auto& [env, registry, dead] = granted;
  registry.add_grant_record(GrantRecord{dead, "/proc", Access::ro, false});
  auto swept = env.vmwarden({"acl", "sweep"});
  EXPECT_EQ(swept.exit_code, 1) << swept.out << swept.err;
  EXPECT_NE(swept.err.find("/proc"), std::string::npos) << swept.err;
  EXPECT_EQ(count_entries(getfacl(env.tree), dead), 0u);
  auto records = registry.grant_records(dead);
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records[0].tree, "/proc");
  EXPECT_TRUE(registry.find(dead)->allocated) << "a UID with records left is not released";
}

// A tree renamed away into an alias's tree, a symlink in its place, and a
// second tree removed. The sweep finds the first where it is now, by the
// file handle in its record, never goes through the symlink, and removes
// there only the dead UID's entries (not the alias's, whose records speak
// for that place); of the second nothing is left, so its record goes.
TEST(AclSweep, ATreeRenamedAwayIsSweptWhereItIsNow) {
  Env env;
  std::filesystem::path gone = make_two_trees(env, "gone");
  std::filesystem::path home = env.temp / "home";
  make_tree(home, 1, 1);
  UidRegistry registry(env.locations);
  uid_t alias = registry.allocate_alias("home");
  uid_t dead = registry.allocate_single_use();
  grant(registry, dead, env.tree, Access::ro);
  grant(registry, dead, gone, Access::ro);
  std::filesystem::path moved = home / "moved";
  std::filesystem::rename(env.tree, moved);
  grant(registry, alias, home, Access::rw);
  std::size_t alias_entries = count_entries(getfacl(moved), alias);
  ASSERT_GT(alias_entries, 0u);
  std::filesystem::remove_all(gone);
  // The symlink leads to a decoy holding an entry of the dead UID that no
  // record asked for: a sweep that followed it would remove that.
  std::filesystem::path decoy = env.temp / "decoy";
  make_tree(decoy, 1, 1);
  std::filesystem::create_directory_symlink(decoy, env.tree);
  auto marked = testing::run_command({"setfacl", "-m", fmt::format("u:{}:r", dead), (decoy / "d0/f0").string()});
  ASSERT_EQ(marked.exit_code, 0) << marked.err;

  auto swept = env.vmwarden({"acl", "sweep"});
  EXPECT_EQ(swept.exit_code, 0) << swept.out << swept.err;
  EXPECT_NE(swept.out.find(fmt::format("{}: missing", gone.string())), std::string::npos) << swept.out;
  EXPECT_NE(swept.out.find(fmt::format("{}: a directory granted under this path is now at {}; swept there",
                                       env.tree.string(), moved.string())),
            std::string::npos)
      << swept.out;
  EXPECT_EQ(count_entries(getfacl(moved), dead), 0u);
  EXPECT_EQ(count_entries(getfacl(moved), alias), alias_entries) << "the alias's entries went too";
  EXPECT_EQ(count_entries(getfacl(decoy), dead), 1u) << "the sweep went through the symlink";
  EXPECT_TRUE(registry.grant_records(dead).empty());
  EXPECT_FALSE(registry.find(dead)->allocated) << "a UID whose trees are all swept is released";
}

// The same, where the record names no directory by file handle (written
// before records had them, or on a filesystem without handles): the tree is
// known by its path alone, so a symlink in its place may hide its entries.
// The record stays and the sweep fails.
TEST(AclSweep, ATreeKnownByItsPathAloneAndReplacedByASymlinkKeepsItsRecord) {
  GrantedTree granted(1, 2, Access::ro);
  auto& [env, registry, dead] = granted;
  std::vector<GrantRecord> records = registry.grant_records(dead);
  ASSERT_EQ(records.size(), 1u);
  ASSERT_EQ(records[0].roots.size(), 1u) << "a grant records its directory's file handle";
  records[0].roots.clear();
  registry.remove_grant_record(dead, env.tree);
  registry.add_grant_record(records[0]);
  std::filesystem::path moved = env.temp / "moved";
  std::filesystem::rename(env.tree, moved);
  std::filesystem::create_directory_symlink(moved, env.tree);

  auto swept = env.vmwarden({"acl", "sweep"});
  EXPECT_EQ(swept.exit_code, 1) << swept.out << swept.err;
  EXPECT_NE(swept.err.find("symlink"), std::string::npos) << swept.err;
  ASSERT_EQ(registry.grant_records(dead).size(), 1u);
  EXPECT_GT(count_entries(getfacl(moved), dead), 0u) << "the sweep went through the symlink";
  EXPECT_TRUE(registry.find(dead)->allocated) << "a UID with records left is not released";
}

// `acl revoke` by path, after the tree was renamed: the directory that was
// granted is revoked where it is now, when the path is gone and when
// another directory took the path (that one is revoked too, being what
// was asked for).
TEST(AclRevoke, ATreeRenamedAwayIsRevokedWhereItIsNow) {
  GrantedTree granted(1, 2, Access::rw, "renamed");
  auto& [env, registry, alias] = granted;
  std::filesystem::path moved = env.temp / "moved";
  std::filesystem::rename(env.tree, moved);

  auto revoked = env.vmwarden({"acl", "revoke", "--uid", "renamed", env.tree.string()});
  EXPECT_EQ(revoked.exit_code, 0) << revoked.out << revoked.err;
  EXPECT_NE(revoked.out.find(fmt::format("a directory granted under this path is now at {}", moved.string())),
            std::string::npos)
      << revoked.out;
  EXPECT_NE(revoked.err.find("no such directory"), std::string::npos) << revoked.err;
  EXPECT_EQ(count_entries(getfacl(moved), alias), 0u);
  EXPECT_TRUE(registry.grant_records(alias).empty());

  // Granted again, renamed again, and the path given to a new directory
  // that is granted in turn: the record names both.
  grant(registry, alias, moved, Access::ro);
  std::filesystem::path aside = env.temp / "aside";
  std::filesystem::rename(moved, aside);
  make_tree(moved, 1, 1);
  grant(registry, alias, moved, Access::ro);
  std::vector<GrantRecord> records = registry.grant_records(alias);
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records[0].roots.size(), 2u);
  ASSERT_GT(count_entries(getfacl(aside), alias), 0u);
  revoked = env.vmwarden({"acl", "revoke", "--uid", "renamed", moved.string()});
  EXPECT_EQ(revoked.exit_code, 0) << revoked.out << revoked.err;
  EXPECT_EQ(count_entries(getfacl(moved), alias), 0u);
  EXPECT_EQ(count_entries(getfacl(aside), alias), 0u) << revoked.out;
  EXPECT_TRUE(registry.grant_records(alias).empty());

  // With nothing left of what was granted (the directory removed), the
  // record goes, said as such; without a record, the path's absence is an
  // error again, and changes nothing.
  grant(registry, alias, aside, Access::ro);
  std::filesystem::remove_all(aside);
  revoked = env.vmwarden({"acl", "revoke", "--uid", "renamed", aside.string()});
  EXPECT_EQ(revoked.exit_code, 0) << revoked.out << revoked.err;
  EXPECT_NE(revoked.err.find("nothing granted as it is left, and its grant record is dropped"), std::string::npos)
      << revoked.err;
  EXPECT_TRUE(registry.grant_records(alias).empty());
  revoked = env.vmwarden({"acl", "revoke", "--uid", "renamed", aside.string()});
  EXPECT_EQ(revoked.exit_code, 2) << revoked.out << revoked.err;
  EXPECT_NE(revoked.err.find("no such directory"), std::string::npos) << revoked.err;
}

// `uid`'s record of `tree`, made to name `roots` instead (as a record can
// come to: stale handles, a filesystem that changed, a damaged line).
void rewrite_roots(UidRegistry& registry, uid_t uid, const std::filesystem::path& tree,
                   const std::vector<RecordedRoot>& roots) {
  for (GrantRecord record : registry.grant_records(uid)) {
    if (record.tree != tree) continue;
    record.roots = roots;
    registry.remove_grant_record(uid, tree);
    registry.add_grant_record(record);
    return;
  }
  FAIL() << "no record of " << tree << " for UID " << uid;
}

RecordedRoot recorded_root(const UidRegistry& registry, uid_t uid) {
  std::vector<GrantRecord> records = registry.grant_records(uid);
  EXPECT_EQ(records.size(), 1u);
  EXPECT_EQ(records.empty() ? 0u : records[0].roots.size(), 1u);
  return records.empty() || records[0].roots.empty() ? RecordedRoot{} : records[0].roots[0];
}

// A tree renamed away to a place no record covers. Its record also names a
// stale handle of the same inode number (ext4 hands a freed inode number to
// the next directory at once; only the handle's generation tells them
// apart), tried first. The sweep still finds the live directory and clears
// the dead UID's entries there, and nothing else does.
TEST(AclSweep, ATreeRenamedAwayIsFoundPastAStaleHandleOfTheSameInodeNumber) {
  GrantedTree granted(1, 2, Access::ro);
  auto& [env, registry, dead] = granted;
  RecordedRoot live = recorded_root(registry, dead);
  RecordedRoot stale = live;
  ASSERT_FALSE(stale.handle.empty());
  stale.handle.back() = static_cast<char>(stale.handle.back() ^ 1);
  rewrite_roots(registry, dead, env.tree, {stale, live});
  std::filesystem::path moved = env.temp / "moved";
  std::filesystem::rename(env.tree, moved);

  auto swept = env.vmwarden({"acl", "sweep"});
  EXPECT_EQ(swept.exit_code, 0) << swept.out << swept.err;
  EXPECT_NE(swept.out.find(fmt::format("now at {}; swept there", moved.string())), std::string::npos) << swept.out;
  EXPECT_EQ(count_entries(getfacl(moved), dead), 0u);
  EXPECT_TRUE(registry.grant_records(dead).empty());
  EXPECT_FALSE(registry.find(dead)->allocated);
}

// A recorded directory whose filesystem cannot be found (here: another id
// in the record, as a disk unplugged would look) is not taken for gone:
// the tree fails and keeps its records, with a symlink at its path and with
// its path removed.
TEST(AclSweep, ADirectoryThatCannotBeLookedForKeepsItsRecords) {
  GrantedTree granted(1, 2, Access::ro);
  auto& [env, registry, dead] = granted;
  RecordedRoot elsewhere = recorded_root(registry, dead);
  elsewhere.fs_id = "uuid:0123456789abcdef0123456789abcdef";
  rewrite_roots(registry, dead, env.tree, {elsewhere});
  std::filesystem::path moved = env.temp / "moved";
  std::filesystem::rename(env.tree, moved);
  std::filesystem::create_directory_symlink(moved, env.tree);
  for (int round = 0; round < 2; ++round) {
    auto swept = env.vmwarden({"acl", "sweep"});
    EXPECT_EQ(swept.exit_code, 1) << swept.out << swept.err;
    EXPECT_NE(swept.err.find("cannot be looked for"), std::string::npos) << swept.err;
    EXPECT_EQ(registry.grant_records(dead).size(), 1u);
    EXPECT_TRUE(registry.find(dead)->allocated) << "a UID with records left is not released";
    EXPECT_GT(count_entries(getfacl(moved), dead), 0u) << "the sweep went through the symlink";
    std::filesystem::remove(env.tree);
  }
}

// A filesystem's device number can change across reboots (disk order,
// device-mapper activation): a record is matched by the filesystem's id.
// A tree renamed away is still found, and one that stayed is the one at
// its path, not a second directory to look for.
TEST(AclSweep, ADeviceNumberThatChangedHidesNoDirectory) {
  Env env;
  std::filesystem::path stayed = make_two_trees(env, "stayed");
  UidRegistry registry(env.locations);
  uid_t dead = registry.allocate_single_use();
  uid_t alias = registry.allocate_alias("renumbered");
  grant(registry, dead, env.tree, Access::ro);
  grant(registry, alias, stayed, Access::ro);
  for (auto [uid, tree] : {std::pair{dead, env.tree}, std::pair{alias, stayed}}) {
    RecordedRoot renumbered = recorded_root(registry, uid);
    renumbered.device = makedev(major(renumbered.device) + 1, minor(renumbered.device) + 7);
    rewrite_roots(registry, uid, tree, {renumbered});
  }
  std::filesystem::path moved = env.temp / "moved";
  std::filesystem::rename(env.tree, moved);

  auto swept = env.vmwarden({"acl", "sweep"});
  EXPECT_EQ(swept.exit_code, 0) << swept.out << swept.err;
  EXPECT_NE(swept.out.find(fmt::format("now at {}; swept there", moved.string())), std::string::npos) << swept.out;
  EXPECT_EQ(count_entries(getfacl(moved), dead), 0u);
  EXPECT_TRUE(registry.grant_records(dead).empty());

  auto revoked = env.vmwarden({"acl", "revoke", "--uid", "renumbered", stayed.string()});
  EXPECT_EQ(revoked.exit_code, 0) << revoked.out << revoked.err;
  EXPECT_EQ(revoked.out.find("now at"), std::string::npos) << revoked.out;
  EXPECT_EQ(count_entries(getfacl(stayed), alias), 0u);
  EXPECT_TRUE(registry.grant_records(alias).empty());
}

// A tmpfs does not outlive its boot. Unmounted (here: with the private
// mount namespace it was mounted in), its recorded directory's fate is
// unknown while the boot lasts (the tmpfs may still be mounted in another
// namespace), and gone in a later boot (shown by giving the record another
// boot id): then the sweep drops the record and releases the UID.
TEST(AclSweep, ATmpfsOfAnEarlierBootIsGone) {
  Env env;
  std::filesystem::path mount_point = env.temp / "tmpfs", tree = mount_point / "tree";
  std::filesystem::create_directory(mount_point);
  auto allocated = env.vmwarden({"uid", "alloc"});
  ASSERT_EQ(allocated.exit_code, 0) << allocated.err;
  uid_t dead = static_cast<uid_t>(std::stoul(allocated.out));
  testing::CommandOptions options;
  options.extra_env = env.env();
  auto granted = testing::run_command(
      {"unshare", "--mount", "--propagation", "private", "sh", "-c",
       fmt::format("mount -t tmpfs tmpfs {0} && mkdir {1} && exec {2} acl grant --uid {3} --ro {1}",
                   mount_point.string(), tree.string(), testing::vmwarden_binary(), dead)},
      options);
  ASSERT_EQ(granted.exit_code, 0) << granted.out << granted.err;
  UidRegistry registry(env.locations);
  RecordedRoot root = recorded_root(registry, dead);
  EXPECT_EQ(root.fs_type, "tmpfs");
  EXPECT_FALSE(root.boot.empty());

  auto swept = env.vmwarden({"acl", "sweep"});
  EXPECT_EQ(swept.exit_code, 1) << swept.out << swept.err;
  EXPECT_NE(swept.err.find("cannot be looked for"), std::string::npos) << swept.err;
  EXPECT_EQ(registry.grant_records(dead).size(), 1u);

  root.boot = "00000000-0000-4000-8000-000000000000";
  rewrite_roots(registry, dead, tree, {root});
  swept = env.vmwarden({"acl", "sweep"});
  EXPECT_EQ(swept.exit_code, 0) << swept.out << swept.err;
  EXPECT_TRUE(registry.grant_records(dead).empty());
  EXPECT_FALSE(registry.find(dead)->allocated);
}

// A record whose filesystem is gone for good fails every sweep until it is
// forgotten on request. Refused while anything it covers can be reached,
// while the UID is leased, and without such a record.
TEST(AclForget, ARecordOfAFilesystemGoneForGoodIsDroppedOnRequestOnly) {
  GrantedTree granted(1, 1, Access::ro);
  auto& [env, registry, dead] = granted;
  std::string uid = std::to_string(dead);
  auto refused = env.vmwarden({"acl", "forget", "--uid", uid, env.tree.string()});
  EXPECT_EQ(refused.exit_code, 2) << refused.out << refused.err;
  EXPECT_NE(refused.err.find("acl revoke"), std::string::npos) << refused.err;
  std::filesystem::path moved = env.temp / "moved";
  std::filesystem::rename(env.tree, moved);
  refused = env.vmwarden({"acl", "forget", "--uid", uid, env.tree.string()});
  EXPECT_EQ(refused.exit_code, 2) << refused.out << refused.err;
  EXPECT_NE(refused.err.find("acl revoke"), std::string::npos) << refused.err;
  EXPECT_EQ(registry.grant_records(dead).size(), 1u);

  // Another filesystem's id: as a disk unplugged looks.
  RecordedRoot gone_for_good = recorded_root(registry, dead);
  gone_for_good.fs_id = "fsid:0123456789abcdef";
  rewrite_roots(registry, dead, env.tree, {gone_for_good});
  auto swept = env.vmwarden({"acl", "sweep"});
  EXPECT_EQ(swept.exit_code, 1) << swept.out << swept.err;
  EXPECT_NE(swept.err.find("acl forget"), std::string::npos) << swept.err;
  {
    // Held as a running sandbox holds it: a flock on its lease file.
    std::filesystem::path leases = env.locations.runtime_dir / "_uid-leases";
    std::filesystem::create_directories(leases);
    UniqueFd held(::open((leases / uid).c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644));
    ASSERT_TRUE(held);
    ASSERT_EQ(::flock(held.get(), LOCK_EX), 0);
    refused = env.vmwarden({"acl", "forget", "--uid", uid, env.tree.string()});
    EXPECT_EQ(refused.exit_code, 2) << refused.out << refused.err;
    EXPECT_NE(refused.err.find("leased"), std::string::npos) << refused.err;
  }
  refused = env.vmwarden({"acl", "forget", "--uid", uid, (env.temp / "never").string()});
  EXPECT_EQ(refused.exit_code, 2) << refused.out << refused.err;
  EXPECT_EQ(registry.grant_records(dead).size(), 1u);

  auto forgotten = env.vmwarden({"acl", "forget", "--uid", uid, env.tree.string()});
  EXPECT_EQ(forgotten.exit_code, 0) << forgotten.out << forgotten.err;
  EXPECT_TRUE(registry.grant_records(dead).empty());
  swept = env.vmwarden({"acl", "sweep"});
  EXPECT_EQ(swept.exit_code, 0) << swept.out << swept.err;
  EXPECT_FALSE(registry.find(dead)->allocated);
}

// A mount of the recorded filesystem covered by another mount is not taken
// for absent: in a private mount namespace, a tmpfs is granted, the tree
// renamed away, and another tmpfs mounted over the first. forget cannot
// tell, and refuses. Once that namespace (and the tmpfs) is gone, the
// directory is absent, and forget takes it out.
void expect_no_control_bytes(const std::string& text);

TEST(AclForget, AMountCoveredByAnotherIsNotTakenForAbsent) {
  Env env;
  // An ESC in the mount's path: the message naming the mount escapes it.
  std::filesystem::path mount_point = env.temp / "covered\033[2J", tree = mount_point / "tree";
  std::filesystem::create_directory(mount_point);
  auto allocated = env.vmwarden({"uid", "alloc"});
  ASSERT_EQ(allocated.exit_code, 0) << allocated.err;
  std::string uid = allocated.out.substr(0, allocated.out.find('\n'));
  testing::CommandOptions options;
  options.extra_env = env.env();
  auto covered = testing::run_command(
      {"unshare", "--mount", "--propagation", "private", "sh", "-c",
       "mount -t tmpfs first \"$1\" && mkdir \"$2\" && \"$3\" acl grant --uid \"$4\" --ro \"$2\" && "
       "mv \"$2\" \"$1/moved\" && mount -t tmpfs second \"$1\" && \"$3\" acl forget --uid \"$4\" \"$2\"; "
       "echo forget=$?",
       "sh", mount_point.string(), tree.string(), testing::vmwarden_binary(), uid},
      options);
  EXPECT_NE(covered.out.find("forget=2"), std::string::npos) << covered.out << covered.err;
  EXPECT_THAT(covered.err, ::testing::HasSubstr("the mount on " + (env.temp / "covered\\x1b[2J").string() +
                                                " is covered by another mount"));
  expect_no_control_bytes(covered.out + covered.err);
  UidRegistry registry(env.locations);
  uid_t dead = static_cast<uid_t>(std::stoul(uid));
  ASSERT_EQ(registry.grant_records(dead).size(), 1u);

  auto forgotten = env.vmwarden({"acl", "forget", "--uid", uid, tree.string()});
  EXPECT_EQ(forgotten.exit_code, 0) << forgotten.out << forgotten.err;
  EXPECT_TRUE(registry.grant_records(dead).empty());
}

// The same with the named directory renamed away, not removed: revoke
// clears it where it is now, but with something else at the path of a
// tree partly known by its path, the record stays (a failure), as in sweep.
TEST(AclRevoke, ARecordPartlyByPathStaysWhileSomethingElseIsAtThePath) {
  GrantedTree granted(1, 1, Access::ro, "partly-by-path");
  auto& [env, registry, alias] = granted;
  std::vector<GrantRecord> records = registry.grant_records(alias);
  ASSERT_EQ(records.size(), 1u);
  records[0].by_path = true;
  registry.add_grant_record(records[0]);
  ASSERT_TRUE(registry.grant_records(alias).at(0).by_path);
  std::filesystem::path moved = env.temp / "moved";
  std::filesystem::rename(env.tree, moved);
  testing::write_file(env.tree, "a file where the tree was\n");

  auto revoked = env.vmwarden({"acl", "revoke", "--uid", "partly-by-path", env.tree.string()});
  EXPECT_EQ(revoked.exit_code, 1) << revoked.out << revoked.err;
  EXPECT_NE(revoked.err.find("knows the tree by its path"), std::string::npos) << revoked.err;
  EXPECT_EQ(count_entries(getfacl(moved), alias), 0u) << "the directory renamed away was not revoked";
  EXPECT_EQ(registry.grant_records(alias).size(), 1u);
}

// forget takes out of a record only the directories whose filesystem is
// not mounted here: with the path still there, the record stays for
// revoke, which then succeeds. Refused while the kernel will not say what
// became of a directory.
TEST(AclForget, OnlyDirectoriesOutOfReachLeaveTheRecord) {
  GrantedTree granted(1, 1, Access::ro, "partly");
  auto& [env, registry, alias] = granted;
  RecordedRoot here = recorded_root(registry, alias);
  RecordedRoot unplugged = here;
  unplugged.fs_id = "fsid:0123456789abcdef";
  unplugged.device = makedev(1, 99);
  RecordedRoot refused_root = here;
  refused_root.handle_type |= 0x40000;  // a flag no kernel accepts from user space
  rewrite_roots(registry, alias, env.tree, {here, unplugged, refused_root});

  auto refused = env.vmwarden({"acl", "forget", "--uid", "partly", env.tree.string()});
  EXPECT_EQ(refused.exit_code, 2) << refused.out << refused.err;
  EXPECT_NE(refused.err.find("cannot tell"), std::string::npos) << refused.err;
  EXPECT_EQ(registry.grant_records(alias).at(0).roots.size(), 3u);

  rewrite_roots(registry, alias, env.tree, {here, unplugged});
  auto revoked = env.vmwarden({"acl", "revoke", "--uid", "partly", env.tree.string()});
  EXPECT_EQ(revoked.exit_code, 1) << revoked.out << revoked.err;
  auto forgotten = env.vmwarden({"acl", "forget", "--uid", "partly", env.tree.string()});
  EXPECT_EQ(forgotten.exit_code, 0) << forgotten.out << forgotten.err;
  ASSERT_EQ(registry.grant_records(alias).size(), 1u);
  EXPECT_EQ(registry.grant_records(alias)[0].roots, std::vector<RecordedRoot>{here});
  revoked = env.vmwarden({"acl", "revoke", "--uid", "partly", env.tree.string()});
  EXPECT_EQ(revoked.exit_code, 0) << revoked.out << revoked.err;
  EXPECT_EQ(count_entries(getfacl(env.tree), alias), 0u);
  EXPECT_TRUE(registry.grant_records(alias).empty());
}

// A record some grant of which found no handle (a filesystem without
// usable ones) knows that directory by its path alone, whatever other
// directories it names: with a symlink at the path and the named
// directories removed, nothing shows the grant is gone. Sweep fails and
// keeps the record, revoke refuses the symlink, forget has nothing to take.
TEST(AclSweep, ARecordPartlyByPathKeepsItWhileSomethingElseIsAtThePath) {
  GrantedTree granted(1, 1, Access::ro);
  auto& [env, registry, dead] = granted;
  std::vector<GrantRecord> records = registry.grant_records(dead);
  ASSERT_EQ(records.size(), 1u);
  records[0].by_path = true;
  registry.remove_grant_record(dead, env.tree);
  registry.add_grant_record(records[0]);
  std::filesystem::path elsewhere = env.temp / "elsewhere";
  make_tree(elsewhere, 1, 1);
  auto marked = testing::run_command({"setfacl", "-R", "-m", fmt::format("u:{}:rX", dead), elsewhere.string()});
  ASSERT_EQ(marked.exit_code, 0) << marked.err;
  std::filesystem::remove_all(env.tree);
  std::filesystem::create_directory_symlink(elsewhere, env.tree);

  auto swept = env.vmwarden({"acl", "sweep"});
  EXPECT_EQ(swept.exit_code, 1) << swept.out << swept.err;
  EXPECT_EQ(registry.grant_records(dead).size(), 1u);
  EXPECT_TRUE(registry.find(dead)->allocated);
  auto revoked = env.vmwarden({"acl", "revoke", "--uid", std::to_string(dead), env.tree.string()});
  EXPECT_EQ(revoked.exit_code, 2) << revoked.out << revoked.err;
  auto forgotten = env.vmwarden({"acl", "forget", "--uid", std::to_string(dead), env.tree.string()});
  EXPECT_EQ(forgotten.exit_code, 2) << forgotten.out << forgotten.err;
  EXPECT_NE(forgotten.err.find("put the tree back"), std::string::npos) << forgotten.err;
  EXPECT_EQ(registry.grant_records(dead).size(), 1u);
  EXPECT_GT(count_entries(getfacl(elsewhere), dead), 0u) << "something went through the symlink";
}

// One recorded directory the kernel refuses to open (a handle of a type it
// rejects: EINVAL) is a failure of its own: the walk at the path still
// happens, and the record stays. For sweep and for revoke.
TEST(AclSweep, ARecordedDirectoryThatFailsDoesNotStopTheWalkAtThePath) {
  Env env;
  std::filesystem::path second = make_two_trees(env, "second");
  UidRegistry registry(env.locations);
  uid_t dead = registry.allocate_single_use();
  uid_t alias = registry.allocate_alias("refused");
  grant(registry, dead, env.tree, Access::ro);
  grant(registry, alias, second, Access::ro);
  for (auto [uid, tree] : {std::pair{dead, env.tree}, std::pair{alias, second}}) {
    RecordedRoot good = recorded_root(registry, uid);
    RecordedRoot refused = good;
    refused.handle_type |= 0x40000;  // a flag no kernel accepts from user space
    rewrite_roots(registry, uid, tree, {refused, good});
  }

  auto swept = env.vmwarden({"acl", "sweep"});
  EXPECT_EQ(swept.exit_code, 1) << swept.out << swept.err;
  EXPECT_NE(swept.err.find("open_by_handle_at"), std::string::npos) << swept.err;
  EXPECT_EQ(count_entries(getfacl(env.tree), dead), 0u) << "the walk at the path did not happen";
  EXPECT_EQ(registry.grant_records(dead).size(), 1u);

  auto revoked = env.vmwarden({"acl", "revoke", "--uid", "refused", second.string()});
  EXPECT_EQ(revoked.exit_code, 1) << revoked.out << revoked.err;
  EXPECT_NE(revoked.err.find("open_by_handle_at"), std::string::npos) << revoked.err;
  EXPECT_EQ(count_entries(getfacl(second), alias), 0u) << "the walk at the path did not happen";
  EXPECT_EQ(registry.grant_records(alias).size(), 1u);
}

// The path given to a directory of a filesystem without POSIX ACLs (a
// ramfs, mounted in a private mount namespace): nothing to walk there, but
// the directory granted, renamed away, is still revoked, and only then does
// the record go.
TEST(AclRevoke, ATreeRenamedAwayIsRevokedWhereItsPathNowHasNoAcls) {
  GrantedTree granted(1, 2, Access::rw, "ramfs");
  auto& [env, registry, alias] = granted;
  std::filesystem::path moved = env.temp / "moved";
  std::filesystem::rename(env.tree, moved);
  std::filesystem::create_directory(env.tree);
  testing::CommandOptions options;
  options.extra_env = env.env();
  auto revoked = testing::run_command(
      {"unshare", "--mount", "--propagation", "private", "sh", "-c",
       fmt::format("mount -t ramfs ramfs {0} && exec {1} acl revoke --uid ramfs {0}", env.tree.string(),
                   testing::vmwarden_binary())},
      options);
  EXPECT_EQ(revoked.exit_code, 0) << revoked.out << revoked.err;
  EXPECT_NE(revoked.out.find(fmt::format("now at {}", moved.string())), std::string::npos) << revoked.out;
  EXPECT_EQ(count_entries(getfacl(moved), alias), 0u);
  EXPECT_TRUE(registry.grant_records(alias).empty());
}

// A record is plain text: the root line gives the device, the inode and the
// file handle, and an earlier directory is dropped from it once removed.
TEST(AclRecords, TheRecordNamesTheGrantedDirectoryAndForgetsRemovedOnes) {
  GrantedTree granted(1, 1, Access::ro, "recorded");
  auto& [env, registry, alias] = granted;
  std::filesystem::path dir = env.locations.state_dir / "grants" / std::to_string(alias);
  std::vector<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) names.push_back(entry.path().filename());
  ASSERT_EQ(names.size(), 1u);
  std::string text = testing::read_file(dir / names[0]);
  struct stat st;
  ASSERT_EQ(::stat(env.tree.c_str(), &st), 0);
  EXPECT_THAT(text, ::testing::ContainsRegex(fmt::format("\nroot {}:{} {} [a-z0-9]+ (uuid|fsid):[0-9a-f]+ - [0-9a-f]+ [0-9a-f]+\n", major(st.st_dev),
                                                        minor(st.st_dev), st.st_ino)))
      << text;

  // Renamed away and removed: the re-grant of the path's new directory
  // records that one alone.
  std::filesystem::rename(env.tree, env.temp / "old");
  make_tree(env.tree, 1, 1);
  std::filesystem::remove_all(env.temp / "old");
  grant(registry, alias, env.tree, Access::ro);
  std::vector<GrantRecord> records = registry.grant_records(alias);
  ASSERT_EQ(records.size(), 1u);
  ASSERT_EQ(records[0].roots.size(), 1u);
  ASSERT_EQ(::stat(env.tree.c_str(), &st), 0);
  EXPECT_EQ(records[0].roots[0].inode, st.st_ino);
}

struct WithUnknownDType {
  WithUnknownDType() { detail::force_unknown_d_type(true); }
  ~WithUnknownDType() { detail::force_unknown_d_type(false); }
};

// On a filesystem without d_type, a name whose own ACL is already right may
// still be a directory with work below it: the walk must enter it.
TEST(AclUnknownType, ADirectoryWhoseOwnAclIsRightIsStillEntered) {
  GrantedTree granted(1, 2, Access::ro, "untyped");
  auto& [env, registry, uid] = granted;
  // Moved in after the grant: a rename keeps its (lack of an) ACL.
  testing::write_file(env.temp / "newcomer", "x");
  std::filesystem::rename(env.temp / "newcomer", env.tree / "d0/sub/newcomer");
  ASSERT_EQ(count_entries(getfacl(env.tree / "d0/sub/newcomer"), uid), 0u);
  {
    WithUnknownDType force;
    Report regrant = grant(registry, uid, env.tree, Access::ro);
    EXPECT_EQ(regrant.failed, 0u);
  }
  EXPECT_EQ(count_entries(getfacl(env.tree / "d0/sub/newcomer"), uid), 1u) << "the re-grant did not enter d0/sub";

  // A subdirectory without an ACL of its own, entries below it.
  auto cleared = testing::run_command({"setfacl", "-b", (env.tree / "d0/sub").string()});
  ASSERT_EQ(cleared.exit_code, 0) << cleared.err;
  ASSERT_FALSE(has_acl(env.tree / "d0/sub"));
  ASSERT_EQ(count_entries(getfacl(env.tree / "d0/sub/inner"), uid), 1u);
  {
    WithUnknownDType force;
    Report revoked = revoke(registry, uid, env.tree);
    EXPECT_EQ(revoked.failed, 0u);
  }
  EXPECT_EQ(count_entries(getfacl(env.tree), uid), 0u) << getfacl(env.tree / "d0/sub");
}

TEST(AclScopedGrants, RevokesEverythingOnScopeExit) {
  Env env;
  make_tree(env.tree, 2, 3);
  std::filesystem::path second = env.temp / "second";
  make_tree(second, 1, 1);
  std::string before = getfacl(env.tree) + getfacl(second);
  UidRegistry registry(env.locations);
  {
    UidLease lease = registry.lease_single_use();
    ScopedGrants grants(registry, lease.uid());
    grants.grant(env.tree, Access::rw);
    grants.grant(second, Access::ro);
    EXPECT_GT(count_entries(getfacl(second), lease.uid()), 0u);
    EXPECT_EQ(registry.grant_records(lease.uid()).size(), 2u);
  }
  EXPECT_EQ(getfacl(env.tree) + getfacl(second), before);
  EXPECT_TRUE(registry.grant_records().empty());
  EXPECT_TRUE(registry.list().empty()) << "the single-use UID went back to the pool";
}

// The tree renamed away while granted (by whoever can write its parent, or
// its owner): the revoke at scope exit still reaches it, through the
// directory the grant opened, and walks nothing put under its old name.
TEST(AclScopedGrants, RevokesATreeRenamedAwayAndNotWhatTookItsName) {
  Env env;
  make_tree(env.tree, 1, 2);
  std::filesystem::path moved = env.temp / "moved", decoy = env.temp / "decoy";
  make_tree(decoy, 1, 1);
  UidRegistry registry(env.locations);
  uid_t uid = 0;
  {
    UidLease lease = registry.lease_single_use();
    uid = lease.uid();
    ScopedGrants grants(registry, uid);
    grants.grant(env.tree, Access::rw);
    write_owned_file(env.tree / "d0/tool", uid, uid, 04755);
    std::filesystem::rename(env.tree, moved);
    std::filesystem::rename(decoy, env.tree);
    // The decoy carries an entry of the UID that a walk of the old name
    // would remove.
    auto result = testing::run_command({"setfacl", "-m", fmt::format("u:{}:r", uid), (env.tree / "d0/f0").string()});
    ASSERT_EQ(result.exit_code, 0) << result.err;
  }
  EXPECT_EQ(count_entries(getfacl(moved), uid), 0u);
  EXPECT_EQ(std::filesystem::status(moved / "d0/tool").permissions(), std::filesystem::perms(0755));
  EXPECT_EQ(count_entries(getfacl(env.tree), uid), 1u) << "the decoy was not walked";
  EXPECT_TRUE(registry.grant_records().empty());
}

// A grant refused before anything changed (here: its path goes through a
// symlink, as when an outside writer swaps the share between the check and
// the grant) is not revoked at scope exit: that revoke would only fail the
// same way and warn of grants that were never made. One that got as far as
// its record is still revoked.
TEST(AclScopedGrants, AGrantRefusedBeforeAnyChangeIsNotRevokedLater) {
  Env env;
  make_tree(env.tree, 1, 1);
  std::filesystem::path link = env.temp / "link";
  std::filesystem::create_directory_symlink(env.tree, link);
  UidRegistry registry(env.locations);
  UidLease lease = registry.lease_single_use();
  ScopedGrants grants(registry, lease.uid());
  EXPECT_THROW(grants.grant(link, Access::rw), std::exception);
  EXPECT_TRUE(registry.grant_records(lease.uid()).empty());
  EXPECT_NO_THROW(grants.revoke_all()) << "a revoke of the refused path was tried";

  grants.grant(env.tree, Access::ro);
  EXPECT_GT(count_entries(getfacl(env.tree), lease.uid()), 0u);
  grants.revoke_all();
  EXPECT_EQ(count_entries(getfacl(env.tree), lease.uid()), 0u);
  EXPECT_TRUE(registry.grant_records(lease.uid()).empty());
}

// A tree whose revoke fails does not keep the others granted: every tree is
// revoked, and the failure is reported once at the end.
TEST(AclScopedGrants, OneFailedRevokeDoesNotStopTheOthers) {
  Env env;
  std::filesystem::path second = make_two_trees(env, "second");
  UidRegistry registry(env.locations);
  UidLease lease = registry.lease_single_use();
  ScopedGrants grants(registry, lease.uid());
  grants.grant(env.tree, Access::rw);
  grants.grant(second, Access::ro);
  // The second tree (revoked first) cannot lose its record: its file is
  // made immutable, which unlink refuses (EPERM).
  std::filesystem::path records = env.locations.state_dir / "grants" / std::to_string(lease.uid());
  std::filesystem::path blocked;
  for (const auto& entry : std::filesystem::directory_iterator(records)) {
    if (testing::read_file(entry.path()).find("path " + second.string() + "\n") != std::string::npos) blocked = entry.path();
  }
  ASSERT_FALSE(blocked.empty());
  UniqueFd record(::open(blocked.c_str(), O_RDONLY | O_CLOEXEC));
  ASSERT_TRUE(record);
  int flags = 0;
  if (::ioctl(record.get(), FS_IOC_GETFLAGS, &flags) != 0) GTEST_SKIP() << "no inode flags here";
  int immutable = flags | FS_IMMUTABLE_FL;
  if (::ioctl(record.get(), FS_IOC_SETFLAGS, &immutable) != 0) GTEST_SKIP() << "no immutable files here";
  struct Unblock {
    int fd, flags;
    ~Unblock() { ::ioctl(fd, FS_IOC_SETFLAGS, &flags); }
  } unblock{record.get(), flags};
  try {
    grants.revoke_all();
    ADD_FAILURE() << "revoke_all did not report the failure";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find(second.string()), std::string::npos) << e.what();
  }
  EXPECT_EQ(count_entries(getfacl(env.tree), lease.uid()), 0u) << "the other tree was left granted";
  EXPECT_EQ(count_entries(getfacl(second), lease.uid()), 0u);
}

// Walks one tree normally and a like one with `set_fallback(true)` in force
// (grant, re-grant, revoke): the same result and the same counts.
void expect_the_fallback_walks_alike(const char* alias, void (*set_fallback)(bool)) {
  Env env;
  make_tree(env.tree, 2, 5);
  std::filesystem::path other = env.temp / "other";
  make_tree(other, 2, 5);
  UidRegistry registry(env.locations);
  uid_t uid = registry.allocate_alias(alias);
  Report normal = grant(registry, uid, env.tree, Access::rw);
  set_fallback(true);
  struct Restore {
    void (*set)(bool);
    ~Restore() { set(false); }
  } restore{set_fallback};
  Report report = grant(registry, uid, other, Access::rw);
  EXPECT_EQ(report.changed, normal.changed);
  EXPECT_EQ(report.changed, 2u * 5 + 2 * 3 + 1);
  EXPECT_EQ(without_root(getfacl(other), other), without_root(getfacl(env.tree), env.tree));
  EXPECT_EQ(grant(registry, uid, other, Access::rw).unchanged, report.changed);
  revoke(registry, uid, other);
  EXPECT_EQ(count_entries(getfacl(other), uid), 0u);
}

// Kernels before 6.13 have no getxattrat/setxattrat: the /proc/self/fd
// fallback must give the same result.
TEST(AclFallback, WithoutXattratTheResultIsTheSame) {
  expect_the_fallback_walks_alike("fallback", [](bool on) {
    detail::force_xattrat_fallback(on);
    if (on) {
      EXPECT_FALSE(detail::have_xattrat());
    }
  });
}

// Where the nodev view cannot be had every file is pinned O_PATH: the same
// result, the same counts.
TEST(AclFallback, WithoutTheNodevViewTheResultIsTheSame) {
  expect_the_fallback_walks_alike("noview", [](bool on) { detail::force_no_nodev_view(on); });
}

// Without io_uring every step of a batch of files is one syscall per file
// (batch_io.h): the same result, the same counts.
TEST(AclFallback, WithoutIoUringTheResultIsTheSame) {
  expect_the_fallback_walks_alike("nouring", [](bool on) {
    detail::force_no_io_uring(on);
    if (on) {
      EXPECT_FALSE(detail::BatchIo().uses_io_uring());
    }
  });
}

// Which way a file is pinned, seen from outside: opened for reading through
// the nodev view (an IN_OPEN event), or O_PATH (none). Shows that the tests
// above exercise both. A file already right and unchanged since the last
// grant verified it is looked at by name only (statx, no open); one not in
// the set is read through a descriptor, which the grant also verifies it
// by, and by name (getxattrat, no open) where no set is kept (a dry run)
// and io_uring does not make the descriptor the cheaper way.
TEST(AclFallback, FilesAreOpenedForReadingOnlyThroughTheNodevView) {
  Env env;
  make_tree(env.tree, 1, 2);
  {
    UniqueFd dir(::open(env.tree.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!detail::open_nodev_view(dir.get())) GTEST_SKIP() << "no nodev view here";
  }
  UidRegistry registry(env.locations);
  uid_t uid = registry.allocate_alias("opens");
  auto opens_during = [&](auto&& walk) {
    UniqueFd inotify(::inotify_init1(IN_NONBLOCK | IN_CLOEXEC));
    EXPECT_GE(::inotify_add_watch(inotify.get(), (env.tree / "d0/f1").c_str(), IN_OPEN), 0);
    walk();
    return count_opens(inotify.get());
  };
  EXPECT_EQ(opens_during([&] { grant(registry, uid, env.tree, Access::ro); }), 1);
  EXPECT_EQ(opens_during([&] { grant(registry, uid, env.tree, Access::ro); }), 0) << "taken from the verified set";
  std::filesystem::path set = registry.verified_files_path(uid, env.tree);
  WalkOptions dry;
  dry.dry_run = true;
  for (bool uring : {true, false}) {
    detail::force_no_io_uring(!uring);
    bool batched = uring && detail::BatchIo().uses_io_uring();
    std::filesystem::remove(set);
    EXPECT_EQ(opens_during([&] { grant(registry, uid, env.tree, Access::ro); }), 1)
        << "already right, not in the set: read through a descriptor and verified";
    std::filesystem::remove(set);
    EXPECT_EQ(opens_during([&] { grant(registry, uid, env.tree, Access::ro, dry); }), batched ? 1 : 0)
        << (batched ? "already right: read through the batch's descriptor" : "already right: only read by name");
  }
  detail::force_no_io_uring(false);
  EXPECT_EQ(opens_during([&] { revoke(registry, uid, env.tree); }), 1);
  WithoutNodevView force;
  EXPECT_EQ(opens_during([&] { grant(registry, uid, env.tree, Access::ro); }), 0);
  EXPECT_EQ(opens_during([&] { revoke(registry, uid, env.tree); }), 0);
  EXPECT_EQ(count_entries(getfacl(env.tree), uid), 0u);
}

bool has_effective_cap_sys_admin() {
  std::istringstream status(testing::read_file("/proc/self/status"));
  for (std::string line; std::getline(status, line);) {
    if (line.starts_with("CapEff:")) return (std::stoull(line.substr(7), nullptr, 16) >> CAP_SYS_ADMIN) & 1;
  }
  return false;
}

// With CAP_SYS_ADMIN, and no unbindable mount at or below the tree, the view
// is there: a kernel or seccomp policy that refuses the mount API would
// otherwise move every walk to the O_PATH path unnoticed, and the test above
// would only skip. Through the view, the kernel refuses to open a device node.
TEST(AclFallback, TheNodevViewIsHadWithCapSysAdmin) {
  if (!has_effective_cap_sys_admin()) GTEST_SKIP() << "needs CAP_SYS_ADMIN";
  Env env;
  make_tree(env.tree, 1, 2);
  std::filesystem::create_directories(env.tree / "d0/dev");
  ASSERT_EQ(::mknod((env.tree / "d0/dev/null").c_str(), S_IFCHR | 0666, makedev(1, 3)), 0) << std::strerror(errno);
  UniqueFd dir(::open(env.tree.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  ASSERT_TRUE(dir);
  detail::NodevView view = detail::open_nodev_view(dir.get());
  ASSERT_TRUE(view) << "no nodev view of " << env.tree << " although this process holds CAP_SYS_ADMIN";
  UniqueFd direct(::openat(dir.get(), "d0/dev/null", O_RDONLY | O_CLOEXEC));
  EXPECT_TRUE(direct) << "the control: the node opens outside the view";
  errno = 0;
  UniqueFd through_view(::openat(view.dir.get(), "d0/dev/null", O_RDONLY | O_CLOEXEC));
  EXPECT_FALSE(through_view);
  EXPECT_EQ(errno, EACCES);
  UniqueFd file(::openat(view.dir.get(), "d0/f1", O_RDONLY | O_CLOEXEC));
  EXPECT_TRUE(file) << "regular files open through the view: " << std::strerror(errno);
}

// A file under a write lease refuses an open for reading with O_NONBLOCK
// (EAGAIN) instead of waiting up to lease-break-time for its holder: the walk
// pins it O_PATH instead and does not wait.
TEST(AclLease, AFileUnderALeaseIsGrantedWithoutWaiting) {
  Env env;
  make_tree(env.tree, 1, 3);
  std::filesystem::path leased = env.tree / "d0/f1";
  UidRegistry registry(env.locations);
  uid_t uid = registry.allocate_alias("lease");
  // The lease break is signalled to its holder, this process.
  struct sigaction ignore {}, old {};
  ignore.sa_handler = SIG_IGN;
  ASSERT_EQ(::sigaction(SIGIO, &ignore, &old), 0);
  UniqueFd holder(::open(leased.c_str(), O_RDONLY | O_CLOEXEC));
  ASSERT_TRUE(holder);
  if (::fcntl(holder.get(), F_SETLEASE, F_WRLCK) != 0) {
    ::sigaction(SIGIO, &old, nullptr);
    GTEST_SKIP() << "no leases here: " << std::strerror(errno);
  }
  auto start = std::chrono::steady_clock::now();
  Report report = grant(registry, uid, env.tree, Access::ro);
  auto took = std::chrono::steady_clock::now() - start;
  holder.reset();
  ::sigaction(SIGIO, &old, nullptr);
  EXPECT_LT(took, 5s);
  EXPECT_EQ(report.failed, 0u);
  EXPECT_EQ(report.changed, 1u + 3 + 1 + 1 + 1);
  EXPECT_EQ(count_entries(getfacl(leased), uid), 1u);
}

// A recursive copy of the mounts leaves out unbindable ones, and the walk
// through it would see the directory such a mount covers: where there is
// one, the walk goes without the view and still stops at the mount.
TEST(AclMounts, AnUnbindableMountBelowTheTreeIsNotEnteredEither) {
  Env env;
  make_tree(env.tree, 1, 2);  // d0/sub/inner is what the mount covers
  UidRegistry registry(env.locations);
  uid_t uid = registry.allocate_alias("unbindable");
  pid_t pid = ::fork();
  if (pid == 0) {
    if (::unshare(CLONE_NEWNS) != 0 || ::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) ::_exit(90);
    std::filesystem::path mountpoint = env.tree / "d0/sub";
    if (::mount("tmpfs", mountpoint.c_str(), "tmpfs", 0, "mode=0755") != 0) ::_exit(91);
    if (::mount(nullptr, mountpoint.c_str(), nullptr, MS_UNBINDABLE, nullptr) != 0) ::_exit(91);
    Report report = grant(registry, uid, env.tree, Access::ro);
    if (report.skipped_mounts != 1) ::_exit(92);
    if (!has_acl(env.tree / "d0/f1")) ::_exit(94);
    ::_exit(0);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "90/91: setup, 92: crossed the mount, 94: no grant";
  // The mount went with the child's namespace: what it covered is untouched.
  EXPECT_FALSE(has_acl(env.tree / "d0/sub"));
  EXPECT_FALSE(has_acl(env.tree / "d0/sub/inner"));
}

// A directory met under two names in one walk is walked once: two workers
// editing its ACLs at once would each act on what it read before the other
// wrote (AclRace.SwappedDirectoriesChangeNoDefaultAclDecisionOfARevoke found
// a grant's default ACL left behind that way). A writer renaming inside the
// tree does this at random; a bind mount of a directory of the tree inside
// it, crossed with --cross-mounts, does it every time.
TEST(AclMounts, ADirectoryMetUnderTwoNamesIsWalkedOnce) {
  Env env;
  make_tree(env.tree, 1, 2);  // tree, d0, d0/f0, d0/f1, d0/sub, d0/sub/inner
  std::filesystem::create_directory(env.tree / "again");
  UidRegistry registry(env.locations);
  uid_t uid = registry.allocate_alias("twice");
  pid_t pid = ::fork();
  if (pid == 0) {
    if (::unshare(CLONE_NEWNS) != 0 || ::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) ::_exit(90);
    std::filesystem::path sub = env.tree / "d0/sub", again = env.tree / "again";
    if (::mount(sub.c_str(), again.c_str(), nullptr, MS_BIND, nullptr) != 0) ::_exit(91);
    WalkOptions cross{.cross_mounts = true};
    auto objects = [](const Report& report) { return report.changed + report.unchanged; };
    // The six objects once each (`again` itself is covered by the mount).
    if (objects(grant(registry, uid, env.tree, Access::rw, cross)) != 6) ::_exit(92);
    if (objects(revoke(registry, uid, env.tree, cross)) != 6) ::_exit(93);
    ::_exit(has_acl(sub) || has_acl(sub / "inner") ? 94 : 0);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "90/91: setup, 92/93: a directory walked twice, 94: not revoked";
}

}  // namespace
}  // namespace vmwarden::acl

namespace vmwarden::acl {
namespace {

// The control bytes a name in a tree can carry to root's terminal (a
// newline splitting a name shows as a line without the expected text).
void expect_no_control_bytes(const std::string& text) {
  for (char c : {'\033', '\r', '\a'}) {
    EXPECT_EQ(text.find(c), std::string::npos) << fmt::format("byte {:#x} in:\n", c) << text;
  }
}

// Names a VM (or whoever can rename in a tree's parent) chose reach root's
// terminal only escaped: the skipped hard links and third parties'
// objects, the tree's path in grant's, revoke's and sweep's lines, and
// where a granted directory was renamed to.
TEST(AclCli, NamesFromTheTreesAreEscapedInEveryLine) {
  Env env;
  const std::string hostile = "l\033[2J\rOK";
  std::filesystem::path tree = env.temp / ("t\033]0;pwned\a");
  std::filesystem::create_directories(tree);
  testing::write_file(tree / "o", "x");
  ASSERT_EQ(::link((tree / "o").c_str(), (tree / hostile).c_str()), 0);
  testing::write_file(tree / ("f" + hostile), "x");
  ASSERT_EQ(::chown((tree / ("f" + hostile)).c_str(), 4242, 4242), 0);
  ASSERT_EQ(env.vmwarden({"uid", "alloc", "--alias", "k"}).exit_code, 0);

  auto granted = env.vmwarden({"acl", "grant", "--uid", "k", "--ro", tree.string()});
  EXPECT_EQ(granted.exit_code, 0) << granted.err;
  std::string shown_tree = (env.temp / "t\\x1b]0;pwned\\x07").string();
  EXPECT_THAT(granted.err, ::testing::HasSubstr("skipped (more than one hard link): " + shown_tree +
                                                "/l\\x1b[2J\\x0dOK\n"));
  EXPECT_THAT(granted.err, ::testing::HasSubstr("skipped (owned by neither the tree's owner nor a VM): " +
                                                shown_tree + "/fl\\x1b[2J\\x0dOK\n"));
  EXPECT_THAT(granted.out, ::testing::HasSubstr(" " + shown_tree + ": "));
  expect_no_control_bytes(granted.out + granted.err);

  // Renamed away by whoever writes its parent: revoke and sweep say where
  // it is now.
  std::filesystem::path away = env.temp / "e\033]0;pwned\a\rFAKE";
  std::filesystem::rename(tree, away);
  std::string shown_away = (env.temp / "e\\x1b]0;pwned\\x07\\x0dFAKE").string();
  ASSERT_EQ(env.vmwarden({"uid", "release", "k"}).exit_code, 0);
  auto swept = env.vmwarden({"acl", "sweep", "--dry-run"});
  EXPECT_EQ(swept.exit_code, 0) << swept.err;
  EXPECT_THAT(swept.out, ::testing::HasSubstr(shown_tree + ": a directory granted under this path is now at " +
                                              shown_away + "; swept there\n"));
  expect_no_control_bytes(swept.out + swept.err);

  ASSERT_EQ(env.vmwarden({"uid", "alloc", "--alias", "m"}).exit_code, 0);
  std::filesystem::path second = env.temp / "g";
  std::filesystem::create_directories(second);
  ASSERT_EQ(env.vmwarden({"acl", "grant", "--uid", "m", "--rw", second.string()}).exit_code, 0);
  std::filesystem::rename(second, env.temp / "h\033[2J");
  auto revoked = env.vmwarden({"acl", "revoke", "--uid", "m", second.string()});
  EXPECT_EQ(revoked.exit_code, 0) << revoked.err;
  EXPECT_THAT(revoked.out, ::testing::HasSubstr("a directory granted under this path is now at " +
                                                (env.temp / "h\\x1b[2J").string() + "; walked there too\n"));
  expect_no_control_bytes(revoked.out + revoked.err);
}

// `acl show` quotes the path as getfacl does (\ooo), so that its output
// still goes back through `setfacl --restore`, and names the registry's
// UIDs on named user and group lines alike (a VM's gid is its uid).
TEST(AclShow, QuotesThePathForSetfaclRestoreAndNamesGroupsToo) {
  Env env;
  std::filesystem::path odd = env.temp / "a\nb\033c\\d";
  std::filesystem::create_directories(odd);
  ASSERT_EQ(env.vmwarden({"uid", "alloc", "--alias", "shown"}).exit_code, 0);
  UidRegistry registry(env.locations);
  uid_t uid = *registry.find_alias("shown");
  // By setfacl: a grant refuses a path with a newline, not its names below.
  ASSERT_EQ(testing::run_command({"setfacl", "-m", fmt::format("u:{0}:r-x,g:{0}:r-x,d:u:{0}:r-x", uid), odd.string()})
                .exit_code,
            0);

  auto shown = env.vmwarden({"acl", "show", odd.string()});
  ASSERT_EQ(shown.exit_code, 0) << shown.err;
  EXPECT_THAT(shown.out, ::testing::StartsWith("# file: " + (env.temp / "a\\012b\\033c\\134d").string() + "\n"));
  EXPECT_THAT(shown.out, ::testing::HasSubstr(fmt::format("\nuser:{}:r-x\t# vmwarden: alias shown\n", uid)));
  EXPECT_THAT(shown.out, ::testing::HasSubstr(fmt::format("\ngroup:{}:r-x\t# vmwarden: alias shown\n", uid)));
  EXPECT_THAT(shown.out, ::testing::HasSubstr(fmt::format("\ndefault:user:{}:r-x\t# vmwarden: alias shown\n", uid)));

  // Round trip: the ACL removed, then restored from show's text.
  std::string before = getfacl(odd);
  ASSERT_EQ(testing::run_command({"setfacl", "-b", "-k", odd.string()}).exit_code, 0);
  ASSERT_NE(getfacl(odd), before);
  testing::CommandOptions restore;
  restore.stdin_text = shown.out;
  auto restored = testing::run_command({"setfacl", "--restore=-"}, restore);
  EXPECT_EQ(restored.exit_code, 0) << restored.err;
  EXPECT_EQ(getfacl(odd), before);
}

// Refused on a state directory that does not exist yet, revoke and forget
// create nothing there (the lock they take lives in grants/).
TEST(AclCli, RefusalsOnAFreshStateDirectoryCreateNothing) {
  Env env;
  std::filesystem::create_directories(env.tree);
  std::filesystem::path state = env.temp / "no-state";
  testing::CommandOptions fresh;
  fresh.extra_env = env.env();
  fresh.extra_env["VMWARDEN_STATE_DIR"] = state.string();
  auto run = [&](std::vector<std::string> args) {
    args.insert(args.begin(), testing::vmwarden_binary());
    return testing::run_command(args, fresh);
  };
  std::string missing = (env.temp / "nonexist").string();
  for (const auto& args : std::vector<std::vector<std::string>>{
           {"acl", "revoke", "--uid", "1879048192", missing},
           {"acl", "forget", "--uid", "1879048192", env.tree.string()},
           {"acl", "grant", "--uid", "1879048192", "--ro", env.tree.string()},
           {"acl", "show", missing}}) {
    auto result = run(args);
    EXPECT_EQ(result.exit_code, 2) << args[1] << ": " << result.err;
    EXPECT_FALSE(std::filesystem::exists(state)) << args[1] << " created " << state;
    std::filesystem::remove_all(state);
  }
}

// grants/ holds root's records as uids/ does: a symlink there (to a
// directory someone else writes) or a grants/ others may write is refused
// before anything is granted, naming it.
TEST(AclRecords, TheGrantRecordsDirectoryMustBeRootsAlone) {
  Env env;
  make_tree(env.tree, 1, 1);
  UidRegistry registry(env.locations);
  registry.allocate_alias("work");
  std::filesystem::path grants = env.locations.state_dir / "grants";
  std::filesystem::path elsewhere = env.temp / "elsewhere";
  std::filesystem::create_directories(elsewhere);
  std::filesystem::create_directory_symlink(elsewhere, grants);
  auto linked = env.vmwarden({"acl", "grant", "--uid", "work", "--ro", env.tree.string()});
  EXPECT_EQ(linked.exit_code, 1) << linked.err;
  EXPECT_THAT(linked.err, ::testing::HasSubstr(grants.string() + " is a symlink, expected a directory"));
  EXPECT_TRUE(std::filesystem::is_empty(elsewhere)) << "nothing written through the symlink";
  EXPECT_EQ(testing::named_acl_entries(env.tree), "") << "nothing granted";
  std::filesystem::remove(grants);
  std::filesystem::create_directory(grants);
  std::filesystem::permissions(grants, std::filesystem::perms::all);
  auto writable = env.vmwarden({"acl", "grant", "--uid", "work", "--ro", env.tree.string()});
  EXPECT_EQ(writable.exit_code, 1) << writable.err;
  EXPECT_THAT(writable.err, ::testing::HasSubstr(grants.string() + " is owned by uid 0 with mode 0777"));
  EXPECT_EQ(testing::named_acl_entries(env.tree), "") << "nothing granted";
}

// A record file that is not a regular file fails the reading of the
// records with a message saying what belongs there; a FIFO does not hang.
TEST(AclRecords, ARecordThatIsNotARegularFileSaysWhatBelongsThere) {
  GrantedTree granted(1, 1, Access::ro);
  auto& [env, registry, uid] = granted;
  std::filesystem::path dir = env.locations.state_dir / "grants" / std::to_string(uid);
  std::vector<std::filesystem::path> records;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) records.push_back(entry.path());
  ASSERT_EQ(records.size(), 1u);
  const std::filesystem::path record = records[0];
  struct Case {
    std::function<void()> make;
    std::string what;
  };
  std::vector<Case> cases{
      {[&] { ASSERT_EQ(::mkfifo(record.c_str(), 0644), 0); }, "a FIFO"},
      {[&] { std::filesystem::create_directory(record); }, "a directory"},
      {[&] { std::filesystem::create_symlink(env.tree, record); }, "a symlink"},
      {[&] { testing::write_file(record, std::string((1u << 20) + 1, 'x')); }, "larger than 1024 KiB"},
  };
  for (const Case& c : cases) {
    std::filesystem::remove_all(record);
    c.make();
    auto result = env.vmwarden({"acl", "sweep", "--dry-run"});
    EXPECT_EQ(result.exit_code, 1) << c.what << ": " << result.err;
    EXPECT_THAT(result.err, ::testing::HasSubstr(record.string() + ": " + c.what + "; expected a regular file"));
  }
  std::filesystem::remove_all(record);
  // grants/UID itself a file: reported as damaged, the UID listed and kept,
  // not every command stopped at "Not a directory".
  std::filesystem::remove_all(dir);
  testing::write_file(dir, "not a directory\n");
  registry.release(uid);
  auto swept = env.vmwarden({"acl", "sweep"});
  EXPECT_EQ(swept.exit_code, 1) << swept.err;
  EXPECT_THAT(swept.err, ::testing::HasSubstr("damaged grant record, its UID kept"));
  EXPECT_THAT(swept.out, ::testing::Not(::testing::HasSubstr(fmt::format("released single-use UID {}", uid))));
  auto listed = env.vmwarden({"uid", "list", "--all"});
  EXPECT_EQ(listed.exit_code, 0) << listed.err;
  EXPECT_THAT(listed.out, ::testing::HasSubstr(std::to_string(uid)));
  EXPECT_TRUE(std::filesystem::is_regular_file(dir)) << "left for someone to look at";
  std::filesystem::remove(dir);
  // A symlink there is not followed to records elsewhere: damaged too.
  std::filesystem::path elsewhere = env.temp / "records-elsewhere";
  std::filesystem::create_directories(elsewhere);
  std::filesystem::create_directory_symlink(elsewhere, dir);
  auto linked = env.vmwarden({"acl", "sweep", "--dry-run"});
  EXPECT_EQ(linked.exit_code, 1) << linked.err;
  EXPECT_THAT(linked.err, ::testing::HasSubstr(dir.string() + ": a symlink; expected a directory of grant records"));
  std::filesystem::remove(dir);
}

// The one record file of `uid` (a single grant).
std::filesystem::path only_record_of(const Env& env, uid_t uid) {
  std::filesystem::path dir = env.locations.state_dir / "grants" / std::to_string(uid);
  std::vector<std::filesystem::path> records;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) records.push_back(entry.path());
  EXPECT_EQ(records.size(), 1u);
  return records.empty() ? dir : records[0];
}

// A record without a usable "path" line (hand-edited, emptied, a relative
// path) names no tree, so its UID's entries there cannot be found: sweep
// says which file is damaged and what belongs there, fails, and never
// releases the UID; the other trees and UIDs are still swept, and a revoke
// of the UID warns of it.
TEST(AclRecords, ADamagedRecordIsReportedAndKeepsItsUid) {
  struct Case {
    std::string content;
    std::string said;
  };
  const std::vector<Case> cases{
      {"pth /somewhere\naccess rw\nmounts one\n", ": no \"path\" line; expected \"path /absolute/tree\""},
      {"", ": no \"path\" line; expected \"path /absolute/tree\""},
      {std::string("\x7f" "ELF\x01\x00\x1b[2J", 10), ": no \"path\" line; expected \"path /absolute/tree\""},
      {"access rw\npath relative/tree\n", ":2: \"path relative/tree\" is not an absolute path; expected "
                                          "\"path /absolute/tree\""},
      {"path \n", ":1: \"path \" is not an absolute path; expected \"path /absolute/tree\""},
  };
  for (const Case& c : cases) {
    Env env;
    std::filesystem::path other = make_two_trees(env, "other");
    UidRegistry registry(env.locations);
    uid_t damaged = registry.allocate_single_use();
    uid_t dead = registry.allocate_single_use();
    grant(registry, damaged, env.tree, Access::rw);
    grant(registry, dead, other, Access::ro);
    std::filesystem::path record = only_record_of(env, damaged);
    testing::write_file(record, c.content);

    auto swept = env.vmwarden({"acl", "sweep"});
    EXPECT_EQ(swept.exit_code, 1) << swept.out << swept.err;
    EXPECT_THAT(swept.err, ::testing::HasSubstr(record.string() + c.said)) << c.said;
    expect_no_control_bytes(swept.out + swept.err);
    EXPECT_TRUE(registry.find(damaged)->allocated) << "a UID with a damaged record was released";
    EXPECT_GT(count_entries(getfacl(env.tree), damaged), 0u);
    EXPECT_TRUE(std::filesystem::exists(record));
    // The rest is swept as ever.
    EXPECT_EQ(count_entries(getfacl(other), dead), 0u);
    EXPECT_FALSE(registry.find(dead)->allocated);
    // Allocated and not released: a second sweep says the same again.
    EXPECT_EQ(env.vmwarden({"acl", "sweep"}).exit_code, 1);
    EXPECT_TRUE(registry.find(damaged)->allocated);

    // revoke of another tree of the same UID warns, and still revokes.
    std::filesystem::path third = env.temp / "third";
    make_tree(third, 1, 1);
    grant(registry, damaged, third, Access::ro);
    auto revoked = env.vmwarden({"acl", "revoke", "--uid", std::to_string(damaged), third.string()});
    EXPECT_EQ(revoked.exit_code, 0) << revoked.err;
    EXPECT_THAT(revoked.err, ::testing::HasSubstr(fmt::format("UID {} has a damaged grant record", damaged)));
    EXPECT_THAT(revoked.err, ::testing::HasSubstr(record.string() + c.said));
    EXPECT_EQ(count_entries(getfacl(third), damaged), 0u);
    // forget finds no record to forget, and points at the damaged one.
    auto forgot = env.vmwarden({"acl", "forget", "--uid", std::to_string(damaged), env.tree.string()});
    EXPECT_EQ(forgot.exit_code, 2) << forgot.err;
    EXPECT_THAT(forgot.err, ::testing::HasSubstr("; damaged: " + record.string() + c.said));
  }
}

// A grant that finds its own record damaged replaces it, assuming the most
// the damaged part could have said (a second "path" line hides the
// "mounts cross" after it): revoke and sweep still go below other mounts
// and by the path.
TEST(AclRecords, ARegrantOverADamagedRecordKeepsWhatItMayHaveSaid) {
  GrantedTree granted(1, 1, Access::ro);
  auto& [env, registry, uid] = granted;
  std::filesystem::path record = only_record_of(env, uid);
  testing::write_file(record, "path " + env.tree.string() + "\npath /elsewhere\naccess ro\nmounts cross\n");
  auto regrant = env.vmwarden({"acl", "grant", "--uid", std::to_string(uid), "--ro", env.tree.string()});
  EXPECT_EQ(regrant.exit_code, 0) << regrant.err;
  EXPECT_THAT(regrant.err, ::testing::HasSubstr("replaced by the new grant's record"));
  std::string now = testing::read_file(record);
  EXPECT_THAT(now, ::testing::HasSubstr("mounts cross\n"));
  EXPECT_THAT(now, ::testing::HasSubstr("by-path yes\n"));
  EXPECT_THAT(now, ::testing::Not(::testing::HasSubstr("/elsewhere")));
}

// A copy of a record under another file name than its path's key is not
// taken for the record (which sweep removes by its key, leaving the copy
// forever): it is damaged, said so with the name it belongs under, and
// keeps its UID allocated.
TEST(AclRecords, ACopyUnderAnotherNameIsDamagedNotARecord) {
  GrantedTree granted(1, 1, Access::ro);
  auto& [env, registry, uid] = granted;
  std::filesystem::path record = only_record_of(env, uid);
  std::filesystem::path copy = record.parent_path() / "0000000000000000";
  std::filesystem::copy_file(record, copy);

  auto swept = env.vmwarden({"acl", "sweep"});
  EXPECT_EQ(swept.exit_code, 1) << swept.out << swept.err;
  std::string key = record.filename().string();
  EXPECT_THAT(swept.err, ::testing::HasSubstr(fmt::format(
                             "{}: the record of {} is kept as {}; remove this copy or rename it to {}",
                             copy.string(), env.tree.string(), key, key)));
  EXPECT_FALSE(std::filesystem::exists(record)) << "the record itself is swept";
  EXPECT_TRUE(std::filesystem::exists(copy));
  EXPECT_EQ(count_entries(getfacl(env.tree), uid), 0u);
  EXPECT_TRUE(registry.find(uid)->allocated) << "a UID with a damaged record was released";

  // Renamed to its key, it is a record again, and the next sweep finishes.
  std::filesystem::rename(copy, record);
  auto again = env.vmwarden({"acl", "sweep"});
  EXPECT_EQ(again.exit_code, 0) << again.out << again.err;
  EXPECT_FALSE(registry.find(uid)->allocated);
  EXPECT_FALSE(std::filesystem::exists(record.parent_path()));
}

// Paths read from the records and the trees are escaped in every log line
// of sweep and revoke: a recorded tree removed, one renamed away, and a
// hand-edited record holding an ESC and a root line that does not parse.
TEST(AclCli, RecordedPathsAreEscapedInSweepAndRevokeLogLines) {
  Env env;
  std::filesystem::path removed = env.temp / "r\033]0;pwned\a";
  std::filesystem::path renamed = env.temp / "m\033[2J";
  make_tree(removed, 1, 1);
  make_tree(renamed, 1, 1);
  UidRegistry registry(env.locations);
  uid_t dead = registry.allocate_single_use();
  uid_t alias = registry.allocate_alias("kept");
  grant(registry, dead, removed, Access::ro);
  grant(registry, alias, renamed, Access::ro);
  std::filesystem::remove_all(removed);
  std::filesystem::rename(renamed, env.temp / "n\033[2J\rFAKE");
  // A root line that does not parse (with an ESC and, by the line format,
  // ending at its newline) in the alias's record.
  std::filesystem::path record = only_record_of(env, alias);
  std::ofstream(record, std::ios::app) << "root \033[31mgarbage\n";

  auto swept = env.vmwarden({"acl", "sweep"});
  EXPECT_EQ(swept.exit_code, 0) << swept.out << swept.err;
  EXPECT_THAT(swept.err, ::testing::HasSubstr((env.temp / "r\\x1b]0;pwned\\x07").string() + ": no such directory"));
  EXPECT_THAT(swept.err, ::testing::HasSubstr("root \\x1b[31mgarbage"));
  expect_no_control_bytes(swept.out + swept.err);

  auto revoked = env.vmwarden({"acl", "revoke", "--uid", "kept", renamed.string()});
  EXPECT_EQ(revoked.exit_code, 0) << revoked.err;
  EXPECT_THAT(revoked.err, ::testing::HasSubstr((env.temp / "m\\x1b[2J").string() + ": no such directory"));
  expect_no_control_bytes(revoked.out + revoked.err);

  // A damaged record holding an ESC in its path is escaped too.
  uid_t other = registry.allocate_single_use();
  std::filesystem::path dir = env.locations.state_dir / "grants" / std::to_string(other);
  std::filesystem::create_directories(dir);
  testing::write_file(dir / "0000000000000000", "path /x\033[2J\naccess ro\nmounts one\n");
  auto damaged = env.vmwarden({"acl", "sweep"});
  EXPECT_EQ(damaged.exit_code, 1) << damaged.out << damaged.err;
  EXPECT_THAT(damaged.err, ::testing::HasSubstr("the record of /x\\x1b[2J is kept as"));
  expect_no_control_bytes(damaged.out + damaged.err);
}


// Files a grant verified (acl-manager/verified_files.h): a re-grant of a
// tree takes each regular file that statx shows as the last grant left it
// (same inode and ctime, one link, not a symlink) without reading its ACL,
// and checks everything else as always.

// env.tree: `dirs` directories of `files` files and sub/inner each (not a
// small flat tree: walked through the nodev view, so a grant keeps what it
// verified), granted ro to an alias; the number of regular files in it.
struct VerifiedTree {
  Env env;
  UidRegistry registry{env.locations};
  uid_t uid;
  std::uint64_t files;

  VerifiedTree(int dirs = 3, int files_per_dir = 10) {
    make_tree(env.tree, dirs, files_per_dir);
    uid = registry.allocate_alias("verified");
    files = static_cast<std::uint64_t>(dirs) * (files_per_dir + 1);
    Report first = grant(registry, uid, env.tree, Access::ro);
    EXPECT_EQ(first.unchanged_as_verified, 0u);
  }
  std::filesystem::path set() const { return registry.verified_files_path(uid, env.tree); }
};

TEST(AclVerified, AReGrantTakesTheFilesTheLastGrantLeftRightUnread) {
  VerifiedTree t;
  ASSERT_TRUE(std::filesystem::is_regular_file(t.set())) << "the grant kept no set";
  std::string granted = getfacl(t.env.tree);
  for (int round = 0; round < 2; ++round) {
    Report again = grant(t.registry, t.uid, t.env.tree, Access::ro);
    EXPECT_EQ(again.changed, 0u) << again.summary();
    EXPECT_EQ(again.unchanged_as_verified, t.files) << again.summary();
    EXPECT_EQ(again.failed, 0u) << again.summary();
  }
  EXPECT_EQ(getfacl(t.env.tree), granted);
  auto shown = t.env.vmwarden({"acl", "grant", "--uid", "verified", "--ro", t.env.tree.string()});
  EXPECT_EQ(shown.exit_code, 0) << shown.err;
  EXPECT_THAT(shown.out, ::testing::HasSubstr(fmt::format("({} as the last grant left them)", t.files)));
}

// Whatever changed a file since (its ACL, its mode, the file itself under
// the same name) changed its ctime: the re-grant checks it and mends it.
TEST(AclVerified, FilesChangedSinceTheLastGrantAreCheckedAndMended) {
  VerifiedTree t;
  std::string granted = getfacl(t.env.tree);
  std::string entry = fmt::format("u:{}", t.uid);
  setfacl({"-x", entry, (t.env.tree / "d0/f1").string()});
  setfacl({"-m", entry + ":---", (t.env.tree / "d1/f2").string()});
  // Removed and made again, perhaps on the same inode, without the entry.
  std::filesystem::remove(t.env.tree / "d2/f3");
  testing::write_file(t.env.tree / "d2/f3", "data", 0644);
  setfacl({"-b", (t.env.tree / "d2/f3").string()});
  ASSERT_NE(getfacl(t.env.tree), granted) << "the test would prove nothing";

  Report again = grant(t.registry, t.uid, t.env.tree, Access::ro);
  EXPECT_EQ(again.changed, 3u) << again.summary();
  EXPECT_EQ(again.unchanged_as_verified, t.files - 3) << again.summary();
  EXPECT_EQ(getfacl(t.env.tree), granted);
  // The set kept now holds the files mended and those taken from it.
  Report third = grant(t.registry, t.uid, t.env.tree, Access::ro);
  EXPECT_EQ(third.unchanged_as_verified, t.files) << third.summary();
}

// A file the grant wrote is taken as right only while its ctime lies below
// the grant's end: a change made the moment the grant returns (within the
// same clock tick, whose coarse timestamps lag the clock) gets a ctime at
// or above it, and the next grant sees it.
TEST(AclVerified, AChangeTheMomentTheGrantReturnsIsSeen) {
  VerifiedTree t;
  std::filesystem::path victim = t.env.tree / "d0/f1";
  for (int round = 0; round < 30; ++round) {
    SCOPED_TRACE(round);
    // The grant writes the victim (it has no ACL), then its ACL goes at once.
    ASSERT_EQ(::removexattr(victim.c_str(), "system.posix_acl_access"), 0);
    Report regranted = grant(t.registry, t.uid, t.env.tree, Access::ro);
    ASSERT_EQ(::removexattr(victim.c_str(), "system.posix_acl_access"), 0);
    ASSERT_EQ(regranted.changed, 1u) << regranted.summary();
    Report again = grant(t.registry, t.uid, t.env.tree, Access::ro);
    ASSERT_EQ(again.changed, 1u) << "the change went unseen: " << again.summary();
    ASSERT_EQ(again.unchanged_as_verified, t.files - 1) << again.summary();
  }
}

// A symlink in a verified file's place is not followed, not even to another
// verified file of the tree, and an outside file linked in under its name
// gains nothing: neither is taken for the file that was there.
TEST(AclVerified, ASymlinkOrAnOutsideLinkInAVerifiedFilesPlaceIsNotTakenForIt) {
  VerifiedTree t;
  std::filesystem::remove(t.env.tree / "d0/f1");
  std::filesystem::create_symlink("f2", t.env.tree / "d0/f1");
  std::filesystem::path outside = t.env.temp / "outside";
  testing::write_file(outside, "secret", 0600);
  std::filesystem::remove(t.env.tree / "d1/f1");
  ASSERT_EQ(::link(outside.c_str(), (t.env.tree / "d1/f1").c_str()), 0);

  Report again = grant(t.registry, t.uid, t.env.tree, Access::ro);
  EXPECT_EQ(again.skipped_symlinks, 1u) << again.summary();
  EXPECT_EQ(again.skipped_hardlinks, 1u) << again.summary();
  EXPECT_EQ(again.unchanged_as_verified, t.files - 2) << again.summary();
  EXPECT_EQ(again.changed, 0u) << again.summary();
  EXPECT_FALSE(has_acl(outside));
}

// The set is only taken by a grant of the same UID and access: a grant of
// rw after ro reads every file and widens every entry.
TEST(AclVerified, AGrantOfOtherAccessTakesNothingFromTheSet) {
  VerifiedTree t;
  Report rw = grant(t.registry, t.uid, t.env.tree, Access::rw);
  EXPECT_EQ(rw.unchanged_as_verified, 0u) << rw.summary();
  EXPECT_EQ(rw.unchanged, 0u) << rw.summary();
  std::string after = getfacl(t.env.tree);
  EXPECT_EQ(after.find(fmt::format("user:{}:r-", t.uid)), std::string::npos) << after;
  Report again = grant(t.registry, t.uid, t.env.tree, Access::rw);
  EXPECT_EQ(again.unchanged_as_verified, t.files) << again.summary();
}

// A set that is not whole, or not one save() wrote, is taken as none: the
// re-grant checks every file, and keeps a good set again.
TEST(AclVerified, ADamagedSetIsTakenAsNone) {
  VerifiedTree t;
  std::string content = testing::read_file(t.set());
  for (std::string damaged : {content.substr(0, content.size() - 8), std::string(content.size(), '\xa5'),
                              content.substr(0, 72) + std::string(content.size() - 72, '\0')}) {
    testing::write_file(t.set(), damaged);
    Report again = grant(t.registry, t.uid, t.env.tree, Access::ro);
    EXPECT_EQ(again.unchanged_as_verified, 0u) << again.summary();
    EXPECT_EQ(again.changed, 0u) << again.summary();
    EXPECT_EQ(again.failed, 0u) << again.summary();
    EXPECT_EQ(grant(t.registry, t.uid, t.env.tree, Access::ro).unchanged_as_verified, t.files);
  }
  // A symlink in its place is not followed (the set is taken as none).
  std::filesystem::path elsewhere = t.env.temp / "elsewhere";
  std::filesystem::copy_file(t.set(), elsewhere);
  std::filesystem::remove(t.set());
  std::filesystem::create_symlink(elsewhere, t.set());
  EXPECT_EQ(grant(t.registry, t.uid, t.env.tree, Access::ro).unchanged_as_verified, 0u);
}

// Only an alias's grant keeps a set, through the nodev view: not a dry run,
// not a small flat tree (a VM's fresh share), not a single-use UID's grant
// (its VM's end revokes it). A revoke removes it with the record.
TEST(AclVerified, DryRunsSmallTreesAndSingleUseUidsKeepNoSetAndARevokeRemovesIt) {
  Env env;
  UidRegistry registry(env.locations);
  uid_t uid = registry.allocate_alias("kept");
  make_tree(env.tree, 2, 5);
  uid_t single_use = registry.allocate_single_use();
  grant(registry, single_use, env.tree, Access::ro);
  EXPECT_EQ(grant(registry, single_use, env.tree, Access::ro).unchanged_as_verified, 0u);
  EXPECT_FALSE(std::filesystem::exists(env.locations.state_dir / "verified"));
  revoke(registry, single_use, env.tree);
  WalkOptions dry;
  dry.dry_run = true;
  grant(registry, uid, env.tree, Access::ro, dry);
  EXPECT_FALSE(std::filesystem::exists(registry.verified_files_path(uid, env.tree)));
  std::filesystem::path flat = env.temp / "flat";
  std::filesystem::create_directories(flat);
  for (int i = 0; i < 5; ++i) testing::write_file(flat / fmt::format("f{}", i), "x");
  grant(registry, uid, flat, Access::ro);
  EXPECT_FALSE(std::filesystem::exists(registry.verified_files_path(uid, flat)));

  grant(registry, uid, env.tree, Access::ro);
  ASSERT_TRUE(std::filesystem::exists(registry.verified_files_path(uid, env.tree)));
  revoke(registry, uid, env.tree);
  EXPECT_FALSE(std::filesystem::exists(registry.verified_files_path(uid, env.tree)));
  revoke(registry, uid, flat);
  EXPECT_FALSE(std::filesystem::exists(env.locations.state_dir / "verified" / std::to_string(uid)));
}

// Without io_uring each statx is a syscall: the same files are taken.
TEST(AclVerified, WithoutIoUringTheSameFilesAreTaken) {
  detail::force_no_io_uring(true);
  VerifiedTree t;
  Report again = grant(t.registry, t.uid, t.env.tree, Access::ro);
  detail::force_no_io_uring(false);
  EXPECT_EQ(again.unchanged_as_verified, t.files) << again.summary();
}

}  // namespace
}  // namespace vmwarden::acl
