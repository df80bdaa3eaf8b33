#include "common/error.h"

#include <cstring>

namespace vmwarden {
namespace {

std::string describe(int error_number, std::string_view operation, std::string_view path) {
  std::string message(operation);
  if (!path.empty()) {
    message += ' ';
    message += path;
  }
  message += ": ";
  message += std::strerror(error_number);
  return message;
}

}  // namespace

SystemError::SystemError(int error_number, std::string_view operation, std::string_view path)
    : std::runtime_error(describe(error_number, operation, path)), code_(error_number) {}

void throw_errno(std::string_view operation, std::string_view path) {
  throw SystemError(errno, operation, path);
}

void throw_system_error(int error_number, std::string_view operation, std::string_view path) {
  throw SystemError(error_number, operation, path);
}

}  // namespace vmwarden
