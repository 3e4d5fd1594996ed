#include <gtest/gtest.h>

#include <atomic>
#include <vector>

#include "core/arena.h"
#include "core/dtype.h"
#include "core/tensor.h"
#include "core/thread_pool.h"
#include "foley/error.h"

namespace foley {
namespace {

TEST(DType, NamesRoundTrip) {
  for (DType t : {DType::kF32, DType::kBF16, DType::kF16, DType::kI64, DType::kU8, DType::kBool,
                  DType::kF8E4M3}) {
    auto back = dtype_from_name(dtype_name(t));
    ASSERT_TRUE(back.has_value());
    EXPECT_EQ(*back, t);
  }
  EXPECT_FALSE(dtype_from_name("F128").has_value());
}

TEST(DType, Bf16RoundsToNearestEven) {
  EXPECT_EQ(f32_to_bf16(1.0f), 0x3f80);
  // 1 + 2^-8 is exactly halfway between two bf16 values: ties go to the even mantissa (1.0).
  EXPECT_EQ(f32_to_bf16(1.00390625f), 0x3f80);
  EXPECT_EQ(f32_to_bf16(1.01171875f), 0x3f82);  // 1 + 3·2^-8: halfway, rounds up to even
  EXPECT_EQ(bf16_to_f32(0xc040), -3.0f);
}

TEST(DType, F16ExactOnRepresentableValues) {
  for (float v : {0.0f, 1.0f, -2.5f, 65504.0f, 6.103515625e-05f, 5.960464477539063e-08f}) {
    EXPECT_EQ(f16_to_f32(f32_to_f16(v)), v) << v;
  }
  EXPECT_EQ(f32_to_f16(1e6f), 0x7c00);                     // overflow to +inf
  EXPECT_EQ(f16_to_f32(f32_to_f16(1.0f + 1.0f / 4096)), 1.0f);  // below half an ulp rounds down
}

TEST(Tensor, ViewsShareMemoryAndComputeStrides) {
  Tensor t = Tensor::zeros({2, 3, 4}, DType::kF32);
  EXPECT_TRUE(t.is_contiguous());
  EXPECT_EQ(t.stride(0), 12);
  Tensor s = t.slice(2, 1, 2);
  EXPECT_FALSE(s.is_contiguous());
  EXPECT_EQ(s.data<float>(), t.data<float>() + 1);
  Tensor tr = t.transpose(0, 2);
  EXPECT_EQ(tr.dim(0), 4);
  EXPECT_EQ(tr.stride(0), 1);
  Tensor e = Tensor::zeros({1, 4}, DType::kF32).expand({3, 5, 4});
  EXPECT_EQ(e.stride(0), 0);
  EXPECT_EQ(e.stride(1), 0);
  EXPECT_EQ(e.stride(2), 1);
  EXPECT_THROW(t.slice(1, 2, 2), Error);
  EXPECT_THROW(s.reshape({2, 6}), Error);
  EXPECT_EQ(t.select(1, 2).shape(), Shape({2, 4}));
}

TEST(Arena, GrowsThenFreezesToHighWaterMark) {
  Arena arena(host_block_allocator());
  {
    Arena::Scope scope(arena);
    arena.alloc({1000}, DType::kF32);
    arena.alloc({3 << 20}, DType::kF32);  // forces a second block
  }
  EXPECT_EQ(arena.used(), 0u);
  const size_t peak = arena.high_water();
  EXPECT_GE(peak, (3u << 22));
  arena.freeze();
  EXPECT_EQ(arena.reserved(), peak);
  {
    Arena::Scope scope(arena);
    Tensor a = arena.alloc({1000}, DType::kF32);
    Tensor b = arena.alloc({3 << 20}, DType::kF32);
    EXPECT_NE(a.raw(), b.raw());
  }
  Arena::Scope scope(arena);
  EXPECT_THROW(arena.alloc({int64_t{1} << 28}, DType::kF32), Error);
}

TEST(ThreadPool, CoversRangeOnceAndPropagatesErrors) {
  ThreadPool pool(3);
  std::vector<std::atomic<int>> hits(10007);
  pool.parallel_for(10007, 16, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) hits[static_cast<size_t>(i)]++;
  });
  for (auto& h : hits) ASSERT_EQ(h.load(), 1);
  EXPECT_THROW(pool.parallel_for(100, 1,
                                 [](int64_t b, int64_t) {
                                   if (b == 0) throw std::runtime_error("boom");
                                 }),
               std::runtime_error);
  // The pool is still usable after a failed task.
  std::atomic<int64_t> sum{0};
  pool.parallel_for(1000, 1, [&](int64_t b, int64_t e) { sum += e - b; });
  EXPECT_EQ(sum.load(), 1000);
}

}  // namespace
}  // namespace foley

namespace foley {
namespace {

// After a rewind, an allocation that overflows an early block moves on to the next existing
// block instead of appending a new one.
TEST(Arena, ReusesLaterBlocksAfterRewind) {
  Arena arena(host_block_allocator());
  {
    Arena::Scope scope(arena);
    arena.alloc({200 << 10}, DType::kF32);  // 800 KiB in the first 1 MiB block
    arena.alloc({400 << 10}, DType::kF32);  // 1.6 MiB: a second block
  }
  const size_t reserved = arena.reserved();
  for (int i = 0; i < 10; ++i) {
    Arena::Scope scope(arena);
    arena.alloc({200 << 10}, DType::kF32);
    arena.alloc({400 << 10}, DType::kF32);
  }
  EXPECT_EQ(arena.reserved(), reserved);
}

// A view hands out exactly the bytes it was given, from their start, refuses more and frees
// nothing (the memory belongs to another arena).
TEST(Arena, ViewStaysInsideItsBytes) {
  alignas(Arena::kAlignment) static char buffer[4096];
  const auto view = Arena::view(buffer + 1024, 2048, DeviceKind::kCPU);
  EXPECT_TRUE(view->frozen());
  EXPECT_EQ(view->reserved(), 2048u);
  {
    Arena::Scope scope(*view);
    EXPECT_EQ(view->alloc_bytes(1000), buffer + 1024);
    EXPECT_EQ(view->alloc_bytes(1000), buffer + 1024 + 1024);
    EXPECT_THROW(view->alloc_bytes(1), Error);
  }
  EXPECT_EQ(view->alloc_bytes(2048), buffer + 1024);
  EXPECT_THROW(Arena::view(buffer + 8, 64, DeviceKind::kCPU), Error);
}

}  // namespace
}  // namespace foley
