// check_cuda_device: the card's compute capability against this build's architectures, before
// anything runs on it (plain C++: the runtime API only, no kernels).
#include <cuda_runtime.h>

#include <cstdio>
#include <mutex>
#include <string>

#include "backend/cuda_arch.h"
#include "core/check.h"

namespace foley {

void check_cuda_device(int device_index) {
  int major = 0, minor = 0;
  if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device_index) !=
          cudaSuccess ||
      cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device_index) !=
          cudaSuccess) {
    cudaGetLastError();  // clear the error so that later calls report their own
    return;              // no such device: the caller's own check says so
  }
  const CudaArchDecision d = decide_cuda_arch(major, minor, cuda_built_archs());
  if (!d.ok) {
    std::string where = "CUDA device " + std::to_string(device_index);
    cudaDeviceProp p{};
    if (cudaGetDeviceProperties(&p, device_index) == cudaSuccess)
      where += std::string(" (") + p.name + ")";
    throw Error(ErrorKind::kUnsupported, where + ": " + d.message);
  }
  if (d.via_ptx) {
    static std::once_flag once;
    std::call_once(once, [&] { std::fprintf(stderr, "foley: note: %s\n", d.message.c_str()); });
  }
}

}  // namespace foley
