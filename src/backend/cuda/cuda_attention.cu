// CUDA attention. Not implemented yet.
#include "backend/cuda/cuda_internal.h"

namespace foley {
namespace cuda {

void CudaBackend::attention(const Tensor&, const Tensor&, const Tensor&, float, const Tensor&,
                            const RopeTable*, const RopeTable*) {
  not_supported("attention");
}

}  // namespace cuda
}  // namespace foley
