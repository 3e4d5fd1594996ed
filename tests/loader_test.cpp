// The weight loader's staging ring (backend/device_upload.h) and WeightStore's device views.
// On the CPU the ring feeds a host sink: a synchronous memcpy, and an asynchronous one whose
// copies finish late on another thread, so a ring that refilled a buffer before its copy had
// read it would corrupt the result. The CUDA test (skipped without a GPU) uploads a bundle and
// compares the device bytes with the file.
#include <gtest/gtest.h>

#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <fstream>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "backend/backend.h"
#include "backend/device_upload.h"
#include "foley/error.h"
#include "io/safetensors.h"
#include "models/weight_store.h"
#include "test_util.h"

namespace foley {
namespace {

// A file of `header` zero bytes (a stand-in for a bundle's 4 KiB-aligned header) followed by
// `size` seeded random bytes; returns its path and the payload.
std::string write_file(size_t header, size_t size, std::vector<uint8_t>* payload) {
  std::mt19937 rng(static_cast<uint32_t>(size * 31 + header));
  payload->resize(size);
  for (auto& b : *payload) b = static_cast<uint8_t>(rng());
  const std::string path = test::temp_dir() + "/blob.bin";
  std::ofstream f(path, std::ios::binary);
  std::vector<char> zeros(header, 0);
  f.write(zeros.data(), static_cast<std::streamsize>(zeros.size()));
  f.write(reinterpret_cast<const char*>(payload->data()), static_cast<std::streamsize>(size));
  return path;
}

RingSink memcpy_sink(std::vector<uint8_t>& dst) {
  RingSink s;
  s.submit = [&dst](int, const uint8_t* src, uint64_t off, size_t n) {
    ASSERT_LE(off + n, dst.size());
    std::memcpy(dst.data() + off, src, n);
  };
  s.wait_slot = [](int) {};
  s.finish = [] {};
  return s;
}

// Copies on a worker thread, after the submitting reader has moved on, like cudaMemcpyAsync.
class LateCopySink {
 public:
  LateCopySink(std::vector<uint8_t>& dst, int slots) : dst_(dst), pending_(slots, 0) {
    worker_ = std::thread([this] { run(); });
  }
  ~LateCopySink() {
    {
      std::lock_guard<std::mutex> l(m_);
      stop_ = true;
    }
    cv_.notify_all();
    worker_.join();
  }
  RingSink sink() {
    RingSink s;
    s.submit = [this](int slot, const uint8_t* src, uint64_t off, size_t n) {
      std::lock_guard<std::mutex> l(m_);
      queue_.push_back({slot, src, off, n});
      ++pending_[static_cast<size_t>(slot)];
      cv_.notify_all();
    };
    s.wait_slot = [this](int slot) {
      std::unique_lock<std::mutex> l(m_);
      cv_.wait(l, [&] { return pending_[static_cast<size_t>(slot)] == 0; });
    };
    s.finish = [this] {
      std::unique_lock<std::mutex> l(m_);
      cv_.wait(l, [&] { return queue_.empty(); });
    };
    return s;
  }

