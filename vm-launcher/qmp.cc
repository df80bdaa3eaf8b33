#include "vm-launcher/qmp.h"

#include <cerrno>

#include <fmt/core.h>

#include "common/error.h"

namespace vmwarden::vm {

QmpClient QmpClient::connect(const std::filesystem::path& socket, Deadline deadline, std::optional<uid_t> peer_uid,
                             std::optional<uid_t> listener_uid) {
  QmpClient client(UnixConnection::connect(socket, SOCK_STREAM, peer_uid, listener_uid));
  client.greeting_ = client.next_message(deadline);
  if (client.greeting_.find("QMP") == nullptr)
    throw std::runtime_error(fmt::format("{} is not a QMP socket: no greeting", socket.native()));
  client.execute("qmp_capabilities", deadline);
  return client;
}

Json QmpClient::next_message(Deadline deadline) {
  for (;;) {
    size_t newline = buffer_.find('\n');
    if (newline != std::string::npos) {
      std::string line = buffer_.substr(0, newline);
      buffer_.erase(0, newline + 1);
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
      try {
        return parse_json(line);
      } catch (const std::runtime_error& e) {
        throw std::runtime_error(fmt::format("QMP on {}: {}", connection_.path().native(), e.what()));
      }
    }
    if (!connection_.read_some(buffer_, deadline))
      throw SystemError(ECONNRESET, "QMP read (QEMU closed the connection)", connection_.path().native());
  }
}

std::string QmpClient::request(std::string_view command, std::string_view arguments, unsigned id) const {
  std::string text = fmt::format("{{\"execute\":{}", json_quote(command));
  if (!arguments.empty()) text += fmt::format(",\"arguments\":{}", arguments);
  text += fmt::format(",\"id\":{}}}\n", id);
  return text;
}

void QmpClient::send(std::string_view command, Deadline deadline, std::string_view arguments) {
  connection_.write_all(request(command, arguments, next_id_++), deadline);
}

Json QmpClient::execute(std::string_view command, Deadline deadline, std::string_view arguments) {
  unsigned id = next_id_++;
  connection_.write_all(request(command, arguments, id), deadline);
  for (;;) {
    // Also between messages already read: a VMM sending events without end
    // must not hold the warden's one event loop past the deadline.
    if (std::chrono::steady_clock::now() >= deadline)
      throw SystemError(ETIMEDOUT, fmt::format("QMP {} (no reply)", command), connection_.path().native());
    Json message = next_message(deadline);
    if (message.find("event") != nullptr) {
      // Kept for the tests to look at; a VMM sending events without end
      // would otherwise grow the warden's memory.
      if (events_.size() == kMaxEvents) events_.erase(events_.begin());
      events_.push_back(std::move(message));
      continue;
    }
    const Json* reply_id = message.find("id");
    if (reply_id == nullptr || reply_id->type != Json::Type::number || reply_id->number != id)
      continue;  // a reply to an earlier command sent without waiting
    if (const Json* result = message.find("return")) return *result;
    if (const Json* error = message.find("error"))
      throw QmpError(std::string(error->string_member("class")),
                     fmt::format("QMP {}: {}", command, error->string_member("desc")));
    throw std::runtime_error(fmt::format("QMP {}: reply has neither \"return\" nor \"error\"", command));
  }
}

}  // namespace vmwarden::vm
