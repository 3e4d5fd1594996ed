#include "io/zip_reader.h"

#include <array>

#include "foley/error.h"
#include "io/bytes.h"

namespace foley::io {
namespace {

constexpr uint32_t kLocalHeaderSig = 0x04034b50;
constexpr uint32_t kCentralHeaderSig = 0x02014b50;
constexpr uint32_t kEndSig = 0x06054b50;
constexpr uint32_t kZip64EndSig = 0x06064b50;
constexpr uint32_t kZip64LocatorSig = 0x07064b50;
constexpr size_t kEndSize = 22;
constexpr size_t kZip64LocatorSize = 20;
constexpr size_t kZip64EndSize = 56;
constexpr size_t kCentralHeaderSize = 46;
constexpr size_t kLocalHeaderSize = 30;
constexpr uint16_t kZip64ExtraId = 0x0001;

[[noreturn]] void fail(const std::string& label, const std::string& reason) {
  throw Error(ErrorKind::kInvalidInput, label + ": " + reason);
}

// Where the central directory is, from the (ZIP64) end records.
struct Directory {
  uint64_t offset = 0;
  uint64_t size = 0;
  uint64_t count = 0;
  uint64_t limit = 0;  // the directory must end at or before this offset
};

// The end record sits in the last 22 + 65535 bytes (its comment is at most 64 KiB). A signature
// inside the comment is possible, so the candidate must also account exactly for the file's end.
size_t find_end_record(const uint8_t* data, size_t size, const std::string& label) {
  if (size < kEndSize) fail(label, "not a zip archive (file too short for an end record)");
  const size_t lowest = size - kEndSize > 0xffff ? size - kEndSize - 0xffff : 0;
  for (size_t pos = size - kEndSize + 1; pos-- > lowest;) {
    if (load_le32(data + pos) != kEndSig) continue;
    if (pos + kEndSize + load_le16(data + pos + 20) == size) return pos;
  }
  fail(label, "not a zip archive (no end of central directory record)");
}

Directory read_directory_location(const uint8_t* data, size_t size, const std::string& label) {
  const size_t end = find_end_record(data, size, label);
  const uint8_t* e = data + end;
  Directory dir;
  const bool has_locator =
      end >= kZip64LocatorSize && load_le32(data + end - kZip64LocatorSize) == kZip64LocatorSig;
  if (has_locator) {
    const uint8_t* loc = data + end - kZip64LocatorSize;
    const uint32_t disk = load_le32(loc + 4);
    const uint64_t record = load_le64(loc + 8);
    const uint32_t disks = load_le32(loc + 16);
    if (disk != 0 || disks > 1) fail(label, "multi-disk zip archives are not supported");
    const uint64_t limit = end - kZip64LocatorSize;
    if (!range_ok(record, kZip64EndSize, limit))
      fail(label, "ZIP64 end record offset out of bounds");
    const uint8_t* z = data + record;
    if (load_le32(z) != kZip64EndSig) fail(label, "bad ZIP64 end record signature");
    if (load_le64(z + 4) < kZip64EndSize - 12 || load_le64(z + 4) > limit - record - 12)
      fail(label, "bad ZIP64 end record size");
    if (load_le32(z + 16) != 0 || load_le32(z + 20) != 0)
      fail(label, "multi-disk zip archives are not supported");
    dir.count = load_le64(z + 32);
    if (load_le64(z + 24) != dir.count) fail(label, "multi-disk zip archives are not supported");
    dir.size = load_le64(z + 40);
    dir.offset = load_le64(z + 48);
    dir.limit = record;
  } else {
    if (load_le16(e + 4) != 0 || load_le16(e + 6) != 0)
      fail(label, "multi-disk zip archives are not supported");
    dir.count = load_le16(e + 10);
    if (load_le16(e + 8) != dir.count) fail(label, "multi-disk zip archives are not supported");
    dir.size = load_le32(e + 12);
    dir.offset = load_le32(e + 16);
    if (dir.count == 0xffff || dir.size == 0xffffffffu || dir.offset == 0xffffffffu)
      fail(label, "ZIP64 values without a ZIP64 end record");
    dir.limit = end;
  }
  if (!range_ok(dir.offset, dir.size, dir.limit)) fail(label, "central directory out of bounds");
  if (dir.count > dir.size / kCentralHeaderSize)
    fail(label, "central directory too small for its entry count");
  return dir;
}

// Replaces the 0xffff... placeholders of a central header with the values of its ZIP64 extra
// field, which lists only the placeholders, in this fixed order.
void apply_zip64_extra(const uint8_t* extra, size_t length, ZipEntry& entry, uint32_t* disk,
                       const std::string& label) {
  const bool need_size = entry.size == 0xffffffffu;
  const bool need_csize = entry.compressed_size == 0xffffffffu;
  const bool need_offset = entry.header_offset == 0xffffffffu;
  const bool need_disk = *disk == 0xffff;
  bool found = false;
  size_t pos = 0;
  while (pos + 4 <= length) {
    const uint16_t id = load_le16(extra + pos);
    const uint16_t n = load_le16(extra + pos + 2);
    pos += 4;
    if (n > length - pos)
      fail(label, "zip entry " + printable(entry.name) + ": extra field overruns");
    if (id == kZip64ExtraId && !found) {
      found = true;
      const uint8_t* f = extra + pos;
      size_t used = 0;
      auto take64 = [&](uint64_t* out) {
        if (used + 8 > n)
          fail(label, "zip entry " + printable(entry.name) + ": ZIP64 extra field too short");
        *out = load_le64(f + used);
        used += 8;
      };
      if (need_size) take64(&entry.size);
      if (need_csize) take64(&entry.compressed_size);
      if (need_offset) take64(&entry.header_offset);
      if (need_disk) {
        if (used + 4 > n)
          fail(label, "zip entry " + printable(entry.name) + ": ZIP64 extra field too short");
        *disk = load_le32(f + used);
      }
    }
    pos += n;
  }
  if (!found && (need_size || need_csize || need_offset || need_disk))
    fail(label,
         "zip entry " + printable(entry.name) + ": ZIP64 values without a ZIP64 extra field");
}

}  // namespace

ZipReader ZipReader::parse(const uint8_t* data, size_t size, const std::string& label) {
  ZipReader zip;
  zip.data_ = data;
  zip.size_ = size;
  zip.label_ = label;
  const Directory dir = read_directory_location(data, size, label);
  zip.entries_.reserve(dir.count);

  uint64_t pos = dir.offset;
  const uint64_t dir_end = dir.offset + dir.size;
  for (uint64_t i = 0; i < dir.count; ++i) {
    if (!range_ok(pos, kCentralHeaderSize, dir_end)) fail(label, "central directory truncated");
    const uint8_t* c = data + pos;
    if (load_le32(c) != kCentralHeaderSig) fail(label, "bad central directory entry signature");
    ZipEntry e;
    e.flags = load_le16(c + 8);
    e.method = load_le16(c + 10);
    e.crc32 = load_le32(c + 16);
    e.compressed_size = load_le32(c + 20);
    e.size = load_le32(c + 24);
    const uint16_t name_len = load_le16(c + 28);
    const uint16_t extra_len = load_le16(c + 30);
    const uint16_t comment_len = load_le16(c + 32);
    uint32_t disk = load_le16(c + 34);
    e.header_offset = load_le32(c + 42);
    const uint64_t variable = uint64_t{name_len} + extra_len + comment_len;
    if (!range_ok(pos + kCentralHeaderSize, variable, dir_end))
      fail(label, "central directory truncated");
    e.name.assign(reinterpret_cast<const char*>(c + kCentralHeaderSize), name_len);
    apply_zip64_extra(c + kCentralHeaderSize + name_len, extra_len, e, &disk, label);
    pos += kCentralHeaderSize + variable;

    if (disk != 0) fail(label, "multi-disk zip archives are not supported");
    if (e.flags & 0x41) fail(label, "zip entry " + printable(e.name) + " is encrypted");
    if (e.method == 0 && e.compressed_size != e.size)
      fail(label, "zip entry " + printable(e.name) + ": stored entry with differing sizes");
    // The local header repeats the name; its extra field may be longer (alignment padding).
    if (!range_ok(e.header_offset, kLocalHeaderSize, dir.offset))
      fail(label, "zip entry " + printable(e.name) + ": local header out of bounds");
    const uint8_t* l = data + e.header_offset;
    if (load_le32(l) != kLocalHeaderSig)
      fail(label, "zip entry " + printable(e.name) + ": bad local header signature");
    const uint16_t local_name_len = load_le16(l + 26);
    const uint16_t local_extra_len = load_le16(l + 28);
    e.data_offset = e.header_offset + kLocalHeaderSize + local_name_len + local_extra_len;
    if (!range_ok(e.header_offset + kLocalHeaderSize, local_name_len, dir.offset) ||
        local_name_len != name_len ||
        std::memcmp(l + kLocalHeaderSize, e.name.data(), name_len) != 0)
      fail(label,
           "zip entry " + printable(e.name) + ": local header name differs from the directory");
    if (!range_ok(e.data_offset, e.compressed_size, dir.offset))
      fail(label, "zip entry " + printable(e.name) + ": data out of bounds");
    if (!zip.index_.emplace(e.name, zip.entries_.size()).second)
      fail(label, "duplicate zip entry " + printable(e.name));
    zip.entries_.push_back(std::move(e));
  }
  if (pos != dir_end) fail(label, "central directory size does not match its entries");
  return zip;
}

const ZipEntry* ZipReader::find(const std::string& name) const {
  const auto it = index_.find(name);
  return it == index_.end() ? nullptr : &entries_[it->second];
}

const uint8_t* ZipReader::stored_data(const ZipEntry& entry) const {
  if (entry.method != 0)
    fail(label_, "zip entry " + printable(entry.name) + " is compressed (method " +
                     std::to_string(entry.method) +
                     "); only stored entries are supported, as torch.save writes them");
  return data_ + entry.data_offset;
}

bool looks_like_zip(const uint8_t* data, size_t size) {
  if (size < 4) return false;
  const uint32_t sig = load_le32(data);
  return sig == kLocalHeaderSig || sig == kEndSig;
}

uint32_t crc32(const uint8_t* data, size_t size) {
  static const std::array<uint32_t, 256> table = [] {
    std::array<uint32_t, 256> t{};
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xedb88320u ^ (c >> 1) : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  uint32_t c = 0xffffffffu;
  for (size_t i = 0; i < size; ++i) c = table[(c ^ data[i]) & 0xff] ^ (c >> 8);
  return c ^ 0xffffffffu;
}

}  // namespace foley::io
