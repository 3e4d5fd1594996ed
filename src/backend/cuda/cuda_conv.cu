// CUDA convolutions, resampling and patch embedding. Not implemented yet.
#include "backend/cuda/cuda_internal.h"

namespace foley {
namespace cuda {

void CudaBackend::conv1d(const Tensor&, const Tensor&, const Tensor*, int, int, const Tensor&) {
  not_supported("conv1d");
}
void CudaBackend::conv_transpose1d(const Tensor&, const Tensor&, const Tensor*, int, int, int,
                                   const Tensor&) {
  not_supported("conv_transpose1d");
}
void CudaBackend::resample_nearest_exact(const Tensor&, const Tensor&) {
  not_supported("resample_nearest_exact");
}
void CudaBackend::patch_embed(const Tensor&, const Tensor&, const Tensor*, const Tensor&) {
  not_supported("patch_embed");
}

}  // namespace cuda
}  // namespace foley
