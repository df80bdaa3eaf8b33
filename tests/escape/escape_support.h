// Shared by the escape suites: the attacker and the privilege probe copied
// where every uid can reach them, and what an attack's outcome must look
// like (tests/escape/attacker.cc explains its exit codes).
#pragma once

#include <sys/stat.h>

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <ostream>
#include <stdexcept>
#include <string>

#include "common/error.h"
#include "tests/support/support.h"

namespace vmwarden::escape {

class Tools {
 public:
  Tools() {
    check(::chmod(dir_.path().c_str(), 0755), "chmod", dir_.path().string());
    std::filesystem::copy_file(env("VMWARDEN_ATTACKER"), attacker());
    std::filesystem::copy_file(env("VMWARDEN_PRIVILEGE_PROBE"), probe());
    std::filesystem::permissions(attacker(), std::filesystem::perms(0755));
    std::filesystem::permissions(probe(), std::filesystem::perms(0755));
  }
  std::filesystem::path dir() const { return dir_.path(); }
  std::filesystem::path attacker() const { return dir_ / "attacker"; }
  std::filesystem::path probe() const { return dir_ / "privilege-probe"; }

 private:
  static std::string env(const char* name) {
    const char* value = std::getenv(name);
    if (value == nullptr) throw std::runtime_error(std::string(name) + " is not set");
    return value;
  }
  testing::TempDir dir_{"vmwarden-escape-tools"};
};

struct Outcome {
  int exit_code = -1;  // -1: killed by a signal
  int signal = 0;
  std::string out;  // without its last newline
  std::string err;
};

inline std::ostream& operator<<(std::ostream& stream, const Outcome& outcome) {
  return stream << "exit " << outcome.exit_code << ", signal " << outcome.signal << ", stdout \"" << outcome.out
                << "\", stderr \"" << outcome.err << "\"";
}

// Refused by the kernel with this errno (the attacker prints its name).
inline void expect_denied(const Outcome& outcome, const char* errno_name) {
  EXPECT_EQ(outcome.exit_code, 10) << outcome;
  EXPECT_EQ(outcome.out, errno_name) << outcome;
}
inline void expect_killed_by_seccomp(const Outcome& outcome) { EXPECT_EQ(outcome.signal, SIGSYS) << outcome; }
inline void expect_success(const Outcome& outcome) {
  EXPECT_EQ(outcome.exit_code, 0) << outcome;
  EXPECT_EQ(outcome.out.rfind("ok ", 0), 0u) << outcome;
}

}  // namespace vmwarden::escape
