// Entry point: parse the command line, run the chosen subcommand, and turn
// every failure into a message on stderr and an exit status (see
// common/exit_status.h and doc/man/vmwarden.1.scd).

#include <CLI/CLI.hpp>
#include <fmt/core.h>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "cli/cli.h"
#include "common/error.h"
#include "common/exit_status.h"
#include "common/log.h"
#include "common/printable.h"
#include "common/suggest.h"
#include "supervisor/sandbox.h"

namespace vmwarden::cli {

Locations Globals::locations() const {
  Locations locations = Locations::from_environment();
  for (auto [flag, given, location, example] :
       {std::tuple{"--config-dir", &config_dir, &locations.config_dir, kDefaultConfigDir},
        std::tuple{"--state-dir", &state_dir, &locations.state_dir, kDefaultStateDir},
        std::tuple{"--runtime-dir", &runtime_dir, &locations.runtime_dir, kDefaultRuntimeDir}}) {
    if (given->empty()) continue;
    check_location(*given, flag, example);
    *location = *given;
  }
  return locations;
}

int checked_notify_fd(int fd) {
  if (fd < 0) throw UsageError(fmt::format("--notify-fd {}: give an open file descriptor, 3 or more", fd));
  if (fd <= 2) throw UsageError("--notify-fd must not be stdin, stdout or stderr (0-2)");
  if (::fcntl(fd, F_GETFD) < 0) throw UsageError(fmt::format("--notify-fd {}: no such open file descriptor", fd));
  return fd;
}

namespace {

constexpr const char* kFooter = R"(Exit status:
  0    success (for exec/run/supervise: the command's or VM's own status)
  1    a runtime failure
  2    bad usage or invalid input; nothing was changed
  125  the sandbox or VM cannot start as given, nor will on a retry (supervise, exec, run, audit: e.g. a
       definition this host cannot run, an s6 service not started by s6-supervise): s6 does not restart it
  128+N  the main service was killed by signal N

Locations (flag, then environment, then default):
  --config-dir   VMWARDEN_CONFIG_DIR   /etc/vmwarden      (definitions in vms/NAME.toml)
  --state-dir    VMWARDEN_STATE_DIR    /var/lib/vmwarden
  --runtime-dir  VMWARDEN_RUNTIME_DIR  /run/vmwarden

See vmwarden(1), and )" VMWARDEN_DOC_DIR R"( (doc/ in the source tree) for the configuration
reference and the security model.)";

struct Subcommand {
  std::string_view name;
  void (*add)(CLI::App&, Globals&);
};

constexpr Subcommand kSubcommands[] = {
    {"check", add_check_command}, {"exec", add_exec_command},   {"supervise", add_supervise_command},
    {"uid", add_uid_command},     {"acl", add_acl_command},     {"demo", add_demo_command},
    {"s6", add_s6_command},       {"run", add_run_command},     {"audit", add_audit_command},
};

// The first word from argv[from] on that is not an option or its value:
// the subcommand the user meant, or the mistyped word. Empty when there is
// none, or when --help or --version comes first.
std::string_view first_word(int argc, char** argv, int from = 1) {
  for (int i = from; i < argc; ++i) {
    std::string_view word = argv[i];
    if (word == "--" || word == "-h" || word == "--help" || word == "--version") return {};
    if (word.starts_with('-')) {
      // Skip the value of a global option given as "--flag VALUE".
      if (word.find('=') == std::string_view::npos && word != "-v" && word != "--verbose" && word.starts_with("--")) {
        ++i;
      }
      continue;
    }
    return word;
  }
  return {};
}

// The word after the subcommand `after` on the command line (as
// first_word() finds it); empty if there is none.
std::string_view word_after(std::string_view after, int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    if (argv[i] == after) return first_word(argc, argv, i + 1);
  }
  return {};
}

// "uid list" for `vmwarden uid list ...`: the chain of subcommands parsed.
std::string parsed_subcommands(const CLI::App& app) {
  std::string chain;
  for (const CLI::App* level = &app; !level->get_subcommands().empty();) {
    level = level->get_subcommands().front();
    chain += (chain.empty() ? "" : " ") + level->get_name();
  }
  return chain;
}

