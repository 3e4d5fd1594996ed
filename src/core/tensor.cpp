#include "core/tensor.h"

#include <sys/mman.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <new>

#include "core/check.h"

namespace foley {

Shape::Shape(std::initializer_list<int64_t> dims) {
  for (int64_t d : dims) push_back(d);
}

int64_t Shape::numel() const {
  int64_t n = 1;
  for (int i = 0; i < rank_; ++i) n *= dims_[static_cast<size_t>(i)];
  return n;
}

void Shape::push_back(int64_t d) {
  FOLEY_CHECK(rank_ < kMaxRank, "tensor rank above %d", kMaxRank);
  FOLEY_CHECK(d >= 0, "negative dimension %lld", static_cast<long long>(d));
  dims_[static_cast<size_t>(rank_++)] = d;
}

bool Shape::operator==(const Shape& o) const {
  if (rank_ != o.rank_) return false;
  for (int i = 0; i < rank_; ++i)
    if (dims_[static_cast<size_t>(i)] != o.dims_[static_cast<size_t>(i)]) return false;
  return true;
}

std::string Shape::str() const {
  std::string s = "[";
  for (int i = 0; i < rank_; ++i) {
    if (i) s += ", ";
    s += std::to_string(dims_[static_cast<size_t>(i)]);
  }
  return s + "]";
}

Tensor::Tensor(void* data, DType dtype, const Shape& shape, DeviceKind device,
               std::shared_ptr<void> owner)
    : data_(data), owner_(std::move(owner)), shape_(shape), dtype_(dtype), device_(device) {
  int64_t s = 1;
  for (int i = shape.rank() - 1; i >= 0; --i) {
    strides_[static_cast<size_t>(i)] = s;
    s *= shape[i];
  }
}

Tensor Tensor::empty(const Shape& shape, DType dtype) {
  const size_t bytes = static_cast<size_t>(shape.numel()) * dtype_size(dtype);
  // Large buffers (decoded frames, CPU activations) in transparent huge pages where the kernel
  // offers them for the asking (THP "madvise", Debian's default): first touching 100 MB of 4-KiB
  // pages cost ~0.23 s on a 2-core VM, a third of decoding a 10-s clip.
  constexpr size_t kHuge = size_t{2} << 20;
  const bool huge = bytes >= 2 * kHuge;
  const size_t align = huge ? kHuge : 64;
  const size_t rounded = std::max<size_t>(align, (bytes + align - 1) / align * align);
  void* p = std::aligned_alloc(align, rounded);
  if (!p) throw std::bad_alloc();
  if (huge) ::madvise(p, rounded, MADV_HUGEPAGE);  // advice only: ignored where THP is off
  return Tensor(p, dtype, shape, DeviceKind::kCPU, std::shared_ptr<void>(p, std::free));
}

Tensor Tensor::zeros(const Shape& shape, DType dtype) {
  Tensor t = empty(shape, dtype);
  std::memset(t.raw(), 0, t.nbytes());
  return t;
}

bool Tensor::is_contiguous() const {
  int64_t s = 1;
  for (int i = rank() - 1; i >= 0; --i) {
    if (shape_[i] != 1 && strides_[static_cast<size_t>(i)] != s) return false;
    s *= shape_[i];
  }
  return true;
}

Tensor Tensor::reshape(const Shape& shape) const {
  FOLEY_CHECK(is_contiguous(), "reshape of a non-contiguous tensor %s", describe().c_str());
  FOLEY_CHECK(shape.numel() == numel(), "reshape %s to %s changes the element count",
              describe().c_str(), shape.str().c_str());
  Tensor t(data_, dtype_, shape, device_, owner_);
  return t;
}

Tensor Tensor::slice(int dim, int64_t start, int64_t length) const {
  if (dim < 0) dim += rank();
  FOLEY_CHECK(dim >= 0 && dim < rank(), "slice dim %d out of range for %s", dim,
              describe().c_str());
  FOLEY_CHECK(start >= 0 && length >= 0 && start + length <= shape_[dim],
              "slice [%lld, %lld) out of range for dim %d of %s", static_cast<long long>(start),
              static_cast<long long>(start + length), dim, describe().c_str());
  Tensor t = *this;
  t.data_ = static_cast<char*>(data_) +
            start * strides_[static_cast<size_t>(dim)] * static_cast<int64_t>(dtype_size(dtype_));
  t.shape_[dim] = length;
  return t;
}

Tensor Tensor::select(int dim, int64_t index) const {
  if (dim < 0) dim += rank();
  Tensor t = slice(dim, index, 1);
  Tensor out = t;
  out.shape_ = Shape();
  int r = 0;
  for (int i = 0; i < rank(); ++i) {
    if (i == dim) continue;
    out.shape_.push_back(t.shape_[i]);
    out.strides_[static_cast<size_t>(r++)] = t.strides_[static_cast<size_t>(i)];
  }
  return out;
}

Tensor Tensor::transpose(int a, int b) const {
  if (a < 0) a += rank();
  if (b < 0) b += rank();
  FOLEY_CHECK(a >= 0 && a < rank() && b >= 0 && b < rank(), "transpose dims out of range");
  Tensor t = *this;
  std::swap(t.shape_[a], t.shape_[b]);
  std::swap(t.strides_[static_cast<size_t>(a)], t.strides_[static_cast<size_t>(b)]);
  return t;
}

Tensor Tensor::unsqueeze(int dim) const {
  if (dim < 0) dim += rank() + 1;
  FOLEY_CHECK(dim >= 0 && dim <= rank(), "unsqueeze dim out of range");
  Tensor t = *this;
  t.shape_ = Shape();
  int src = 0;
  for (int i = 0; i <= rank(); ++i) {
    if (i == dim) {
      t.shape_.push_back(1);
      t.strides_[static_cast<size_t>(i)] = 0;
    } else {
      t.shape_.push_back(shape_[src]);
      t.strides_[static_cast<size_t>(i)] = strides_[static_cast<size_t>(src)];
      ++src;
    }
  }
  return t;
}

Tensor Tensor::expand(const Shape& shape) const {
  FOLEY_CHECK(shape.rank() >= rank(), "expand %s to lower rank %s", describe().c_str(),
              shape.str().c_str());
  Tensor t = *this;
  t.shape_ = shape;
  const int lead = shape.rank() - rank();
  for (int i = 0; i < shape.rank(); ++i) {
    if (i < lead) {
      t.strides_[static_cast<size_t>(i)] = 0;
      continue;
    }
    const int64_t d = shape_[i - lead];
    FOLEY_CHECK(d == shape[i] || d == 1, "cannot expand %s to %s", describe().c_str(),
                shape.str().c_str());
    t.strides_[static_cast<size_t>(i)] = d == shape[i] ? strides_[static_cast<size_t>(i - lead)] : 0;
  }
  return t;
}

Tensor Tensor::as_strided(const Shape& shape, const std::array<int64_t, kMaxRank>& strides) const {
  Tensor t = *this;
  t.shape_ = shape;
  t.strides_ = strides;
  return t;
}

std::string Tensor::describe() const { return std::string(dtype_name(dtype_)) + shape_.str(); }

void expect_shape(const Tensor& t, const Shape& shape, const char* what) {
  if (t.shape() != shape)
    throw Error(ErrorKind::kInvalidInput, std::string(what) + ": expected shape " + shape.str() +
                                              ", got " + t.shape().str());
}

}  // namespace foley
