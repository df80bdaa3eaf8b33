// The ACL xattr encoding (checked against libacl and the kernel) and the mask
// rule of grant and revoke.

#include <sys/acl.h>
#include <sys/xattr.h>

#include <acl/libacl.h>
#include <gtest/gtest.h>

#include <cstring>
#include <bit>
#include <random>

#include "acl-manager/acl_entries.h"
#include "tests/support/support.h"

namespace vmwarden::acl::detail {
namespace {

using testing::TempDir;

// What an entry can effectively do (named and group-class entries are masked).
std::uint16_t effective(const Entries& entries, const Entry& entry) {
  if (entry.tag == kUserObj || entry.tag == kOther || entry.tag == kMask) return entry.perm;
  for (const Entry& mask : entries) {
    if (mask.tag == kMask) return entry.perm & mask.perm;
  }
  return entry.perm;
}

Entries parse(const std::string& text) {
  acl_t acl = acl_from_text(text.c_str());
  EXPECT_NE(acl, nullptr) << text;
  Entries entries;
  acl_entry_t entry;
  for (int id = ACL_FIRST_ENTRY; acl_get_entry(acl, id, &entry) == 1; id = ACL_NEXT_ENTRY) {
    acl_tag_t tag;
    acl_get_tag_type(entry, &tag);
    acl_permset_t permset;
    acl_get_permset(entry, &permset);
    std::uint16_t perm = (acl_get_perm(permset, ACL_READ) ? 4 : 0) | (acl_get_perm(permset, ACL_WRITE) ? 2 : 0) |
                         (acl_get_perm(permset, ACL_EXECUTE) ? 1 : 0);
    std::uint32_t qualifier = kNoId;
    if (tag == ACL_USER || tag == ACL_GROUP) {
      void* value = acl_get_qualifier(entry);
      qualifier = *static_cast<id_t*>(value);
      acl_free(value);
    }
    entries.push_back({static_cast<std::uint16_t>(tag), perm, qualifier});
  }
  acl_free(acl);
  sort_entries(entries);
  return entries;
}

TEST(AclEncoding, RoundTripsThroughTheKernelAndLibacl) {
  TempDir temp;
  std::filesystem::path file = temp / "f";
  testing::write_file(file, "");
  Entries entries = parse("u::rw-,u:1879048192:r-x,u:1000:rw-,g::r--,g:100:--x,m::rwx,o::---");
  std::string value;
  encode(entries, value);
  ASSERT_EQ(::setxattr(file.c_str(), "system.posix_acl_access", value.data(), value.size(), 0), 0)
      << "the kernel rejected our encoding: " << std::strerror(errno);

  // libacl reads back what the kernel stored from our bytes.
  acl_t acl = acl_get_file(file.c_str(), ACL_TYPE_ACCESS);
  ASSERT_NE(acl, nullptr);
  char* text = acl_to_any_text(acl, nullptr, ',', TEXT_NUMERIC_IDS);
  EXPECT_STREQ(text, "user::rw-,user:1000:rw-,user:1879048192:r-x,group::r--,group:100:--x,mask::rwx,other::---");
  acl_free(text);

  // And libacl's own encoding (via acl_set_file) decodes to the same entries.
  ASSERT_EQ(acl_set_file(file.c_str(), ACL_TYPE_ACCESS, acl), 0);
  acl_free(acl);
  char buffer[256];
  ssize_t size = ::getxattr(file.c_str(), "system.posix_acl_access", buffer, sizeof buffer);
  ASSERT_GT(size, 0);
  Entries decoded;
  ASSERT_TRUE(decode(std::string_view(buffer, static_cast<std::size_t>(size)), decoded));
  EXPECT_EQ(decoded, entries);
  EXPECT_EQ(std::string_view(buffer, static_cast<std::size_t>(size)), value);
}

TEST(AclEncoding, RejectsMalformedValues) {
  Entries out;
  EXPECT_FALSE(decode("", out));
  EXPECT_FALSE(decode(std::string("\x01\0\0\0", 4), out));  // version 1
  std::string value;
  encode(from_mode(0644), value);
  EXPECT_TRUE(decode(value, out));
  EXPECT_FALSE(decode(value.substr(0, value.size() - 1), out));  // truncated entry
  std::string bad_tag = value;
  bad_tag[4] = 0x40;
  EXPECT_FALSE(decode(bad_tag, out));
}

TEST(AclRules, CapitalXFollowsDirectoriesAndExecutableFiles) {
  EXPECT_EQ(requested_perm(false, true, from_mode(0600)), 5);
  EXPECT_EQ(requested_perm(true, true, from_mode(0600)), 7);
  EXPECT_EQ(requested_perm(false, false, from_mode(0644)), 4);
  EXPECT_EQ(requested_perm(true, false, from_mode(0744)), 7);
  EXPECT_EQ(requested_perm(false, false, from_mode(0601)), 5);
  // With a mask, the mode's group bits are the mask.
  EXPECT_EQ(requested_perm(false, false, parse("u::rw-,u:5:rw-,g::r--,m::r-x,o::---")), 5);
}

TEST(AclRules, GrantOnPlainModeAddsMaskWithoutWideningTheGroup) {
  Entries entries = from_mode(0640);
  ASSERT_TRUE(set_user(entries, 1879048192, 7));
  EXPECT_EQ(to_text(entries), "u::rw-,u:1879048192:rwx,g::r--,m::rwx,o::---");
  EXPECT_FALSE(set_user(entries, 1879048192, 7)) << "an already-right ACL must not be rewritten";
}

TEST(AclRules, GrantDoesNotUnmaskWhatAChmodTookAway) {
  // u:1000 was given rwx, then chmod g-wx narrowed the mask to r--.
  Entries entries = parse("u::rwx,u:1000:rwx,g::rwx,g:100:rw-,m::r--,o::---");
  ASSERT_TRUE(set_user(entries, 1879048192, 5));
  for (const Entry& entry : entries) {
    if (entry.tag == kUser && entry.id == 1879048192) {
      EXPECT_EQ(effective(entries, entry), 4);
    } else if (entry.tag != kMask) {
      std::uint16_t before = entry.tag == kUserObj || entry.tag == kOther ? entry.perm : (entry.perm & 4);
      EXPECT_EQ(effective(entries, entry), before) << to_text(entries);
    }
  }
  // x and w are held by others but withheld by the mask: the UID gets r only,
  // and no other entry is touched.
  EXPECT_EQ(to_text(entries), "u::rwx,u:1000:rwx,u:1879048192:r--,g::rwx,g:100:rw-,m::r--,o::---");
  EXPECT_EQ(grantable(entries, 1879048192, 7), 4);
}

TEST(AclRules, GrantThenRevokeRestoresTheOriginalExactly) {
  for (const char* text : {"u::rw-,g::r--,o::r--", "u::rwx,u:1000:rw-,g::r-x,g:7:r--,m::rwx,o::---",
                           "u::rw-,u:1000:rwx,g::rw-,m::r--,o::---"}) {
    Entries original = parse(text);
    Entries entries = original;
    set_user(entries, 1879048192, 5);
    ASSERT_TRUE(remove_users(entries, [](std::uint32_t id) { return id == 1879048192; }));
    EXPECT_EQ(to_text(entries), to_text(original)) << text;
    for (std::size_t i = 0; i < original.size(); ++i) {
      bool found = false;
      for (const Entry& entry : entries) {
        if (entry.tag == original[i].tag && entry.id == original[i].id) {
          EXPECT_EQ(effective(entries, entry), effective(original, original[i])) << text;
          found = true;
        }
      }
      EXPECT_TRUE(found || original[i].tag == kMask) << text;
    }
  }
  Entries plain = from_mode(0640);
  Entries entries = plain;
  set_user(entries, 1879048192, 7);
  remove_users(entries, [](std::uint32_t id) { return id == 1879048192; });
  EXPECT_EQ(entries, plain) << "a grant and revoke on a file without ACL leaves it without one";
}

TEST(AclRules, AMinimalAclMatchesTheModeItStoresAs) {
  EXPECT_TRUE(is_minimal_for_mode(parse("u::rw-,g::r--,o::r--"), 0100644));
  EXPECT_TRUE(is_minimal_for_mode(parse("u::rwx,g::r-x,o::---"), 02750)) << "only permission bits count";
  EXPECT_FALSE(is_minimal_for_mode(parse("u::rw-,g::r--,o::r--"), 0100664)) << "the mode's group bits are a mask";
  EXPECT_FALSE(is_minimal_for_mode(parse("u::rw-,g::r--,o::r--"), 0100640));
  EXPECT_FALSE(is_minimal_for_mode(parse("u::rw-,g::r--,m::r--,o::r--"), 0100644)) << "a mask is not minimal";
  EXPECT_FALSE(is_minimal_for_mode(parse("u::rw-,u:1000:r--,g::r--,m::r--,o::r--"), 0100644));
  Entries entries = from_mode(0640);
  set_user(entries, 1879048192, 4);
  remove_users(entries, [](std::uint32_t id) { return id == 1879048192; });
  EXPECT_TRUE(is_minimal_for_mode(entries, 0640)) << "grant r then revoke on a 0640 file";
  entries = from_mode(0640);
  set_user(entries, 1879048192, 6);
  remove_users(entries, [](std::uint32_t id) { return id == 1879048192; });
  EXPECT_FALSE(is_minimal_for_mode(entries, 0660)) << "grant rw widened the mask, so the mode must change back";
}

TEST(AclRules, RevokeShrinksTheMaskToWhatRemainingEntriesUse) {
  Entries entries = parse("u::rw-,u:1000:r--,u:1879048192:rwx,g::r--,m::rwx,o::---");
  ASSERT_TRUE(remove_users(entries, [](std::uint32_t id) { return id == 1879048192; }));
  EXPECT_EQ(to_text(entries), "u::rw-,u:1000:r--,g::r--,m::r--,o::---");
  EXPECT_FALSE(remove_users(entries, [](std::uint32_t id) { return id == 1879048192; }));
}

// The reference for the granted UID's permissions, by brute force rather
// than by the rule's own formula: of the subsets of `perm`, the widest whose
// entry (with the mask widened to let it through) changes no other entry's
// effective permissions.
std::uint16_t widest_harmless_grant(const Entries& before, std::uint32_t uid, std::uint16_t perm) {
  std::uint16_t widest = 0;
  for (std::uint16_t subset = 0; subset <= 7; ++subset) {
    if ((subset & ~perm) != 0 || std::popcount(subset) <= std::popcount(widest)) continue;
    Entries candidate = before;
    // Without a mask, the owning group's bits are the group class's limit.
    std::uint16_t old_mask = 0;
    for (const Entry& entry : before)
      if (entry.tag == kGroupObj) old_mask = entry.perm;
    for (const Entry& entry : before)
      if (entry.tag == kMask) old_mask = entry.perm;
    std::erase_if(candidate, [](const Entry& entry) { return entry.tag == kMask; });
    candidate.push_back({kUser, subset, uid});
    candidate.push_back({kMask, static_cast<std::uint16_t>(old_mask | subset), kNoId});
    sort_entries(candidate);
    bool harmless = true;
    for (const Entry& old : before) {
      if (old.tag == kMask) continue;
      for (const Entry& now : candidate)
        if (now.tag == old.tag && now.id == old.id && effective(candidate, now) != effective(before, old)) harmless = false;
    }
    if (harmless) widest = subset;
  }
  return widest;
}

// The mask rule over many random ACLs: no other entry ever gains or loses an
// effective permission through a grant or a revoke, and the granted UID gets
// exactly what was asked.
TEST(AclRules, RandomAclsKeepEveryOtherEntrysEffectivePermissions) {
  std::mt19937 random(12345);
  constexpr std::uint32_t kUid = 1879048192;
  for (int round = 0; round < 2000; ++round) {
    Entries entries = from_mode(random() % 0777);
    int named = random() % 4;
    for (int i = 0; i < named; ++i) {
      entries.push_back({random() % 2 ? kUser : kGroup, static_cast<std::uint16_t>(random() % 8), 1000u + i});
    }
    if (named > 0 || random() % 2) entries.push_back({kMask, static_cast<std::uint16_t>(random() % 8), kNoId});
    sort_entries(entries);
    Entries before = entries;
    std::uint16_t perm = random() % 2 ? 5 : 7;
    set_user(entries, kUid, perm);
    auto check_others = [&](const Entries& after, const char* step) {
      for (const Entry& old : before) {
        if (old.tag == kMask) continue;
        for (const Entry& now : after) {
          if (now.tag == old.tag && now.id == old.id) {
            ASSERT_EQ(now.perm, old.perm) << step << " modified another entry: " << to_text(before) << " -> "
                                          << to_text(after);
            ASSERT_EQ(effective(after, now), effective(before, old)) << step << ": " << to_text(before) << " -> "
                                                                     << to_text(after);
          }
        }
      }
    };
    check_others(entries, "grant");
    for (const Entry& entry : entries) {
      if (entry.tag == kUser && entry.id == kUid) {
        ASSERT_EQ(effective(entries, entry), widest_harmless_grant(before, kUid, perm)) << to_text(entries);
      }
    }
    remove_users(entries, [](std::uint32_t id) { return id == kUid; });
    check_others(entries, "revoke");
    std::uint16_t union_of_effective = 0;
    bool has_named = false;
    for (const Entry& entry : entries) {
      if (entry.tag == kGroupObj || entry.tag == kUser || entry.tag == kGroup) union_of_effective |= effective(entries, entry);
      has_named = has_named || entry.tag == kUser || entry.tag == kGroup;
    }
    for (const Entry& entry : entries) {
      if (entry.tag == kMask) {
        ASSERT_EQ(entry.perm, union_of_effective) << "mask not minimal: " << to_text(entries);
      }
    }
    if (!has_named && !is_minimal(entries)) {
      // A mask stays only to keep limiting an owning group that has more.
      for (const Entry& entry : entries) {
        if (entry.tag == kGroupObj) {
          ASSERT_NE(entry.perm & ~union_of_effective, 0) << to_text(entries);
        }
      }
    }
  }
}

}  // namespace
}  // namespace vmwarden::acl::detail
