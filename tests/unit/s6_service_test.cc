// The s6 service directory generator: its files, the installed templates,
// and what it refuses.

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include <filesystem>
#include <set>
#include <string>

#include "common/error.h"
#include "s6-services/service_dir.h"
#include "tests/support/support.h"

namespace vmwarden::s6 {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

ServiceOptions options_for(const fs::path& scandir, bool log = false) {
  ServiceOptions options;
  options.name = "work";
  options.definition = "/etc/vmwarden/vms/work.toml";
  options.scandir = scandir;
  options.vmwarden = "/usr/bin/vmwarden";
  options.shutdown_timeout_s = 30;
  options.log = log;
  return options;
}

TEST(S6ServiceFiles, RunExecsVmwardenSoS6SuperviseStaysTheParent) {
  auto files = service_files(options_for("/service"));
  EXPECT_EQ(files["run"].contents.substr(files["run"].contents.rfind("exec ")),
            "exec '/usr/bin/vmwarden' supervise --s6 '/etc/vmwarden/vms/work.toml'\n");
  EXPECT_EQ(files["run"].mode, 0755u);
  EXPECT_EQ(files["notification-fd"].contents, "3\n");
  EXPECT_EQ(files["down-signal"].contents, "SIGTERM\n");
  EXPECT_EQ(files["timeout-kill"].contents, "40000\n") << "shutdown_timeout_s + 10 s, in ms";
  EXPECT_THAT(files["finish"].contents, HasSubstr("125) "));
  EXPECT_EQ(files.count("log/run"), 0u);
}

TEST(S6ServiceFiles, EnvironmentIsQuotedForSh) {
  ServiceOptions options = options_for("/service");
  options.environment["VMWARDEN_STATE_DIR"] = "/var/lib/it's here";
  EXPECT_THAT(service_files(options)["run"].contents, HasSubstr("export VMWARDEN_STATE_DIR='/var/lib/it'\\''s here'\n"));
}

// The installed templates are the generator's output with placeholders.
// timeout-kill depends on the VM's shutdown_timeout_s, a number: its
// template holds @TIMEOUT_KILL_MS@, put in here for the VM's value (7 s, so
// that no fixed number in the template can match by chance).
TEST(S6ServiceFiles, InstalledTemplatesMatchTheGenerator) {
  ServiceOptions options = options_for("/service", true);
  options.name = "@NAME@";
  options.vmwarden = "@VMWARDEN@";
  options.definition = "@DEFINITION@";
  options.shutdown_timeout_s = 7;
  auto filled = [](std::string text) {
    constexpr std::string_view kPlaceholder = "@TIMEOUT_KILL_MS@";
    for (auto at = text.find(kPlaceholder); at != std::string::npos; at = text.find(kPlaceholder))
      text.replace(at, kPlaceholder.size(), "17000");
    return text;
  };
  fs::path templates = testing::source_dir() / "s6-services/templates";
  auto files = service_files(options);
  // Both ways: no template is left that the generator no longer writes.
  for (const auto& entry : fs::recursive_directory_iterator(templates)) {
    if (entry.is_directory()) continue;
    std::string name = fs::relative(entry.path(), templates).string();
    EXPECT_TRUE(files.count(name)) << name << " is a template the generator does not write";
  }
  for (const auto& [name, file] : files) {
    if (name == ".vmwarden-service") continue;  // the generator's own marker
    ASSERT_TRUE(fs::exists(templates / name)) << name;
    EXPECT_EQ(filled(testing::read_file(templates / name)), file.contents) << name;
    struct stat st {};
    ASSERT_EQ(::stat((templates / name).c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0111, file.mode & 0111) << name << ": executable bits";
  }
}

TEST(S6ServiceDir, CreatesThenIsIdempotentThenUpdates) {
  testing::TempDir scandir;
  EXPECT_EQ(write_service_dir(options_for(scandir.path())), WriteResult::created);
  EXPECT_TRUE(fs::exists(scandir / "work/run"));
  EXPECT_EQ(write_service_dir(options_for(scandir.path())), WriteResult::unchanged);
  EXPECT_EQ(write_service_dir(options_for(scandir.path(), true)), WriteResult::updated);
  EXPECT_TRUE(fs::exists(scandir / "work/log/run"));
  fs::create_directories(scandir / "work/log/main");
  testing::write_file(scandir / "work/log/main/current", "a log line\n");
  EXPECT_EQ(write_service_dir(options_for(scandir.path(), false)), WriteResult::updated);
  // No log/ left for s6-svscan to supervise; the logs kept beside it.
  EXPECT_FALSE(fs::exists(scandir / "work/log"));
  int kept = 0;
  for (const auto& entry : fs::directory_iterator(scandir / "work")) {
    if (!entry.path().filename().string().starts_with("log.old-")) continue;
    ++kept;
    EXPECT_EQ(testing::read_file(entry.path() / "main/current"), "a log line\n");
    EXPECT_FALSE(fs::exists(entry.path() / "run"));
  }
  EXPECT_EQ(kept, 1);
  EXPECT_EQ(write_service_dir(options_for(scandir.path(), false)), WriteResult::unchanged);
  // No staging directory is left behind.
  int entries = 0;
  for ([[maybe_unused]] const auto& entry : fs::directory_iterator(scandir.path())) ++entries;
  EXPECT_EQ(entries, 1);
}

// s6-svscan, s6-supervise and the reader of the logs go through log/: its
// mode is the service directory's, not what the caller's umask would make.
TEST(S6ServiceDir, TheLogDirectoryIsReachableWhateverTheUmask) {
  testing::TempDir scandir, other;
  {
    // Restored however the block is left, for the tests after this one.
    struct UmaskFor {
      mode_t old;
      ~UmaskFor() { ::umask(old); }
    } restore{::umask(077)};
    write_service_dir(options_for(scandir.path(), true));
    write_service_dir(options_for(other.path(), false));
    write_service_dir(options_for(other.path(), true));  // --log added later
  }
  for (const fs::path& log : {scandir / "work/log", other / "work/log"}) {
    struct stat st {};
    ASSERT_EQ(::stat(log.c_str(), &st), 0) << log;
    EXPECT_EQ(st.st_mode & 07777, 0755u) << log;
  }
}

TEST(S6ServiceDir, RefusesADirectoryItDidNotWriteAndChangesNothing) {
  testing::TempDir scandir;
  fs::create_directory(scandir / "work");
  testing::write_file(scandir / "work/run", "#!/bin/sh\nexec my-own-thing\n", 0755);
  try {
    write_service_dir(options_for(scandir.path()));
    FAIL() << "overwrote a foreign service";
  } catch (const UsageError& e) {
    EXPECT_THAT(e.what(), HasSubstr("was not written by vmwarden"));
  }
  EXPECT_EQ(testing::read_file(scandir / "work/run"), "#!/bin/sh\nexec my-own-thing\n");
  EXPECT_FALSE(fs::exists(scandir / "work/finish"));
  EXPECT_THROW(write_service_dir(options_for(scandir / "missing")), UsageError);
}

// write_service_dir() with every file past a file size limit (a full disk
// is the same); its message.
std::string write_past_a_size_limit(const ServiceOptions& options) {
  rlimit saved{};
  EXPECT_EQ(::getrlimit(RLIMIT_FSIZE, &saved), 0);
  rlimit tiny = saved;
  tiny.rlim_cur = 16;  // less than any service file
  struct sigaction ignore {}, previous {};
  ignore.sa_handler = SIG_IGN;  // the write then fails with EFBIG
  EXPECT_EQ(::sigaction(SIGXFSZ, &ignore, &previous), 0);
  EXPECT_EQ(::setrlimit(RLIMIT_FSIZE, &tiny), 0);
  std::string message;
  try {
    write_service_dir(options);
  } catch (const SystemError& e) {
    message = e.what();
  }
  EXPECT_EQ(::setrlimit(RLIMIT_FSIZE, &saved), 0);
  EXPECT_EQ(::sigaction(SIGXFSZ, &previous, nullptr), 0);
  return message;
}

std::set<std::string> entries(const fs::path& dir) {
  std::set<std::string> names;
  for (const auto& entry : fs::recursive_directory_iterator(dir))
    names.insert(entry.path().lexically_relative(dir).string());
  return names;
}

// A service file that cannot be written whole (past a file size limit
// here; a full disk is the same) fails with the write, the file and the
// kernel's reason, and leaves no half-made service directory.
TEST(S6ServiceDir, AFileThatCannotBeWrittenIsReportedWithItsCause) {
  testing::TempDir scandir;
  std::string message = write_past_a_size_limit(options_for(scandir.path()));
  EXPECT_THAT(message, HasSubstr("write " + scandir.path().string() + "/.work.new-"));
  EXPECT_THAT(message, HasSubstr(": File too large"));
  EXPECT_TRUE(fs::is_empty(scandir.path())) << "a half-made service directory is left";
}

// The same when a service directory is rewritten: neither a temporary
// file nor a log/ without its run (which s6-svscan would supervise, its
// s6-supervise retrying forever) is left in it.
TEST(S6ServiceDir, ARewriteThatCannotBeWrittenLeavesNothingHalfDone) {
  testing::TempDir scandir;
  ASSERT_EQ(write_service_dir(options_for(scandir.path())), WriteResult::created);
  std::set<std::string> before = entries(scandir / "work");
  // --log added: run and finish change first.
  EXPECT_THAT(write_past_a_size_limit(options_for(scandir.path(), /*log=*/true)), HasSubstr(": File too large"));
  EXPECT_EQ(entries(scandir / "work"), before);

  // Written with --log, its log/ then removed by hand: log/run, the only
  // file to write, needs log/ made again.
  ASSERT_EQ(write_service_dir(options_for(scandir.path(), /*log=*/true)), WriteResult::updated);
  fs::remove_all(scandir / "work/log");
  before = entries(scandir / "work");
  EXPECT_THAT(write_past_a_size_limit(options_for(scandir.path(), /*log=*/true)), HasSubstr(": File too large"));
  EXPECT_EQ(entries(scandir / "work"), before);
}

}  // namespace
}  // namespace vmwarden::s6
