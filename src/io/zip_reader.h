// A read-only ZIP directory over bytes in memory (a mapped file), enough for torch.save archives.
//
// Only what torch writes is needed: stored (uncompressed) entries, ZIP64 sizes and offsets for
// checkpoints past 4 GiB, one disk. The central directory is trusted only after bounds checks;
// each entry's local header is checked too, because the data starts after the *local* name and
// extra field, whose lengths may differ from the central copy (torch pads the local extra field so
// that tensor data is 64-byte aligned).
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace foley::io {

struct ZipEntry {
  std::string name;
  uint16_t method = 0;  // 0 = stored; anything else is refused on access
  uint16_t flags = 0;
  uint32_t crc32 = 0;
  uint64_t compressed_size = 0;
  uint64_t size = 0;           // uncompressed
  uint64_t header_offset = 0;  // of the local header
  uint64_t data_offset = 0;    // of the entry's bytes in the archive
};

class ZipReader {
 public:
  // Parses the end records and the central directory. Throws Error(kInvalidInput,
  // "<label>: <reason>") for anything malformed, out of bounds, encrypted or multi-disk.
  static ZipReader parse(const uint8_t* data, size_t size, const std::string& label);

  // Entries in central-directory order.
  const std::vector<ZipEntry>& entries() const { return entries_; }
  const ZipEntry* find(const std::string& name) const;
  // The bytes of a stored entry, in place. Throws for compressed entries.
  const uint8_t* stored_data(const ZipEntry& entry) const;

 private:
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
  std::string label_;
  std::vector<ZipEntry> entries_;
  std::map<std::string, size_t> index_;
};

// True if the bytes start like a zip archive (a local header, or the end record of an empty one).
bool looks_like_zip(const uint8_t* data, size_t size);

// CRC-32 (IEEE 802.3, as zip uses it).
uint32_t crc32(const uint8_t* data, size_t size);

}  // namespace foley::io
