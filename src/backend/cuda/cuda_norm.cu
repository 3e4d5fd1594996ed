// CUDA normalisation, softmax and RoPE kernels (F32 math). Not implemented yet.
#include "backend/cuda/cuda_internal.h"

namespace foley {
namespace cuda {

void CudaBackend::layer_norm(const Tensor&, const Tensor*, const Tensor*, float, const Tensor&) {
  not_supported("layer_norm");
}
void CudaBackend::rms_norm(const Tensor&, const Tensor*, float, const Tensor&) {
  not_supported("rms_norm");
}
void CudaBackend::layer_norm_modulate(const Tensor&, float, const Tensor&, const Tensor&,
                                      const Tensor&) {
  not_supported("layer_norm_modulate");
}
void CudaBackend::softmax(const Tensor&, const Tensor&) { not_supported("softmax"); }
void CudaBackend::rope(const Tensor&, const RopeTable&, const Tensor&) { not_supported("rope"); }

}  // namespace cuda
}  // namespace foley
