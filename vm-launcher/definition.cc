// Parsing and validation of VM definitions. This is the only file that knows
// TOML; everything after it works on vm::Definition. Every rejection carries
// the line and column of the offending key or value.

#include "vm-launcher/definition.h"

#include <fmt/core.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>

#include "common/locations.h"
#include "common/suggest.h"
#include "vm-launcher/names.h"

// The parser is compiled into this translation unit (header-only mode), so
// that sanitizer and fuzzer builds instrument it as well.
#include <toml++/toml.h>

namespace vmwarden::vm {
namespace {

constexpr std::size_t kMaxDefinitionBytes = 1 << 20;

struct Position {
  std::uint32_t line = 1;
  std::uint32_t column = 1;
};

Position position_of(const toml::source_region& region) {
  return Position{std::max<std::uint32_t>(region.begin.line, 1),
                  std::max<std::uint32_t>(region.begin.column, 1)};
}

std::string_view type_name(toml::node_type type) {
  switch (type) {
    case toml::node_type::table: return "a table";
    case toml::node_type::array: return "an array";
    case toml::node_type::string: return "a string";
    case toml::node_type::integer: return "an integer";
    case toml::node_type::floating_point: return "a floating-point number";
    case toml::node_type::boolean: return "a boolean";
    case toml::node_type::date: return "a date";
    case toml::node_type::time: return "a time";
    case toml::node_type::date_time: return "a date-time";
    case toml::node_type::none: break;
  }
  return "nothing";
}

std::optional<std::string_view> closest(std::string_view word,
                                        std::initializer_list<std::string_view> candidates) {
  return closest_match(word, std::span<const std::string_view>(candidates.begin(), candidates.size()));
}

std::string quoted_list(std::initializer_list<std::string_view> words) {
  std::string out;
  for (std::string_view word : words) {
    if (!out.empty()) out += ", ";
    out += fmt::format("\"{}\"", word);
  }
  return out;
}

enum class FileKind { regular, directory, disk_image, executable };

class Validator {
 public:
  Validator(std::string file, const CheckOptions& options) : file_(std::move(file)), options_(options) {}

  ParseResult run(std::string_view text) {
    Definition definition;
    std::string base = std::filesystem::path(file_).filename().string();
    if (base.size() > 5 && base.ends_with(".toml")) {
      definition.name = base.substr(0, base.size() - 5);
      if (auto problem = vm_name_problem(definition.name)) {
        error(Position{}, fmt::format("{} (the name comes from the file name NAME.toml)", *problem));
      }
    } else {
      error(Position{}, fmt::format("definition file \"{}\" must be named NAME.toml", base));
    }

    toml::table root;
    try {
      root = toml::parse(text, std::string_view(file_));
    } catch (const toml::parse_error& e) {
      error(position_of(e.source()), fmt::format("invalid TOML: {}", e.description()));
      return finish(std::nullopt);
    }
    read_root(root, definition);
    return finish(std::move(definition));
  }

 private:
  void error(Position at, std::string message) {
    errors_.push_back(Diagnostic{file_, at.line, at.column, std::move(message)});
  }
  void error(const toml::node& node, std::string message) { error(position_of(node.source()), std::move(message)); }

  ParseResult finish(std::optional<Definition> definition) {
    std::stable_sort(errors_.begin(), errors_.end(), [](const Diagnostic& a, const Diagnostic& b) {
      return std::tie(a.line, a.column) < std::tie(b.line, b.column);
    });
    ParseResult result;
    result.errors = std::move(errors_);
    if (result.errors.empty()) result.definition = std::move(definition);
    return result;
  }

  // Reports every key of `table` that is not in `known`, with a did-you-mean.
  void reject_unknown_keys(const toml::table& table, std::string_view context,
                           std::initializer_list<std::string_view> known) {
    for (const auto& [key, node] : table) {
      if (std::find(known.begin(), known.end(), key.str()) != known.end()) continue;
      std::string where = context.empty() ? "" : fmt::format(" in [{}]", context);
      std::string message = fmt::format("unknown key \"{}\"{}", key.str(), where);
      if (auto suggestion = closest(key.str(), known)) {
        message += fmt::format("; did you mean \"{}\"?", *suggestion);
      } else {
        message += fmt::format("; known keys are {}", quoted_list(known));
      }
      error(position_of(key.source()), std::move(message));
    }
  }

