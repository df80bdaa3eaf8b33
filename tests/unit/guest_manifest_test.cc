// The launch manifest shared by `vmwarden run` and the guest agent.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "vm-launcher/guest_manifest.h"

namespace vmwarden::guest {
namespace {

using ::testing::HasSubstr;

Manifest sample() {
  Manifest m;
  m.uid = 1879048200;
  m.gid = 1879048200;
  m.home = "/var/lib/vmwarden/runs/run-1/scratch";
  m.program = "sh";
  m.args = {"-c", "echo 'two words' > $HOME/x; exit 7", ""};
  m.env = {"LANG=C.UTF-8", "EMPTY="};
  m.mounts = {{"ro0", "/home/u/docs", true}, {"rw0", "/home/u/out", false}};
  m.store = {"/nix/store/abc-hello"};
  m.store_lib = true;
  m.report_tag = "vmwarden-report";
  m.grace_s = 27;
  return m;
}

TEST(GuestManifest, RoundTrips) {
  std::string error;
  auto parsed = parse_manifest(write_manifest(sample()), error);
  ASSERT_TRUE(parsed) << error;
  const Manifest& m = *parsed;
  EXPECT_EQ(m.uid, 1879048200u);
  EXPECT_EQ(m.home, sample().home);
  EXPECT_EQ(m.args, sample().args) << "arguments keep spaces, quotes and emptiness";
  EXPECT_EQ(m.env, sample().env);
  ASSERT_EQ(m.mounts.size(), 2u);
  EXPECT_TRUE(m.mounts[0].readonly);
  EXPECT_FALSE(m.mounts[1].readonly);
  EXPECT_EQ(m.mounts[1].path, "/home/u/out");
  EXPECT_EQ(m.store, sample().store);
  EXPECT_TRUE(m.store_lib);
  EXPECT_EQ(m.report_tag, "vmwarden-report");
  EXPECT_EQ(m.grace_s, 27u);
}

// The writer says version 2 (which has `grace`); the parser still reads a
// version 1 manifest.
TEST(GuestManifest, VersionOneIsStillRead) {
  EXPECT_EQ(write_manifest(sample()).substr(0, 10), "version 2\n");
  std::string error;
  auto parsed = parse_manifest("version 1\nuid 5\ngid 5\nprogram sh\n", error);
  ASSERT_TRUE(parsed) << error;
  EXPECT_EQ(parsed->grace_s, 0u);
}

TEST(GuestManifest, WriterRefusesWhatCannotBeWritten) {
  auto refuses = [](auto change) {
    Manifest m = sample();
    change(m);
    EXPECT_THROW(write_manifest(m), std::invalid_argument);
  };
  refuses([](Manifest& m) { m.args.push_back("line\nbreak"); });
  refuses([](Manifest& m) { m.mounts[0].path = "relative/path"; });
  refuses([](Manifest& m) { m.mounts[0].path = "/a/../etc"; });
  refuses([](Manifest& m) { m.mounts[0].tag = "bad tag"; });
  refuses([](Manifest& m) { m.env.push_back("NOEQUALS"); });
  refuses([](Manifest& m) { m.program.clear(); });
  refuses([](Manifest& m) { m.user = "a:b"; });
}

TEST(GuestManifest, ParserNamesTheLineOfEachProblem) {
  struct Case {
    std::string text, message;
  };
  const std::string head = "version 1\nuid 5\ngid 5\nprogram sh\n";
  for (const Case& bad : std::vector<Case>{
           {"", "empty manifest"},
           {"uid 5\n", "line 1: the first line must be"},
           {"version 3\n", "unsupported version 3 (this agent reads 1 and 2; rebuild the guest image"},
           {"version 1\nuid -1\n", "line 2: bad uid"},
           {"version 1\nuid 99999999999\n", "bad uid"},
           {head + "mount t0 rw relative\n", "line 5: mount path must be absolute"},
           {head + "mount t0 rx /a\n", "access must be ro or rw"},
           {head + "mount bad,tag ro /a\n", "bad tag"},
           {head + "store /a/../b\n", "store path must be absolute"},
           {head + "env =x\n", "env wants KEY=VALUE"},
           {head + "frobnicate yes\n", "unknown directive \"frobnicate\""},
           {head + "grace 86401\n", "line 5: grace wants seconds from 0 to 86400"},
           {head + "grace soon\n", "grace wants seconds"},
           {"version 1\nuid 5\ngid 5\n", "uid, gid and program are required"},
           {head + "arg no newline at the end", "the last line has no newline"},
       }) {
    std::string error;
    EXPECT_FALSE(parse_manifest(bad.text, error)) << bad.text;
    EXPECT_THAT(error, HasSubstr(bad.message)) << bad.text;
  }
}

}  // namespace
}  // namespace vmwarden::guest
