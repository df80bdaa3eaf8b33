// A QMP (QEMU Machine Protocol) client: JSON objects over a unix socket, one
// per line. Replies are matched to commands by "id"; asynchronous events
// that arrive in between are kept, not mistaken for replies.
#pragma once

#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "vm-launcher/json.h"
#include "vm-launcher/unix_socket.h"

namespace vmwarden::vm {

// QEMU answered a command with {"error": {"class": ..., "desc": ...}}.
class QmpError : public std::runtime_error {
 public:
  QmpError(std::string error_class, const std::string& description)
      : std::runtime_error(description), error_class_(std::move(error_class)) {}
  const std::string& error_class() const { return error_class_; }

 private:
  std::string error_class_;
};

class QmpClient {
 public:
  // Connects, reads the greeting and leaves capabilities negotiation mode
  // (qmp_capabilities). Throws SystemError when the socket is not there or
  // does not answer by the deadline.
  // With `peer_uid`, only a socket of that UID (UnixConnection::connect)
  // served by it, or by `listener_uid` when given, is talked to.
  static QmpClient connect(const std::filesystem::path& socket, Deadline deadline,
                           std::optional<uid_t> peer_uid = std::nullopt,
                           std::optional<uid_t> listener_uid = std::nullopt);

  // Runs `command` with `arguments` (a JSON object, or empty) and returns the
  // "return" value. Throws QmpError for an error reply, SystemError on a
  // timeout or when QEMU closes the connection first.
  Json execute(std::string_view command, Deadline deadline, std::string_view arguments = {});

  // Sends `command` without waiting for the reply (for `quit`, after which
  // QEMU may close the socket before answering).
  void send(std::string_view command, Deadline deadline, std::string_view arguments = {});

  const Json& greeting() const { return greeting_; }
  // The last kMaxEvents events received, oldest first.
  const std::vector<Json>& events() const { return events_; }
  static constexpr size_t kMaxEvents = 256;

 private:
  explicit QmpClient(UnixConnection connection) : connection_(std::move(connection)) {}
  Json next_message(Deadline deadline);
  std::string request(std::string_view command, std::string_view arguments, unsigned id) const;

  UnixConnection connection_;
  std::string buffer_;
  Json greeting_;
  std::vector<Json> events_;
  unsigned next_id_ = 1;
};

}  // namespace vmwarden::vm
