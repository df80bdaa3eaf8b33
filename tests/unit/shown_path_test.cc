// The walk's paths for messages: made from a chain of names when printed,
// the names escaped, and the chain torn down without recursion.

#include "acl-manager/shown_path.h"

#include <pthread.h>

#include <gtest/gtest.h>

namespace vmwarden::acl::detail {
namespace {

TEST(ShownPath, NamesAreJoinedAndEscapedTheRootIsNot) {
  auto root = ShownPath::root("/srv/tree");
  auto sub = ShownPath::child(root, "a\nb");
  auto deeper = ShownPath::child(sub, "c\x1b[2J");
  EXPECT_EQ(root->text(), "/srv/tree");
  EXPECT_EQ(deeper->text(), "/srv/tree/a\\x0ab/c\\x1b[2J");
  EXPECT_EQ(sub->text("f\r"), "/srv/tree/a\\x0ab/f\\x0d");
  EXPECT_EQ(ShownPath::root("/")->text("x"), "/x");
}

// A straight chain of a million directories (a VM can make one in a
// read-write share with O(1) descriptors) is let go on a thread with a
// 256 KiB stack: a destructor recursing once per level would overflow it
// (SIGSEGV, the whole test binary dies). Ancestors still held elsewhere stay.
TEST(ShownPath, AMillionLevelsGoWithoutRecursion) {
  struct Chain {
    std::shared_ptr<ShownPath> kept_midway;
    std::string midway_text;
  } chain;
  auto build_and_drop = [](void* arg) -> void* {
    auto* out = static_cast<Chain*>(arg);
    auto at = ShownPath::root("/t");
    for (int level = 0; level < 1'000'000; ++level) {
      at = ShownPath::child(std::move(at), "d");
      if (level == 2) out->kept_midway = at;
    }
    at.reset();
    out->midway_text = out->kept_midway->text();
    return nullptr;
  };
  pthread_attr_t attr;
  ASSERT_EQ(pthread_attr_init(&attr), 0);
  ASSERT_EQ(pthread_attr_setstacksize(&attr, 256 * 1024), 0);
  pthread_t thread;
  ASSERT_EQ(pthread_create(&thread, &attr, build_and_drop, &chain), 0);
  ASSERT_EQ(pthread_join(thread, nullptr), 0);
  pthread_attr_destroy(&attr);
  EXPECT_EQ(chain.midway_text, "/t/d/d/d");
}

}  // namespace
}  // namespace vmwarden::acl::detail
