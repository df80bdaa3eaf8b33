// ACL grant / re-grant / revoke against setfacl on the same kind of tree, in
// one process, alternating which tool goes first, and prints the medians and
// ratios. Run by hand:
//
//   build/tests/bench/acl_bench [--rounds N] [--dirs D] [--files F] [--threads T]
//
// Each round starts both trees without ACLs (reset with `setfacl -R -b`,
// untimed), then times for each tool: a grant on the fresh tree
// (`setfacl -R -m u:UID:rX`), the same grant again (already right), and the
// revoke (`setfacl -R -x u:UID`). vmwarden does more per directory (it also
// writes the default ACL) and writes its grant record durably.
//
// Each round also times a floor on a third tree: the per-file system calls
// that a walk safe against a hostile writer has to make, one plain syscall
// each, on as many threads as vmwarden uses, with no ACL logic and nothing
// done for the directories themselves. Grant: open the name without
// following it (the pin), fstat (nlink and type), read the ACL, write it,
// close. Re-grant: one getxattrat by name, the least one syscall per file
// can tell whether a file is already right. Revoke: as grant, removing the
// ACL. setfacl's time over the floor's is about the best ratio a walk making
// those calls one by one can reach here. vmwarden makes them in batches
// through io_uring (one submission per step for up to 256 files), which
// saves the cost of entering the kernel for each: that is how it comes in
// under the floor. Its re-grant reads no ACL of a file the grant before
// verified and that is unchanged since (the same inode and ctime, one statx
// by name each; doc/ACL.md, "Files a grant verified").

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include <fmt/core.h>

#include "acl-manager/acl.h"
#include "acl-manager/acl_entries.h"
#include "acl-manager/uid_registry.h"
#include "acl-manager/xattr_at.h"
#include "common/error.h"
#include "common/unique_fd.h"
#include "tests/support/support.h"

