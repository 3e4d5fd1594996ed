// SafetensorsWriter: foley's aligned safetensors layout, written atomically and streamed.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>

#include "foley/error.h"
#include "io/bytes.h"
#include "io/content_hash.h"
#include "io/safetensors.h"

namespace foley {
namespace {

using io::printable;

constexpr uint64_t kMaxHeaderBytes = 100u * 1000u * 1000u;  // what the reader accepts

uint64_t round_up(uint64_t v, uint64_t a) {
  return (v + a - 1) / a * a;
}

uint64_t checked_nbytes(DType dtype, const Shape& shape, const std::string& name) {
  uint64_t n = dtype_size(dtype);
  for (int64_t d : shape)
    if (io::mul_overflows(n, static_cast<uint64_t>(d), &n))
      throw Error(ErrorKind::kInvalidInput, "tensor " + printable(name) + " is too large");
  return n;
}

// An open temporary file that is removed unless commit() renamed it into place.
class TempFile {
 public:
  explicit TempFile(const std::string& path) : path_(path), tmp_(path + ".tmp") {
    fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd_ < 0)
      throw Error(ErrorKind::kInvalidInput, tmp_ + ": cannot create: " + std::strerror(errno));
  }
  ~TempFile() {
    if (fd_ >= 0) ::close(fd_);
    if (!committed_) ::unlink(tmp_.c_str());
  }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;

  void write(const void* data, size_t n) {
    const auto* p = static_cast<const uint8_t*>(data);
    while (n > 0) {
      const ssize_t w = ::write(fd_, p, n);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) io_error("write failed");
      p += w;
      n -= static_cast<size_t>(w);
    }
  }

  // Writes at an absolute offset (the header, once the content hashes are known).
  void write_at(const void* data, size_t n, uint64_t offset) {
    const auto* p = static_cast<const uint8_t*>(data);
    while (n > 0) {
      const ssize_t w = ::pwrite(fd_, p, n, static_cast<off_t>(offset));
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) io_error("write failed");
      p += w;
      n -= static_cast<size_t>(w);
      offset += static_cast<uint64_t>(w);
    }
  }

  // fsync before rename, so that after a crash the path holds either the old or the whole new
  // file; the directory is synced so the rename itself survives.
  void commit() {
    if (::fsync(fd_) != 0) io_error("fsync failed");
    const int fd = fd_;
    fd_ = -1;
    if (::close(fd) != 0) io_error("close failed");
    if (::rename(tmp_.c_str(), path_.c_str()) != 0) io_error("rename failed");
    committed_ = true;
    const size_t slash = path_.rfind('/');
    const std::string dir = slash == std::string::npos ? "." : path_.substr(0, slash + 1);
    const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
      ::fsync(dfd);  // best effort: some filesystems refuse fsync on directories
      ::close(dfd);
    }
  }

 private:
  [[noreturn]] void io_error(const char* what) {
    throw Error(ErrorKind::kInternal, tmp_ + ": " + what + ": " + std::strerror(errno));
  }

  std::string path_, tmp_;
  int fd_ = -1;
  bool committed_ = false;
};

// Copies any strided host tensor into contiguous bytes, one element at a time when it must.
void copy_contiguous(const Tensor& t, void* dst) {
  const size_t esize = dtype_size(t.dtype());
  if (t.is_contiguous()) {
    std::memcpy(dst, t.raw(), t.nbytes());
    return;
  }
  auto* out = static_cast<uint8_t*>(dst);
  const auto* base = static_cast<const uint8_t*>(t.raw());
  std::array<int64_t, kMaxRank> idx{};
  const int64_t n = t.numel();
  for (int64_t i = 0; i < n; ++i) {
    int64_t off = 0;
    for (int d = 0; d < t.rank(); ++d) off += idx[static_cast<size_t>(d)] * t.stride(d);
    std::memcpy(out + static_cast<size_t>(i) * esize, base + off * static_cast<int64_t>(esize),
                esize);
    for (int d = t.rank() - 1; d >= 0; --d) {
      if (++idx[static_cast<size_t>(d)] < t.dim(d)) break;
      idx[static_cast<size_t>(d)] = 0;
    }
  }
}

}  // namespace

void SafetensorsWriter::set_metadata(const std::string& key, const std::string& value) {
  metadata_[key] = value;
}

void SafetensorsWriter::add(const std::string& name, DType dtype, const Shape& shape,
                            std::function<void(void* dst)> fill) {
  if (name == "__metadata__")
    throw Error(ErrorKind::kInvalidInput, "\"__metadata__\" cannot name a tensor");
  if (!names_.insert(name).second)
    throw Error(ErrorKind::kInvalidInput, "tensor " + printable(name) + " added twice");
  checked_nbytes(dtype, shape, name);
  tensors_.push_back({name, dtype, shape, std::move(fill)});
}

