// Writing a file so that it appears complete or not at all: data goes to a temporary file in the
// destination's directory (same file system, so rename() is atomic), which replaces the
// destination only on commit(). Destroying an uncommitted AtomicFile deletes the temporary file.
#pragma once

#include <cstddef>
#include <string>

namespace foley::media {

class AtomicFile {
 public:
  // Creates the temporary file; throws kInvalidInput if the directory is missing or unwritable.
  explicit AtomicFile(const std::string& destination);
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  // Where to write (for libraries that open the file themselves, e.g. FFmpeg's muxers).
  const std::string& temp_path() const { return temp_path_; }
  // Appends through this object's descriptor; throws kInternal on I/O errors (disk full, ...).
  void write(const void* data, size_t size);
  // Flushes to disk, gives the file normal permissions (0644) and renames it over the
  // destination.
  void commit();

 private:
  std::string destination_;
  std::string temp_path_;
  int fd_ = -1;
  bool committed_ = false;
};

}  // namespace foley::media