namespace {

using namespace vmwarden;
using Clock = std::chrono::steady_clock;

void build_tree(const std::filesystem::path& root, int dirs, int files) {
  check(::mkdir(root.c_str(), 0755), "mkdir", root.string());
  UniqueFd root_fd(check(::open(root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC), "open", root.string()));
  for (int d = 0; d < dirs; ++d) {
    std::string dir = fmt::format("d{:04}", d);
    check(::mkdirat(root_fd.get(), dir.c_str(), 0755), "mkdir", dir);
    UniqueFd dir_fd(check(::openat(root_fd.get(), dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC), "open", dir));
    for (int f = 0; f < files; ++f) {
      std::string file = fmt::format("f{:03}", f);
      // A few executables, so that X matters.
      mode_t mode = f % 10 == 0 ? 0755 : 0644;
      UniqueFd fd(check(::openat(dir_fd.get(), file.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, mode), "create", file));
    }
  }
}

double run_setfacl(const std::vector<std::string>& argv) {
  auto start = Clock::now();
  testing::CommandOptions options;
  options.timeout = std::chrono::minutes(10);
  testing::CommandResult result = testing::run_command(argv, options);
  double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  if (result.exit_code != 0) {
    throw std::runtime_error(fmt::format("{} failed ({}): {}", argv[0], result.exit_code, result.err));
  }
  return seconds;
}

template <typename F>
double time_it(F&& f) {
  auto start = Clock::now();
  f();
  return std::chrono::duration<double>(Clock::now() - start).count();
}

enum class FloorStep { grant, regrant, revoke };

// The access ACL u::, u:UID:r(x), g::, m::, o:: for a file of this mode, in
// the kernel's xattr format.
std::string floor_acl(uid_t uid, mode_t mode) {
  using namespace acl::detail;
  auto perm = [](mode_t bits) { return static_cast<std::uint16_t>(bits & 7); };
  std::uint16_t named = kRead | ((mode & 0111) ? kExecute : 0);
  Entries entries{{kUserObj, perm(mode >> 6), kNoId},
                  {kUser, named, uid},
                  {kGroupObj, perm(mode >> 3), kNoId},
                  {kMask, static_cast<std::uint16_t>(perm(mode >> 3) | named), kNoId},
                  {kOther, perm(mode), kNoId}};
  std::string value;
  encode(entries, value);
  return value;
}

// One floor step over every file of the tree's subdirectories (see the top of
// the file), on `threads` threads taking directories in turn.
void run_floor(const std::filesystem::path& root, int dirs, unsigned threads, FloorStep step, uid_t uid) {
  UniqueFd root_fd(check(::open(root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC), "open", root.string()));
  const std::string value_755 = floor_acl(uid, 0755), value_644 = floor_acl(uid, 0644);
  std::atomic<int> next{0};
  std::atomic<bool> failed{false};
  auto work = [&] {
    alignas(8) char entries[32768];
    char buffer[1024];
    for (int d; (d = next.fetch_add(1)) < dirs;) {
      std::string name = fmt::format("d{:04}", d);
      UniqueFd dir(::openat(root_fd.get(), name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      if (!dir) failed = true;
      for (long n; dir && (n = syscall(SYS_getdents64, dir.get(), entries, sizeof entries)) > 0;) {
        for (long offset = 0; offset < n;) {
          auto* entry = reinterpret_cast<struct dirent64*>(entries + offset);
          offset += entry->d_reclen;
          if (entry->d_type != DT_REG) continue;
          if (step == FloorStep::regrant) {
            if (acl::detail::get_xattr_at(dir.get(), entry->d_name, false, acl::detail::kAccessAcl, buffer,
                                          sizeof buffer) < 0) {
              failed = true;
            }
            continue;
          }
          UniqueFd file(::openat(dir.get(), entry->d_name, O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC));
          struct stat st;
          if (!file || ::fstat(file.get(), &st) < 0) {
            failed = true;
            continue;
          }
          ::fgetxattr(file.get(), acl::detail::kAccessAcl, buffer, sizeof buffer);
          int rc;
          if (step == FloorStep::grant) {
            const std::string& value = (st.st_mode & 0111) ? value_755 : value_644;
            rc = ::fsetxattr(file.get(), acl::detail::kAccessAcl, value.data(), value.size(), 0);
          } else {
            rc = ::fremovexattr(file.get(), acl::detail::kAccessAcl);
          }
          if (rc < 0) failed = true;
        }
      }
    }
  };
  std::vector<std::thread> pool;
  for (unsigned i = 1; i < threads; ++i) pool.emplace_back(work);
  work();
  for (std::thread& thread : pool) thread.join();
  if (failed) throw std::runtime_error("the floor's system calls failed on " + root.string());
}

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  std::size_t n = values.size();
  return n % 2 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
}

}  // namespace

int main(int argc, char** argv) {
  int rounds = 5, dirs = 1000, files = 100;
  acl::WalkOptions walk;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string_view flag = argv[i];
    int value = std::atoi(argv[i + 1]);
    if (flag == "--rounds") rounds = value;
    else if (flag == "--dirs") dirs = value;
    else if (flag == "--files") files = value;
    else if (flag == "--threads") walk.threads = static_cast<unsigned>(value);
    else {
      std::fprintf(stderr, "usage: acl_bench [--rounds N] [--dirs D] [--files F] [--threads T]\n");
      return 2;
    }
  }
  try {
    testing::TempDir temp("vmwarden-acl-bench");
    Locations locations{temp / "config", temp / "state", temp / "run"};
    acl::UidRegistry registry(locations);
    uid_t uid = registry.allocate_alias("bench");
    std::filesystem::path ours = temp / "ours", theirs = temp / "setfacl", floor = temp / "floor";
    std::fprintf(stderr, "building three trees of %d dirs x %d files in %s ...\n", dirs, files, temp.path().c_str());
    build_tree(ours, dirs, files);
    build_tree(theirs, dirs, files);
    build_tree(floor, dirs, files);
    unsigned threads = walk.threads != 0 ? walk.threads : std::max(1u, std::thread::hardware_concurrency());

    std::string entry = fmt::format("u:{}:rX", uid);
    std::string user = fmt::format("u:{}", uid);
    std::vector<double> grant_ours, grant_theirs, regrant_ours, regrant_theirs, revoke_ours, revoke_theirs;
    std::vector<double> grant_floor, regrant_floor, revoke_floor;
    acl::Report last_grant, last_regrant, last_revoke;
    for (int round = 0; round < rounds; ++round) {
      run_setfacl({"setfacl", "-R", "-b", ours.string()});
      run_setfacl({"setfacl", "-R", "-b", theirs.string()});
      run_setfacl({"setfacl", "-R", "-b", floor.string()});
      auto run_floors = [&] {
        for (auto [step, times] : {std::pair{FloorStep::grant, &grant_floor}, std::pair{FloorStep::regrant, &regrant_floor},
                                   std::pair{FloorStep::revoke, &revoke_floor}}) {
          times->push_back(time_it([&] { run_floor(floor, dirs, threads, step, uid); }));
        }
      };
      auto run_ours = [&] {
        grant_ours.push_back(time_it([&] { last_grant = acl::grant(registry, uid, ours, acl::Access::ro, walk); }));
        regrant_ours.push_back(time_it([&] { last_regrant = acl::grant(registry, uid, ours, acl::Access::ro, walk); }));
        revoke_ours.push_back(time_it([&] { last_revoke = acl::revoke(registry, uid, ours, walk); }));
      };
      auto run_theirs = [&] {
        grant_theirs.push_back(run_setfacl({"setfacl", "-R", "-m", entry, theirs.string()}));
        regrant_theirs.push_back(run_setfacl({"setfacl", "-R", "-m", entry, theirs.string()}));
        revoke_theirs.push_back(run_setfacl({"setfacl", "-R", "-x", user, theirs.string()}));
      };
      if (round % 2 == 0) {
        run_theirs();
        run_ours();
        run_floors();
      } else {
        run_floors();
        run_ours();
        run_theirs();
      }
      std::fprintf(stderr,
                   "round %d: grant %.3f vs %.3f s (floor %.3f), re-grant %.3f vs %.3f s (floor %.3f), "
                   "revoke %.3f vs %.3f s (floor %.3f) (vmwarden vs setfacl)\n",
                   round + 1, grant_ours.back(), grant_theirs.back(), grant_floor.back(), regrant_ours.back(),
                   regrant_theirs.back(), regrant_floor.back(), revoke_ours.back(), revoke_theirs.back(),
                   revoke_floor.back());
    }
    std::printf("tree: %d dirs x %d files (%d objects), %d rounds, %u CPUs online, %u threads\n", dirs, files,
                dirs * files + dirs + 1, rounds, std::max(1u, std::thread::hardware_concurrency()), threads);
    std::printf("vmwarden grant:    %s\n", last_grant.summary().c_str());
    std::printf("vmwarden re-grant: %s\n", last_regrant.summary().c_str());
    std::printf("vmwarden revoke:   %s\n", last_revoke.summary().c_str());
    auto line = [](const char* what, const std::vector<double>& ours_times, const std::vector<double>& theirs_times,
                   const std::vector<double>& floor_times, double target) {
      double a = median(ours_times), b = median(theirs_times), f = median(floor_times);
      std::printf("%-40s vmwarden %.3f s  setfacl %.3f s  ratio %.2fx (target >= %.0fx)\n", what, a, b, b / a, target);
      std::printf("%-40s floor    %.3f s  setfacl/floor %.2fx  vmwarden/floor %.2f\n", "", f, b / f, a / f);
    };
    line("grant vs setfacl -R -m u:UID:rX", grant_ours, grant_theirs, grant_floor, 3);
    line("re-grant vs the same setfacl again", regrant_ours, regrant_theirs, regrant_floor, 6);
    line("revoke vs setfacl -R -x u:UID", revoke_ours, revoke_theirs, revoke_floor, 3);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "acl_bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