// CLI11 reports a mistyped subcommand (of vmwarden, or of `uid`, `acl`,
// `s6`) as "a subcommand is required"; say which word was not understood
// and what was probably meant.
std::optional<std::string> subcommand_hint(CLI::App& app, int argc, char** argv) {
  std::vector<std::string_view> names;
  std::string_view word, of;
  if (app.get_subcommands().empty()) {
    word = first_word(argc, argv);
    if (word.empty()) return std::nullopt;
    for (const Subcommand& subcommand : kSubcommands) names.push_back(subcommand.name);
  } else {
    CLI::App* parent = app.get_subcommands().front();
    std::vector<CLI::App*> children = parent->get_subcommands([](CLI::App*) { return true; });
    if (children.empty() || !parent->get_subcommands().empty()) return std::nullopt;
    for (const CLI::App* child : children) names.push_back(child->get_name());
    of = parent->get_name();
    word = word_after(of, argc, argv);
    if (word.empty()) {
      std::vector<std::string> listed(names.begin(), names.end());
      return fmt::format("vmwarden {} needs a subcommand: {} (see vmwarden {} --help)", of,
                         fmt::join(listed, ", "), of);
    }
  }
  std::string hint = of.empty() ? fmt::format("unknown subcommand \"{}\"", word)
                                : fmt::format("unknown subcommand \"{}\" of vmwarden {}", word, of);
  if (auto guess = closest_match(word, names)) hint += fmt::format("; did you mean \"{}\"?", *guess);
  return hint + fmt::format(" (see vmwarden {}{}--help)", of, of.empty() ? "" : " ");
}

// An option that takes a value refuses an empty one: "--state-dir $UNSET"
// must not quietly mean "no --state-dir" (the system's default), nor
// "--timeout ''" a timeout of 0. Positional arguments (a command's own
// arguments) may be empty.
void refuse_empty_values(const CLI::App& app) {
  for (const CLI::Option* option : app.get_options()) {
    if (option->get_positional() || option->get_expected_min() == 0 || option->count() == 0) continue;
    for (const std::string& value : option->results()) {
      if (value.empty())
        throw UsageError(fmt::format("{} was given an empty value; give it a value or leave the option out",
                                     option->get_name()));
    }
  }
  for (const CLI::App* subcommand : app.get_subcommands()) refuse_empty_values(*subcommand);
}

void ignore_write_to_closed_pipe(int) {}

// A standard descriptor closed by the caller would be taken by the first
// file vmwarden opens (a lock, a grant's directory), which a service would
// then get as its stdin, stdout or stderr. /dev/null holds its place.
void hold_closed_standard_descriptors() {
  for (int fd = 0; fd <= 2; ++fd) {
    if (::fcntl(fd, F_GETFD) >= 0 || errno != EBADF) continue;
    int held = ::open("/dev/null", O_RDWR);  // the lowest free number: fd
    if (held != fd) throw_errno("open /dev/null for a closed standard descriptor");
  }
}

// The option named `name` (as CLI11 names it in a message) of `app` or of
// any of its subcommands.
const CLI::Option* find_option(const CLI::App& app, std::string_view name) {
  for (const CLI::Option* option : app.get_options())
    if (option->get_name() == name || option->check_name(std::string(name))) return option;
  for (const CLI::App* sub : app.get_subcommands([](const CLI::App*) { return true; }))
    if (const CLI::Option* option = find_option(*sub, name)) return option;
  return nullptr;
}

// Two of CLI11's messages in the words of the rest of vmwarden's: "Could
// not convert: --timeout = abc" and "--state-dir: At Most 1 required but
// received 2".
std::string plain_parse_error(const CLI::App& app, const CLI::ParseError& error) {
  std::string_view text = error.what();
  if (dynamic_cast<const CLI::ConversionError*>(&error) != nullptr && text.starts_with("Could not convert: ")) {
    text.remove_prefix(std::string_view("Could not convert: ").size());
    if (std::size_t equals = text.find(" = "); equals != std::string_view::npos) {
      std::string_view name = text.substr(0, equals), value = text.substr(equals + 3);
      const CLI::Option* option = find_option(app, name);
      if (option != nullptr && option->get_expected_max() == 0)
        return fmt::format("{} takes no value: give it alone, without \"={}\"", name, printable(value));
      // Every other option that converts its value takes a number (a text
      // option cannot fail to convert).
      std::string digits(value);
      char* end = nullptr;
      (void)std::strtod(digits.c_str(), &end);
      bool numeric = !digits.empty() && end != nullptr && *end == '\0';
      return fmt::format("{}: \"{}\" is {}", name, printable(value), numeric ? "out of range" : "not a number");
    }
  }
  if (std::size_t at_most = text.find(": At Most 1 required but received ");
      dynamic_cast<const CLI::ArgumentMismatch*>(&error) != nullptr && at_most != std::string_view::npos) {
    std::string_view received = text.substr(at_most + std::string_view(": At Most 1 required but received ").size());
    return fmt::format("{} was given {} times; give it once", text.substr(0, at_most), received);
  }
  return std::string(text);
}

// Up to 64 KiB of what a command prints to a file or a pipe (stdio would
// hold 4 KiB there) waits in stdout's buffer until with_output_written(),
// where a write that fails still has its cause in errno.
void buffer_standard_output() {
  static char buffer[64 * 1024];
  if (!::isatty(STDOUT_FILENO)) std::setvbuf(stdout, buffer, _IOFBF, sizeof buffer);
}

