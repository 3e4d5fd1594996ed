# The CPU backend's fallback paths, exercised on this machine by capping the instruction sets:
# oneDNN's (ONEDNN_MAX_CPU_ISA: below AVX-512 it has no bf16 matmul, so BF16 weights take the
# widen-to-f32 path) and foley's own SIMD kernels (FOLEY_CPU_ISA). The dense, conv, attention and
# elementwise tests then run again under each cap.
set(_cpu_isa_filter "CpuLinear.*:CpuConv.*:CpuPatchEmbed.*:CpuAttention.*:CpuElementwise.*:CpuNorm.*")
add_test(NAME CpuOpsIsaAvx2 COMMAND foley_tests --gtest_filter=${_cpu_isa_filter})
set_tests_properties(CpuOpsIsaAvx2 PROPERTIES
  ENVIRONMENT "FOLEY_THREADS=2;ONEDNN_MAX_CPU_ISA=AVX2;FOLEY_CPU_ISA=avx2")
add_test(NAME CpuOpsIsaBaseline COMMAND foley_tests --gtest_filter=${_cpu_isa_filter})
set_tests_properties(CpuOpsIsaBaseline PROPERTIES
  ENVIRONMENT "FOLEY_THREADS=2;ONEDNN_MAX_CPU_ISA=SSE41;FOLEY_CPU_ISA=generic")