  std::string qualified(std::string_view context, std::string_view key) const {
    return context.empty() ? std::string(key) : fmt::format("{}.{}", context, key);
  }

  const toml::node* typed(const toml::table& table, std::string_view context, std::string_view key,
                          toml::node_type want, std::string_view want_text) {
    const toml::node* node = table.get(key);
    if (node == nullptr) return nullptr;
    if (node->type() != want) {
      error(*node, fmt::format("{} must be {}, not {}", qualified(context, key), want_text,
                               type_name(node->type())));
      return nullptr;
    }
    return node;
  }

  std::optional<std::string> read_string(const toml::table& table, std::string_view context,
                                         std::string_view key) {
    const toml::node* node = typed(table, context, key, toml::node_type::string, "a string");
    if (node == nullptr) return std::nullopt;
    return node->as_string()->get();
  }

  std::optional<bool> read_bool(const toml::table& table, std::string_view context, std::string_view key) {
    const toml::node* node = typed(table, context, key, toml::node_type::boolean, "true or false");
    if (node == nullptr) return std::nullopt;
    return node->as_boolean()->get();
  }

  void read_integer(const toml::table& table, std::string_view context, std::string_view key,
                    std::int64_t min, std::int64_t max, std::uint32_t& out) {
    const toml::node* node = typed(table, context, key, toml::node_type::integer, "an integer");
    if (node == nullptr) return;
    std::int64_t value = node->as_integer()->get();
    if (value < min || value > max) {
      error(*node, fmt::format("{} = {} is out of range: use {} to {}", qualified(context, key), value,
                               min, max));
      return;
    }
    out = static_cast<std::uint32_t>(value);
  }

  // An enumerated string; returns the index of the accepted word.
  std::optional<std::size_t> read_choice(const toml::table& table, std::string_view context,
                                         std::string_view key,
                                         std::initializer_list<std::string_view> choices) {
    std::optional<std::string> value = read_string(table, context, key);
    if (!value) return std::nullopt;
    auto found = std::find(choices.begin(), choices.end(), *value);
    if (found != choices.end()) return static_cast<std::size_t>(found - choices.begin());
    std::string message =
        fmt::format("{} = \"{}\" is not one of {}", qualified(context, key), *value, quoted_list(choices));
    if (auto suggestion = closest(*value, choices)) message += fmt::format("; did you mean \"{}\"?", *suggestion);
    error(*table.get(key), std::move(message));
    return std::nullopt;
  }

  std::optional<std::filesystem::path> read_path(const toml::table& table, std::string_view context,
                                                 std::string_view key, FileKind kind) {
    std::optional<std::string> value = read_string(table, context, key);
    if (!value) return std::nullopt;
    const toml::node& node = *table.get(key);
    if (auto problem = path_problem(*value)) {
      error(node, fmt::format("{}: {}", qualified(context, key), *problem));
      return std::nullopt;
    }
    std::filesystem::path path = normalize_path(*value);
    if (options_.check_filesystem) {
      if (auto problem = file_problem(path, kind)) {
        error(node, fmt::format("{}: {}", qualified(context, key), *problem));
        return std::nullopt;
      }
    }
    return path;
  }

  static std::optional<std::string> file_problem(const std::filesystem::path& path, FileKind kind) {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) {
      if (errno == ENOENT) return fmt::format("{} does not exist", path.string());
      return fmt::format("{} cannot be checked: {}", path.string(), std::strerror(errno));
    }
    switch (kind) {
      case FileKind::regular:
        if (!S_ISREG(st.st_mode)) return fmt::format("{} is not a regular file", path.string());
        break;
      case FileKind::directory:
        if (!S_ISDIR(st.st_mode)) return fmt::format("{} is not a directory", path.string());
        break;
      case FileKind::disk_image:
        if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
          return fmt::format("{} is neither a regular file nor a block device", path.string());
        }
        break;
      case FileKind::executable:
        if (!S_ISREG(st.st_mode) || ::access(path.c_str(), X_OK) != 0) {
          return fmt::format("{} is not an executable file", path.string());
        }
        break;
    }
    return std::nullopt;
  }

