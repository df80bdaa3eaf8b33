// What run_sandbox() (outer.cc, warden.cc, service.cc, confinement.cc) does
// with privilege, written out as data. Keep it in step with those files:
// tests/golden/ holds the rendered output for the example definitions.
#include "supervisor/sandbox_audit.h"

#include <fmt/format.h>

#include <algorithm>
#include <string_view>

#include "common/printable.h"
#include "supervisor/caps.h"
#include "supervisor/json_text.h"
#include "supervisor/mounts.h"
#include "supervisor/namespaces.h"

namespace vmwarden::supervisor {
namespace {

std::string upper(std::string text) {
  for (char& c : text) c = static_cast<char>(c >= 'a' && c <= 'z' ? c - 'a' + 'A' : c);
  return text;
}

// By names only, as the text says (EnvironmentRule::describe()).
std::string environment_json(const EnvironmentRule& rule) {
  return fmt::format("{{\"inherit\":{},\"unset\":{},\"set\":{}}}", rule.inherit ? "true" : "false",
                     json_strings(rule.unset), json_strings(rule.set_names()));
}

std::string argv_text(const std::vector<std::string>& argv) {
  std::string out;
  for (const std::string& arg : argv) {
    if (!out.empty()) out += ' ';
    bool plain = !arg.empty() && arg.find_first_of(" \t\n'\"\\$`*?[]{}()<>|&;") == std::string::npos;
    out += plain ? arg : "'" + arg + "'";
  }
  return out;
}

// The "! ..." lines of a service's confinement text.
std::vector<std::string> flag_lines(const std::string& text) {
  std::vector<std::string> flags;
  std::size_t start = 0;
  while (start < text.size()) {
    std::size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    std::string_view line(text.data() + start, end - start);
    if (line.starts_with("! ")) flags.emplace_back(line.substr(2));
    start = end + 1;
  }
  return flags;
}

std::vector<std::string> all_warnings(const SandboxSpec& spec, const SandboxAudit& audit) {
  std::vector<std::string> warnings = audit.warnings;
  for (const ServiceSpec& service : spec.services) {
    for (const std::string& flag : flag_lines(describe_confinement_text(service.name, service.confinement,
                                                                        audit.labels)))
      warnings.push_back(fmt::format("service {}: {}", service.name, flag));
  }
  return warnings;
}

std::string steps_text(const std::vector<PrivilegedStep>& steps, int& number) {
  std::string out;
  for (const PrivilegedStep& step : steps) {
    out += fmt::format("  {:>2}. {}: {}\n", ++number, step.actor, step.action);
    out += fmt::format("      needs: {}\n", step.capabilities.empty() ? "no capability" : join(step.capabilities, ", "));
    out += fmt::format("      why: {}\n", step.why);
  }
  return out;
}

std::string steps_json(const std::vector<PrivilegedStep>& steps, int& number) {
  std::string out = "[";
  for (std::size_t i = 0; i < steps.size(); ++i) {
    const PrivilegedStep& step = steps[i];
    out += fmt::format("{}{{\"step\":{},\"actor\":{},\"action\":{},\"capabilities\":{},\"why\":{}}}", i ? "," : "",
                       ++number, json_quote(step.actor), json_quote(step.action), json_strings(step.capabilities),
                       json_quote(step.why));
  }
  return out + "]";
}

// "fd 0", "fds 0 and 2", "fds 0, 1 and 2".
std::string fds_text(const std::vector<int>& fds) {
  std::string out = fds.size() == 1 ? "fd " : "fds ";
  for (std::size_t i = 0; i < fds.size(); ++i)
    out += (i == 0 ? "" : i + 1 == fds.size() ? " and " : ", ") + std::to_string(fds[i]);
  return out;
}

const ServiceSpec* service_with_terminal(const SandboxSpec& spec) {
  for (const ServiceSpec& service : spec.services)
    if (!service.terminal_fds.empty()) return &service;
  return nullptr;
}

// The text with each line's control characters escaped (printable()):
// paths and arguments come from a definition or a command line, and an 8-bit
// CSI or a bidirectional override among them would act on the terminal or
// reorder the line, so that what the reader sees is not what will run.
std::string printable_lines(std::string_view text) {
  std::string out;
  for (std::size_t start = 0; start < text.size();) {
    std::size_t end = std::min(text.find('\n', start), text.size());
    out += printable(text.substr(start, end - start));
    if (end < text.size()) out += '\n';
    start = end + 1;
  }
  return out;
}

// Why the warden chowns a capture pipe (supervisor/capture.cc).
constexpr const char* kWhyPipeOwner =
    "the pipe is the service's, as one it made would be, so that it may open it again through /proc/self/fd/N "
    "(cloud-hypervisor does) as its own uid";

}  // namespace

std::vector<std::pair<std::string, std::string>> service_namespaces(const SandboxSpec& spec,
                                                                    const ServiceSpec& service) {
  return {
      {"pid", "sandbox"},
      {"mount", services_have_own_mount_namespaces(spec) ? "service" : "sandbox"},
      {"ipc", "sandbox"},
      {"uts", "sandbox"},
      {"cgroup", "sandbox"},
      {"net", spec.private_network ? "sandbox" : "host"},
      {"user", service.confinement.user_namespace != UserNamespace::host ? "service" : "host"},
      {"time", "host"},
  };
}

std::vector<PrivilegedStep> sandbox_start_steps(const SandboxSpec& spec, const AuditLabels& labels) {
  std::vector<PrivilegedStep> steps;
  const ServiceSpec* interactive = service_with_terminal(spec);
  if (interactive != nullptr) {
    steps.push_back(
        {"outer",
         fmt::format("open a new pty from the host's /dev/ptmx (posix_openpt O_RDWR | O_NOCTTY | O_CLOEXEC, grantpt, "
                     "unlockpt; its slave through the master, TIOCGPTPEER O_NOCTTY) and give it the window size and "
                     "modes of the caller's terminal; service {} receives the slave as its {}, instead of the "
                     "caller's terminal",
                     interactive->name, fds_text(interactive->terminal_fds)),
         {},
         "the command never holds the caller's terminal: what it does to its terminal (TIOCSPGRP, tcsetattr, the "
         "window size) reaches its own pty only"});
  }
  steps.push_back({"outer",
                   fmt::format("create the runtime directory {} (missing parents 0755) at mode 0700, mark it "
                               "trusted.vmwarden.runtime-dir, chown it to uid {}, gid {}, and hold a flock on it "
                               "while the sandbox runs",
                               spec.runtime_dir.string(), labels.text(spec.runtime_dir_uid),
                               labels.text(spec.runtime_dir_gid)),
                   {"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_SYS_ADMIN"},
                   "the services, running as that uid, create their sockets there and nobody else may enter; "
                   "CAP_DAC_OVERRIDE only to remove a directory left by an instance that died (its contents "
                   "belong to the VM's uid); CAP_SYS_ADMIN for the mark, which only it can set or remove, by which "
                   "`vmwarden acl sweep` knows a directory left behind whoever owns it"});
  std::string namespaces = "PID, mount, IPC, UTS and cgroup namespaces";
  if (spec.private_network) namespaces += " and an empty network namespace";
  steps.push_back({"outer",
                   fmt::format("clone3 the warden into new {}; it becomes PID 1 there", namespaces),
                   {"CAP_SYS_ADMIN"},
                   spec.private_network
                       ? "a PID 1 that reaps every process and whose death kills them all; private mounts; "
                         "no network interface but loopback"
                       : "a PID 1 that reaps every process and whose death kills them all; private mounts "
                         "(the host's network namespace is kept: network = true)"});
  steps.push_back({"warden", "make every mount private (MS_REC | MS_PRIVATE on /)", {"CAP_SYS_ADMIN"},
                   "nothing mounted in the sandbox propagates to the host"});
  steps.push_back({"warden", "mount a new proc on /proc (nosuid, nodev, noexec, hidepid=invisible)", {"CAP_SYS_ADMIN"},
                   "the services see only the sandbox's processes"});
  if (has_private_mount_points(spec)) {
    steps.push_back({"warden",
                     fmt::format("make {} (root's, 0755), mount a tmpfs there (nosuid, nodev, noexec) with a mount "
                                 "point per share, and make that tmpfs read-only once they are mounted",
                                 (spec.runtime_dir / "mnt").string()),
                     {"CAP_SYS_ADMIN"},
                     "a service given a share's mount point reaches the share that was granted, whatever happens "
                     "to the share's own path: only root and the VM's uid (whose runtime dir it is) can change "
                     "anything on the way"});
  }
  for (const BindMount& mount : spec.mounts) {
    std::filesystem::path target = mount.target.empty() ? private_mount_point(spec, mount.name) : mount.target;
    std::string where = target == mount.source ? "onto itself" : "on " + target.string();
    steps.push_back(
        {"warden",
         fmt::format("mount {} {}{}: the detached, private copy of its mounts (those below it read-only) that the "
                     "caller made when it checked (or granted) it, if it made one (move_mount; a target named like "
                     "the source must still be the directory copied), else by path (MS_BIND | MS_REC)",
                     mount.source.string(), where,
                     mount.readonly ? ", read-only recursively (mount_setattr)" : ""),
         {"CAP_SYS_ADMIN"},
         fmt::format("{}{}", mount.readonly ? "read-only whatever the file permissions and ACLs say, even for uid 0"
                                            : "the path as the services must see it",
                     mount.target.empty() ? "; a service is given this path rather than the source's own, which "
                                            "whoever can write the directory above the source could change"
                                          : "")});
  }
  steps.push_back({"warden",
                   fmt::format("write {} to /proc/sys/vm/memfd_noexec (for the sandbox's PID namespace; Linux 6.3)",
                               memfd_noexec_value()),
                   {"CAP_SYS_ADMIN"},
                   memfd_noexec_value() == 2
                       ? "a memfd is made without execute permission and MFD_EXEC is refused: a program written to "
                         "one would run, by its descriptor, what no Landlock execute rule names"
                       : "a memfd is made without execute permission unless MFD_EXEC asks for it (2 would refuse the "
                         "plain memfds VMMs make before Linux 6.6)"});
  for (const ServiceSpec& service : spec.services) {
    for (const ListenSocket& socket : service.listen_sockets) {
      steps.push_back({"warden",
                       fmt::format("bind and listen on the unix socket {} (mode 0600), chown it to uid {}, gid {}; "
                                   "service {} receives it as fd {}",
                                   socket.path.string(), labels.text(service.confinement.uid),
                                   labels.text(service.confinement.gid), service.name, socket.child_fd),
                       {"CAP_CHOWN"},
                       "the socket exists before any service starts, so a client started later connects at once; "
                       "the service needs no write access where it lives"});
    }
    for (const OutputCapture& capture : service.captures) {
      if (capture.to_log) {
        steps.push_back({"warden",
                         fmt::format("service {} receives a pipe as fd {}, chowned to uid {}, gid {}; the warden logs "
                                     "each line that comes from it as \"{} fd {}: LINE\", control characters "
                                     "escaped, cut every 4 KiB",
                                     service.name, capture.child_fd, labels.text(service.confinement.uid),
                                     labels.text(service.confinement.gid), service.name, capture.child_fd),
                         {"CAP_CHOWN"},
                         std::string("nothing the service writes reads as a line of vmwarden's own in the log; ") +
                             kWhyPipeOwner});
        continue;
      }
      steps.push_back({"warden",
                       fmt::format("create {} (mode 0600) through the runtime directory's descriptor (no symlink "
                                   "followed), chown it to uid {}, gid {}; service {} receives a pipe as fd {}, "
                                   "chowned to them too, whose output the warden writes there, {} bytes at most, then "
                                   "renames it to {}.1 and starts a new one",
                                   capture.file.string(), labels.text(service.confinement.uid),
                                   labels.text(service.confinement.gid), service.name, capture.child_fd,
                                   capture.max_bytes, capture.file.string()),
                       {"CAP_CHOWN"},
                       std::string("however much the service writes, at most twice that is kept: it cannot fill "
                                   "the runtime directory's filesystem (/run, memory); readable by the service's uid, "
                                   "as a file it made would be; never copied to the log; ") +
                           kWhyPipeOwner});
    }
  }
  constexpr const char* kScratch = "a private tmpfs (nosuid, nodev, noexec, 64 MiB, 16k inodes) on /tmp and on /dev/shm";
  // The mounts of a service's view: made by its child in a namespace of its
  // own, or by the warden for the one service of a sandbox, before it starts.
  auto add_mount_steps = [&](const ServiceSpec& service) {
      ServiceMounts mounts = service_mounts(spec, service);
      std::string actor = "service " + service.name;
      // The one service's mounts are the warden's to make, in its namespace.
      const std::string mounter = mounts.own_namespace ? actor : "warden";
      const std::string where = mounts.own_namespace ? "in its mount namespace"
                                                     : "in its mount namespace, for the one service " + service.name;
      if (mounts.own_namespace) {
        steps.push_back({actor, "in the child, before exec: unshare a mount namespace", {"CAP_SYS_ADMIN"},
                         "the mounts below are the service's alone"});
      }
      std::vector<std::string> hidden;
      for (const std::filesystem::path& point : mounts.hidden) hidden.push_back(point.string());
      if (!hidden.empty()) {
        steps.push_back({mounter, where + ": unmount " + join(hidden, ", "), {"CAP_SYS_ADMIN"},
                         "copies of shares none of its Landlock rules names; a rule on a directory above them "
                         "would otherwise reach them"});
      }
      if (mounts.covered_runtime_dir) {
        std::vector<std::string> uncovered;
        for (const std::filesystem::path& path : mounts.uncovered) uncovered.push_back(path.string());
        steps.push_back({mounter,
                         fmt::format("{}: cover {} with an empty read-only tmpfs holding a copy of the mounts at {}",
                                     where, mounts.covered_runtime_dir->string(),
                                     uncovered.empty() ? std::string("nothing") : join(uncovered, ", ")),
                         {"CAP_SYS_ADMIN"},
                         "none of its rules is on the runtime directory: it cannot reach the VMM's control socket "
                         "there (pathname sockets are not Landlock's)"});
      }
      if (mounts.read_only_elsewhere) {
        std::vector<std::string> kept;
        for (const PathRule& rule : mounts.writable) kept.push_back(rule.path.string());
        steps.push_back(
            {mounter,
             fmt::format("{}: make every mount read-only (mount_setattr, recursively on /), then put back on top a "
                         "copy, taken before, of the mounts at each write rule{}; /proc (the sandbox's own, where the "
                         "child writes its user namespace's maps) stays writable",
                         where, kept.empty() ? " (none)" : ": " + join(kept, ", ")),
             {"CAP_SYS_ADMIN"},
             "Landlock does not cover chmod, chown, extended attributes (POSIX ACLs) or file times; read-only "
             "mounts refuse them outside the write rules, which stay as writable as on the host"});
      }
      steps.push_back({mounter, fmt::format("{}: mount {}", where, kScratch), {"CAP_SYS_ADMIN"},
                       "services cannot meet, or leave files for each other, in shared scratch space"});
  };
  if (!services_have_own_mount_namespaces(spec) && !spec.services.empty()) add_mount_steps(spec.services.front());
  for (const ServiceSpec& service : spec.services) {
    std::string actor = "service " + service.name;
    const Confinement& confinement = service.confinement;
    if (!service.terminal_fds.empty()) {
      steps.push_back({actor,
                       fmt::format("in the child: start a session of its own (setsid) and make the pty's slave, "
                                   "its fd {}, its controlling terminal (TIOCSCTTY)",
                                   service.terminal_fds.front()),
                       {},
                       "an interactive command's own session and foreground process group on its own terminal "
                       "(/dev/tty is that pty): kill(0) reaches only its own group, and Ctrl-C reaches it through "
                       "the pty's line discipline"});
    } else {
      steps.push_back({actor, "in the child: start a session of its own (setsid), without a controlling terminal",
                       {}, "nothing it does reaches the terminal vmwarden was started from, but its output"});
    }
    if (services_have_own_mount_namespaces(spec)) add_mount_steps(service);
    if (confinement.landlock.mode != LandlockMode::off && !confinement.landlock.paths.empty()) {
      steps.push_back({actor,
                       fmt::format("open the {} Landlock rule paths (O_PATH) with the supervisor's credentials",
                                   confinement.landlock.paths.size()),
                       {"CAP_DAC_READ_SEARCH"},
                       "a rule needs a descriptor; the service's own uid still passes every permission check "
                       "afterwards"});
    }
    steps.push_back({actor,
                     fmt::format("setgroups(0), setresgid({}), setresuid({})", labels.text(confinement.gid),
                                 labels.text(confinement.uid)),
                     {"CAP_SETGID", "CAP_SETUID"},
                     "the service runs as the VM's uid, with no supplementary groups"});
    if (confinement.user_namespace == UserNamespace::identity) {
      steps.push_back({actor,
                       fmt::format("as that uid: unshare a user namespace, deny setgroups there, map only uid {} "
                                   "and gid {} onto themselves",
                                   labels.text(confinement.uid), labels.text(confinement.gid)),
                       {},
                       "unprivileged; the namespace belongs to the VM's uid, so the capabilities kept below act "
                       "on files owned by it and nowhere else"});
    } else if (confinement.user_namespace == UserNamespace::root) {
      steps.push_back({actor,
                       fmt::format("as that uid: unshare a user namespace, deny setgroups there, map only uid {} "
                                   "and gid {}, as uid 0 and gid 0",
                                   labels.text(confinement.uid), labels.text(confinement.gid)),
                       {},
                       "unprivileged; the command sees itself as root, while the host's checks (files, sockets, "
                       "signals, /proc/sys) see an unprivileged UID"});
    }
    std::vector<std::string> kept;
    for (int capability : confinement.keep_capabilities) kept.push_back(upper(capability_name(capability)));
    steps.push_back(
        {actor,
         fmt::format("keep {} in the permitted, effective, inheritable and ambient sets; drop every other "
                     "capability from them and from the bounding set; lock the securebits NOROOT and "
                     "NO_CAP_AMBIENT_RAISE",
                     kept.empty() ? std::string("no capability") : join(kept, ", ")),
         {"CAP_SETPCAP"},
         kept.empty() ? "nothing privileged survives exec, and nothing can come back"
                      : "only the capabilities the policy names survive exec, and nothing can come back"});
    std::string restrict = "set no_new_privs and the parent-death signal (SIGKILL)";
    if (confinement.landlock.mode != LandlockMode::off) restrict += ", restrict itself with its Landlock ruleset";
    restrict += confinement.seccomp.profile == "none"
                    ? ", no seccomp filter (profile none)"
                    : fmt::format(", load the seccomp profile {} ({})", confinement.seccomp.profile,
                                  confinement.seccomp.action == SeccompAction::kill ? "kill" : "log");
    steps.push_back({actor, restrict, {},
                     "unprivileged: no_new_privs is what lets a process without CAP_SYS_ADMIN restrict itself"});
    steps.push_back({actor, "execve " + (service.argv.empty() ? std::string("?") : service.argv.front()), {},
                     "from here on the service holds only what is listed under its name below"});
    for (const ServiceSpec::WardenAction& action : service.warden_actions)
      steps.push_back({"warden", fmt::format("for service {}: {}", service.name, action.action), action.capabilities,
                       action.why});
  }
  if (interactive != nullptr) {
    steps.push_back({"outer",
                     "while the sandbox runs, on a thread of its own: relay bytes between the caller's terminal and "
                     "the pty's master (the caller's keys too, with the terminal in raw mode meanwhile, only when "
                     "the command's stdin and stdout are the terminal and vmwarden runs in its foreground), each SIGWINCH passed "
                     "on as the pty's window size (TIOCSWINSZ); once the warden has exited, relay what the command "
                     "wrote last, then restore the caller's terminal's modes, before anything else ends (not after "
                     "a SIGKILL or a crash of vmwarden)",
                     {},
                     "the caller's keys, Ctrl-C included, reach the command through its pty, not vmwarden's process "
                     "group; the caller's terminal is as it was afterwards"});
  }
  return steps;
}

std::vector<PrivilegedStep> sandbox_exit_steps(const SandboxSpec& spec,
                                               const std::vector<PrivilegedStep>& after_services) {
  bool other_uid = false;
  for (const ServiceSpec& service : spec.services) other_uid = other_uid || service.confinement.uid != 0;
  std::vector<PrivilegedStep> steps;
  for (const ServiceSpec& service : spec.services) {
    if (service.stop_programs.empty()) continue;
    steps.push_back({"warden",
                     fmt::format("to stop service {}: run {} in a child that joins the service's mount namespace "
                                 "(setns through its pidfd) and takes its confinement",
                                 service.name, join(service.stop_programs, ", then ")),
                     {"CAP_SYS_ADMIN"},
                     "the VMM's own stop command, run as the VMM runs (its uid, Landlock domain, seccomp filter, "
                     "and a mount namespace without the shares' copies)"});
  }
  steps.push_back({"warden",
                   fmt::format("stop the services (their graceful stop or SIGTERM, SIGKILL after {} ms), reap "
                               "them and exit; the kernel kills whatever is left in the PID namespace",
                               spec.shutdown_timeout.count()),
                   other_uid ? std::vector<std::string>{"CAP_KILL"} : std::vector<std::string>{},
                   "the services run as another uid; their Landlock scopes restrict only signals out of them"});
  steps.insert(steps.end(), after_services.begin(), after_services.end());
  steps.push_back({"outer",
                   fmt::format("remove {} and everything in it, never following a symlink", spec.runtime_dir.string()),
                   {"CAP_DAC_OVERRIDE"},
                   "the directory and what the services left in it belong to the VM's uid"});
  steps.push_back({"warden",
                   fmt::format("only if the outer is gone (killed): unmount what its namespace has mounted in {} and "
                               "remove it as the outer would, never following a symlink",
                               spec.runtime_dir.string()),
                   {"CAP_SYS_ADMIN", "CAP_DAC_OVERRIDE"},
                   "nobody else is left to remove it; a mount there would keep the kernel from removing it"});
  return steps;
}

std::string describe_sandbox_text(const SandboxSpec& spec, const SandboxAudit& audit) {
  std::string out = fmt::format("vmwarden audit of {}: sandbox {}; nothing below has run yet\n", audit.title, spec.name);
  for (const auto& [key, value] : audit.facts) out += fmt::format("  {}: {}\n", key, value);

  std::vector<std::string> warnings = all_warnings(spec, audit);
  out += warnings.empty() ? "\nwarnings: none\n" : "\nwarnings:\n";
  for (const std::string& warning : warnings) out += fmt::format("! {}\n", warning);

  int number = 0;
  out += "\nprivileged steps, in order:\n";
  out += steps_text(audit.before, number);
  out += steps_text(sandbox_start_steps(spec, audit.labels), number);
  out += "when the sandbox ends:\n";
  out += steps_text(sandbox_exit_steps(spec, audit.after_services), number);
  out += steps_text(audit.after, number);

  for (const ServiceSpec& service : spec.services) {
    std::string confinement = describe_confinement_text(service.name, service.confinement, audit.labels);
    // The confinement's first line names the service; the sandbox adds what
    // it runs and where, right below it.
    std::size_t first_line = confinement.find('\n') + 1;
    std::vector<std::string> namespaces;
    for (const auto& [kind, whose] : service_namespaces(spec, service))
      namespaces.push_back(kind + " (" + whose + ")");
    out += "\n" + confinement.substr(0, first_line);
    out += fmt::format("  role: {}, stage {}\n", service.main ? "main (its exit ends the sandbox)" : "helper",
                       service.stage);
    out += fmt::format("  argv: {}\n", argv_text(service.argv));
    out += fmt::format("  environment: {}\n", service.environment.describe());
    out += fmt::format("  namespaces: {}\n", join(namespaces, ", "));
    out += confinement.substr(first_line);
  }
  return printable_lines(out);
}

std::string describe_sandbox_json(const SandboxSpec& spec, const SandboxAudit& audit) {
  std::string facts = "{";
  for (std::size_t i = 0; i < audit.facts.size(); ++i)
    facts += fmt::format("{}{}:{}", i ? "," : "", json_quote(audit.facts[i].first), json_quote(audit.facts[i].second));
  facts += "}";
  int number = 0;
  std::string before = steps_json(audit.before, number);
  std::string start = steps_json(sandbox_start_steps(spec, audit.labels), number);
  std::string exit = steps_json(sandbox_exit_steps(spec, audit.after_services), number);
  std::string after = steps_json(audit.after, number);
  // The four lists are one numbered sequence; join them into one array.
  auto inner = [](const std::string& list) { return list.substr(1, list.size() - 2); };
  std::vector<std::string> start_parts, end_parts;
  for (const std::string* list : {&before, &start})
    if (list->size() > 2) start_parts.push_back(inner(*list));
  for (const std::string* list : {&exit, &after})
    if (list->size() > 2) end_parts.push_back(inner(*list));

  std::string services = "[";
  for (std::size_t i = 0; i < spec.services.size(); ++i) {
    const ServiceSpec& service = spec.services[i];
    std::string namespaces = "{";
    auto kinds = service_namespaces(spec, service);
    for (std::size_t k = 0; k < kinds.size(); ++k)
      namespaces += fmt::format("{}{}:{}", k ? "," : "", json_quote(kinds[k].first), json_quote(kinds[k].second));
    namespaces += "}";
    services += fmt::format("{}{{\"name\":{},\"main\":{},\"stage\":{},\"argv\":{},\"environment\":{},"
                            "\"namespaces\":{},\"confinement\":{}}}",
                            i ? "," : "", json_quote(service.name), service.main ? "true" : "false", service.stage,
                            json_strings(service.argv), environment_json(service.environment), namespaces,
                            describe_confinement_json(service.name, service.confinement, audit.labels));
  }
  services += "]";
  return fmt::format(
      "{{\"audit\":{},\"sandbox\":{},\"facts\":{},\"warnings\":{},\"steps\":[{}],\"exit_steps\":[{}],"
      "\"services\":{}}}\n",
      json_quote(audit.title), json_quote(spec.name), facts, json_strings(all_warnings(spec, audit)),
      join(start_parts, ","), join(end_parts, ","), services);
}

}  // namespace vmwarden::supervisor
