#include "acl-manager/acl_entries.h"

#include <endian.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstring>

#include <fmt/core.h>

namespace vmwarden::acl::detail {
namespace {

constexpr std::uint32_t kVersion = 2;
constexpr std::size_t kHeaderSize = 4;
constexpr std::size_t kEntrySize = 8;

bool is_group_class(const Entry& entry) {
  return entry.tag == kGroupObj || entry.tag == kUser || entry.tag == kGroup;
}

Entry* find(Entries& entries, std::uint16_t tag, std::uint32_t id = kNoId) {
  for (Entry& entry : entries) {
    if (entry.tag == tag && (id == kNoId || entry.id == id)) return &entry;
  }
  return nullptr;
}

const Entry* find(const Entries& entries, std::uint16_t tag) {
  for (const Entry& entry : entries) {
    if (entry.tag == tag) return &entry;
  }
  return nullptr;
}

}  // namespace

bool decode(std::string_view value, Entries& out) {
  out.clear();
  if (value.size() < kHeaderSize || (value.size() - kHeaderSize) % kEntrySize != 0) return false;
  std::uint32_t version;
  std::memcpy(&version, value.data(), 4);
  if (le32toh(version) != kVersion) return false;
  std::size_t count = (value.size() - kHeaderSize) / kEntrySize;
  out.reserve(count + 2);
  for (std::size_t i = 0; i < count; ++i) {
    const char* p = value.data() + kHeaderSize + i * kEntrySize;
    std::uint16_t tag, perm;
    std::uint32_t id;
    std::memcpy(&tag, p, 2);
    std::memcpy(&perm, p + 2, 2);
    std::memcpy(&id, p + 4, 4);
    Entry entry{le16toh(tag), le16toh(perm), le32toh(id)};
    switch (entry.tag) {
      case kUserObj: case kGroupObj: case kMask: case kOther: entry.id = kNoId; break;
      case kUser: case kGroup: break;
      default: return false;
    }
    if (entry.perm & ~7u) return false;
    out.push_back(entry);
  }
  return find(out, kUserObj) && find(out, kGroupObj) && find(out, kOther);
}

void encode(const Entries& entries, std::string& out) {
  std::uint32_t version = htole32(kVersion);
  out.append(reinterpret_cast<const char*>(&version), 4);
  for (const Entry& entry : entries) {
    std::uint16_t tag = htole16(entry.tag), perm = htole16(entry.perm);
    std::uint32_t id = htole32(entry.id);
    out.append(reinterpret_cast<const char*>(&tag), 2);
    out.append(reinterpret_cast<const char*>(&perm), 2);
    out.append(reinterpret_cast<const char*>(&id), 4);
  }
}

Entries from_mode(mode_t mode) {
  Entries entries;
  from_mode(mode, entries);
  return entries;
}

void from_mode(mode_t mode, Entries& out) {
  out.assign({
      {kUserObj, static_cast<std::uint16_t>((mode >> 6) & 7), kNoId},
      {kGroupObj, static_cast<std::uint16_t>((mode >> 3) & 7), kNoId},
      {kOther, static_cast<std::uint16_t>(mode & 7), kNoId},
  });
}

void sort_entries(Entries& entries) {
  std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
    return a.tag != b.tag ? a.tag < b.tag : a.id < b.id;
  });
}

std::uint16_t requested_perm(bool writable, bool is_directory, const Entries& access) {
  std::uint16_t perm = kRead | (writable ? kWrite : 0);
  if (is_directory) return perm | kExecute;
  // The group bits of the mode are the mask when there is one.
  const Entry* group = find(access, kMask);
  if (group == nullptr) group = find(access, kGroupObj);
  for (const Entry* entry : {find(access, kUserObj), group, find(access, kOther)}) {
    if (entry != nullptr && (entry->perm & kExecute)) return perm | kExecute;
  }
  return perm;
}

std::uint16_t grantable(const Entries& entries, std::uint32_t uid, std::uint16_t perm) {
  const Entry* mask = find(entries, kMask);
  if (mask == nullptr) return perm;  // no named entries: only the owning group, which keeps its bits
  std::uint16_t withheld = 0;
  for (const Entry& entry : entries) {
    if (is_group_class(entry) && !(entry.tag == kUser && entry.id == uid)) withheld |= entry.perm & ~mask->perm;
  }
  return perm & ~withheld;
}

