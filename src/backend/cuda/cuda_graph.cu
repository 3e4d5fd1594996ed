// Backend::record on CUDA: stream capture of the backend's one stream into a CUDA graph, replayed
// with cudaGraphLaunch on the same stream (so it stays ordered with the uploads and downloads
// issued around it).
//
// The capture mode is cudaStreamCaptureModeThreadLocal: other Generators run on other threads
// with their own streams of the same device, and may allocate or synchronise while this thread
// captures; only this thread's calls are checked (a cudaMalloc here fails the capture instead of
// silently breaking it).
//
// What would break a capture on the DiT step path, and why recording after one eager step of the
// same shapes is safe:
// - Arena growth (cudaMalloc): the step's activations come from a frozen arena; the backend's
//   scratch arena only ever appends blocks and a given sequence of scoped allocations lands at
//   the same offsets once the blocks it needed exist, which the eager step guarantees (its blocks
//   are never freed while the backend lives, so recorded scratch pointers stay valid).
// - cuBLASLt (cuda_dense.cu): the handle and its 32 MiB workspace are created on first use with
//   cudaMalloc, and plans are made per shape/strides/alignment by the heuristic; the eager step
//   creates both. The bias pointer is set on the shared descriptor before each cublasLtMatmul
//   and is captured with that call, so graphs sharing a plan do not interfere.
// - One-time kernel configuration (flash attention's cudaFuncSetAttribute) and lazy module
//   loading of each kernel happen at its first eager launch.
// - Transfers from pageable host memory and stream synchronisation (copy_from_host,
//   copy_to_host, synchronize) cannot be captured: callers keep them outside `work` (the DiT's
//   timestep rows are uploaded or copied by Mmdit::set_timesteps before the replay).
// - Environment switches read per call (FOLEY_CUDA_ATTENTION) are frozen into a graph at
//   recording time.
#include <cuda_runtime.h>

#include <exception>
#include <string>

#include "backend/cuda/cuda_internal.h"

namespace foley {
namespace cuda {

namespace {

class CudaGraph final : public OpGraph {
 public:
  CudaGraph(cudaGraphExec_t exec, cudaStream_t stream) : exec_(exec), stream_(stream) {}
  ~CudaGraph() override { cudaGraphExecDestroy(exec_); }
  CudaGraph(const CudaGraph&) = delete;
  CudaGraph& operator=(const CudaGraph&) = delete;

  void replay() override { FOLEY_CUDA_CHECK(cudaGraphLaunch(exec_, stream_)); }

 private:
  cudaGraphExec_t exec_;
  cudaStream_t stream_;
};

// Ends a capture that failed: the partial graph is dropped and the thread's last-error state
// cleared (capture errors are not sticky), so the stream takes ordinary work again.
void abandon_capture(cudaStream_t stream) {
  cudaGraph_t partial = nullptr;
  cudaStreamEndCapture(stream, &partial);
  if (partial) cudaGraphDestroy(partial);
  (void)cudaGetLastError();
}

std::string failure(const char* what) {
  return std::string("recording a CUDA graph: ") + what;
}

}  // namespace

std::unique_ptr<OpGraph> CudaBackend::record(const std::function<void()>& work) {
  FOLEY_CUDA_CHECK(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal));
  try {
    work();
  } catch (const Error& e) {
    abandon_capture(stream_);
    throw Error(e.kind(), failure(e.what()));
  } catch (const std::exception& e) {
    abandon_capture(stream_);
    throw Error(ErrorKind::kInternal, failure(e.what()));
  } catch (...) {
    abandon_capture(stream_);
    throw Error(ErrorKind::kInternal, failure("unknown exception"));
  }
  cudaGraph_t graph = nullptr;
  const cudaError_t ended = cudaStreamEndCapture(stream_, &graph);
  if (ended != cudaSuccess) {
    // Invalidated by an operation that cannot be captured (and did not throw).
    if (graph) cudaGraphDestroy(graph);
    (void)cudaGetLastError();
    throw Error(ErrorKind::kInternal, failure(cudaGetErrorString(ended)));
  }
  cudaGraphExec_t exec = nullptr;
  const cudaError_t made = cudaGraphInstantiateWithFlags(&exec, graph, 0);
  cudaGraphDestroy(graph);
  if (made != cudaSuccess) {
    (void)cudaGetLastError();
    throw Error(ErrorKind::kInternal, failure(cudaGetErrorString(made)));
  }
  auto recorded = std::make_unique<CudaGraph>(exec, stream_);
  // Moves the executable graph to the device now, so the first replay costs what later ones do.
  FOLEY_CUDA_CHECK(cudaGraphUpload(exec, stream_));
  return recorded;
}

}  // namespace cuda
}  // namespace foley