  const toml::table* read_table(const toml::table& parent, std::string_view key) {
    return static_cast<const toml::table*>(
        typed(parent, "", key, toml::node_type::table, fmt::format("a table ([{}])", key)));
  }

  // `[[key]]` sections: an array whose every element is a table.
  std::vector<const toml::table*> read_table_array(const toml::table& parent, std::string_view key) {
    std::vector<const toml::table*> tables;
    const toml::node* node =
        typed(parent, "", key, toml::node_type::array, fmt::format("an array of tables ([[{}]])", key));
    if (node == nullptr) return tables;
    for (const toml::node& element : *node->as_array()) {
      if (!element.is_table()) {
        error(element, fmt::format("each {} must be a table ([[{}]]), not {}", key, key,
                                   type_name(element.type())));
        continue;
      }
      tables.push_back(element.as_table());
    }
    return tables;
  }

  void read_root(const toml::table& root, Definition& definition) {
    reject_unknown_keys(root, "",
                        {"vmm", "command", "kernel", "initramfs", "cmdline", "memory_mib", "cpus",
                         "shutdown_timeout_s", "uid", "disk", "share", "display", "sandbox"});

    if (auto index = read_choice(root, "", "vmm", {"qemu", "crosvm", "cloud-hypervisor"})) {
      definition.vmm = std::array{Vmm::qemu, Vmm::crosvm, Vmm::cloud_hypervisor}[*index];
    }
    bool has_vmm = root.contains("vmm");
    bool has_command = root.contains("command");
    if (has_vmm && has_command) {
      error(*root.get("command"), "vmm and command exclude each other: a definition runs either a VM "
                                  "or a plain command");
    } else if (!has_vmm && !has_command) {
      error(Position{}, "missing key: a definition needs vmm = \"qemu\" | \"crosvm\" | "
                        "\"cloud-hypervisor\" or command = [\"/absolute/program\", \"arg\", ...]");
    }

    if (has_command && !has_vmm) {
      read_command(root, definition);
      for (std::string_view vm_only :
           {"kernel", "initramfs", "cmdline", "memory_mib", "cpus", "disk", "display"}) {
        if (const toml::node* node = root.get(vm_only)) {
          error(*node, fmt::format("{} applies only to a VM (vmm = ...), not to a plain command", vm_only));
        }
      }
    } else if (has_vmm) {
      read_vm(root, definition);
    }

    read_integer(root, "", "shutdown_timeout_s", 1, 3600, definition.shutdown_timeout_s);
    if (const toml::table* uid = read_table(root, "uid")) read_uid(*uid, definition);
    read_shares(root, definition);
    if (const toml::table* sandbox = read_table(root, "sandbox")) read_sandbox(*sandbox, definition);
  }

  void read_command(const toml::table& root, Definition& definition) {
    const toml::node* node = typed(root, "", "command", toml::node_type::array,
                                   "an array of strings, e.g. [\"/usr/bin/prog\", \"--flag\"]");
    if (node == nullptr) return;
    const toml::array& array = *node->as_array();
    if (array.empty()) {
      error(*node, "command is empty: give the program's absolute path and its arguments");
      return;
    }
    for (const toml::node& element : array) {
      if (!element.is_string()) {
        error(element, fmt::format("each element of command must be a string, not {}",
                                   type_name(element.type())));
        return;
      }
      const std::string& argument = element.as_string()->get();
      if (argument.find('\0') != std::string::npos) {
        error(element, "command arguments cannot contain a NUL character");
        return;
      }
      definition.command.push_back(argument);
    }
    const std::string& program = definition.command.front();
    if (program.empty() || program.front() != '/') {
      error(array[0], fmt::format("command program \"{}\" must be an absolute path (no PATH lookup "
                                  "happens inside the sandbox)", program));
    } else if (options_.check_filesystem) {
      if (auto problem = file_problem(program, FileKind::executable)) error(array[0], "command: " + *problem);
    }
  }

