// Where the walk is, for messages only: a chain of names made into a path
// when one is printed. Internal to acl-manager.
//
// A path string per directory would cost a copy of its parent's per level,
// and a tree thousands of levels deep (a VM's choice, in a read-write share)
// would make the walk's time and memory grow with the square of its depth.
// A chain of names grows with the depth alone, and is torn down without
// recursion: a straight chain of a million one-letter directories, which a
// VM can make with O(1) descriptors, would otherwise take one stack frame
// per level when its deepest link goes.
#pragma once

#include <memory>
#include <string>
#include <string_view>

namespace vmwarden::acl::detail {

class ShownPath {
 public:
  // The root: `shown` is printed as it is (the caller escapes it).
  static std::shared_ptr<ShownPath> root(std::string shown);
  // An entry of `parent`, `name` as the tree has it (escaped when printed).
  static std::shared_ptr<ShownPath> child(std::shared_ptr<ShownPath> parent, std::string name);

  ShownPath(std::shared_ptr<ShownPath> parent, std::string name);
  ~ShownPath();
  ShownPath(const ShownPath&) = delete;
  ShownPath& operator=(const ShownPath&) = delete;

  // The path (with `entry`: that entry's, below this one).
  std::string text(std::string_view entry = {}) const;

 private:
  std::shared_ptr<ShownPath> parent_;
  std::string name_;
};

}  // namespace vmwarden::acl::detail