void SafetensorsWriter::add(const std::string& name, const Tensor& host_tensor) {
  if (host_tensor.device() != DeviceKind::kCPU)
    throw Error(ErrorKind::kInvalidInput, "tensor " + printable(name) + " is not on the host");
  add(name, host_tensor.dtype(), host_tensor.shape(),
      [host_tensor](void* dst) { copy_contiguous(host_tensor, dst); });
}

void SafetensorsWriter::write(const std::string& path) const {
  // Layout first: every tensor at a kTensorAlignment multiple within the blob.
  std::vector<uint64_t> begins;
  uint64_t cursor = 0, largest = 0;
  for (const auto& t : tensors_) {
    const uint64_t nbytes = checked_nbytes(t.dtype, t.shape, t.name);
    const uint64_t begin = round_up(cursor, kTensorAlignment);
    begins.push_back(begin);
    cursor = begin + nbytes;
    largest = std::max(largest, nbytes);
  }
  // Content hashes, one per group: placeholders of the final length while the header is sized,
  // the real digests once the tensors have streamed through them.
  std::map<std::string, Xxh64> hashes;
  if (!hash_key_.empty())
    for (const auto& t : tensors_) hashes.emplace(hash_group_of(t.name), Xxh64());
  auto header_text = [&](bool final_hashes) {
    nlohmann::ordered_json header = nlohmann::ordered_json::object();
    std::map<std::string, std::string> metadata = metadata_;
    if (!hash_key_.empty()) {
      nlohmann::json h = nlohmann::json::object();
      for (const auto& [group, state] : hashes)
        h[group] = content_hash_string(final_hashes ? state.digest() : 0);
      metadata[hash_key_] = h.dump();
    }
    if (!metadata.empty()) header["__metadata__"] = metadata;
    for (size_t i = 0; i < tensors_.size(); ++i) {
      const auto& t = tensors_[i];
      const uint64_t end = begins[i] + checked_nbytes(t.dtype, t.shape, t.name);
      header[t.name] = {{"dtype", dtype_name(t.dtype)},
                        {"shape", std::vector<int64_t>(t.shape.begin(), t.shape.end())},
                        {"data_offsets", {begins[i], end}}};
    }
    std::string text;
    try {
      text = header.dump();
    } catch (const nlohmann::json::exception& e) {
      throw Error(ErrorKind::kInvalidInput, path + ": cannot encode the header: " + e.what());
    }
    // Spaces after the JSON are valid whitespace; they put the blob on a kBlobAlignment boundary
    // so that mapped tensors are aligned in memory as well.
    text.append(round_up(8 + text.size(), kBlobAlignment) - 8 - text.size(), ' ');
    return text;
  };
  const std::string text = header_text(false);
  if (text.size() > kMaxHeaderBytes)
    throw Error(ErrorKind::kInvalidInput, path + ": header exceeds the 100 MB limit");

  TempFile out(path);
  uint8_t length[8];
  io::store_le64(length, text.size());
  out.write(length, 8);
  out.write(text.data(), text.size());
  // One buffer the size of the largest tensor is reused: memory stays at one tensor, not the
  // model, and the kernel's page cache does the rest.
  std::vector<uint8_t> buffer(largest);
  static const std::array<uint8_t, kTensorAlignment> zeros{};
  uint64_t written = 0;
  for (size_t i = 0; i < tensors_.size(); ++i) {
    const auto& t = tensors_[i];
    const uint64_t nbytes = checked_nbytes(t.dtype, t.shape, t.name);
    out.write(zeros.data(), begins[i] - written);
    if (nbytes > 0) t.fill(buffer.data());
    if (!hash_key_.empty()) {
      Xxh64& h = hashes.at(hash_group_of(t.name));
      hash_tensor_header(h, t.name, t.dtype, t.shape, nbytes);
      h.update(buffer.data(), nbytes);
    }
    out.write(buffer.data(), nbytes);
    written = begins[i] + nbytes;
  }
  if (!hash_key_.empty()) {
    // Fixed-width digests: the final header has the placeholder's length, so it fits in place.
    const std::string final_text = header_text(true);
    if (final_text.size() != text.size())
      throw Error(ErrorKind::kInternal, path + ": header size changed with the content hashes");
    out.write_at(final_text.data(), final_text.size(), 8);
  }
  out.commit();
}

}  // namespace foley
