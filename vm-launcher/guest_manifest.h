// The launch manifest of `vmwarden run`: what the guest agent
// (guest-agent/, `vmwarden-guest`) must do inside the VM. The host writes it
// into the read-only config share; the agent parses it with the same rules.
// The format (doc/GUEST-AGENT.md) is one directive per line, "KEY VALUE",
// with no quoting: a value runs to the end of the line and may not contain a
// newline or NUL. Header-only so that the static guest binary shares it
// without linking the host's libraries.
#pragma once

#include <cstddef>

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace vmwarden::guest {

// 2 added `grace`; version 1 manifests are still read.
inline constexpr std::string_view kManifestVersion = "2";
inline constexpr std::string_view kManifestFile = "manifest";
inline constexpr std::string_view kExitStatusFile = "exit-status";
// The program's standard output and error, as they come, in the report
// share: `vmwarden run` relays it to its own standard output while the VM
// runs. At most kOutputLimit bytes; the agent says on the console what it
// dropped past that.
inline constexpr std::string_view kOutputFile = "output";
inline constexpr std::size_t kOutputLimit = std::size_t{64} << 20;

struct Mount {
  std::string tag;   // the virtiofs tag
  std::string path;  // where it is mounted in the guest: the host path
  bool readonly = true;
};

struct Manifest {
  uid_t uid = 0;
  gid_t gid = 0;
  std::string user = "vm";
  std::string home = "/";
  std::string program;  // a name looked up on PATH, or an absolute path
  std::vector<std::string> args;
  std::vector<std::string> env;  // KEY=VALUE
  std::vector<Mount> mounts;
  std::vector<std::string> store;  // their bin/ goes first on PATH
  bool store_lib = false;          // and their lib/ on LD_LIBRARY_PATH
  std::string report_tag;          // rw share the agent writes exit-status into
  // Seconds from the stop the agent passes on to the program (SIGTERM) to
  // its SIGKILL; 0: the agent sends no SIGKILL of its own.
  unsigned grace_s = 0;
};

namespace detail {

inline bool clean_value(std::string_view value) {
  for (char c : value)
    if (c == '\n' || c == '\0') return false;
  return true;
}

inline bool absolute_path(std::string_view path) {
  if (path.empty() || path.front() != '/' || !clean_value(path)) return false;
  size_t start = 0;
  while (start <= path.size()) {
    size_t end = path.find('/', start);
    if (end == std::string_view::npos) end = path.size();
    std::string_view part = path.substr(start, end - start);
    if (part == "." || part == "..") return false;
    start = end + 1;
  }
  return true;
}

inline bool tag_ok(std::string_view tag) {
  if (tag.empty() || tag.size() > 36) return false;
  for (char c : tag)
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_'))
      return false;
  return true;
}

inline std::optional<std::uint32_t> number(std::string_view text) {
  if (text.empty() || text.size() > 10) return std::nullopt;
  std::uint64_t value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
    value = value * 10 + static_cast<unsigned>(c - '0');
  }
  if (value > 0xfffffffe) return std::nullopt;
  return static_cast<std::uint32_t>(value);
}

}  // namespace detail

// The manifest's text. Throws std::invalid_argument for a value that cannot
// be written (a newline, a relative path, a bad tag).
inline std::string write_manifest(const Manifest& m) {
  auto need = [](bool ok, const std::string& what) {
    if (!ok) throw std::invalid_argument("manifest: " + what);
  };
  need(!m.program.empty() && detail::clean_value(m.program), "program must be a non-empty single line");
  need(detail::absolute_path(m.home), "home must be an absolute path without . or ..");
  need(!m.user.empty() && detail::clean_value(m.user) && m.user.find(':') == std::string::npos &&
           m.user.find(' ') == std::string::npos,
       "user must be a name without ':' or spaces");
  std::string out = "version " + std::string(kManifestVersion) + "\n";
  out += "uid " + std::to_string(m.uid) + "\ngid " + std::to_string(m.gid) + "\n";
  out += "user " + m.user + "\nhome " + m.home + "\nprogram " + m.program + "\n";
  for (const auto& arg : m.args) {
    need(detail::clean_value(arg), "an argument contains a newline or NUL");
    out += "arg " + arg + "\n";
  }
  for (const auto& entry : m.env) {
    need(detail::clean_value(entry) && entry.find('=') != std::string::npos && entry.front() != '=',
         "env entries are KEY=VALUE on one line");
    out += "env " + entry + "\n";
  }
  for (const auto& mount : m.mounts) {
    need(detail::tag_ok(mount.tag), "bad tag " + mount.tag);
    need(detail::absolute_path(mount.path) && mount.path.find(' ') == std::string::npos,
         "mount path must be absolute, without . .. or spaces: " + mount.path);
    out += "mount " + mount.tag + " " + (mount.readonly ? "ro " : "rw ") + mount.path + "\n";
  }
  for (const auto& store : m.store) {
    need(detail::absolute_path(store), "store path must be absolute: " + store);
    out += "store " + store + "\n";
  }
  if (m.store_lib) out += "store-lib yes\n";
  if (!m.report_tag.empty()) {
    need(detail::tag_ok(m.report_tag), "bad report tag");
    out += "report " + m.report_tag + "\n";
  }
  if (m.grace_s > 0) out += "grace " + std::to_string(m.grace_s) + "\n";
  return out;
}

