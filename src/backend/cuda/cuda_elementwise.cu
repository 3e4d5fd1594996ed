// CUDA elementwise kernels. Not implemented yet.
#include "backend/cuda/cuda_internal.h"

namespace foley {
namespace cuda {

void CudaBackend::activation(Activation, const Tensor&, const Tensor&) {
  not_supported("activation");
}
void CudaBackend::swiglu(const Tensor&, const Tensor&, const Tensor&) { not_supported("swiglu"); }
void CudaBackend::add(const Tensor&, const Tensor&, const Tensor&) { not_supported("add"); }
void CudaBackend::mul(const Tensor&, const Tensor&, const Tensor&) { not_supported("mul"); }
void CudaBackend::gated_residual(const Tensor&, const Tensor&, const Tensor&) {
  not_supported("gated_residual");
}
void CudaBackend::modulate(const Tensor&, const Tensor&, const Tensor&, const Tensor&) {
  not_supported("modulate");
}
void CudaBackend::snake(const Tensor&, const Tensor&, const Tensor&) { not_supported("snake"); }

}  // namespace cuda
}  // namespace foley
