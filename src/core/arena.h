// Activation memory: a stack allocator over memory reserved once per model.
//
// A model sizes its arena by running once at its largest supported input (warm-up) in growth
// mode, then calls freeze(): the blocks collapse into one reservation of the high-water mark and
// any later request for more throws instead of allocating. Per-step code allocates with alloc()
// inside an Arena::Scope, which rewinds on exit, so the steady state never touches the system
// allocator (or cudaMalloc on a device backend).
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <vector>

#include "core/tensor.h"

namespace foley {

// How an arena gets and returns raw blocks on its device.
struct BlockAllocator {
  DeviceKind device = DeviceKind::kCPU;
  std::function<void*(size_t)> allocate;
  std::function<void(void*)> release;
};
BlockAllocator host_block_allocator();

class Arena {
 public:
  static constexpr size_t kAlignment = 256;

  explicit Arena(BlockAllocator allocator, size_t initial_bytes = 0);
  // A frozen arena over `bytes` at `base`, memory it does not own (a region of another arena's
  // block that two users must not share at once).
  static std::unique_ptr<Arena> view(void* base, size_t bytes, DeviceKind device);
  ~Arena();
  Arena(const Arena&) = delete;
  Arena& operator=(const Arena&) = delete;

  Tensor alloc(const Shape& shape, DType dtype);
  void* alloc_bytes(size_t bytes);

  // Position marks; release(mark) frees everything allocated after mark() was taken.
  size_t mark() const { return used_; }
  void release(size_t mark);

  class Scope {
   public:
    explicit Scope(Arena& arena) : arena_(arena), mark_(arena.mark()) {}
    ~Scope() { arena_.release(mark_); }
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;

   private:
    Arena& arena_;
    size_t mark_;
  };

  // Collapses to one block of the high-water mark (plus `headroom` bytes); growth is refused
  // afterwards. Must be called with nothing allocated.
  void freeze(size_t headroom = 0);
  bool frozen() const { return frozen_; }
  size_t high_water() const { return high_water_; }
  // A second high-water mark that restart_peak() moves back to the current position: what one
  // phase of work took from an arena that several phases use in turn. freeze() ignores it.
  size_t peak() const { return peak_; }
  void restart_peak() { peak_ = used_; }
  size_t reserved() const;
  size_t used() const { return used_; }
  DeviceKind device() const { return allocator_.device; }

 private:
  struct Block {
    char* base;
    size_t capacity;
    size_t start;  // arena offset of this block's first byte
  };
  void add_block(size_t min_bytes);

  BlockAllocator allocator_;
  std::vector<Block> blocks_;
  size_t used_ = 0;  // logical offset: bytes handed out, including alignment and block tails
  size_t high_water_ = 0;
  size_t peak_ = 0;
  bool frozen_ = false;
};

}  // namespace foley
