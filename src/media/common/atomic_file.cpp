#include "media/common/atomic_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <vector>

#include "core/check.h"

namespace foley::media {
namespace {

std::string directory_of(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

}  // namespace

AtomicFile::AtomicFile(const std::string& destination) : destination_(destination) {
  if (destination.empty() || destination.back() == '/')
    throw Error(ErrorKind::kInvalidInput, "output path '" + destination + "' is not a file name");
  struct stat st {};
  if (stat(destination.c_str(), &st) == 0 && S_ISDIR(st.st_mode))
    throw Error(ErrorKind::kInvalidInput, "output path '" + destination + "' is a directory");
  const size_t slash = destination.rfind('/');
  const std::string name = slash == std::string::npos ? destination : destination.substr(slash + 1);
  // A hidden name in the same directory; mkstemp makes it unique and opens it O_EXCL.
  std::string tmpl = directory_of(destination) + "/." + name + ".tmp-XXXXXX";
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  fd_ = mkstemp(buf.data());
  if (fd_ < 0)
    throw make_error(ErrorKind::kInvalidInput, "cannot create a file in '%s': %s",
                     directory_of(destination).c_str(), std::strerror(errno));
  temp_path_ = buf.data();
}

AtomicFile::~AtomicFile() {
  if (fd_ >= 0) close(fd_);
  if (!committed_) unlink(temp_path_.c_str());
}

void AtomicFile::write(const void* data, size_t size) {
  const char* p = static_cast<const char*>(data);
  while (size > 0) {
    const ssize_t n = ::write(fd_, p, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0)
      throw make_error(ErrorKind::kInternal, "writing '%s' failed: %s", destination_.c_str(),
                       n < 0 ? std::strerror(errno) : "no progress");
    p += n;
    size -= size_t(n);
  }
}

void AtomicFile::commit() {
  FOLEY_CHECK(!committed_, "AtomicFile committed twice");
  // fsync covers data written through other descriptors of the same file (FFmpeg's avio).
  if (fsync(fd_) != 0 || fchmod(fd_, 0644) != 0)
    throw make_error(ErrorKind::kInternal, "flushing '%s' failed: %s", destination_.c_str(),
                     std::strerror(errno));
  close(fd_);
  fd_ = -1;
  if (rename(temp_path_.c_str(), destination_.c_str()) != 0)
    throw make_error(ErrorKind::kInternal, "renaming to '%s' failed: %s", destination_.c_str(),
                     std::strerror(errno));
  committed_ = true;
  // Make the rename itself durable.
  const int dir = open(directory_of(destination_).c_str(), O_RDONLY | O_DIRECTORY);
  if (dir >= 0) {
    fsync(dir);
    close(dir);
  }
}

}  // namespace foley::media
