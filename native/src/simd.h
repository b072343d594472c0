// AVX2 + FMA kernels for the transcendental-bound loops (softmax, attention's probabilities,
// GELU): eight lanes per instruction, written with intrinsics because the compiler does not
// vectorise the scalar forms in vmath.h as tightly.
//
// exp8: x = n·ln2 + r with n rounded by adding 1.5·2²³ + 127 (so the float's low mantissa bits
//   hold n + 127, the exponent field of 2ⁿ), ln2 split in two (Cephes), degree-6 polynomial for
//   eʳ; about 1 ulp. Inputs below −88 give exactly 0 (−∞ included), above 88.376 +∞; NaN stays NaN.
// erf8: the rational form erf(x) ≈ x·P(x²)/Q(x²) on [−4, 4] (odd degree-13 numerator, degree-8
//   denominator; |erf(±4) − 1| is below float resolution, so x is clamped there); absolute error
//   < 4e-7 and relative error < 4e-7, without an exp.
#pragma once
#include <immintrin.h>

#include <cstdint>
#include <type_traits>

namespace graft::simd {

inline __m256 exp8(__m256 x) {
  const __m256 magic = _mm256_set1_ps(12582912.f + 127.f);
  const __m256 hi = _mm256_set1_ps(88.3762626647949f);
  // max/min return their second operand when either is NaN, so NaN reaches the arithmetic.
  const __m256 xc = _mm256_min_ps(hi, _mm256_max_ps(_mm256_set1_ps(-88.f), x));
  const __m256 t = _mm256_fmadd_ps(xc, _mm256_set1_ps(1.44269504088896341f), magic);
  const __m256 n = _mm256_sub_ps(t, magic);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), xc);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
  const __m256 e = _mm256_add_ps(_mm256_fmadd_ps(p, _mm256_mul_ps(r, r), r), _mm256_set1_ps(1.f));
  const __m256 scale = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_castps_si256(t), 23));
  const __m256 y = _mm256_mul_ps(e, scale);
  return _mm256_blendv_ps(y, _mm256_set1_ps(__builtin_huge_valf()), _mm256_cmp_ps(x, hi, _CMP_GT_OQ));
}

inline __m256 erf8(__m256 a) {
  const __m256 x = _mm256_min_ps(_mm256_set1_ps(4.f), _mm256_max_ps(_mm256_set1_ps(-4.f), a));
  const __m256 x2 = _mm256_mul_ps(x, x);
  __m256 p = _mm256_set1_ps(-2.72614225801306e-10f);
  p = _mm256_fmadd_ps(p, x2, _mm256_set1_ps(2.77068142495902e-08f));
  p = _mm256_fmadd_ps(p, x2, _mm256_set1_ps(-2.10102402082508e-06f));
  p = _mm256_fmadd_ps(p, x2, _mm256_set1_ps(-5.69250639462346e-05f));
  p = _mm256_fmadd_ps(p, x2, _mm256_set1_ps(-7.34990630326855e-04f));
  p = _mm256_fmadd_ps(p, x2, _mm256_set1_ps(-2.95459980854025e-03f));
  p = _mm256_fmadd_ps(p, x2, _mm256_set1_ps(-1.60960333262415e-02f));
  p = _mm256_mul_ps(p, x);
  __m256 q = _mm256_set1_ps(-1.45660718464996e-05f);
  q = _mm256_fmadd_ps(q, x2, _mm256_set1_ps(-2.13374055278905e-04f));
  q = _mm256_fmadd_ps(q, x2, _mm256_set1_ps(-1.68282697438203e-03f));
  q = _mm256_fmadd_ps(q, x2, _mm256_set1_ps(-7.37332916720468e-03f));
  q = _mm256_fmadd_ps(q, x2, _mm256_set1_ps(-1.42647390514189e-02f));
  return _mm256_div_ps(p, q);
}

inline float hsum8(__m256 v) {
  __m128 a = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  a = _mm_add_ps(a, _mm_movehl_ps(a, a));
  a = _mm_add_ss(a, _mm_movehdup_ps(a));
  return _mm_cvtss_f32(a);
}

