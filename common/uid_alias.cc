#include "common/uid_alias.h"

namespace vmwarden {

bool valid_uid_alias(std::string_view alias) {
  if (alias.empty() || alias.size() > 64) return false;
  for (std::size_t i = 0; i < alias.size(); ++i) {
    char c = alias[i];
    bool ok = (c >= 'a' && c <= 'z') || (i > 0 && ((c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-'));
    if (!ok) return false;
  }
  return true;
}

}  // namespace vmwarden
