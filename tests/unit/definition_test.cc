// Every rejection rule of the VM definition parser, with the exact position
// it reports, and the shipped examples.

#include <fmt/core.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <future>

#include "tests/support/support.h"
#include "vm-launcher/definition.h"

namespace vmwarden::vm {
namespace {

using vmwarden::testing::TempDir;
using vmwarden::testing::write_file;

const CheckOptions kSyntaxOnly{.check_filesystem = false};

// The smallest valid VM, to which each test adds one thing.
constexpr std::string_view kMinimal = "vmm = \"qemu\"\nkernel = \"/boot/vmlinuz\"\n";

ParseResult parse(std::string_view text, const std::string& file = "vm.toml",
                  const CheckOptions& options = kSyntaxOnly) {
  return parse_definition(text, file, options);
}

// Asserts exactly one error, at line:col, whose message contains `needle`.
void expect_one_error(const ParseResult& result, std::uint32_t line, std::uint32_t column,
                      std::string_view needle) {
  ASSERT_EQ(result.errors.size(), 1u) << [&] {
    std::string all;
    for (const auto& e : result.errors) all += e.to_string() + "\n";
    return all;
  }();
  const Diagnostic& error = result.errors.front();
  EXPECT_EQ(error.line, line) << error.to_string();
  EXPECT_EQ(error.column, column) << error.to_string();
  EXPECT_NE(error.message.find(needle), std::string::npos)
      << "expected \"" << needle << "\" in: " << error.to_string();
  EXPECT_FALSE(result.definition.has_value());
}

TEST(Definition, MinimalVmGetsDefaults) {
  ParseResult result = parse(kMinimal, "/etc/vmwarden/vms/work.toml");
  ASSERT_TRUE(result.ok()) << result.errors.front().to_string();
  const Definition& d = *result.definition;
  EXPECT_EQ(d.name, "work");
  EXPECT_EQ(d.vmm, Vmm::qemu);
  EXPECT_EQ(d.kernel, "/boot/vmlinuz");
  EXPECT_EQ(d.memory_mib, 512u);
  EXPECT_EQ(d.cpus, 1u);
  EXPECT_EQ(d.shutdown_timeout_s, 30u);
  EXPECT_TRUE(d.uid_alias.empty());
  EXPECT_EQ(d.landlock, LandlockMode::required);
  EXPECT_EQ(d.seccomp, SeccompMode::kill);
  EXPECT_FALSE(d.network);
}

TEST(Definition, FullVmIsParsedIntoTheValueType) {
  ParseResult result = parse(R"(vmm = "crosvm"
kernel = "/k/vmlinuz"
initramfs = "/k/initrd.img"
cmdline = "console=ttyS0 quiet"
memory_mib = 1024
cpus = 2
shutdown_timeout_s = 7
[uid]
alias = "work"
[[disk]]
path = "/d/root.img"
[[disk]]
path = "/d/data.img"
readonly = false
[[share]]
tag = "home"
path = "/home/u/vm/"
access = "rw"
[[share]]
tag = "docs"
path = "/home/u/docs"
[display]
wayland = true
[sandbox]
landlock = "best-effort"
seccomp = "log"
network = false
)");
  ASSERT_TRUE(result.ok()) << result.errors.front().to_string();
  const Definition& d = *result.definition;
  EXPECT_EQ(d.vmm, Vmm::crosvm);
  EXPECT_EQ(d.initramfs, "/k/initrd.img");
  EXPECT_EQ(d.cmdline, "console=ttyS0 quiet");
  EXPECT_EQ(d.memory_mib, 1024u);
  EXPECT_EQ(d.cpus, 2u);
  EXPECT_EQ(d.shutdown_timeout_s, 7u);
  EXPECT_EQ(d.uid_alias, "work");
  ASSERT_EQ(d.disks.size(), 2u);
  EXPECT_TRUE(d.disks[0].readonly);  // read-only unless said otherwise
  EXPECT_FALSE(d.disks[1].readonly);
  ASSERT_EQ(d.shares.size(), 2u);
  EXPECT_EQ(d.shares[0].path, "/home/u/vm");  // trailing slash dropped
  EXPECT_EQ(d.shares[0].access, Access::rw);
  EXPECT_EQ(d.shares[1].access, Access::ro);  // read-only unless said otherwise
  EXPECT_TRUE(d.wayland);
  EXPECT_EQ(d.landlock, LandlockMode::best_effort);
  EXPECT_EQ(d.seccomp, SeccompMode::log);
  EXPECT_FALSE(d.network);  // true needs qemu: NetworkNeedsQemu
}

TEST(Definition, PlainCommand) {
  ParseResult result = parse("command = [\"/usr/bin/dbus-daemon\", \"--session\"]\n");
  ASSERT_TRUE(result.ok()) << result.errors.front().to_string();
  EXPECT_TRUE(result.definition->is_command());
  EXPECT_EQ(result.definition->command, (std::vector<std::string>{"/usr/bin/dbus-daemon", "--session"}));
}

// --- [environment] (plain commands) ------------------------------------------

TEST(Definition, ACommandInheritsVmwardensEnvironmentByDefault) {
  ParseResult result = parse("command = [\"/bin/true\"]\n");
  ASSERT_TRUE(result.ok());
  EXPECT_TRUE(result.definition->environment.inherit);
  EXPECT_TRUE(result.definition->environment.unset.empty());
  EXPECT_TRUE(result.definition->environment.set.empty());
}

TEST(Definition, EnvironmentTableIsParsed) {
  ParseResult result = parse(
      "command = [\"/bin/true\"]\n[environment]\nunset = [\"DISPLAY\", \"SSH_AUTH_SOCK\"]\n"
      "set = { LANG = \"C.UTF-8\", EMPTY = \"\", \"lower.case-name\" = \"a=b\\nc\" }\n");
  ASSERT_TRUE(result.ok()) << result.errors.front().to_string();
  const EnvironmentRule& rule = result.definition->environment;
  EXPECT_TRUE(rule.inherit);
  EXPECT_EQ(rule.unset, (std::vector<std::string>{"DISPLAY", "SSH_AUTH_SOCK"}));
  // A value may hold '=' and a newline; the names come sorted (a TOML table
  // has no order, and none is needed: each name is set once).
  EXPECT_EQ(rule.set, (std::vector<std::string>{"EMPTY=", "LANG=C.UTF-8", "lower.case-name=a=b\nc"}));

  result = parse("command = [\"/bin/true\"]\n[environment]\ninherit = false\nset = { PATH = \"/usr/bin\" }\n");
  ASSERT_TRUE(result.ok()) << result.errors.front().to_string();
  EXPECT_FALSE(result.definition->environment.inherit);
  EXPECT_EQ(result.definition->environment.set, (std::vector<std::string>{"PATH=/usr/bin"}));
}

TEST(Definition, EnvironmentMistakesAreReportedWhereTheyAre) {
  const std::string command = "command = [\"/bin/true\"]\n[environment]\n";
  struct Case {
    std::string table;
    std::uint32_t line, column;
    std::string_view message;
  };
  const std::vector<Case> cases = {
      {"inherits = false\n", 3, 1, "did you mean \"inherit\"?"},
      {"inherit = \"no\"\n", 3, 11, "environment.inherit must be true or false"},
      {"inherit = false\nunset = [\"HOME\"]\n", 4, 9, "environment.unset has no effect with inherit = false"},
      {"unset = \"HOME\"\n", 3, 9, "environment.unset must be an array of names"},
      {"unset = [\"HOME\", 3]\n", 3, 18, "each element of environment.unset must be a string, not an integer"},
      {"unset = [\"HOME\", \"HOME\"]\n", 3, 18, "environment.unset lists HOME twice (first at line 3)"},
      {"unset = [\"A=B\"]\n", 3, 10, "a variable's name cannot contain '='"},
      {"unset = [\"\"]\n", 3, 10, "a variable's name cannot be empty"},
      {"set = { \"A=B\" = \"x\" }\n", 3, 9, "environment.set \"A=B\": a variable's name cannot contain '='"},
      {"set = { \"\" = \"x\" }\n", 3, 9, "a variable's name cannot be empty"},
      {"set = { \"A\\u0000B\" = \"x\" }\n", 3, 9, "environment.set \"A\\x00B\": a variable's name cannot contain a NUL character"},
      {"set = { \"A\\u001bB\" = \"x\" }\n", 3, 9, "environment.set \"A\\x1bB\": a variable's name cannot contain a control character"},
      {"set = { A = \"x\\u0000y\" }\n", 3, 13, "environment.set.A cannot contain a NUL character"},
      {"set = { A = 1 }\n", 3, 13, "environment.set.A must be a string, not an integer"},
      {"set = [\"A=1\"]\n", 3, 7, "environment.set must be a table of names and values"},
      {"unset = [\"LANG\"]\nset = { LANG = \"C\" }\n", 4, 9, "LANG is both unset (line 3) and set: drop it from unset"},
      {"set = { A = \"" + std::string(32 * 4096, 'x') + "\" }\n", 3, 13, "environment.set.A is too long"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.table.substr(0, 60));
    expect_one_error(parse(command + c.table), c.line, c.column, c.message);
  }
  std::string many = command + "[environment.set]\n";
  for (int i = 0; i <= 256; ++i) many += fmt::format("V{} = \"x\"\n", i);
  expect_one_error(parse(many), 3, 1, "environment.set has 257 variables; at most 256");
  expect_one_error(parse(std::string(kMinimal) + "[environment]\ninherit = false\n"), 3, 1,
                   "environment applies only to a plain command");
}

// --- unknown keys ----------------------------------------------------------

TEST(Definition, UnknownTopLevelKeySuggestsTheClosest) {
  expect_one_error(parse(std::string(kMinimal) + "memroy_mib = 512\n"), 3, 1,
                   "unknown key \"memroy_mib\"; did you mean \"memory_mib\"?");
}

TEST(Definition, UnknownKeyInSectionSuggestsTheClosest) {
  expect_one_error(parse(std::string(kMinimal) + "[sandbox]\n  landlok = \"required\"\n"), 4, 3,
                   "unknown key \"landlok\" in [sandbox]; did you mean \"landlock\"?");
}

TEST(Definition, UnknownKeyFarFromAnyListsTheKnownOnes) {
  expect_one_error(parse(std::string(kMinimal) + "[uid]\nfrobnicate = 1\n"), 4, 1,
                   "unknown key \"frobnicate\" in [uid]; known keys are \"alias\"");
}

// What the file wrote is quoted with its control characters escaped (\xNN),
// as paths and tags are, so that an error cannot drive the terminal.
// toml++ recurses once per part of a dotted key: 150,000 parts (300 KB, in
// a key or a table header) overflowed the stack (SIGSEGV). Refused before
// parsing, at the key. Dots inside a multi-line string or a quoted key part
// are not key parts.
TEST(Definition, AKeyOfThousandsOfDottedPartsIsRefusedNotAStackOverflow) {
  std::string dotted;
  for (int i = 0; i < 150000; ++i) dotted += "a.";
  expect_one_error(parse(std::string(kMinimal) + "  " + dotted + "b = 1\n"), 3, 3, "a key of more than 64 dotted parts");
  expect_one_error(parse(std::string(kMinimal) + "[" + dotted + "b]\n"), 3, 1, "a key of more than 64 dotted parts");
  std::string many_dots(200, '.');
  ParseResult fine = parse(std::string(kMinimal) + "cmdline = \"\"\"\n" + many_dots + " = x\n\"\"\"\n");
  for (const Diagnostic& error : fine.errors)
    EXPECT_EQ(error.message.find("dotted parts"), std::string::npos) << "inside a multi-line string: " << error.to_string();
  ParseResult quoted = parse(std::string(kMinimal) + "\"" + many_dots + "\" = 1\n");
  ASSERT_EQ(quoted.errors.size(), 1u);
  EXPECT_EQ(quoted.errors.front().message.find("dotted parts"), std::string::npos) << "an unknown key, not a deep one";
}

// The file's own name too: it is printed at the start of every diagnostic.
TEST(Definition, ControlCharactersInTheFileNameAreEscaped) {
  ParseResult result = parse(kMinimal, "x\x1b[31m.toml");
  ASSERT_FALSE(result.errors.empty());
  std::string text = result.errors.front().to_string();
  EXPECT_EQ(text.find('\x1b'), std::string::npos) << text;
  EXPECT_NE(text.find("x\\x1b[31m.toml:"), std::string::npos) << text;
}

TEST(Definition, ControlCharactersInKeysAndValuesAreEscaped) {
  expect_one_error(parse(std::string(kMinimal) + "\"\\u001b[31m\" = 1\n"), 3, 1,
                   "unknown key \"\\x1b[31m\"; known keys are");
  // C1 controls (U+009B, the 8-bit CSI) and bidirectional overrides (U+202E)
  // too, byte by byte; other characters pass.
  expect_one_error(parse(std::string(kMinimal) + "\"a\\u009b31m\\u202eb\u00e9\" = 1\n"), 3, 1,
                   "unknown key \"a\\xc2\\x9b31m\\xe2\\x80\\xaeb\u00e9\"; known keys are");
  // The line separator (a line break to editors and JavaScript), the Arabic
  // letter mark and the other invisible format characters too.
  expect_one_error(parse(std::string(kMinimal) + "\"a\\u2028b\\u061cc\\ufeffd\\U000E0041\" = 1\n"), 3, 1,
                   "unknown key \"a\\xe2\\x80\\xa8b\\xd8\\x9cc\\xef\\xbb\\xbfd\\xf3\\xa0\\x81\\x81\"; known keys are");
  expect_one_error(parse("vmm = \"qemu\\u0000\"\nkernel = \"/k\"\n"), 1, 7,
                   "vmm = \"qemu\\x00\" is not one of \"qemu\"");
  expect_one_error(parse(std::string(kMinimal) + "[sandbox]\nseccomp = \"kill\\u001b]0;x\\u0007\"\n"), 4, 11,
                   "sandbox.seccomp = \"kill\\x1b]0;x\\x07\" is not one of");
  expect_one_error(parse("command = [\"bin/\\u001b[2J\"]\n"), 1, 12, "command program \"bin/\\x1b[2J\" must be an absolute");
  expect_one_error(parse("command = [\"/a/../\\u001b[2J\"]\n"), 1, 12, "\"/a/../\\x1b[2J\" must be written without");
  expect_one_error(parse("command = [\"/tmp/\\u001b[2J\"]\n"), 1, 12, "/tmp/\\x1b[2J lies under /tmp");
  expect_one_error(parse("command = [\"/nonexistent/\\u001b[2J\"]\n", "vm.toml", {.check_filesystem = true}), 1, 12,
                   "/nonexistent/\\x1b[2J does not exist");
  // A path passes with them (they are not ASCII controls), so the messages
  // that quote a valid path escape it too: a trailing '/', a disk listed
  // twice, a directory shared twice.
  expect_one_error(parse("vmm = \"qemu\"\nkernel = \"/k\\u009b2J\\u202e/\"\n"), 2, 10,
                   "kernel: \"/k\\xc2\\x9b2J\\xe2\\x80\\xae/\" ends with '/'");
  expect_one_error(parse(std::string(kMinimal) + "[[disk]]\npath = \"/d\\u202e\"\n[[disk]]\npath = \"/d\\u202e\"\n"), 6, 8,
                   "disk /d\\xe2\\x80\\xae is already listed at line 4");
  expect_one_error(parse(std::string(kMinimal) + "[[share]]\ntag = \"a\"\npath = \"/s\\u009b\"\n[[share]]\ntag = "
                         "\"b\"\npath = \"/s\\u009b/\"\n"),
                   8, 8, "/s\\xc2\\x9b is already shared at line 5");
}

TEST(Definition, UnknownKeyInShare) {
  expect_one_error(parse(std::string(kMinimal) + "[[share]]\ntag = \"a\"\npath = \"/a\"\nacess = \"ro\"\n"),
                   6, 1, "did you mean \"access\"?");
}

TEST(Definition, UnknownSection) {
  expect_one_error(parse(std::string(kMinimal) + "[sandbx]\n"), 3, 2, "did you mean \"sandbox\"?");
}

// --- types and ranges ------------------------------------------------------

TEST(Definition, WrongTypeIsReportedAtTheValue) {
  expect_one_error(parse(std::string(kMinimal) + "memory_mib = \"512\"\n"), 3, 14,
                   "memory_mib must be an integer, not a string");
}

TEST(Definition, FloatWhereIntegerExpected) {
  expect_one_error(parse(std::string(kMinimal) + "cpus = 1.5\n"), 3, 8,
                   "cpus must be an integer, not a floating-point number");
}

TEST(Definition, WrongTypeForBoolean) {
  expect_one_error(parse(std::string(kMinimal) + "[sandbox]\nnetwork = \"no\"\n"), 4, 11,
                   "sandbox.network must be true or false, not a string");
}

TEST(Definition, WrongTypeForSection) {
  expect_one_error(parse(std::string(kMinimal) + "sandbox = 3\n"), 3, 11, "sandbox must be a table");
}

TEST(Definition, ShareMustBeArrayOfTables) {
  expect_one_error(parse(std::string(kMinimal) + "share = \"home\"\n"), 3, 9,
                   "share must be an array of tables ([[share]])");
}

struct RangeCase {
  std::string line;
  std::uint32_t column;
  std::string message;
};

class DefinitionRange : public ::testing::TestWithParam<RangeCase> {};

TEST_P(DefinitionRange, OutOfRangeNumbersAreRejected) {
  const RangeCase& c = GetParam();
  expect_one_error(parse(std::string(kMinimal) + c.line + "\n"), 3, c.column, c.message);
}

INSTANTIATE_TEST_SUITE_P(
    All, DefinitionRange,
    ::testing::Values(RangeCase{"memory_mib = 16", 14, "memory_mib = 16 is out of range: use 32 to 1048576"},
                      RangeCase{"memory_mib = 2000000", 14, "out of range: use 32 to 1048576"},
                      RangeCase{"memory_mib = -1", 14, "out of range"},
                      RangeCase{"cpus = 0", 8, "cpus = 0 is out of range: use 1 to 255"},
                      RangeCase{"cpus = 256", 8, "cpus = 256 is out of range"},
                      RangeCase{"shutdown_timeout_s = 0", 22, "shutdown_timeout_s = 0 is out of range: use 1 to 3600"},
                      RangeCase{"shutdown_timeout_s = 3601", 22, "out of range: use 1 to 3600"}));

// --- paths -----------------------------------------------------------------

struct PathCase {
  std::string path;
  std::string message;
};

class DefinitionBadPath : public ::testing::TestWithParam<PathCase> {};

TEST_P(DefinitionBadPath, KernelPathIsRejected) {
  const PathCase& c = GetParam();
  expect_one_error(parse("vmm = \"qemu\"\nkernel = \"" + c.path + "\"\n"), 2, 10, c.message);
}

TEST_P(DefinitionBadPath, SharePathIsRejected) {
  const PathCase& c = GetParam();
  expect_one_error(parse(std::string(kMinimal) + "[[share]]\ntag = \"t\"\npath = \"" + c.path + "\"\n"), 5, 8,
                   c.message);
}

TEST_P(DefinitionBadPath, DiskPathIsRejected) {
  const PathCase& c = GetParam();
  expect_one_error(parse(std::string(kMinimal) + "[[disk]]\n  path = \"" + c.path + "\"\n"), 4, 10,
                   c.message);
}

INSTANTIATE_TEST_SUITE_P(
    All, DefinitionBadPath,
    ::testing::Values(PathCase{"vmlinuz", "is relative: give an absolute path"},
                      PathCase{"", "path is empty"},
                      PathCase{"/a/../etc/shadow", "has a \"..\" component"},
                      PathCase{"/a/./b", "has a \".\" component"},
                      PathCase{"/a//b", "empty component"},
                      PathCase{"/img/root.img,ro=false", "contains ','"},
                      PathCase{"/img/a:b", "contains ':'"},
                      PathCase{"/img/a=b", "contains '='"},
                      PathCase{"/img/a\\\"b\\\".img", "contains '\"', which a VMM's option parser would read as quoting"},
                      PathCase{"/img/a'b", "contains '''"},
                      PathCase{"/img/a[b]", "contains '['"},
                      PathCase{"/img/ab]", "contains ']'"},
                      PathCase{"/img/disk.img ", "ends with a space"},
                      PathCase{"/img/a\\u0001b", "contains a control character"},
                      PathCase{"/img/a\\nb", "contains a control character"}));

TEST(Definition, PathsUnderThePrivateTmpfsAreRefused) {
  expect_one_error(parse(std::string(kMinimal) + "[[share]]\ntag = \"t\"\npath = \"/tmp/x\"\n"), 5, 8,
                   "share.path: /tmp/x lies under /tmp, which every service of the sandbox sees as its own empty tmpfs");
  expect_one_error(parse("vmm = \"qemu\"\nkernel = \"/dev/shm/k\"\n"), 2, 10, "lies under /dev/shm");
  EXPECT_TRUE(parse(std::string(kMinimal) + "[[share]]\ntag = \"t\"\npath = \"/tmpfiles\"\n").ok());
}

TEST(Definition, SharingTheRootIsRefused) {
  expect_one_error(parse(std::string(kMinimal) + "[[share]]\ntag = \"t\"\npath = \"/\"\n"), 5, 8,
                   "would share the whole host");
}

// --- tags --------------------------------------------------------------------

class DefinitionBadTag : public ::testing::TestWithParam<std::string> {};

TEST_P(DefinitionBadTag, IsRejectedAtTheTag) {
  expect_one_error(parse(std::string(kMinimal) + "[[share]]\ntag = \"" + GetParam() + "\"\npath = \"/a\"\n"), 4,
                   7, "is not valid: use 1 to 36 characters from A-Z, a-z, 0-9, '_', '-'");
}

INSTANTIATE_TEST_SUITE_P(All, DefinitionBadTag,
                         ::testing::Values("", "home dir", "home,ro", "a:b", "a=b", "tag\\u0007",
                                           std::string(37, 'x'), "naïve"));

TEST(Definition, TagOf36CharactersIsAccepted) {
  ParseResult result =
      parse(std::string(kMinimal) + "[[share]]\ntag = \"" + std::string(36, 'x') + "\"\npath = \"/a\"\n");
  EXPECT_TRUE(result.ok());
}

// toml++ refuses a key or table given twice without saying where the first
// one is; the message adds its line.
TEST(Definition, AKeyOrTableGivenTwiceNamesTheFirstLine) {
  expect_one_error(parse(std::string(kMinimal) + "cpus = 2\ncpus = 3\n"), 4, 8,
                   "cannot redefine existing integer 'cpus' (first at line 3): give each key and table once");
  expect_one_error(parse(std::string(kMinimal) + "[sandbox]\nseccomp = \"log\"\n[sandbox]\n"), 5, 1,
                   "cannot redefine existing table 'sandbox' (first at line 3)");
  // In the second [[share]], not the first one's tag.
  expect_one_error(parse(std::string(kMinimal) + "[[share]]\ntag = \"a\"\n[[share]]\ntag = \"b\"\ntag = \"c\"\n"),
                   7, 7, "cannot redefine existing string 'tag' (first at line 6)");
  expect_one_error(parse(std::string(kMinimal) + "sandbox.seccomp = \"log\"\n[sandbox]\n"), 4, 1,
                   "cannot redefine existing table 'sandbox' (first at line 3)");
  // The whole dotted path decides, not its last part: network is also a key
  // of [environment.set], later than [sandbox]'s.
  expect_one_error(parse("command = [\"/bin/true\"]\n[sandbox]\nnetwork = false\n[environment.set]\nnetwork = \"x\"\n"
                         "[sandbox.network]\n"),
                   6, 1, "cannot redefine existing boolean 'sandbox.network' as table (first at line 3)");
}

TEST(Definition, DuplicateTagIsReportedAtTheSecond) {
  expect_one_error(parse(std::string(kMinimal) +
                         "[[share]]\ntag = \"home\"\npath = \"/a\"\n[[share]]\ntag = \"home\"\npath = \"/b\"\n"),
                   7, 7, "duplicate share tag \"home\" (first used at line 4)");
}

TEST(Definition, AFileNamedWithATrailingSlashIsAnError) {
  expect_one_error(parse("vmm = \"qemu\"\nkernel = \"/boot/vmlinuz/\"\n"), 2, 10, "ends with '/', but must name a file");
}

TEST(Definition, ADirectorySharedTwiceIsReportedAtTheSecond) {
  expect_one_error(parse(std::string(kMinimal) + "[[share]]\ntag = \"a\"\npath = \"/srv/x\"\n[[share]]\ntag = "
                         "\"b\"\npath = \"/srv/x/\"\naccess = \"rw\"\n"),
                   8, 8, "/srv/x is already shared at line 5");
}

TEST(Definition, ShareWithoutTag) {
  expect_one_error(parse(std::string(kMinimal) + "[[share]]\npath = \"/a\"\n"), 3, 1, "[[share]] needs a tag");
}

TEST(Definition, DuplicateDisk) {
  expect_one_error(parse(std::string(kMinimal) + "[[disk]]\npath = \"/d\"\n[[disk]]\npath = \"/d\"\n"), 6, 8,
                   "disk /d is already listed at line 4");
}

// --- names -------------------------------------------------------------------

class DefinitionBadName : public ::testing::TestWithParam<std::string> {};

TEST_P(DefinitionBadName, IsReportedAtTheStartOfTheFile) {
  expect_one_error(parse(kMinimal, "/etc/vmwarden/vms/" + GetParam() + ".toml"), 1, 1, "VM name");
}

INSTANTIATE_TEST_SUITE_P(All, DefinitionBadName,
                         ::testing::Values("Work", "-work", ".work", "_work", "wo rk", "wo:rk",
                                           std::string(65, 'a')));

TEST(Definition, NameOf64CharactersIsAccepted) {
  EXPECT_TRUE(parse(kMinimal, std::string(64, 'a') + ".toml").ok());
  EXPECT_TRUE(parse(kMinimal, "a.b-c_9.toml").ok());
}

TEST(Definition, FileMustEndInToml) {
  expect_one_error(parse(kMinimal, "/etc/vmwarden/vms/work.conf"), 1, 1, "must be named NAME.toml");
}

TEST(Definition, BadAlias) {
  expect_one_error(parse(std::string(kMinimal) + "[uid]\nalias = \"Work Stuff\"\n"), 4, 9, "UID alias");
  // The registry reads a --uid starting with a digit as a UID number.
  expect_one_error(parse(std::string(kMinimal) + "[uid]\nalias = \"1abc\"\n"), 4, 9, "lowercase letter");
}

// --- choices and structure -------------------------------------------------------

TEST(Definition, UnknownVmmSuggestsTheClosest) {
  expect_one_error(parse("vmm = \"qemy\"\nkernel = \"/k\"\n"), 1, 7,
                   "vmm = \"qemy\" is not one of \"qemu\", \"crosvm\", \"cloud-hypervisor\"; did you mean \"qemu\"?");
}

TEST(Definition, UnknownAccess) {
  expect_one_error(parse(std::string(kMinimal) + "[[share]]\ntag = \"t\"\npath = \"/a\"\naccess = \"rwx\"\n"), 6,
                   10, "share.access = \"rwx\" is not one of \"ro\", \"rw\"");
}

TEST(Definition, NeitherVmmNorCommand) {
  expect_one_error(parse("kernel = \"/k\"\n"), 1, 1, "needs vmm = ");
}

TEST(Definition, BothVmmAndCommand) {
  expect_one_error(parse("vmm = \"qemu\"\nkernel = \"/k\"\ncommand = [\"/bin/true\"]\n"), 3, 11,
                   "vmm and command exclude each other");
  // Only the conflict: neither the VM's missing kernel nor the command's
  // relative program, which would follow from reading one side.
  expect_one_error(parse("vmm = \"qemu\"\ncommand = [\"true\"]\n"), 2, 11, "vmm and command exclude each other");
}

TEST(Definition, VmWithoutKernel) {
  expect_one_error(parse("vmm = \"qemu\"\n"), 1, 1, "missing key \"kernel\"");
}

TEST(Definition, CommandRejectsVmOnlyKeys) {
  expect_one_error(parse("command = [\"/bin/true\"]\nmemory_mib = 64\n"), 2, 14,
                   "memory_mib applies only to a VM");
}

TEST(Definition, CommandMustBeAbsolute) {
  expect_one_error(parse("command = [\"true\"]\n"), 1, 12, "must be an absolute path");
}

// A disk and a share are each a device of the VM: more than a VM can hold
// is refused at the first table too many.
TEST(Definition, DisksAndSharesAreLimitedInNumber) {
  std::string text = "vmm = \"qemu\"\nkernel = \"/k\"\n";
  for (std::size_t i = 0; i <= kMaxDisks; ++i) text += fmt::format("[[disk]]\npath = \"/d{}\"\n", i);
  // Line 3 + 2 per table: the first table too many starts at 3 + 2 * kMaxDisks.
  expect_one_error(parse(text), static_cast<std::uint32_t>(3 + 2 * kMaxDisks), 1, "at most 8 [[disk]] tables");
  text = "command = [\"/bin/true\"]\n";
  for (std::size_t i = 0; i <= kMaxShares; ++i) text += fmt::format("[[share]]\ntag = \"t{0}\"\npath = \"/s{0}\"\n", i);
  expect_one_error(parse(text), static_cast<std::uint32_t>(2 + 3 * kMaxShares), 1, "at most 16 [[share]] tables");
  text.resize(text.rfind("[[share]]"));
  EXPECT_TRUE(parse(text).ok()) << "16 shares are fine";
}

// The sandbox's own empty /tmp and /dev/shm would hide it: refused where
// it is written, not when `supervise` fails to open it.
TEST(Definition, CommandMustNotLieWhereTheSandboxHidesIt) {
  expect_one_error(parse("command = [\"/tmp/tool\", \"x\"]\n"), 1, 12, "command: /tmp/tool lies under /tmp");
  expect_one_error(parse("command = [\"/dev/shm/tool\"]\n"), 1, 12, "lies under /dev/shm");
  expect_one_error(parse("command = [\"/\"]\n"), 1, 12, "is the root directory, not a program");
  for (const char* roundabout : {"//tmp/tool", "/./tmp/tool", "/usr/../tmp/tool", "/usr/bin/tool/"})
    expect_one_error(parse(fmt::format("command = [\"{}\"]\n", roundabout)), 1, 12,
                     "must be written without '.', '..' or empty components");
  EXPECT_TRUE(parse("command = [\"/usr/bin/a,b:c\"]\n").ok()) << "no VMM parses a command's path";
}

TEST(Definition, CommandMustNotBeEmpty) {
  expect_one_error(parse("command = []\n"), 1, 11, "command is empty");
}

TEST(Definition, CommandElementsAreStrings) {
  expect_one_error(parse("command = [\"/bin/echo\", 3]\n"), 1, 25, "each element of command must be a string");
}

TEST(Definition, NetworkNeedsQemu) {
  for (const char* vmm : {"crosvm", "cloud-hypervisor"}) {
    std::string text = fmt::format("vmm = \"{}\"\nkernel = \"/boot/vmlinuz\"\n[sandbox]\nnetwork = true\n", vmm);
    expect_one_error(parse(text), 4, 11, fmt::format("network = true needs a tap device with vmm = \"{}\"", vmm));
  }
  ParseResult qemu = parse(std::string(kMinimal) + "[sandbox]\nnetwork = true\n");
  ASSERT_TRUE(qemu.ok()) << qemu.errors.front().to_string();
  EXPECT_TRUE(qemu.definition->network);
}

TEST(Definition, CmdlineMustNotStartWithADash) {
  expect_one_error(parse(std::string(kMinimal) + "cmdline = \"-S console=ttyS0\"\n"), 3, 11,
                   "cmdline starts with '-'");
}

TEST(Definition, WaylandNeedsCrosvm) {
  expect_one_error(parse(std::string(kMinimal) + "[display]\nwayland = true\n"), 4, 11,
                   "display.wayland is supported only with vmm = \"crosvm\", not \"qemu\"");
}

TEST(Definition, CmdlineControlCharacter) {
  expect_one_error(parse(std::string(kMinimal) + "cmdline = \"a\\u0000b\"\n"), 3, 11,
                   "cmdline contains a control character");
}

TEST(Definition, InvalidTomlIsReportedWhereTheParserStopped) {
  ParseResult result = parse("vmm = \"qemu\"\nkernel = \n");
  ASSERT_EQ(result.errors.size(), 1u);
  EXPECT_EQ(result.errors[0].line, 2u);
  EXPECT_NE(result.errors[0].message.find("invalid TOML"), std::string::npos);
}

// Inputs that reach an internal precondition of toml++ 3.3 (found by the
// fuzzer); they must be ordinary errors, never an abort or undefined behaviour.
TEST(Definition, HeadersWithoutKeyAreErrorsNotCrashes) {
  struct Case {
    std::string text;
    std::uint32_t line, column;
  };
  for (const Case& c : {Case{"[#", 1, 1}, Case{"[[[1]]]", 1, 1}, Case{"[[=", 1, 1},
                        Case{"vmm = \"qemu\"\n  [ #x\n", 2, 3}}) {
    ParseResult result = parse(c.text);
    ASSERT_EQ(result.errors.size(), 1u) << c.text;
    EXPECT_EQ(result.errors[0].line, c.line) << c.text;
    EXPECT_EQ(result.errors[0].column, c.column) << c.text;
    EXPECT_NE(result.errors[0].message.find("invalid TOML"), std::string::npos) << c.text;
  }
}

// Non-ASCII characters outside strings reached undefined behaviour inside
// toml++ 3.3 (found by the fuzzer: U+01D9 after a key, U+031E after a
// number); they must be ordinary, positioned errors.
TEST(Definition, NonAsciiOutsideStringsIsAnError) {
  for (std::string text : {"networ\xc7\x99 = 1\n", "e=0\"\xcc\x9e\n", "cpus = 1\xc3\xa9\n",
                           "[\xc3\xa9]\n", "a = [1, \xef\xbb\xbf" "2]\n"}) {
    ParseResult result = parse(text);
    ASSERT_EQ(result.errors.size(), 1u) << text;
    EXPECT_EQ(result.errors[0].line, 1u) << text;
    EXPECT_NE(result.errors[0].message.find("invalid TOML"), std::string::npos) << result.errors[0].to_string();
  }
}

TEST(Definition, NonAsciiInStringsAndCommentsIsFine) {
  ParseResult result = parse(std::string(kMinimal) +
                             "# caf\xc3\xa9 \xc7\x99\n"
                             "cmdline = \"caf\xc3\xa9 \\\" \xc7\x99\"\n"
                             "[[share]]\ntag = 'x'\npath = '/home/caf\xc3\xa9'\n"
                             "[uid] # \xc7\x99\n");
  ASSERT_TRUE(result.ok()) << result.errors.front().to_string();
  EXPECT_EQ(result.definition->cmdline, "caf\xc3\xa9 \" \xc7\x99");
  EXPECT_EQ(result.definition->shares.at(0).path, "/home/caf\xc3\xa9");
  ParseResult multiline = parse("command = [\"/bin/x\", \"\"\"a\n\xc7\x99 \"\"\"\"]\n");
  ASSERT_TRUE(multiline.ok()) << multiline.errors.front().to_string();
  EXPECT_EQ(multiline.definition->command.at(1), "a\n\xc7\x99 \"");
}

TEST(Definition, AllErrorsAreReportedInFileOrder) {
  ParseResult result = parse("cpus = 0\nvmm = \"qemu\"\nkernel = \"rel\"\n[sandbox]\nseccomp = \"trap\"\n");
  ASSERT_EQ(result.errors.size(), 3u);
  EXPECT_EQ(result.errors[0].line, 1u);
  EXPECT_EQ(result.errors[1].line, 3u);
  EXPECT_EQ(result.errors[2].line, 5u);
  EXPECT_EQ(result.errors[2].to_string(),
            "vm.toml:5:11: error: sandbox.seccomp = \"trap\" is not one of \"kill\", \"log\"");
}

// --- the filesystem checks ---------------------------------------------------

class DefinitionFiles : public ::testing::Test {
 protected:
  void SetUp() override {
    write_file(dir / "vmlinuz", "kernel");
    write_file(dir / "initrd.img", "initrd");
    write_file(dir / "root.img", "disk");
    std::filesystem::create_directory(dir / "share");
  }
  std::string vm(std::string_view kernel, std::string_view disk, std::string_view share) {
    return fmt::format("vmm = \"qemu\"\nkernel = \"{}\"\ninitramfs = \"{}\"\n[[disk]]\npath = \"{}\"\n"
                       "[[share]]\ntag = \"s\"\npath = \"{}\"\n",
                       kernel, (dir / "initrd.img").string(), disk, share);
  }
  TempDir dir;
  const CheckOptions full{.check_filesystem = true};
};

TEST_F(DefinitionFiles, ExistingFilesPass) {
  ParseResult result = parse(vm((dir / "vmlinuz").string(), (dir / "root.img").string(), (dir / "share").string()),
                             "vm.toml", full);
  EXPECT_TRUE(result.ok()) << result.errors.front().to_string();
}

TEST_F(DefinitionFiles, MissingKernel) {
  expect_one_error(parse(vm((dir / "nope").string(), (dir / "root.img").string(), (dir / "share").string()),
                         "vm.toml", full),
                   2, 10, "does not exist");
}

TEST_F(DefinitionFiles, KernelThatIsADirectory) {
  expect_one_error(parse(vm((dir / "share").string(), (dir / "root.img").string(), (dir / "share").string()),
                         "vm.toml", full),
                   2, 10, "is not a regular file");
}

TEST_F(DefinitionFiles, MissingDisk) {
  expect_one_error(parse(vm((dir / "vmlinuz").string(), (dir / "gone.img").string(), (dir / "share").string()),
                         "vm.toml", full),
                   5, 8, "does not exist");
}

TEST_F(DefinitionFiles, ShareThatIsAFile) {
  expect_one_error(parse(vm((dir / "vmlinuz").string(), (dir / "root.img").string(), (dir / "vmlinuz").string()),
                         "vm.toml", full),
                   8, 8, "is not a directory");
}

// `vmwarden check` and `audit` ask the launcher whether it would refuse a
// share (vm::share_refusal()): its answer is an error at the share's path.
// Asked only for a share that exists, and not with --syntax-only.
TEST_F(DefinitionFiles, AShareTheLauncherWouldRefuseIsAnErrorAtItsPath) {
  std::vector<std::filesystem::path> asked;
  CheckOptions refusing = full;
  refusing.share_refusal = [&asked](const std::filesystem::path& tree) -> std::optional<std::string> {
    asked.push_back(tree);
    return tree.string() + " holds the UID registry";
  };
  std::string text = vm((dir / "vmlinuz").string(), (dir / "root.img").string(), (dir / "share").string());
  expect_one_error(parse(text, "vm.toml", refusing), 8, 8,
                   "share.path: " + (dir / "share").string() + " holds the UID registry");
  EXPECT_EQ(asked, std::vector<std::filesystem::path>{dir / "share"});
  refusing.check_filesystem = false;
  EXPECT_TRUE(parse(text, "vm.toml", refusing).ok());
  refusing.check_filesystem = true;
  expect_one_error(parse(vm((dir / "vmlinuz").string(), (dir / "root.img").string(), (dir / "gone").string()),
                         "vm.toml", refusing),
                   8, 8, "does not exist");
  EXPECT_EQ(asked.size(), 1u);
}

TEST_F(DefinitionFiles, MissingInitramfs) {
  std::filesystem::remove(dir / "initrd.img");
  expect_one_error(parse(vm((dir / "vmlinuz").string(), (dir / "root.img").string(), (dir / "share").string()),
                         "vm.toml", full),
                   3, 13, "does not exist");
}

TEST_F(DefinitionFiles, SyntaxOnlySkipsTheFilesystem) {
  EXPECT_TRUE(parse(vm("/nonexistent/k", "/nonexistent/d", "/nonexistent/s"), "vm.toml", kSyntaxOnly).ok());
}

TEST_F(DefinitionFiles, CommandMustBeExecutable) {
  write_file(dir / "script", "#!/bin/sh\n", 0644);
  expect_one_error(parse("command = [\"" + (dir / "script").string() + "\"]\n", "vm.toml", full), 1, 12,
                   "is not an executable file");
}

// A script whose #! interpreter is missing would fail its execve with
// ENOENT, as if the script were missing: refused here, as exec refuses it.
TEST_F(DefinitionFiles, ACommandScriptsInterpreterMustExist) {
  write_file(dir / "script", "#!/nonexistent/interpreter\n", 0755);
  expect_one_error(parse("command = [\"" + (dir / "script").string() + "\"]\n", "vm.toml", full), 1, 12,
                   "its interpreter /nonexistent/interpreter (its #! line) does not exist");
  write_file(dir / "fine", "#!/bin/sh\n", 0755);
  EXPECT_TRUE(parse("command = [\"" + (dir / "fine").string() + "\"]\n", "vm.toml", full).ok());
}

TEST_F(DefinitionFiles, UnreadableFileIsOneDiagnostic) {
  ParseResult result = load_definition(dir / "missing.toml");
  ASSERT_EQ(result.errors.size(), 1u);
  EXPECT_NE(result.errors[0].to_string().find("missing.toml:1:1: error: cannot read definition"),
            std::string::npos);
}

// A FIFO (or anything else not a regular file) in a definition's place is
// refused at once: opened as a file, it would wait for a writer forever.
TEST_F(DefinitionFiles, ADefinitionThatIsNotARegularFileIsRefusedWithoutWaiting) {
  std::filesystem::path fifo = dir / "fifo.toml";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  auto loading = std::async(std::launch::async, [&] { return load_definition(fifo, kSyntaxOnly); });
  if (loading.wait_for(std::chrono::seconds(5)) != std::future_status::ready) {
    ADD_FAILURE() << "load_definition waits on a FIFO";
    // A writer that comes and goes lets the blocked open and read finish.
    int writer = ::open(fifo.c_str(), O_WRONLY | O_CLOEXEC);
    if (writer >= 0) ::close(writer);
  }
  ParseResult result = loading.get();
  ASSERT_EQ(result.errors.size(), 1u);
  EXPECT_EQ(result.errors[0].to_string(), fifo.string() + ":1:1: error: not a regular file (a FIFO)");

  std::filesystem::create_directory(dir / "dir.toml");
  ParseResult directory = load_definition(dir / "dir.toml", kSyntaxOnly);
  ASSERT_EQ(directory.errors.size(), 1u);
  EXPECT_EQ(directory.errors[0].to_string(), (dir / "dir.toml").string() + ":1:1: error: not a regular file (a directory)");

  // A symlink to a definition is still read.
  write_file(dir / "target.toml", "command = [\"/bin/true\"]\n");
  std::filesystem::create_symlink(dir / "target.toml", dir / "link.toml");
  EXPECT_TRUE(load_definition(dir / "link.toml", kSyntaxOnly).ok());
}

// A device in a definition's place is refused by its type, never opened:
// opening one acts on it. /dev/tty, in a process without a controlling
// terminal, is one whose open fails (ENXIO), which showed the open.
TEST_F(DefinitionFiles, ADeviceIsRefusedWithoutBeingOpened) {
  std::filesystem::create_symlink("/dev/tty", dir / "tty.toml");
  int pipe_fds[2];
  ASSERT_EQ(::pipe2(pipe_fds, O_CLOEXEC), 0);
  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::setsid();  // no controlling terminal: /dev/tty cannot be opened
    std::string message = load_definition(dir / "tty.toml", kSyntaxOnly).errors.at(0).to_string();
    (void)!::write(pipe_fds[1], message.data(), message.size());
    ::_exit(0);
  }
  ::close(pipe_fds[1]);
  std::string message;
  char buffer[512];
  for (ssize_t n; (n = ::read(pipe_fds[0], buffer, sizeof buffer)) > 0;) message.append(buffer, static_cast<std::size_t>(n));
  ::close(pipe_fds[0]);
  ::waitpid(child, nullptr, 0);
  EXPECT_EQ(message, (dir / "tty.toml").string() + ":1:1: error: not a regular file (a character device)");
}

TEST_F(DefinitionFiles, ADefinitionOverOneMebibyteIsRefused) {
  // Valid TOML (a comment) of exactly the limit loads; one byte more does not.
  std::string text = "vmm = \"qemu\"\n#" + std::string((1 << 20) - 15, 'x') + "\n";
  ASSERT_EQ(text.size(), std::size_t{1} << 20);
  write_file(dir / "big.toml", text);
  ParseResult fits = load_definition(dir / "big.toml", kSyntaxOnly);
  for (const auto& error : fits.errors) EXPECT_EQ(error.message.find("larger than"), std::string::npos);
  write_file(dir / "big.toml", text + "#");
  ParseResult result = load_definition(dir / "big.toml", kSyntaxOnly);
  ASSERT_EQ(result.errors.size(), 1u);
  EXPECT_NE(result.errors[0].to_string().find("big.toml:1:1: error: definition is larger than 1048576 bytes"),
            std::string::npos);
}

// --- the shipped examples ----------------------------------------------------------

TEST(Examples, EveryExampleIsValid) {
  int count = 0;
  for (const auto& entry : std::filesystem::directory_iterator(vmwarden::testing::source_dir() / "doc/examples")) {
    if (entry.path().extension() != ".toml") continue;
    ++count;
    ParseResult result = load_definition(entry.path(), kSyntaxOnly);
    EXPECT_TRUE(result.ok()) << (result.ok() ? "" : result.errors.front().to_string());
  }
  EXPECT_GE(count, 4);
}

}  // namespace
}  // namespace vmwarden::vm
