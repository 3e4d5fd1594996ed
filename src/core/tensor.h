// Tensor: a typed, strided view of memory on one device. Shapes are row-major ("last dim
// contiguous"), strides are in elements, and a stride of 0 broadcasts. A tensor either owns its
// memory through a shared owner (weights, host buffers) or borrows it from an Arena, in which case
// it is valid until the arena is rewound past it. Copying a Tensor never copies data.
#pragma once

#include <array>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>

#include "core/dtype.h"

namespace foley {

enum class DeviceKind : uint8_t { kCPU, kCUDA };

constexpr int kMaxRank = 6;

class Shape {
 public:
  Shape() = default;
  Shape(std::initializer_list<int64_t> dims);
  template <typename It>
  Shape(It begin, It end) {
    for (; begin != end; ++begin) push_back(static_cast<int64_t>(*begin));
  }

  int rank() const { return rank_; }
  int64_t operator[](int i) const { return dims_[static_cast<size_t>(i)]; }
  int64_t& operator[](int i) { return dims_[static_cast<size_t>(i)]; }
  // Negative indices count from the end, like Python.
  int64_t dim(int i) const { return dims_[static_cast<size_t>(i < 0 ? i + rank_ : i)]; }
  int64_t numel() const;
  void push_back(int64_t d);
  const int64_t* begin() const { return dims_.data(); }
  const int64_t* end() const { return dims_.data() + rank_; }
  bool operator==(const Shape& o) const;
  bool operator!=(const Shape& o) const { return !(*this == o); }
  std::string str() const;  // "[2, 128, 64]"

 private:
  std::array<int64_t, kMaxRank> dims_{};
  int rank_ = 0;
};

class Tensor {
 public:
  Tensor() = default;
  // Wraps memory; `owner` keeps it alive (may be null for arena or caller-managed memory).
  Tensor(void* data, DType dtype, const Shape& shape, DeviceKind device,
         std::shared_ptr<void> owner = nullptr);
  // A new, contiguous, 64-byte aligned host tensor (uninitialised).
  static Tensor empty(const Shape& shape, DType dtype);
  static Tensor zeros(const Shape& shape, DType dtype);

  bool defined() const { return data_ != nullptr || shape_.numel() == 0; }
  DType dtype() const { return dtype_; }
  DeviceKind device() const { return device_; }
  const Shape& shape() const { return shape_; }
  int rank() const { return shape_.rank(); }
  int64_t dim(int i) const { return shape_.dim(i); }
  int64_t stride(int i) const { return strides_[static_cast<size_t>(i < 0 ? i + rank() : i)]; }
  int64_t numel() const { return shape_.numel(); }
  size_t nbytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype_); }
  bool is_contiguous() const;

  void* raw() const { return data_; }
  template <typename T>
  T* data() const {
    return static_cast<T*>(data_);
  }

  // Views: no data movement. reshape needs a contiguous tensor.
  Tensor reshape(const Shape& shape) const;
  Tensor slice(int dim, int64_t start, int64_t length) const;
  Tensor select(int dim, int64_t index) const;  // drops `dim`
  Tensor transpose(int a, int b) const;
  Tensor unsqueeze(int dim) const;
  // Broadcasts size-1 dims (and missing leading dims) to `shape` with stride 0.
  Tensor expand(const Shape& shape) const;
  // Same memory, different shape and strides; the caller vouches for bounds.
  Tensor as_strided(const Shape& shape, const std::array<int64_t, kMaxRank>& strides) const;

  std::string describe() const;  // "F32[2, 128, 64]"

 private:
  void* data_ = nullptr;
  std::shared_ptr<void> owner_;
  Shape shape_;
  std::array<int64_t, kMaxRank> strides_{};
  DType dtype_ = DType::kF32;
  DeviceKind device_ = DeviceKind::kCPU;
};

// Throws kInvalidInput naming `what` unless the tensor has exactly this shape.
void expect_shape(const Tensor& t, const Shape& shape, const char* what);

}  // namespace foley
