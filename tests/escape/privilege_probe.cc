// Installed set-user-ID root by the escape tests: reports the privileges it
// ended up with, "euid=N cap_eff=HEX cap_prm=HEX". Exits 0 either way.
#include <linux/capability.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>

int main() {
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2]{};
  if (syscall(SYS_capget, &header, data) != 0) {
    std::perror("capget");
    return 3;
  }
  auto join = [](std::uint32_t low, std::uint32_t high) {
    return (static_cast<unsigned long long>(high) << 32) | low;
  };
  std::printf("euid=%u cap_eff=%llx cap_prm=%llx\n", geteuid(), join(data[0].effective, data[1].effective),
              join(data[0].permitted, data[1].permitted));
  return 0;
}
