// CUDA dense layers (cuBLASLt): linear. Not implemented yet.
#include "backend/cuda/cuda_internal.h"

namespace foley {
namespace cuda {

void CudaBackend::linear(const Tensor&, const Tensor&, const Tensor*, const Tensor&, float) {
  not_supported("linear");
}

}  // namespace cuda
}  // namespace foley