// What a command prints (the UID `uid alloc` just took, an audit, a
// listing) leaves the stdio buffer here (the first 64 KiB of it) when
// stdout is not a terminal: a write that fails (a full disk, a reader gone) is the command's failure,
// never an exit 0 with its answer lost.
int with_output_written(int status) {
  errno = 0;
  // std::cout writes through stdout (synchronised with stdio): its flush
  // is stdout's, and the first that fails sets errno.
  std::cout.flush();
  if (std::fflush(stdout) == 0 && !std::ferror(stdout)) return status;
  int error = errno;
  if (error == 0) {
    // A write of output beyond the buffer failed earlier, its errno long
    // overwritten: a pipe whose reader went away still says so (POLLERR).
    pollfd out{STDOUT_FILENO, POLLOUT, 0};
    error = ::poll(&out, 1, 0) == 1 && (out.revents & POLLERR) != 0 ? EPIPE : EIO;
  }
  // A reader that went away on purpose (`vmwarden uid list | head -1`)
  // needs no message; the status still says the output was not all read.
  if (error != EPIPE) log::error("write standard output: {}", std::strerror(error));
  return status == exit_status::kOk ? exit_status::kFailure : status;
}

int run(int argc, char** argv) {
  hold_closed_standard_descriptors();
  buffer_standard_output();
  supervisor::remember_parent();
  // A reader that went away (`vmwarden ... 2>&1 | head -1`) must not kill
  // vmwarden between a lease or grant and its undoing: a write to it then
  // fails with EPIPE instead. A handler rather than SIG_IGN, since a handler
  // is reset at execve, so every program vmwarden starts gets the default.
  struct sigaction on_pipe {};
  on_pipe.sa_handler = ignore_write_to_closed_pipe;
  check(::sigaction(SIGPIPE, &on_pipe, nullptr), "sigaction", "SIGPIPE");
  CLI::App app{"vmwarden: a per-VM sandbox supervisor. Each VM's daemons (virtiofsd, the VMM) "
               "run under the VM's own UID, each in its own Landlock domain and seccomp filter, inside a PID "
               "namespace whose init is vmwarden itself.",
               "vmwarden"};
  app.footer(kFooter);
  app.require_subcommand(1);
  app.fallthrough();
  app.set_version_flag("--version", "vmwarden " VMWARDEN_VERSION);

  Globals globals;
  app.add_option("--config-dir", globals.config_dir, "Directory holding vms/NAME.toml");
  app.add_option("--state-dir", globals.state_dir, "Directory for the UID registry and grant records");
  app.add_option("--runtime-dir", globals.runtime_dir, "Directory for per-VM runtime directories");
  app.add_flag("-v,--verbose", globals.verbose, "Log debug detail to stderr");

  // Only the subcommand named on the command line is built: building all of
  // them (hundreds of options and validators) costs more than the rest of
  // a `vmwarden exec`'s user-space work. `vmwarden --help` and a mistyped
  // word get them all.
  std::string_view chosen = first_word(argc, argv);
  bool known = false;
  for (const Subcommand& subcommand : kSubcommands) {
    if (subcommand.name == chosen) {
      subcommand.add(app, globals);
      known = true;
    }
  }
  if (!known) {
    for (const Subcommand& subcommand : kSubcommands) subcommand.add(app, globals);
  }

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help and --version are "errors" that exit 0, printed by CLI11.
    if (e.get_exit_code() == 0) return with_output_written(app.exit(e) == 0 ? exit_status::kOk : exit_status::kUsage);
    if (auto hint = subcommand_hint(app, argc, argv)) {
      log::error("{}", *hint);
      return exit_status::kUsage;
    }
    std::string chain = parsed_subcommands(app);
    log::error("{} (see vmwarden {}--help)", plain_parse_error(app, e), chain.empty() ? "" : chain + " ");
    return exit_status::kUsage;
  }
  if (globals.verbose) log::set_min_level(log::Level::debug);
  int status = exit_status::kFailure;
  try {
    refuse_empty_values(app);
    status = globals.action();
  } catch (const UsageError& e) {
    log::error("{}", e.what());
    status = exit_status::kUsage;
  } catch (const PermanentError& e) {
    log::error("{}", e.what());
    status = exit_status::kPermanent;
  } catch (const std::exception& e) {
    log::error("{}", e.what());
    status = exit_status::kFailure;
  }
  // Exit without destroying the command line objects and the heap: after a
  // sandbox ran, each page freed on the way out is a write fault on memory
  // the warden had shared copy-on-write, and on a virtual machine faults are
  // what a short `vmwarden exec` spends most of its time on.
  ::_exit(with_output_written(status));
}

}  // namespace
}  // namespace vmwarden::cli

int main(int argc, char** argv) { return vmwarden::cli::run(argc, argv); }