  void read_vm(const toml::table& root, Definition& definition) {
    if (!root.contains("kernel")) {
      error(Position{}, "missing key \"kernel\": the guest kernel's path, e.g. "
                        "kernel = \"/var/lib/vmwarden/images/base/vmlinuz\"");
    }
    if (auto path = read_path(root, "", "kernel", FileKind::regular)) definition.kernel = *path;
    if (auto path = read_path(root, "", "initramfs", FileKind::regular)) definition.initramfs = *path;
    if (auto cmdline = read_string(root, "", "cmdline")) {
      const toml::node& node = *root.get("cmdline");
      if (std::any_of(cmdline->begin(), cmdline->end(),
                      [](char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7f; })) {
        error(node, "cmdline contains a control character");
      } else if (cmdline->size() > 2047) {
        error(node, "cmdline is longer than the kernel's 2047-byte limit");
      } else {
        definition.cmdline = *cmdline;
      }
    }
    read_integer(root, "", "memory_mib", 32, 1 << 20, definition.memory_mib);
    read_integer(root, "", "cpus", 1, 255, definition.cpus);
    read_disks(root, definition);
    if (const toml::table* display = read_table(root, "display")) {
      reject_unknown_keys(*display, "display", {"wayland"});
      if (auto wayland = read_bool(*display, "display", "wayland")) {
        definition.wayland = *wayland;
        if (*wayland && definition.vmm && *definition.vmm != Vmm::crosvm) {
          error(*display->get("wayland"), fmt::format("display.wayland is supported only with vmm = "
                                                      "\"crosvm\", not \"{}\"",
                                                      to_string(*definition.vmm)));
        }
      }
    }
  }

  void read_uid(const toml::table& uid, Definition& definition) {
    reject_unknown_keys(uid, "uid", {"alias"});
    if (auto alias = read_string(uid, "uid", "alias")) {
      if (auto problem = alias_problem(*alias)) {
        error(*uid.get("alias"), "uid.alias: " + *problem);
      } else {
        definition.uid_alias = *alias;
      }
    }
  }

  void read_disks(const toml::table& root, Definition& definition) {
    std::map<std::filesystem::path, Position> seen;
    for (const toml::table* disk_table : read_table_array(root, "disk")) {
      reject_unknown_keys(*disk_table, "disk", {"path", "readonly"});
      Disk disk;
      if (!disk_table->contains("path")) {
        error(*disk_table, "[[disk]] needs a path, e.g. path = \"/var/lib/vmwarden/images/work/root.img\"");
      }
      auto path = read_path(*disk_table, "disk", "path", FileKind::disk_image);
      if (auto readonly = read_bool(*disk_table, "disk", "readonly")) disk.readonly = *readonly;
      if (!path) continue;
      Position here = position_of(disk_table->get("path")->source());
      if (auto [it, inserted] = seen.emplace(*path, here); !inserted) {
        error(here, fmt::format("disk {} is already listed at line {}", path->string(), it->second.line));
        continue;
      }
      disk.path = *path;
      definition.disks.push_back(std::move(disk));
    }
  }