// Parses a manifest; on error returns nothing and sets `error` to
// "line N: what is wrong".
inline std::optional<Manifest> parse_manifest(std::string_view text, std::string& error) {
  Manifest m;
  bool version = false, uid = false, gid = false, program = false;
  size_t line_number = 0;
  auto fail = [&](const std::string& what) {
    error = "line " + std::to_string(line_number) + ": " + what;
    return std::nullopt;
  };
  while (!text.empty()) {
    ++line_number;
    size_t newline = text.find('\n');
    if (newline == std::string_view::npos) return fail("the last line has no newline");
    std::string_view line = text.substr(0, newline);
    text.remove_prefix(newline + 1);
    size_t space = line.find(' ');
    std::string_view key = line.substr(0, space);
    std::string_view value = space == std::string_view::npos ? std::string_view{} : line.substr(space + 1);
    if (line.find('\0') != std::string_view::npos) return fail("NUL byte");
    if (key == "version") {
      if (value != kManifestVersion && value != "1")
        return fail("unsupported version " + std::string(value) + " (this agent reads 1 and " +
                    std::string(kManifestVersion) + "; rebuild the guest image with this vmwarden's agent)");
      version = true;
    } else if (!version) {
      return fail("the first line must be \"version " + std::string(kManifestVersion) + "\"");
    } else if (key == "uid" || key == "gid") {
      auto id = detail::number(value);
      if (!id) return fail("bad " + std::string(key) + " \"" + std::string(value) + "\"");
      (key == "uid" ? m.uid : m.gid) = *id;
      (key == "uid" ? uid : gid) = true;
    } else if (key == "user") {
      if (value.empty() || value.find(':') != std::string_view::npos) return fail("bad user name");
      m.user = value;
    } else if (key == "home") {
      if (!detail::absolute_path(value)) return fail("home must be an absolute path");
      m.home = value;
    } else if (key == "program") {
      if (value.empty()) return fail("empty program");
      m.program = value;
      program = true;
    } else if (key == "arg") {
      m.args.emplace_back(value);
    } else if (key == "env") {
      if (value.empty() || value.front() == '=' || value.find('=') == std::string_view::npos)
        return fail("env wants KEY=VALUE");
      m.env.emplace_back(value);
    } else if (key == "mount") {
      // mount TAG ro|rw PATH
      size_t a = value.find(' ');
      size_t b = a == std::string_view::npos ? a : value.find(' ', a + 1);
      if (b == std::string_view::npos) return fail("mount wants TAG ro|rw PATH");
      Mount mount{std::string(value.substr(0, a)), std::string(value.substr(b + 1)), true};
      std::string_view access = value.substr(a + 1, b - a - 1);
      if (!detail::tag_ok(mount.tag)) return fail("bad tag \"" + mount.tag + "\"");
      if (access != "ro" && access != "rw") return fail("access must be ro or rw");
      mount.readonly = access == "ro";
      if (!detail::absolute_path(mount.path)) return fail("mount path must be absolute");
      m.mounts.push_back(std::move(mount));
    } else if (key == "store") {
      if (!detail::absolute_path(value)) return fail("store path must be absolute");
      m.store.emplace_back(value);
    } else if (key == "store-lib") {
      m.store_lib = value == "yes";
    } else if (key == "report") {
      if (!detail::tag_ok(value)) return fail("bad report tag");
      m.report_tag = value;
    } else if (key == "grace") {
      auto seconds = detail::number(value);
      if (!seconds || *seconds > 86400) return fail("grace wants seconds from 0 to 86400");
      m.grace_s = *seconds;
    } else {
      return fail("unknown directive \"" + std::string(key) + "\"");
    }
  }
  if (!version) return fail("empty manifest");
  if (!uid || !gid || !program) return fail("uid, gid and program are required");
  return m;
}

}  // namespace vmwarden::guest
