// The supervisor's part of `vmwarden audit`: every privileged step
// run_sandbox() takes for a SandboxSpec, in order, with the capability each
// needs, and the whole sandbox (those steps, then each service's final
// confinement) as text or JSON. Pure: nothing is created, mounted, leased or
// changed by describing it.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "supervisor/audit.h"
#include "supervisor/sandbox.h"

namespace vmwarden::supervisor {

struct PrivilegedStep {
  std::string actor;                      // "outer", "warden", "service NAME"
  std::string action;                     // what is done, with its paths and ids
  std::vector<std::string> capabilities;  // what it needs, e.g. "CAP_SYS_ADMIN"; empty: none
  std::string why;
};

// What the caller of run_sandbox() adds around it (the VM launcher: the UID
// lease and ACL grants before, their revocation and release after).
struct SandboxAudit {
  std::string title;                                       // "definition work", "vmwarden exec"
  std::vector<std::pair<std::string, std::string>> facts;  // "uid" -> "...", shown first
  std::vector<PrivilegedStep> before;                      // before run_sandbox()
  std::vector<PrivilegedStep> after_services;              // SandboxSpec::after_services
  std::vector<PrivilegedStep> after;                       // once it returned
  std::vector<std::string> warnings;                       // the caller's own, e.g. why it would refuse to start
  AuditLabels labels;
};

// run_sandbox()'s privileged steps while starting, and while ending.
std::vector<PrivilegedStep> sandbox_start_steps(const SandboxSpec& spec, const AuditLabels& labels);
// `after_services` (what SandboxSpec::after_services does) comes once the
// services have exited, before the runtime dir is removed.
std::vector<PrivilegedStep> sandbox_exit_steps(const SandboxSpec& spec,
                                               const std::vector<PrivilegedStep>& after_services);

// The namespaces `service` of `spec` runs in: kind -> whose ("sandbox",
// "service", "host"), as {"pid", "sandbox"}.
std::vector<std::pair<std::string, std::string>> service_namespaces(const SandboxSpec& spec,
                                                                    const ServiceSpec& service);

// Facts, warnings (every "!" line of every service, first), the steps in
// order, then each service's argv, namespaces and confinement.
std::string describe_sandbox_text(const SandboxSpec& spec, const SandboxAudit& audit);
// The same as one JSON object, with a trailing newline.
std::string describe_sandbox_json(const SandboxSpec& spec, const SandboxAudit& audit);

}  // namespace vmwarden::supervisor
