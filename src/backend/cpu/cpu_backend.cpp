// PLACEHOLDER being replaced by the CPU-ops work: every op throws until implemented.
#include "backend/cpu/cpu_backend.h"

#include "core/check.h"

namespace foley {

#define FOLEY_CPU_TODO() throw Error(ErrorKind::kUnsupported, std::string("cpu op not implemented: ") + __func__)

CpuBackend::CpuBackend() { scratch_ = std::make_unique<Arena>(host_block_allocator()); }
CpuBackend::~CpuBackend() = default;
void CpuBackend::copy_from_host(const Tensor&, const Tensor&) { FOLEY_CPU_TODO(); }
void CpuBackend::copy_to_host(const Tensor&, const Tensor&) { FOLEY_CPU_TODO(); }
void CpuBackend::copy(const Tensor&, const Tensor&) { FOLEY_CPU_TODO(); }
void CpuBackend::fill(const Tensor&, float) { FOLEY_CPU_TODO(); }
void CpuBackend::linear(const Tensor&, const Tensor&, const Tensor*, const Tensor&, float) { FOLEY_CPU_TODO(); }
void CpuBackend::layer_norm(const Tensor&, const Tensor*, const Tensor*, float, const Tensor&) { FOLEY_CPU_TODO(); }
void CpuBackend::rms_norm(const Tensor&, const Tensor*, float, const Tensor&) { FOLEY_CPU_TODO(); }
void CpuBackend::layer_norm_modulate(const Tensor&, float, const Tensor&, const Tensor&, const Tensor&) { FOLEY_CPU_TODO(); }
void CpuBackend::activation(Activation, const Tensor&, const Tensor&) { FOLEY_CPU_TODO(); }
void CpuBackend::swiglu(const Tensor&, const Tensor&, const Tensor&) { FOLEY_CPU_TODO(); }
void CpuBackend::add(const Tensor&, const Tensor&, const Tensor&) { FOLEY_CPU_TODO(); }
void CpuBackend::mul(const Tensor&, const Tensor&, const Tensor&) { FOLEY_CPU_TODO(); }
void CpuBackend::gated_residual(const Tensor&, const Tensor&, const Tensor&) { FOLEY_CPU_TODO(); }
void CpuBackend::modulate(const Tensor&, const Tensor&, const Tensor&, const Tensor&) { FOLEY_CPU_TODO(); }
void CpuBackend::snake(const Tensor&, const Tensor&, const Tensor&) { FOLEY_CPU_TODO(); }
void CpuBackend::softmax(const Tensor&, const Tensor&) { FOLEY_CPU_TODO(); }
void CpuBackend::rope(const Tensor&, const RopeTable&, const Tensor&) { FOLEY_CPU_TODO(); }
void CpuBackend::attention(const Tensor&, const Tensor&, const Tensor&, float, const Tensor&, const RopeTable*, const RopeTable*) { FOLEY_CPU_TODO(); }
void CpuBackend::conv1d(const Tensor&, const Tensor&, const Tensor*, int, int, const Tensor&) { FOLEY_CPU_TODO(); }
void CpuBackend::conv_transpose1d(const Tensor&, const Tensor&, const Tensor*, int, int, int, const Tensor&) { FOLEY_CPU_TODO(); }
void CpuBackend::resample_nearest_exact(const Tensor&, const Tensor&) { FOLEY_CPU_TODO(); }
void CpuBackend::patch_embed(const Tensor&, const Tensor&, const Tensor*, const Tensor&) { FOLEY_CPU_TODO(); }

std::unique_ptr<Backend> make_cpu_backend() { return std::make_unique<CpuBackend>(); }

}  // namespace foley
