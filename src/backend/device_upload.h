// Moving a bundle's tensor data blob from disk to device memory without a cold start.
//
// The blob is read with parallel preads into a small ring of staging buffers and each filled
// buffer is handed to a sink (on CUDA: an async host-to-device copy out of pinned memory, with an
// event that recycles the buffer). Reads start before the CUDA context exists: the sink's first
// submit waits for the context thread, so the first ring's worth of disk reads overlaps context
// creation. Pages already in the page cache are read with buffered preads; the rest with
// O_DIRECT (4 KiB aligned offsets, lengths and buffers), which skips the page-cache copy and
// reaches the disk's bandwidth. Only the ring is pinned: pinning a 10 GiB model costs seconds.
//
// Backend-neutral: without CUDA, upload_blob_to_device throws kUnsupported; the ring itself is
// plain host code, unit-tested with a memcpy sink (tests/loader_test.cpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "core/tensor.h"

namespace foley {

// A device-resident copy of bytes [0, bytes) of a bundle's data blob (one allocation).
struct DeviceBlob {
  std::shared_ptr<void> memory;  // owns the allocation (frees it on the last release)
  uint8_t* data = nullptr;       // device address of blob byte 0
  size_t bytes = 0;
  DeviceKind device = DeviceKind::kCUDA;
  int device_index = 0;
  bool defined() const { return data != nullptr; }
};

enum class ReadMode {
  kAuto,      // per chunk: buffered when all its pages are cached, O_DIRECT otherwise
  kBuffered,  // always through the page cache
  kDirect,    // always O_DIRECT (falls back to buffered where the filesystem refuses it)
};

struct RingOptions {
  // Measured on an H100 host (16 cores, BENCHMARKS.md): 16 readers of 16 MiB reach 36 GB/s from
  // the page cache (8 of 32 MiB: 27 GB/s).
  int readers = 16;                // threads issuing preads
  int slots = 20;                  // staging buffers (> readers, so reads overlap copies)
  size_t chunk_bytes = 16u << 20;  // bytes per read; rounded up to 4 KiB
  ReadMode mode = ReadMode::kAuto;
};

struct UploadStats {
  double seconds = 0;          // open to last byte on the device (context creation included)
  double context_seconds = 0;  // device context + blob allocation + ring pinning, on its thread
  double first_submit_wait = 0;  // how long the first filled buffer waited for the context
  uint64_t bytes = 0;
  uint64_t direct_bytes = 0;  // read with O_DIRECT
  uint64_t cached_bytes_at_start = 0;  // of the range, resident in the page cache (mincore)
  int readers = 0;
  size_t chunk_bytes = 0;
  int slots = 0;
  double gb_per_s() const { return seconds > 0 ? bytes / seconds / 1e9 : 0; }
};

// Where filled buffers go. submit() may be asynchronous; wait_slot(slot) returns once the last
// submitted transfer out of that slot's buffer has finished reading it. Calls are serialised by
// the ring (one at a time), from reader threads.
struct RingSink {
  std::function<void(int slot, const uint8_t* src, uint64_t dst_offset, size_t bytes)> submit;
  std::function<void(int slot)> wait_slot;
  std::function<void()> finish;  // after the last submit: waits for every transfer
};

// Staging memory: `slots` buffers of `slot_bytes` each, 4 KiB aligned (page-aligned anonymous
// memory).
class StagingRing {
 public:
  StagingRing(int slots, size_t slot_bytes);
  ~StagingRing();
  StagingRing(const StagingRing&) = delete;
  StagingRing& operator=(const StagingRing&) = delete;
  uint8_t* slot(int i) const { return base_ + static_cast<size_t>(i) * slot_bytes_; }
  uint8_t* base() const { return base_; }
  size_t total_bytes() const { return static_cast<size_t>(slots_) * slot_bytes_; }
  int slots() const { return slots_; }
  size_t slot_bytes() const { return slot_bytes_; }

 private:
  uint8_t* base_ = nullptr;
  int slots_;
  size_t slot_bytes_;
};

// Reads bytes [offset, offset + size) of `path` through `ring` into `sink` (dst offsets relative
// to `offset`). `offset` must be a multiple of 4096 (a bundle's blob start is). Throws
// Error(kInvalidInput) for a file shorter than the range, kInternal for I/O errors; a failure in
// any reader stops the others and is rethrown here.
void stream_file_range(const std::string& path, uint64_t offset, uint64_t size,
                       const RingOptions& options, StagingRing& ring, RingSink& sink,
                       UploadStats* stats);

// Bytes of [offset, offset + size) of `path` that are resident in the page cache.
uint64_t cached_bytes(const std::string& path, uint64_t offset, uint64_t size);

// Asks the kernel to drop the file's clean pages from the page cache (posix_fadvise DONTNEED;
// needs no privileges). Used by benchmarks to measure a cold load.
void evict_from_page_cache(const std::string& path);

// Copies bytes [offset, offset + size) of `path` into one new allocation on CUDA device
// `device_index`, creating the context in parallel with the first reads. Throws kUnsupported
// in a build without CUDA or when the device is absent.
DeviceBlob upload_file_range_to_cuda(const std::string& path, uint64_t offset, uint64_t size,
                                     int device_index, const RingOptions& options = {},
                                     UploadStats* stats = nullptr);

// Free and total memory of CUDA device `device_index` (cudaMemGetInfo); false without CUDA or
// device. For benchmarks and diagnostics: it counts every process on the device.
bool cuda_memory_info(int device_index, size_t* free_bytes, size_t* total_bytes);
// The device's marketing name ("NVIDIA H100 80GB HBM3"); empty without CUDA or device.
std::string cuda_device_name(int device_index);

}  // namespace foley
