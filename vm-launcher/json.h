// A minimal JSON reader for the few replies vmwarden reads from VMMs (QMP,
// the cloud-hypervisor API). Values are parsed completely and strictly;
// numbers are kept as doubles.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/json_quote.h"

namespace vmwarden::vm {

struct JsonMember;

struct Json {
  enum class Type { null, boolean, number, string, array, object };

  Type type = Type::null;
  bool boolean = false;
  double number = 0;
  std::string string;
  std::vector<Json> items;                            // array
  std::vector<JsonMember> members;                    // object, in order

  // The member named `key` of an object, or nullptr.
  const Json* find(std::string_view key) const&;
  // The string member `key`, or "" when absent or not a string.
  std::string_view string_member(std::string_view key) const&;
  // What these return points into the value: not to be had from a temporary.
  const Json* find(std::string_view key) const&& = delete;
  std::string_view string_member(std::string_view key) const&& = delete;
};

// Throws std::runtime_error("invalid JSON at byte N: ...") on any defect,
// trailing garbage included.
// A named member of an object. Its own type rather than std::pair, which may
// not be instantiated while Json is still incomplete.
struct JsonMember {
  std::string name;
  Json value;
};

Json parse_json(std::string_view text);


}  // namespace vmwarden::vm
