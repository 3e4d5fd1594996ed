// Portable SIMD building blocks for the CPU kernels that oneDNN does not cover (attention's
// blocked products and softmax, transcendental activations). Written with GCC vector extensions
// over W floats; each kernel is a template that the per-ISA entry points (AVX-512, AVX2+FMA,
// baseline SSE) inline under their own target attribute, picked once at run time by cpu_isa(). One
// source, three code paths, no intrinsics.
#pragma once

#include <cstdint>
#include <cstring>

// Vectors are passed by reference: GCC notes an ABI change for by-value vector parameters wider
// than the baseline ISA, and every helper here is inlined anyway. Returns are fine; their
// -Wpsabi warning is silenced.
#pragma GCC diagnostic ignored "-Wpsabi"

namespace foley::cpu {

enum class Isa { kGeneric, kAvx2, kAvx512 };
// The kernel set in use: the best the running CPU supports, capped by FOLEY_CPU_ISA=generic|avx2
// or by set_isa_cap (tests run every path the machine supports).
Isa cpu_isa();
Isa detected_isa();
void set_isa_cap(Isa cap);
const char* isa_name(Isa isa);

#define FOLEY_TARGET_AVX512 __attribute__((target("avx512f,avx512dq,avx512vl,avx512bw,avx2,fma")))
#define FOLEY_TARGET_AVX2 __attribute__((target("avx2,fma")))
#define FOLEY_INLINE __attribute__((always_inline)) inline
#define FOLEY_LAMBDA_INLINE __attribute__((always_inline))

template <int W>
struct Vec {
  typedef float type __attribute__((vector_size(W * 4)));
  typedef int32_t itype __attribute__((vector_size(W * 4)));
};

template <int W>
FOLEY_INLINE typename Vec<W>::type vload(const float* p) {
  typename Vec<W>::type v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
template <int W>
FOLEY_INLINE void vstore(float* p, const typename Vec<W>::type& v) {
  std::memcpy(p, &v, sizeof v);
}
template <int W>
FOLEY_INLINE typename Vec<W>::type vsplat(float x) {
  typename Vec<W>::type v;
  for (int i = 0; i < W; ++i) v[i] = x;
  return v;
}

// e^x to ~2 ulp: x = n·ln2 + r with |r| <= ln2/2, a degree-6 polynomial for e^r and 2^n
// assembled in the exponent bits. Inputs are clamped to [-87.3, 88.37], where 2^n stays a normal
// float: results below ~1e-38 flush to that value and above ~2.4e38 saturate, both far outside
// anything the callers' sums and ratios can resolve.
template <int W>
FOLEY_INLINE typename Vec<W>::type vexp(const typename Vec<W>::type& in) {
  using V = typename Vec<W>::type;
  using I = typename Vec<W>::itype;
  V x = in;
  const V lo = vsplat<W>(-87.3f), hi = vsplat<W>(88.37f);
  x = x < lo ? lo : x;
  x = x > hi ? hi : x;
  const V magic = vsplat<W>(12582912.0f);  // 1.5·2^23: adding it rounds to an integer
  const V t = x * 1.44269504088896341f + magic;
  const V n = t - magic;
  const I ni = (I)t - (I)magic;
  V r = x - n * 0.693359375f;  // ln2 split in two so n·ln2 is exact in the first term
  r = r + n * 2.12194440e-4f;
  V p = vsplat<W>(1.9875691500e-4f);
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const V er = p * (r * r) + r + 1.0f;
  const I bits = (ni + 127) << 23;
  return er * (V)bits;
}

// GELU, tanh form: 0.5·x·(1 + tanh(u)) == x·sigmoid(2u), u = sqrt(2/pi)·(x + 0.044715·x³).
template <int W>
FOLEY_INLINE typename Vec<W>::type vgelu_tanh(const typename Vec<W>::type& x) {
  const auto u = 0.7978845608028654f * (x + 0.044715f * x * x * x);
  return x / (1.0f + vexp<W>(-2.0f * u));
}

template <int W>
FOLEY_INLINE typename Vec<W>::type vsilu(const typename Vec<W>::type& x) {
  return x / (1.0f + vexp<W>(-x));
}

// GELU, erf form, with erf from Abramowitz & Stegun 7.1.26 (|error| <= 1.5e-7, the size of
// float rounding of 1 + erf).
template <int W>
FOLEY_INLINE typename Vec<W>::type vgelu_erf(const typename Vec<W>::type& x) {
  using V = typename Vec<W>::type;
  const V z = x * 0.7071067811865476f;
  const V az = z < 0.0f ? -z : z;
  const V t = 1.0f / (1.0f + 0.3275911f * az);
  V p = vsplat<W>(1.061405429f);
  p = p * t - 1.453152027f;
  p = p * t + 1.421413741f;
  p = p * t - 0.284496736f;
  p = p * t + 0.254829592f;
  const V e = 1.0f - p * t * vexp<W>(-az * az);
  const V erf = z < 0.0f ? -e : e;
  return 0.5f * x * (1.0f + erf);
}

// sin²(x) for |x| < 1e5 (callers fall back to std::sin beyond): x = k·π/2 + r with |r| <= π/4
// (π/2 in three parts, exact products for |k| < 2^16), then sin² or cos² of r by k's parity.
template <int W>
FOLEY_INLINE typename Vec<W>::type vsin2(const typename Vec<W>::type& x) {
  using V = typename Vec<W>::type;
  using I = typename Vec<W>::itype;
  const V magic = vsplat<W>(12582912.0f);
  const V t = x * 0.6366197723675814f + magic;
  const V k = t - magic;
  const I odd = ((I)t - (I)magic) & 1;
  V r = x - k * 1.5703125f;
  r = r - k * 4.837512969970703125e-4f;
  r = r - k * 7.54978995489188216e-8f;
  const V z = r * r;
  V ps = vsplat<W>(-1.9515295891e-4f);
  ps = ps * z + 8.3321608736e-3f;
  ps = ps * z - 1.6666654611e-1f;
  const V s = r + r * z * ps;
  V pc = vsplat<W>(2.443315711809948e-5f);
  pc = pc * z - 1.388731625493765e-3f;
  pc = pc * z + 4.166664568298827e-2f;
  const V c = 1.0f - 0.5f * z + z * z * pc;
  const V s2 = s * s, c2 = c * c;
  return odd != 0 ? c2 : s2;
}

// C[rows, cols] = A[rows, kd] · B[kd, cols] with rows % 4 == 0 and cols % (2W) == 0: 4×2W
// register tiles, the B column panel reused from L1 across every row tile.
template <int W>
FOLEY_INLINE void block_gemm(int64_t rows, int64_t cols, int64_t kd, const float* A, int64_t lda,
                             const float* B, int64_t ldb, float* C, int64_t ldc) {
  using V = typename Vec<W>::type;
  for (int64_t j = 0; j < cols; j += 2 * W) {
    for (int64_t i = 0; i < rows; i += 4) {
      V acc[4][2];
      for (int r = 0; r < 4; ++r) acc[r][0] = acc[r][1] = vsplat<W>(0.0f);
      const float* a = A + i * lda;
      const float* b = B + j;
      for (int64_t k = 0; k < kd; ++k, b += ldb) {
        const V b0 = vload<W>(b), b1 = vload<W>(b + W);
        for (int r = 0; r < 4; ++r) {
          const float ar = a[r * lda + k];
          acc[r][0] += ar * b0;
          acc[r][1] += ar * b1;
        }
      }
      for (int r = 0; r < 4; ++r) {
        vstore<W>(C + (i + r) * ldc + j, acc[r][0]);
        vstore<W>(C + (i + r) * ldc + j + W, acc[r][1]);
      }
    }
  }
}

// Per row of S[rows, n] (row stride ld): s <- exp(scale·s − max), returns 1/Σ in inv[r].
template <int W>
FOLEY_INLINE void softmax_rows(float* S, int64_t rows, int64_t n, int64_t ld, float scale,
                               float* inv) {
  using V = typename Vec<W>::type;
  const int64_t nv = n / W * W;
  for (int64_t r = 0; r < rows; ++r) {
    float* s = S + r * ld;
    V vm = vsplat<W>(-3.0e38f);
    for (int64_t j = 0; j < nv; j += W) {
      const V t = vload<W>(s + j) * scale;
      vstore<W>(s + j, t);
      vm = t > vm ? t : vm;
    }
    float m = -3.0e38f;
    for (int i = 0; i < W; ++i) m = vm[i] > m ? vm[i] : m;
    for (int64_t j = nv; j < n; ++j) {
      s[j] *= scale;
      m = s[j] > m ? s[j] : m;
    }
    V vs = vsplat<W>(0.0f);
    const V vmax = vsplat<W>(m);
    for (int64_t j = 0; j < nv; j += W) {
      const V e = vexp<W>(vload<W>(s + j) - vmax);
      vstore<W>(s + j, e);
      vs += e;
    }
    float sum = 0;
    for (int i = 0; i < W; ++i) sum += vs[i];
    if (nv < n) {  // tail through a padded vector so it shares the vector exp's rounding
      float tail[W];
      for (int i = 0; i < W; ++i) tail[i] = nv + i < n ? s[nv + i] - m : -100.0f;
      const V e = vexp<W>(vload<W>(tail));
      for (int64_t j = nv; j < n; ++j) {
        s[j] = e[j - nv];
        sum += s[j];
      }
    }
    inv[r] = 1.0f / sum;
  }
}

}  // namespace foley::cpu
