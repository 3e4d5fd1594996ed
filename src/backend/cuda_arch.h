// Which GPUs a CUDA build can run on: the card's compute capability against the architectures
// compiled in (CMAKE_CUDA_ARCHITECTURES, passed down as FOLEY_CUDA_ARCHS). Host-only and pure, so
// CPU tests exercise it; the CUDA backend and the weight loader call check_cuda_device() before
// their first kernel or allocation. C++17 (included by .cu files).
#pragma once

#include <string>

namespace foley {

// The oldest GPU foley's kernels support: compute capability 8.0 (Ampere; bf16 tensor-core MMA,
// cp.async).
constexpr int kMinCudaCapability = 80;

struct CudaArchDecision {
  bool ok = false;       // the build has code this card can run
  bool via_ptx = false;  // ... only as PTX, JIT-compiled by the driver at first use
  // Refused: why, naming the card's capability and what the build has. Via PTX: the note to show
  // (slower first start). Empty when native code runs.
  std::string message;
};

// `built` is a CMAKE_CUDA_ARCHITECTURES list separated by ',' or ';': "80-real" (SASS for sm_80),
// "90a-real" (SASS for sm_90a, which runs on 9.0 only), "90-virtual" (compute_90 PTX), "90" (both).
// SASS for sm_XY runs on X.Y' with Y' >= Y (same major); PTX on any card at least as new. An
// entry that is not a number ("native", "all") is not understood: then only the 8.0 floor is
// checked.
CudaArchDecision decide_cuda_arch(int cc_major, int cc_minor, const std::string& built);

// This build's list ("" without CUDA).
const char* cuda_built_archs();

#ifdef FOLEY_HAVE_CUDA
// Refuses (Error kUnsupported, decide_cuda_arch's message) a device this build cannot run; for a
// card served by the PTX fallback it prints decide_cuda_arch's note to stderr once per process.
void check_cuda_device(int device_index);
#endif

}  // namespace foley
