// The CUDA sink of the loader (backend/device_upload.h): a context thread creates the CUDA context,
// allocates the blob's device memory in one cudaMalloc and pins the staging ring, while the reader
// threads already fill the ring from disk; each filled buffer then goes up with cudaMemcpyAsync on
// one copy stream and an event per buffer tells the readers when it may be refilled.
#include <cuda_runtime.h>

#include <chrono>
#include <future>
#include <thread>
#include <vector>

#include "backend/cuda_arch.h"
#include "backend/cuda/cuda_internal.h"
#include "backend/device_upload.h"

namespace foley {
namespace {

double since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Everything the context thread makes; released in reverse by the destructor.
struct CopyContext {
  int device = 0;
  void* blob = nullptr;  // owned until handed to the DeviceBlob
  cudaStream_t stream = nullptr;
  std::vector<cudaEvent_t> events;
  void* pinned = nullptr;  // the ring's base, once registered

  // Unpins the ring once no copy can still read it; the blob stays.
  void release_staging() {
    if (stream) cudaStreamSynchronize(stream);
    if (pinned) cudaHostUnregister(pinned);
    for (cudaEvent_t e : events) cudaEventDestroy(e);
    if (stream) cudaStreamDestroy(stream);
    pinned = nullptr;
    events.clear();
    stream = nullptr;
  }
  ~CopyContext() {
    release_staging();
    if (blob) cudaFree(blob);
  }
};

void create_context(CopyContext& c, int device, size_t bytes, StagingRing& ring) {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || device < 0 || device >= count)
    throw Error(ErrorKind::kUnsupported,
                "no CUDA device " + std::to_string(device) + " to load the weights onto");
  check_cuda_device(device);  // a card this build cannot run is refused before the upload
  c.device = device;
  FOLEY_CUDA_CHECK(cudaSetDevice(device));
  FOLEY_CUDA_CHECK(cudaFree(nullptr));  // the context itself: the 0.2-0.35 s to hide
  const cudaError_t st = cudaMalloc(&c.blob, bytes ? bytes : 1);
  if (st != cudaSuccess) {
    c.blob = nullptr;
    throw Error(ErrorKind::kUnsupported, "not enough memory on CUDA device " +
                                             std::to_string(device) + " for " +
                                             std::to_string(bytes) + " bytes of weights: " +
                                             cudaGetErrorString(st));
  }
  FOLEY_CUDA_CHECK(cudaStreamCreateWithFlags(&c.stream, cudaStreamNonBlocking));
  c.events.resize(static_cast<size_t>(ring.slots()));
  for (auto& e : c.events) FOLEY_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
  FOLEY_CUDA_CHECK(cudaHostRegister(ring.base(), ring.total_bytes(), cudaHostRegisterDefault));
  c.pinned = ring.base();
}

}  // namespace

DeviceBlob upload_file_range_to_cuda(const std::string& path, uint64_t offset, uint64_t size,
                                     int device_index, const RingOptions& options,
                                     UploadStats* stats) {
  const auto t0 = std::chrono::steady_clock::now();
  RingOptions o = options;
  o.readers = std::max(1, o.readers);
  o.slots = std::max(o.slots, o.readers + 1);
  o.chunk_bytes = (std::max<size_t>(o.chunk_bytes, 4096) + 4095) / 4096 * 4096;
  // A small bundle needs no more staging than it has chunks (pinning costs time per byte).
  const uint64_t chunks = std::max<uint64_t>(1, (size + o.chunk_bytes - 1) / o.chunk_bytes);
  o.slots = static_cast<int>(std::min<uint64_t>(uint64_t(o.slots), chunks + 1));
  StagingRing ring(o.slots, o.chunk_bytes);

  CopyContext ctx;
  double context_seconds = 0;
  std::promise<void> ready_promise;
  std::shared_future<void> ready = ready_promise.get_future().share();
  std::thread context_thread([&] {
    const auto tc = std::chrono::steady_clock::now();
    try {
      create_context(ctx, device_index, size, ring);
      context_seconds = since(tc);
      ready_promise.set_value();
    } catch (...) {
      context_seconds = since(tc);
      ready_promise.set_exception(std::current_exception());
    }
  });

  double first_wait = -1;
  RingSink sink;
  sink.wait_slot = [&](int slot) {
    // Before the context exists no copy has been issued from any slot.
    if (ready.wait_for(std::chrono::seconds(0)) != std::future_status::ready) return;
    ready.get();
    FOLEY_CUDA_CHECK(cudaEventSynchronize(ctx.events[static_cast<size_t>(slot)]));
  };
  sink.submit = [&](int slot, const uint8_t* src, uint64_t dst_offset, size_t bytes) {
    if (first_wait < 0) {
      const auto tw = std::chrono::steady_clock::now();
      ready.get();  // rethrows the context thread's failure
      first_wait = since(tw);
    }
    FOLEY_CUDA_CHECK(cudaSetDevice(ctx.device));  // per thread
    FOLEY_CUDA_CHECK(cudaMemcpyAsync(static_cast<uint8_t*>(ctx.blob) + dst_offset, src, bytes,
                                     cudaMemcpyHostToDevice, ctx.stream));
    FOLEY_CUDA_CHECK(cudaEventRecord(ctx.events[static_cast<size_t>(slot)], ctx.stream));
  };
  sink.finish = [&] {
    ready.get();  // an empty range submits nothing but still needs the allocation
    FOLEY_CUDA_CHECK(cudaStreamSynchronize(ctx.stream));
  };

  try {
    stream_file_range(path, offset, size, o, ring, sink, stats);
  } catch (...) {
    context_thread.join();
    throw;
  }
  context_thread.join();
  ctx.release_staging();

  DeviceBlob blob;
  blob.data = static_cast<uint8_t*>(ctx.blob);
  blob.memory = std::shared_ptr<void>(ctx.blob, [](void* p) { cudaFree(p); });
  ctx.blob = nullptr;
  blob.bytes = size;
  blob.device = DeviceKind::kCUDA;
  blob.device_index = device_index;
  if (stats) {
    stats->seconds = since(t0);
    stats->context_seconds = context_seconds;
    stats->first_submit_wait = first_wait < 0 ? 0 : first_wait;
  }
  return blob;
}

bool cuda_memory_info(int device_index, size_t* free_bytes, size_t* total_bytes) {
  int previous = 0;
  if (cudaGetDevice(&previous) != cudaSuccess || cudaSetDevice(device_index) != cudaSuccess)
    return false;
  const bool ok = cudaMemGetInfo(free_bytes, total_bytes) == cudaSuccess;
  cudaSetDevice(previous);
  return ok;
}

std::string cuda_device_name(int device_index) {
  cudaDeviceProp p{};
  if (cudaGetDeviceProperties(&p, device_index) != cudaSuccess) return {};
  return p.name;
}

}  // namespace foley