  void read_shares(const toml::table& root, Definition& definition) {
    std::map<std::string, Position> seen_tags;
    for (const toml::table* share_table : read_table_array(root, "share")) {
      reject_unknown_keys(*share_table, "share", {"tag", "path", "access"});
      Share share;
      bool complete = true;
      for (std::string_view required : {"tag", "path"}) {
        if (!share_table->contains(required)) {
          error(*share_table, fmt::format("[[share]] needs a {}", required));
          complete = false;
        }
      }
      if (auto tag = read_string(*share_table, "share", "tag")) {
        Position here = position_of(share_table->get("tag")->source());
        if (auto problem = tag_problem(*tag)) {
          error(here, "share.tag: " + *problem);
          complete = false;
        } else if (auto [it, inserted] = seen_tags.emplace(*tag, here); !inserted) {
          error(here, fmt::format("duplicate share tag \"{}\" (first used at line {}): each share needs "
                                  "its own tag",
                                  *tag, it->second.line));
          complete = false;
        } else {
          share.tag = *tag;
        }
      } else {
        complete = false;
      }
      if (auto path = read_path(*share_table, "share", "path", FileKind::directory)) {
        if (*path == "/") {
          error(*share_table->get("path"), "share.path \"/\" would share the whole host: name a "
                                           "directory that belongs to this VM");
          complete = false;
        }
        share.path = *path;
      } else {
        complete = false;
      }
      if (auto index = read_choice(*share_table, "share", "access", {"ro", "rw"})) {
        share.access = *index == 0 ? Access::ro : Access::rw;
      }
      if (complete) definition.shares.push_back(std::move(share));
    }
  }

  void read_sandbox(const toml::table& sandbox, Definition& definition) {
    reject_unknown_keys(sandbox, "sandbox", {"landlock", "seccomp", "network"});
    if (auto index = read_choice(sandbox, "sandbox", "landlock", {"required", "best-effort"})) {
      definition.landlock = *index == 0 ? LandlockMode::required : LandlockMode::best_effort;
    }
    if (auto index = read_choice(sandbox, "sandbox", "seccomp", {"kill", "log"})) {
      definition.seccomp = *index == 0 ? SeccompMode::kill : SeccompMode::log;
    }
    if (auto network = read_bool(sandbox, "sandbox", "network")) definition.network = *network;
  }

  std::string file_;
  CheckOptions options_;
  std::vector<Diagnostic> errors_;
};

}  // namespace

std::string Diagnostic::to_string() const {
  return fmt::format("{}:{}:{}: error: {}", file, line, column, message);
}

ParseResult parse_definition(std::string_view text, const std::string& file_name, const CheckOptions& options) {
  return Validator(file_name, options).run(text);
}

ParseResult load_definition(const std::filesystem::path& file, const CheckOptions& options) {
  auto unreadable = [&](std::string reason) {
    ParseResult result;
    result.errors.push_back(Diagnostic{file.string(), 1, 1, std::move(reason)});
    return result;
  };
  std::ifstream in(file, std::ios::binary);
  if (!in) return unreadable(fmt::format("cannot read definition: {}", std::strerror(errno)));
  std::string text;
  text.resize(kMaxDefinitionBytes + 1);
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  if (in.bad()) return unreadable(fmt::format("cannot read definition: {}", std::strerror(errno)));
  text.resize(static_cast<std::size_t>(in.gcount()));
  if (text.size() > kMaxDefinitionBytes) {
    return unreadable(fmt::format("definition is larger than {} bytes", kMaxDefinitionBytes));
  }
  return parse_definition(text, file.string(), options);
}

std::filesystem::path resolve_definition(const Locations& locations, std::string_view name_or_file) {
  if (name_or_file.find('/') != std::string_view::npos || name_or_file.ends_with(".toml")) {
    return std::filesystem::path(name_or_file);
  }
  return locations.definition_file(name_or_file);
}

std::string_view to_string(Vmm vmm) {
  switch (vmm) {
    case Vmm::qemu: return "qemu";
    case Vmm::crosvm: return "crosvm";
    case Vmm::cloud_hypervisor: return "cloud-hypervisor";
  }
  return "?";
}

std::string_view to_string(Access access) { return access == Access::ro ? "ro" : "rw"; }

std::string_view to_string(LandlockMode mode) {
  return mode == LandlockMode::required ? "required" : "best-effort";
}

std::string_view to_string(SeccompMode mode) { return mode == SeccompMode::kill ? "kill" : "log"; }

}  // namespace vmwarden::vm
