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

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include <fmt/core.h>

#include "acl-manager/acl.h"
#include "acl-manager/uid_registry.h"
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
    std::filesystem::path ours = temp / "ours", theirs = temp / "setfacl";
    std::fprintf(stderr, "building two trees of %d dirs x %d files in %s ...\n", dirs, files, temp.path().c_str());
    build_tree(ours, dirs, files);
    build_tree(theirs, dirs, files);

    std::string entry = fmt::format("u:{}:rX", uid);
    std::string user = fmt::format("u:{}", uid);
    std::vector<double> grant_ours, grant_theirs, regrant_ours, regrant_theirs, revoke_ours, revoke_theirs;
    acl::Report last_grant, last_regrant, last_revoke;
    for (int round = 0; round < rounds; ++round) {
      run_setfacl({"setfacl", "-R", "-b", ours.string()});
      run_setfacl({"setfacl", "-R", "-b", theirs.string()});
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
      } else {
        run_ours();
        run_theirs();
      }
      std::fprintf(stderr,
                   "round %d: grant %.3f vs %.3f s, re-grant %.3f vs %.3f s, revoke %.3f vs %.3f s (vmwarden vs setfacl)\n",
                   round + 1, grant_ours.back(), grant_theirs.back(), regrant_ours.back(), regrant_theirs.back(),
                   revoke_ours.back(), revoke_theirs.back());
    }
    std::printf("tree: %d dirs x %d files (%d objects), %d rounds, %u CPUs online\n", dirs, files,
                dirs * files + dirs + 1, rounds, std::max(1u, std::thread::hardware_concurrency()));
    std::printf("vmwarden grant:    %s\n", last_grant.summary().c_str());
    std::printf("vmwarden re-grant: %s\n", last_regrant.summary().c_str());
    std::printf("vmwarden revoke:   %s\n", last_revoke.summary().c_str());
    auto line = [](const char* what, const std::vector<double>& ours_times, const std::vector<double>& theirs_times,
                   double target) {
      double a = median(ours_times), b = median(theirs_times);
      std::printf("%-40s vmwarden %.3f s  setfacl %.3f s  ratio %.2fx (target >= %.0fx)\n", what, a, b, b / a, target);
    };
    line("grant vs setfacl -R -m u:UID:rX", grant_ours, grant_theirs, 3);
    line("re-grant vs the same setfacl again", regrant_ours, regrant_theirs, 6);
    line("revoke vs setfacl -R -x u:UID", revoke_ours, revoke_theirs, 3);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "acl_bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
