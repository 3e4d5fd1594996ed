// oneDNN matmul primitives keyed by everything that shapes them. Creating a primitive descriptor
// costs tens of microseconds (and JIT code on first use), far more than a small GEMM, so every
// (M, N, K, strides, dtypes, bias, beta) combination is built once and reused. The cache is
// bounded (least recently used entries go) because convolutions over varying lengths produce new
// M values per input length.
#pragma once

#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <oneapi/dnnl/dnnl.hpp>
#include <unordered_map>

namespace foley::cpu {

struct MatmulKey {
  int64_t M = 0, N = 0, K = 0;
  int64_t ldx = 0, ldw = 0, ldy = 0;
  dnnl::memory::data_type src = dnnl::memory::data_type::f32;
  dnnl::memory::data_type wei = dnnl::memory::data_type::f32;
  bool bias = false;
  float beta = 0.0f;
  bool operator==(const MatmulKey& o) const;
};

struct MatmulKeyHash {
  size_t operator()(const MatmulKey& k) const;
};

struct MatmulEntry {
  bool ok = false;  // false: oneDNN has no implementation (e.g. bf16 below AVX-512); impl says why
  dnnl::matmul prim;
  size_t scratchpad_bytes = 0;
  bool reference = false;  // oneDNN picked its slow reference kernel
  std::string impl;
};

class MatmulCache {
 public:
  explicit MatmulCache(size_t capacity = 1024);
  // The primitive for `key`, created on first use (failures are cached too). Thread-safe.
  std::shared_ptr<const MatmulEntry> get(const MatmulKey& key);
  const dnnl::engine& engine() const { return engine_; }
  size_t size();

 private:
  using Lru = std::list<std::pair<MatmulKey, std::shared_ptr<const MatmulEntry>>>;
  dnnl::engine engine_;
  size_t capacity_;
  std::mutex mutex_;
  Lru lru_;  // most recent first
  std::unordered_map<MatmulKey, Lru::iterator, MatmulKeyHash> index_;
};

}  // namespace foley::cpu