// Lanes [0, k) of a tail of k < 8 floats: loads read zeros beyond k, stores leave them alone.
inline __m256i tail_mask(int64_t k) {
  const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(k)), lanes);
}

// f(i, full, mask) over [0, n) in blocks of eight: `full` is std::true_type for whole blocks
// (plain loads and stores) and std::false_type for the last, partial one (masked by `mask`).
using Full = std::true_type;
using Part = std::false_type;
inline __m256 load8(const float* p, __m256i, Full) { return _mm256_loadu_ps(p); }
inline __m256 load8(const float* p, __m256i m, Part) { return _mm256_maskload_ps(p, m); }
inline void store8(float* p, __m256 v, __m256i, Full) { _mm256_storeu_ps(p, v); }
inline void store8(float* p, __m256 v, __m256i m, Part) { _mm256_maskstore_ps(p, m, v); }

template <typename F>
inline void blocks8(int64_t n, F f) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) f(i, Full{}, __m256i{});
  if (i < n) f(i, Part{}, tail_mask(n - i));
}

// max of x[0..n) (n ≥ 1); NaN if any element is NaN.
inline float row_max(const float* x, int64_t n) {
  __m256 m0 = _mm256_set1_ps(-__builtin_huge_valf()), m1 = m0, nan = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256 a = _mm256_loadu_ps(x + i), b = _mm256_loadu_ps(x + i + 8);
    m0 = _mm256_max_ps(m0, a);
    m1 = _mm256_max_ps(m1, b);
    nan = _mm256_or_ps(nan, _mm256_cmp_ps(a, b, _CMP_UNORD_Q));
  }
  float m = -__builtin_huge_valf();
  bool isnan = _mm256_movemask_ps(nan) != 0;
  alignas(32) float t[8];
  _mm256_store_ps(t, _mm256_max_ps(m0, m1));
  for (int j = 0; j < 8; j++) m = t[j] > m ? t[j] : m;
  for (; i < n; i++) {
    isnan |= x[i] != x[i];
    m = x[i] > m ? x[i] : m;
  }
  return isnan ? __builtin_nanf("") : m;
}

// y[i] = exp(x[i]·scale − shift) for i in [0, n); returns Σ y (y may be x, or null to only sum).
inline float row_exp(float* y, const float* x, int64_t n, float scale, float shift) {
  const __m256 vs = _mm256_set1_ps(scale), vb = _mm256_set1_ps(shift);
  __m256 s0 = _mm256_setzero_ps(), s1 = s0;
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256 e0 = exp8(_mm256_fmsub_ps(_mm256_loadu_ps(x + i), vs, vb));
    const __m256 e1 = exp8(_mm256_fmsub_ps(_mm256_loadu_ps(x + i + 8), vs, vb));
    if (y) {
      _mm256_storeu_ps(y + i, e0);
      _mm256_storeu_ps(y + i + 8, e1);
    }
    s0 = _mm256_add_ps(s0, e0);
    s1 = _mm256_add_ps(s1, e1);
  }
  blocks8(n - i, [&](int64_t j, auto full, __m256i mask) {
    __m256 e = exp8(_mm256_fmsub_ps(load8(x + i + j, mask, full), vs, vb));
    if constexpr (!decltype(full)::value) e = _mm256_and_ps(e, _mm256_castsi256_ps(mask));
    if (y) store8(y + i + j, e, mask, full);
    s0 = _mm256_add_ps(s0, e);
  });
  return hsum8(_mm256_add_ps(s0, s1));
}

// y[i] = x[i]·a + b for i in [0, n) (y may be x).
inline void row_affine(float* y, const float* x, int64_t n, float a, float b) {
  const __m256 va = _mm256_set1_ps(a), vb = _mm256_set1_ps(b);
  blocks8(n, [&](int64_t i, auto full, __m256i mask) { store8(y + i, _mm256_fmadd_ps(load8(x + i, mask, full), va, vb), mask, full); });
}

}  // namespace graft::simd
