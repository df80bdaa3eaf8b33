// fake-ch-remote: records its argv and sends the request cloud-hypervisor's
// ch-remote sends for `--api-socket PATH COMMAND` (api_client's HTTP/1.1 over
// the unix socket); prints the response body and exits 1 when the socket
// cannot be reached or answers with a server error, like ch-remote.
#include "tests/doubles/double.h"

using namespace double_support;

int main(int argc, char** argv) {
  record(argc, argv);
  std::string socket, command;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--api-socket" && i + 1 < argc)
      socket = argv[++i];
    else if (arg.rfind("--api-socket=", 0) == 0)
      socket = arg.substr(13);
    else if (command.empty())
      command = arg;
    else
      die("error: unexpected argument '" + arg + "' found");
  }
  std::string method, endpoint;
  if (command == "power-button") method = "PUT", endpoint = "vm.power-button";
  else if (command == "shutdown") method = "PUT", endpoint = "vm.shutdown";
  else if (command == "shutdown-vmm") method = "PUT", endpoint = "vmm.shutdown";
  else if (command == "info") method = "GET", endpoint = "vm.info";
  else if (command == "ping") method = "GET", endpoint = "vmm.ping";
  else die("error: unrecognized subcommand '" + command + "'");
  if (socket.empty()) die("Error: --api-socket is required");
  try_to_write_into_the_shares(socket);
  int fd = connect_to(socket, SOCK_STREAM);
  if (fd < 0) die("Error opening HTTP socket: " + std::string(std::strerror(errno)));
  write_all(fd, method + " /api/v1/" + endpoint + " HTTP/1.1\r\nHost: localhost\r\nAccept: */*\r\n\r\n");
  std::string reply = read_http_message(fd);
  if (reply.rfind("HTTP/1.1 ", 0) != 0) die("Error: invalid HTTP response");
  int status = std::atoi(reply.c_str() + 9);
  size_t body = reply.find("\r\n\r\n");
  if (body != std::string::npos && body + 4 < reply.size()) std::printf("%s\n", reply.c_str() + body + 4);
  if (status >= 500) die("Error: server responded with an error: " + std::to_string(status));
  return 0;
}
