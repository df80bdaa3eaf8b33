#include "acl-manager/shown_path.h"

#include <utility>
#include <vector>

#include "common/printable.h"

namespace vmwarden::acl::detail {
namespace {

// Names are the tree's writer's (a VM's) choice: escaped.
void append_name(std::string& path, std::string_view name) {
  if (path.empty() || path.back() != '/') path += '/';
  path += printable(name);
}

}  // namespace

std::shared_ptr<ShownPath> ShownPath::root(std::string shown) {
  return std::make_shared<ShownPath>(nullptr, std::move(shown));
}

std::shared_ptr<ShownPath> ShownPath::child(std::shared_ptr<ShownPath> parent, std::string name) {
  return std::make_shared<ShownPath>(std::move(parent), std::move(name));
}

ShownPath::ShownPath(std::shared_ptr<ShownPath> parent, std::string name)
    : parent_(std::move(parent)), name_(std::move(name)) {}

ShownPath::~ShownPath() {
  // Each ancestor held by this link alone is unlinked from its own parent
  // before it goes, so that its destructor finds nothing to recurse into.
  std::shared_ptr<ShownPath> next = std::move(parent_);
  while (next && next.use_count() == 1) next = std::move(next->parent_);
}

std::string ShownPath::text(std::string_view entry) const {
  std::vector<const ShownPath*> chain;
  for (const ShownPath* at = this; at != nullptr; at = at->parent_.get()) chain.push_back(at);
  std::string shown = chain.back()->name_;
  for (auto it = chain.rbegin() + 1; it != chain.rend(); ++it) append_name(shown, (*it)->name_);
  if (!entry.empty()) append_name(shown, entry);
  return shown;
}

}  // namespace vmwarden::acl::detail
