// Golden command lines of the three VMM backends, and the checks that keep
// option separators out of them whatever built the definition.
#include <sys/stat.h>

#include <fmt/core.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "common/error.h"
#include "tests/support/support.h"
#include "vm-launcher/backend.h"

namespace vmwarden::vm {
namespace {

using ::testing::ElementsAreArray;
using ::testing::HasSubstr;
using Args = std::vector<std::string>;

Host test_host(bool kvm = false) {
  Host host;
  host.qemu = "/usr/bin/qemu-system-x86_64";
  host.crosvm = "/opt/crosvm/crosvm";
  host.cloud_hypervisor = "/opt/ch/cloud-hypervisor";
  host.ch_remote = "/opt/ch/ch-remote";
  host.kvm = kvm;
  return host;
}

// Two shares (ro, rw), two disks (ro, rw), an initramfs and a command line
// with spaces.
Definition full_definition(Vmm vmm) {
  Definition definition;
  definition.name = "work";
  definition.vmm = vmm;
  definition.kernel = "/var/lib/vmwarden/images/vmlinuz";
  definition.initramfs = "/var/lib/vmwarden/images/initrd.img";
  definition.cmdline = "console=ttyS0 quiet init=/init";
  definition.memory_mib = 1024;
  definition.cpus = 2;
  definition.disks = {{"/srv/disks/base.img", true}, {"/srv/disks/data.img", false}};
  definition.shares = {{"home", "/home/user/work", Access::rw}, {"docs", "/srv/docs", Access::ro}};
  return definition;
}

// Only the kernel.
Definition minimal_definition(Vmm vmm) {
  Definition definition;
  definition.name = "tiny";
  definition.vmm = vmm;
  definition.kernel = "/boot/vmlinuz";
  definition.memory_mib = 256;
  return definition;
}

RuntimePaths runtime_paths(const Definition& definition) {
  return RuntimePaths::in("/run/vmwarden/" + definition.name, definition);
}

Args argv_of(const Definition& definition, const Host& host = test_host()) {
  return plan_vmm(definition, runtime_paths(definition), host).argv;
}

TEST(RuntimePaths, NumbersShareSocketsToFitSocketAddresses) {
  Definition definition = full_definition(Vmm::qemu);
  RuntimePaths paths = RuntimePaths::in("/run/vmwarden/work", definition);
  EXPECT_EQ(paths.control_socket, "/run/vmwarden/work/control.sock");
  EXPECT_EQ(paths.serial_log, "/run/vmwarden/work/serial.log");
  EXPECT_EQ(paths.share_sockets.at("home"), "/run/vmwarden/work/fs0.sock");
  EXPECT_EQ(paths.share_sockets.at("docs"), "/run/vmwarden/work/fs1.sock");
}

TEST(QemuArgv, Full) {
  Args expected = {
      "/usr/bin/qemu-system-x86_64",
      "-name", "work",
      "-machine", "q35",
      "-accel", "tcg",
      "-smp", "2",
      "-m", "1024M",
      "-object", "memory-backend-memfd,id=mem,size=1024M,share=on",
      "-numa", "node,memdev=mem",
      "-kernel", "/var/lib/vmwarden/images/vmlinuz",
      "-initrd", "/var/lib/vmwarden/images/initrd.img",
      "-append", "console=ttyS0 quiet init=/init",
      "-nographic", "-nodefaults", "-no-user-config", "-no-reboot",
      "-sandbox", "off",
      "-chardev", "socket,id=qmp,fd=4,server=on,wait=off",
      "-mon", "chardev=qmp,mode=control",
      "-add-fd", "fd=3,set=1",
      "-chardev", "file,id=serial0,path=/dev/fdset/1,append=on",
      "-serial", "chardev:serial0",
      "-chardev", "socket,id=fs0,path=/run/vmwarden/work/fs0.sock",
      "-device", "vhost-user-fs-pci,chardev=fs0,tag=home",
      "-chardev", "socket,id=fs1,path=/run/vmwarden/work/fs1.sock",
      "-device", "vhost-user-fs-pci,chardev=fs1,tag=docs",
      "-blockdev",
      R"({"driver":"raw","node-name":"disk0","read-only":true,)"
      R"("file":{"driver":"file","filename":"/srv/disks/base.img","read-only":true}})",
      "-device", "virtio-blk-pci,drive=disk0",
      "-blockdev",
      R"({"driver":"raw","node-name":"disk1","read-only":false,)"
      R"("file":{"driver":"file","filename":"/srv/disks/data.img","read-only":false}})",
      "-device", "virtio-blk-pci,drive=disk1",
  };
  EXPECT_THAT(argv_of(full_definition(Vmm::qemu)), ElementsAreArray(expected));
}

// A block device takes QEMU's host_device driver (QEMU >= 6 refuses `file`
// on one); a regular file keeps `file`. /dev/loop0 is only stat'ed.
TEST(QemuArgv, BlockDeviceDiskUsesHostDevice) {
  struct stat st {};
  if (::lstat("/dev/loop0", &st) != 0 || !S_ISBLK(st.st_mode)) GTEST_SKIP() << "no /dev/loop0 block device";
  Definition definition = minimal_definition(Vmm::qemu);
  // Block devices are often named by a symlink (/dev/mapper/*, /dev/disk/by-*).
  testing::TempDir dir("vmwarden-disk");
  std::filesystem::path link = dir / "by-name";
  std::filesystem::create_symlink("/dev/loop0", link);
  definition.disks = {{"/dev/loop0", true}, {"/proc/self/status", true}, {link, false}};
  Args argv = argv_of(definition);
  EXPECT_THAT(argv, ::testing::Contains(
                        R"({"driver":"raw","node-name":"disk0","read-only":true,)"
                        R"("file":{"driver":"host_device","filename":"/dev/loop0","read-only":true}})"));
  EXPECT_THAT(argv, ::testing::Contains(
                        R"({"driver":"raw","node-name":"disk1","read-only":true,)"
                        R"("file":{"driver":"file","filename":"/proc/self/status","read-only":true}})"));
  EXPECT_THAT(argv, ::testing::Contains(fmt::format(
                        R"({{"driver":"raw","node-name":"disk2","read-only":false,)"
                        R"("file":{{"driver":"host_device","filename":"{}","read-only":false}}}})",
                        link.string())));
}

// ioctl on a block-device disk (Landlock's FS_IOCTL_DEV): QEMU needs it on
// a read-write one only; cloud-hypervisor sizes every block device with
// BLKGETSIZE64, and crosvm is given the same. A disk image file never.
TEST(VmmPlan, BlockDeviceDisksGetIoctlAsTheirVmmNeedsIt) {
  struct stat st {};
  if (::stat("/dev/loop0", &st) != 0 || !S_ISBLK(st.st_mode)) GTEST_SKIP() << "no /dev/loop0 block device";
  auto ioctl_on = [](Vmm vmm, const char* path, bool readonly) {
    Definition definition = minimal_definition(vmm);
    definition.disks = {{path, readonly}};
    VmmPlan plan = plan_vmm(definition, runtime_paths(definition), test_host(/*kvm=*/true));
    for (const supervisor::PathRule& rule : plan.paths)
      if (rule.path == path) return rule.rights.ioctl_dev;
    ADD_FAILURE() << "no rule for " << path;
    return false;
  };
  EXPECT_FALSE(ioctl_on(Vmm::qemu, "/dev/loop0", true));
  EXPECT_TRUE(ioctl_on(Vmm::qemu, "/dev/loop0", false));
  for (Vmm vmm : {Vmm::crosvm, Vmm::cloud_hypervisor}) {
    EXPECT_TRUE(ioctl_on(vmm, "/dev/loop0", true));
    EXPECT_TRUE(ioctl_on(vmm, "/dev/loop0", false));
    EXPECT_FALSE(ioctl_on(vmm, "/proc/self/status", false));
  }
}

TEST(QemuArgv, MinimalWithKvmAndNetwork) {
  Definition definition = minimal_definition(Vmm::qemu);
  definition.network = true;
  VmmPlan plan = plan_vmm(definition, runtime_paths(definition), test_host(/*kvm=*/true));
  Args expected = {
      "/usr/bin/qemu-system-x86_64",
      "-name", "tiny",
      "-machine", "q35",
      "-accel", "kvm", "-cpu", "host",
      "-smp", "1",
      "-m", "256M",
      "-object", "memory-backend-memfd,id=mem,size=256M,share=on",
      "-numa", "node,memdev=mem",
      "-kernel", "/boot/vmlinuz",
      "-nographic", "-nodefaults", "-no-user-config", "-no-reboot",
      "-sandbox", "off",
      "-chardev", "socket,id=qmp,fd=4,server=on,wait=off",
      "-mon", "chardev=qmp,mode=control",
      "-add-fd", "fd=3,set=1",
      "-chardev", "file,id=serial0,path=/dev/fdset/1,append=on",
      "-serial", "chardev:serial0",
      "-netdev", "user,id=net0", "-device", "virtio-net-pci,netdev=net0",
  };
  EXPECT_THAT(plan.argv, ElementsAreArray(expected));
  EXPECT_TRUE(plan.needs_network);
  EXPECT_EQ(plan.seccomp_profile, "qemu");
}

TEST(CrosvmArgv, Full) {
  Definition definition = full_definition(Vmm::crosvm);
  definition.wayland = true;
  RuntimePaths paths = runtime_paths(definition);
  paths.wayland_socket = "/run/user/1000/wayland-0";
  Args expected = {
      "/opt/crosvm/crosvm", "run",
      "--mem", "1024",
      "--cpus", "2",
      "--disable-sandbox",
      "--socket", "/run/vmwarden/work/control.sock",
      "--serial", "type=file,path=/proc/self/fd/3,console=true",
      "--block", "path=/srv/disks/base.img,ro=true",
      "--block", "path=/srv/disks/data.img,ro=false",
      "--vhost-user", "fs,socket=/run/vmwarden/work/fs0.sock",
      "--vhost-user", "fs,socket=/run/vmwarden/work/fs1.sock",
      "--wayland-sock", "/run/user/1000/wayland-0",
      "--initrd", "/var/lib/vmwarden/images/initrd.img",
      "--params", "console=ttyS0 quiet init=/init",
      "/var/lib/vmwarden/images/vmlinuz",
  };
  VmmPlan plan = plan_vmm(definition, paths, test_host());
  EXPECT_THAT(plan.argv, ElementsAreArray(expected));
  EXPECT_EQ(plan.seccomp_profile, "vm-daemon");
}

TEST(CrosvmArgv, Minimal) {
  Args expected = {
      "/opt/crosvm/crosvm", "run", "--mem", "256", "--cpus", "1", "--disable-sandbox",
      "--socket", "/run/vmwarden/tiny/control.sock",
      "--serial", "type=file,path=/proc/self/fd/3,console=true",
      "/boot/vmlinuz",
  };
  EXPECT_THAT(argv_of(minimal_definition(Vmm::crosvm)), ElementsAreArray(expected));
}

TEST(CloudHypervisorArgv, Full) {
  Args expected = {
      "/opt/ch/cloud-hypervisor",
      "--api-socket", "fd=4",
      "--kernel", "/var/lib/vmwarden/images/vmlinuz",
      "--initramfs", "/var/lib/vmwarden/images/initrd.img",
      "--cmdline=console=ttyS0 quiet init=/init",
      "--cpus", "boot=2",
      "--memory", "size=1024M,shared=on",
      "--disk", "path=/srv/disks/base.img,readonly=on",
      "--disk", "path=/srv/disks/data.img,readonly=off",
      "--fs", "tag=home,socket=/run/vmwarden/work/fs0.sock",
      "--fs", "tag=docs,socket=/run/vmwarden/work/fs1.sock",
      "--serial", "file=/proc/self/fd/3",
      "--console", "off",
      "--seccomp", "true",
  };
  EXPECT_THAT(argv_of(full_definition(Vmm::cloud_hypervisor)), ElementsAreArray(expected));
}

TEST(CloudHypervisorArgv, Minimal) {
  Args expected = {
      "/opt/ch/cloud-hypervisor",
      "--api-socket", "fd=4",
      "--kernel", "/boot/vmlinuz",
      "--cpus", "boot=1",
      "--memory", "size=256M,shared=on",
      "--serial", "file=/proc/self/fd/3",
      "--console", "off",
      "--seccomp", "true",
  };
  EXPECT_THAT(argv_of(minimal_definition(Vmm::cloud_hypervisor)), ElementsAreArray(expected));
}

// No VMM is given a console file to open: each writes the console to
// kConsoleFd, which the warden makes a pipe's write end, and the warden
// alone writes serial.log, bounded (doc/VMM.md).
TEST(VmmArgv, TheConsoleGoesToTheWardensPipe) {
  for (Vmm vmm : {Vmm::qemu, Vmm::crosvm, Vmm::cloud_hypervisor}) {
    VmmPlan plan = plan_vmm(full_definition(vmm), runtime_paths(full_definition(vmm)), test_host());
    EXPECT_EQ(plan.console_fd, kConsoleFd);
    for (const std::string& arg : plan.argv)
      EXPECT_EQ(arg.find("serial.log"), std::string::npos) << to_string(vmm) << ": " << arg;
  }
}

TEST(VmmArgv, NetworkNeedsQemu) {
  for (Vmm vmm : {Vmm::crosvm, Vmm::cloud_hypervisor}) {
    Definition definition = minimal_definition(vmm);
    definition.network = true;
    EXPECT_THROW(
        try { argv_of(definition); } catch (const UsageError& e) {
          EXPECT_THAT(e.what(), HasSubstr("tap device"));
          throw;
        },
        UsageError);
  }
}

TEST(VmmArgv, WaylandNeedsCrosvmAndASocket) {
  for (Vmm vmm : {Vmm::qemu, Vmm::cloud_hypervisor}) {
    Definition definition = minimal_definition(vmm);
    definition.wayland = true;
    EXPECT_THROW(argv_of(definition), UsageError);
  }
  Definition definition = minimal_definition(Vmm::crosvm);
  definition.wayland = true;
  EXPECT_THROW(argv_of(definition), UsageError);  // no socket given
}

TEST(VmmArgv, MissingProgramNamesItsVariable) {
  Host host = test_host();
  host.cloud_hypervisor.clear();
  try {
    argv_of(minimal_definition(Vmm::cloud_hypervisor), host);
    FAIL() << "no PermanentError";
  } catch (const PermanentError& e) {
    EXPECT_THAT(e.what(), HasSubstr("VMWARDEN_CLOUD_HYPERVISOR"));
  }
}

TEST(VmmArgv, CommandDefinitionsHaveNoVmm) {
  Definition definition;
  definition.name = "bus";
  definition.command = {"/usr/bin/dbus-daemon"};
  EXPECT_THROW(argv_of(definition), UsageError);
}

// Every path and tag that reaches an argv is checked again by the backend,
// even when the definition was built in code and never parsed: each of these
// would otherwise add an option to the VMM's command line.
TEST(VmmArgv, RefusesInjectionInEveryArgument) {
  struct Case {
    const char* what;
    void (*mutate)(Definition&, RuntimePaths&);
  };
  const Case cases[] = {
      {"kernel", [](Definition& d, RuntimePaths&) { d.kernel = "/boot/vmlinuz,id=x"; }},
      {"initramfs", [](Definition& d, RuntimePaths&) { d.initramfs = "/boot/initrd:x"; }},
      {"disk", [](Definition& d, RuntimePaths&) { d.disks[0].path = "/srv/a.img,ro=false"; }},
      {"disk", [](Definition& d, RuntimePaths&) { d.disks[1].path = "/srv/a=b.img"; }},
      {"share socket", [](Definition& d, RuntimePaths& p) { p.share_sockets[d.shares[0].tag] = "/run/x,server=on"; }},
      {"tag", [](Definition& d, RuntimePaths& p) {
         p.share_sockets["a,b"] = p.share_sockets[d.shares[0].tag];
         d.shares[0].tag = "a,b";
       }},
      {"control socket", [](Definition&, RuntimePaths& p) { p.control_socket = "/run/q.sock,server=off"; }},
      {"quote", [](Definition& d, RuntimePaths&) { d.disks[0].path = "/srv/a\"b\"c.img"; }},
      {"bracket", [](Definition& d, RuntimePaths&) { d.disks[0].path = "/srv/a[b.img"; }},
      {"trailing space", [](Definition& d, RuntimePaths&) { d.disks[0].path = "/srv/disk.img "; }},
      {"relative", [](Definition& d, RuntimePaths&) { d.kernel = "vmlinuz"; }},
      {"dot-dot", [](Definition& d, RuntimePaths&) { d.kernel = "/boot/../etc/shadow"; }},
      {"control char", [](Definition& d, RuntimePaths&) { d.kernel = "/boot/vm\nlinuz"; }},
      {"cmdline control", [](Definition& d, RuntimePaths&) { d.cmdline = "console=ttyS0\n-device x"; }},
      {"cmdline dash", [](Definition& d, RuntimePaths&) { d.cmdline = "--disable-sandbox"; }},
      {"socket too long", [](Definition&, RuntimePaths& p) { p.control_socket = "/run/" + std::string(110, 'x'); }},
  };
  for (Vmm vmm : {Vmm::qemu, Vmm::crosvm, Vmm::cloud_hypervisor}) {
    for (const Case& c : cases) {
      Definition definition = full_definition(vmm);
      RuntimePaths paths = runtime_paths(definition);
      c.mutate(definition, paths);
      EXPECT_THROW(plan_vmm(definition, paths, test_host()), UsageError)
          << "VMM " << to_string(vmm) << ", case " << c.what;
    }
  }
  // The same definitions are accepted unmutated: the refusals are not vacuous.
  for (Vmm vmm : {Vmm::qemu, Vmm::crosvm, Vmm::cloud_hypervisor})
    EXPECT_NO_THROW(argv_of(full_definition(vmm)));
}

TEST(VmmArgv, ProgramPathIsCheckedToo) {
  Host host = test_host();
  host.qemu = "/opt/qemu,x/qemu";
  EXPECT_THROW(argv_of(minimal_definition(Vmm::qemu), host), UsageError);
}

bool has_rule(const VmmPlan& plan, const std::string& path, supervisor::PathRights rights) {
  return std::any_of(plan.paths.begin(), plan.paths.end(), [&](const supervisor::PathRule& rule) {
    return rule.path == path && rule.rights.read == rights.read && rule.rights.write == rights.write &&
           rule.rights.execute == rights.execute && rule.rights.ioctl_dev == rights.ioctl_dev &&
           rule.rights.make_socket == rights.make_socket;
  });
}

TEST(VmmPaths, NameWhatTheVmmTouchesWithTheRightsItNeeds) {
  using supervisor::PathRights;
  Definition definition = full_definition(Vmm::qemu);
  VmmPlan tcg = plan_vmm(definition, runtime_paths(definition), test_host(false));
  EXPECT_TRUE(has_rule(tcg, "/usr/bin/qemu-system-x86_64", PathRights::read_execute()));
  EXPECT_TRUE(has_rule(tcg, "/var/lib/vmwarden/images/vmlinuz", PathRights::read_only()));
  EXPECT_TRUE(has_rule(tcg, "/var/lib/vmwarden/images/initrd.img", PathRights::read_only()));
  EXPECT_TRUE(has_rule(tcg, "/srv/disks/base.img", PathRights::read_only()));
  EXPECT_TRUE(has_rule(tcg, "/srv/disks/data.img", PathRights::read_write()));
  // The runtime directory: read only, its control socket given by the
  // warden (fd 4); crosvm binds its own there, and nothing else.
  EXPECT_TRUE(has_rule(tcg, "/run/vmwarden/work", PathRights::read_only()));
  EXPECT_EQ(tcg.control_fd, std::optional<int>(kControlFd));
  // The shares themselves are virtiofsd's, never the VMM's.
  for (const auto& rule : tcg.paths) {
    EXPECT_NE(rule.path, "/home/user/work");
    EXPECT_NE(rule.path, "/dev/kvm");
  }
  VmmPlan kvm = plan_vmm(definition, runtime_paths(definition), test_host(true));
  EXPECT_TRUE(has_rule(kvm, "/dev/kvm", {.read = true, .write = true, .ioctl_dev = true}));

  Definition ch = full_definition(Vmm::cloud_hypervisor);
  VmmPlan ch_plan = plan_vmm(ch, runtime_paths(ch), test_host(true));
  // ch-remote runs under the VMM's own confinement.
  EXPECT_TRUE(has_rule(ch_plan, "/opt/ch/ch-remote", PathRights::read_execute()));
  EXPECT_TRUE(has_rule(ch_plan, "/dev/kvm", {.read = true, .write = true, .ioctl_dev = true}));
  EXPECT_TRUE(has_rule(ch_plan, "/run/vmwarden/work", PathRights::read_only()));
  EXPECT_EQ(ch_plan.control_fd, std::optional<int>(kControlFd));
  Definition crosvm = full_definition(Vmm::crosvm);
  VmmPlan crosvm_plan = plan_vmm(crosvm, runtime_paths(crosvm), test_host(true));
  EXPECT_TRUE(has_rule(crosvm_plan, "/run/vmwarden/work", PathRights::sockets()));
  EXPECT_FALSE(crosvm_plan.control_fd);
}

}  // namespace
}  // namespace vmwarden::vm
