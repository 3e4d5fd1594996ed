#include "core/arena.h"

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <new>

#include "core/check.h"

namespace foley {

BlockAllocator host_block_allocator() {
  BlockAllocator a;
  a.device = DeviceKind::kCPU;
  a.allocate = [](size_t bytes) -> void* {
    void* p = std::aligned_alloc(Arena::kAlignment, (bytes + Arena::kAlignment - 1) /
                                                        Arena::kAlignment * Arena::kAlignment);
    if (!p) throw std::bad_alloc();
    return p;
  };
  a.release = [](void* p) { std::free(p); };
  return a;
}

Arena::Arena(BlockAllocator allocator, size_t initial_bytes) : allocator_(std::move(allocator)) {
  if (initial_bytes) add_block(initial_bytes);
}

std::unique_ptr<Arena> Arena::view(void* base, size_t bytes, DeviceKind device) {
  FOLEY_CHECK(reinterpret_cast<uintptr_t>(base) % kAlignment == 0 && bytes > 0,
              "arena view of %zu bytes at a misaligned or empty place", bytes);
  BlockAllocator a;
  a.device = device;
  a.allocate = [](size_t) -> void* {
    throw make_error(ErrorKind::kInternal, "an arena view never allocates");
  };
  a.release = [](void*) {};
  auto arena = std::make_unique<Arena>(std::move(a));
  arena->blocks_.push_back({static_cast<char*>(base), bytes, 0});
  arena->frozen_ = true;
  return arena;
}

Arena::~Arena() {
  for (auto& b : blocks_) allocator_.release(b.base);
}

size_t Arena::reserved() const {
  size_t n = 0;
  for (const auto& b : blocks_) n += b.capacity;
  return n;
}

void Arena::add_block(size_t min_bytes) {
  const size_t start = blocks_.empty() ? 0 : blocks_.back().start + blocks_.back().capacity;
  // Grow geometrically while sizing, so warm-up needs few blocks.
  const size_t capacity =
      std::max<size_t>({min_bytes, size_t{1} << 20, blocks_.empty() ? 0 : reserved()});
  char* base = static_cast<char*>(allocator_.allocate(capacity));
  blocks_.push_back({base, capacity, start});
}

void* Arena::alloc_bytes(size_t bytes) {
  bytes = (bytes + kAlignment - 1) / kAlignment * kAlignment;
  for (;;) {
    // The block holding the current offset: allocate there if it fits, otherwise skip its tail
    // and try the next block (blocks are contiguous in the logical offset space).
    const Block* current = nullptr;
    for (const auto& b : blocks_)
      if (used_ >= b.start && used_ < b.start + b.capacity) current = &b;
    if (current && used_ + bytes <= current->start + current->capacity) {
      void* p = current->base + (used_ - current->start);
      used_ += bytes;
      high_water_ = std::max(high_water_, used_);
      peak_ = std::max(peak_, used_);
      return p;
    }
    const size_t end = blocks_.empty() ? 0 : blocks_.back().start + blocks_.back().capacity;
    if (current && current->start + current->capacity < end) {
      used_ = current->start + current->capacity;
      continue;
    }
    if (frozen_)
      throw make_error(ErrorKind::kInternal,
                       "activation arena exhausted: %zu bytes requested with %zu of %zu in use "
                       "(the input is larger than the model was sized for)",
                       bytes, used_, reserved());
    used_ = end;  // abandon the tail of the last block
    add_block(bytes);
  }
}

Tensor Arena::alloc(const Shape& shape, DType dtype) {
  void* p = alloc_bytes(static_cast<size_t>(shape.numel()) * dtype_size(dtype));
  return Tensor(p, dtype, shape, allocator_.device);
}

void Arena::release(size_t mark) {
  FOLEY_CHECK(mark <= used_, "arena release past the current position");
  used_ = mark;
}

void Arena::freeze(size_t headroom) {
  FOLEY_CHECK(used_ == 0, "arena frozen with %zu bytes still in use", used_);
  const size_t want = high_water_ + headroom;
  if (!(blocks_.size() == 1 && blocks_[0].capacity >= want)) {
    for (auto& b : blocks_) allocator_.release(b.base);
    blocks_.clear();
    if (want) {
      char* base = static_cast<char*>(allocator_.allocate(want));
      blocks_.push_back({base, want, 0});
    }
  }
  frozen_ = true;
}

}  // namespace foley