bool set_user(Entries& entries, std::uint32_t uid, std::uint16_t perm) {
  // A re-grant asks this of every file, and most files of a tree carry the
  // same ACL: the last one found already right is remembered (per thread;
  // the answer depends on nothing else).
  thread_local Entries last_right;
  thread_local std::uint32_t last_uid = kNoId;
  thread_local std::uint16_t last_perm = 0;
  if (uid == last_uid && perm == last_perm && entries == last_right) return false;

  // Built from the ACL as it would be without `uid`'s entry, so that a
  // changed grant (rw to ro) narrows the mask again; equal means already right.
  thread_local Entries result;
  result = entries;
  if (find(result, kUser, uid) != nullptr) remove_users(result, [uid](std::uint32_t id) { return id == uid; });
  const Entry* mask = find(result, kMask);
  const Entry* group_obj = find(result, kGroupObj);
  std::uint16_t old_mask = mask ? mask->perm : (group_obj ? group_obj->perm : 0);
  std::uint16_t granted = grantable(result, uid, perm);
  result.push_back({kUser, granted, uid});
  if (Entry* m = find(result, kMask)) {
    m->perm = old_mask | granted;
  } else {
    result.push_back({kMask, static_cast<std::uint16_t>(old_mask | granted), kNoId});
  }
  sort_entries(result);
  if (result == entries) {
    last_right = entries;
    last_uid = uid;
    last_perm = perm;
    return false;
  }
  entries.swap(result);
  return true;
}

namespace {

bool remove_named(Entries& entries, const std::function<bool(std::uint32_t)>& matches, bool groups_too) {
  Entry* mask = find(entries, kMask);
  std::uint16_t old_mask = mask ? mask->perm : 7;
  auto removed = std::remove_if(entries.begin(), entries.end(), [&](const Entry& entry) {
    return (entry.tag == kUser || (groups_too && entry.tag == kGroup)) && matches(entry.id);
  });
  if (removed == entries.end()) return false;
  entries.erase(removed, entries.end());

  std::uint16_t new_mask = 0;
  bool named_left = false;
  for (const Entry& entry : entries) {
    if (is_group_class(entry)) new_mask |= entry.perm & old_mask;
    if (entry.tag == kUser || entry.tag == kGroup) named_left = true;
  }
  Entry* group_obj = find(entries, kGroupObj);
  if (!named_left && group_obj != nullptr && (group_obj->perm & ~old_mask) == 0) {
    // Nothing left for a mask to limit: back to plain mode bits.
    entries.erase(std::remove_if(entries.begin(), entries.end(), [](const Entry& e) { return e.tag == kMask; }),
                  entries.end());
  } else if (Entry* m = find(entries, kMask)) {
    m->perm = new_mask;
  }
  return true;
}

}  // namespace

bool remove_users(Entries& entries, const std::function<bool(std::uint32_t)>& matches) {
  return remove_named(entries, matches, false);
}

bool remove_users_and_groups(Entries& entries, const std::function<bool(std::uint32_t)>& matches) {
  return remove_named(entries, matches, true);
}

bool is_minimal(const Entries& entries) {
  return std::all_of(entries.begin(), entries.end(), [](const Entry& entry) {
    return entry.tag == kUserObj || entry.tag == kGroupObj || entry.tag == kOther;
  });
}

bool has_named_entries(const Entries& entries) {
  return std::any_of(entries.begin(), entries.end(),
                     [](const Entry& entry) { return entry.tag == kUser || entry.tag == kGroup; });
}

bool is_minimal_for_mode(const Entries& entries, mode_t mode) {
  if (!is_minimal(entries)) return false;
  const Entry* user = find(entries, kUserObj);
  const Entry* group = find(entries, kGroupObj);
  const Entry* other = find(entries, kOther);
  if (user == nullptr || group == nullptr || other == nullptr) return false;
  return static_cast<mode_t>(user->perm << 6 | group->perm << 3 | other->perm) == (mode & 0777);
}

std::string to_text(const Entries& entries) {
  std::string text;
  for (const Entry& entry : entries) {
    if (!text.empty()) text += ',';
    const char* tag = "?";
    switch (entry.tag) {
      case kUserObj: case kUser: tag = "u"; break;
      case kGroupObj: case kGroup: tag = "g"; break;
      case kMask: tag = "m"; break;
      case kOther: tag = "o"; break;
    }
    std::string id = entry.id == kNoId ? "" : std::to_string(entry.id);
    text += fmt::format("{}:{}:{}{}{}", tag, id, (entry.perm & kRead) ? 'r' : '-', (entry.perm & kWrite) ? 'w' : '-',
                        (entry.perm & kExecute) ? 'x' : '-');
  }
  return text;
}

}  // namespace vmwarden::acl::detail