 private:
  struct Job {
    int slot;
    const uint8_t* src;
    uint64_t off;
    size_t n;
  };
  void run() {
    std::unique_lock<std::mutex> l(m_);
    for (;;) {
      cv_.wait(l, [&] { return stop_ || !queue_.empty(); });
      if (queue_.empty()) return;
      const Job j = queue_.front();
      l.unlock();
      std::this_thread::yield();  // let readers run ahead before the copy reads the buffer
      std::memcpy(dst_.data() + j.off, j.src, j.n);
      l.lock();
      queue_.pop_front();
      --pending_[static_cast<size_t>(j.slot)];
      cv_.notify_all();
    }
  }
  std::vector<uint8_t>& dst_;
  std::vector<int> pending_;
  std::deque<Job> queue_;
  std::mutex m_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread worker_;
};

struct RingCase {
  size_t size;
  int readers, slots;
  size_t chunk;
  ReadMode mode;
};

TEST(LoaderRing, ByteIdenticalForOddSizesAndRingShapes) {
  const RingCase cases[] = {
      {1, 1, 1, 4096, ReadMode::kBuffered},
      {4095, 2, 3, 4096, ReadMode::kDirect},
      {4097, 3, 4, 4096, ReadMode::kAuto},
      {(1 << 20) + 12345, 4, 6, 64 << 10, ReadMode::kDirect},
      {(1 << 20) + 12345, 8, 2, 12288, ReadMode::kAuto},  // more readers than slots
      {(3 << 20) + 1, 3, 5, 1 << 20, ReadMode::kBuffered},
      {300000, 16, 20, 1 << 22, ReadMode::kDirect},  // one chunk larger than the range
  };
  for (const RingCase& c : cases) {
    SCOPED_TRACE(testing::Message() << "size " << c.size << " readers " << c.readers
                                    << " slots " << c.slots << " chunk " << c.chunk << " mode "
                                    << static_cast<int>(c.mode));
    std::vector<uint8_t> payload;
    const std::string path = write_file(8192, c.size, &payload);
    RingOptions o;
    o.readers = c.readers;
    o.slots = c.slots;
    o.chunk_bytes = c.chunk;
    o.mode = c.mode;
    for (int late = 0; late < 2; ++late) {
      std::vector<uint8_t> out(c.size, 0xAB);
      StagingRing ring(c.slots, (c.chunk + 4095) / 4096 * 4096);
      UploadStats stats;
      if (late) {
        LateCopySink late_sink(out, c.slots);
        RingSink s = late_sink.sink();
        stream_file_range(path, 8192, c.size, o, ring, s, &stats);
      } else {
        RingSink s = memcpy_sink(out);
        stream_file_range(path, 8192, c.size, o, ring, s, &stats);
      }
      EXPECT_TRUE(out == payload) << (late ? "late copies" : "synchronous copies");
      EXPECT_EQ(stats.bytes, c.size);
      EXPECT_LE(stats.direct_bytes, c.size);
      if (c.mode == ReadMode::kBuffered) EXPECT_EQ(stats.direct_bytes, 0u);
    }
  }
}

TEST(LoaderRing, ReadsThePageCacheOrTheDiskChunkByChunk) {
  std::vector<uint8_t> payload;
  const std::string path = write_file(4096, 1 << 20, &payload);
  // A file just written is cached (unless this filesystem bypasses the cache altogether): auto
  // mode then reads it buffered.
  const uint64_t cached = cached_bytes(path, 4096, payload.size());
  EXPECT_LE(cached, payload.size());
  std::vector<uint8_t> out(payload.size());
  StagingRing ring(4, 64 << 10);
  RingOptions o;
  o.readers = 2, o.slots = 4, o.chunk_bytes = 64 << 10, o.mode = ReadMode::kAuto;
  UploadStats stats;
  RingSink s = memcpy_sink(out);
  stream_file_range(path, 4096, payload.size(), o, ring, s, &stats);
  EXPECT_TRUE(out == payload);
  EXPECT_EQ(stats.cached_bytes_at_start, cached);
  if (cached == payload.size()) EXPECT_EQ(stats.direct_bytes, 0u);
}

TEST(LoaderRing, RangePastTheEndOfTheFileIsRefused) {
  std::vector<uint8_t> payload;
  const std::string path = write_file(4096, 10000, &payload);
  for (ReadMode mode : {ReadMode::kBuffered, ReadMode::kDirect}) {
    std::vector<uint8_t> out(20000);
    StagingRing ring(2, 4096);
    RingOptions o;
    o.readers = 2, o.slots = 2, o.chunk_bytes = 4096, o.mode = mode;
    RingSink s = memcpy_sink(out);
    try {
      stream_file_range(path, 4096, 20000, o, ring, s, nullptr);
      FAIL() << "a short file was accepted";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::kInvalidInput);
      EXPECT_NE(std::string(e.what()).find("shorter"), std::string::npos) << e.what();
    }
  }
  StagingRing ring(1, 4096);
  RingSink s = memcpy_sink(payload);
  EXPECT_THROW(stream_file_range("/nonexistent/blob", 0, 10, {}, ring, s, nullptr), Error);
}

// A two-tensor bundle with an odd-sized second tensor.
std::string write_bundle() {
  SafetensorsWriter w;
  w.set_metadata("format", "foley");
  w.set_metadata("format_version", std::to_string(kBundleFormatVersion));
  w.set_metadata("config", R"({"dit": {}})");
  w.add("dit.a", test::random_tensor({3, 5}, DType::kF32, 1));
  w.add("dit.b", test::random_tensor({7, 33}, DType::kBF16, 2));
  const std::string path = test::temp_dir() + "/bundle.safetensors";
  w.write(path);
  return path;
}

// A bundle of format 1 (16-bit single-block convolutions stored [3, C_out, C_in]) is refused
// with what to do, not read with the wrong layout.
TEST(LoaderWeightStore, RefusesAnOlderFormatWithReconvertAdvice) {
  SafetensorsWriter w;
  w.set_metadata("format", "foley");
  w.set_metadata("format_version", "1");
  w.set_metadata("config", R"({"dit": {}})");
  w.add("dit.a", test::random_tensor({3, 5}, DType::kF32, 1));
  const std::string path = test::temp_dir() + "/bundle_v1.safetensors";
  w.write(path);
  try {
    WeightStore::open(path);
    FAIL() << "a format-1 bundle was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kUnsupported);
    const std::string msg = e.what();
    EXPECT_NE(msg.find("bundle format version 1"), std::string::npos) << msg;
    EXPECT_NE(msg.find("re-run `foley convert`"), std::string::npos) << msg;
  }
}

TEST(LoaderWeightStore, DeviceCopyViewsHaveTheBundlesBytes) {
  const std::string path = write_bundle();
  auto store = WeightStore::open(path);
  EXPECT_EQ(store->device(), DeviceKind::kCPU);
  // A "device" copy in host memory, filled through the ring: exercises the view arithmetic.
  auto copy = std::make_shared<std::vector<uint8_t>>(store->blob_bytes());
  StagingRing ring(2, 4096);
  RingOptions o;
  o.readers = 2, o.slots = 2, o.chunk_bytes = 4096;
  RingSink s = memcpy_sink(*copy);
  stream_file_range(path, store->file().data_offset(), store->blob_bytes(), o, ring, s, nullptr);
  DeviceBlob blob;
  blob.memory = copy;
  blob.data = copy->data();
  blob.bytes = copy->size();
  blob.device = DeviceKind::kCPU;
  auto dev = store->with_device_copy(blob);
  for (const char* name : {"dit.a", "dit.b"}) {
    const Tensor host = store->get(name, store->file().entry(name).shape, {});
    const Tensor view = dev->get(name, host.shape(), {});
    EXPECT_GE(static_cast<uint8_t*>(view.raw()), copy->data());
    EXPECT_EQ(view.dtype(), host.dtype());
    EXPECT_EQ(std::memcmp(view.raw(), host.raw(), host.nbytes()), 0) << name;
  }
  // The device store keeps its own record of what was used.
  EXPECT_NO_THROW(dev->expect_all_used("dit."));
  auto fresh = store->with_device_copy(blob);
  EXPECT_THROW(fresh->expect_all_used("dit."), Error);
  DeviceBlob wrong = blob;
  wrong.bytes -= 1;
  EXPECT_THROW(store->with_device_copy(wrong), Error);
}

TEST(CudaLoader, UploadedBlobMatchesTheFile) {
  const std::string path = write_bundle();
  auto backend = make_cuda_backend();
  if (!backend) {
    EXPECT_THROW(WeightStore::open_on_cuda(path), Error);
    GTEST_SKIP() << "no CUDA device";
  }
  RingOptions o;
  o.readers = 3, o.slots = 4, o.chunk_bytes = 4096;
  UploadStats stats;
  auto dev = WeightStore::open_on_cuda(path, 0, o, &stats);
  auto host = WeightStore::open(path);
  ASSERT_EQ(dev->device(), DeviceKind::kCUDA);
  for (const char* name : {"dit.a", "dit.b"}) {
    const Tensor h = host->get(name, host->file().entry(name).shape, {});
    const Tensor d = dev->get(name, h.shape(), {});
    EXPECT_EQ(d.device(), DeviceKind::kCUDA);
    Tensor back = Tensor::empty(h.shape(), h.dtype());
    backend->copy_to_host(back, d);
    EXPECT_EQ(std::memcmp(back.raw(), h.raw(), h.nbytes()), 0) << name;
  }
  EXPECT_EQ(stats.bytes, host->blob_bytes());
}

}  // namespace
}  // namespace foley
