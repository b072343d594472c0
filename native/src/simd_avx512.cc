// The simd.h kernels on AVX-512F (16 lanes); called only when the CPU has it (simd_avx2.cc).
#include <immintrin.h>

#include <type_traits>

#include "simd.h"

#pragma GCC target("avx512f")
// GCC 12's _mm512_reduce_* read an intentionally undefined register; its warning is spurious.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace graft::simd::avx512 {

struct V {
  using T = __m512;
  using M = __mmask16;
  using B = __mmask16;
  static constexpr int L = 16;
  static constexpr const char* level = "avx512";
  static constexpr bool has_scalef = true;
  static T set1(float v) { return _mm512_set1_ps(v); }
  static T zero() { return _mm512_setzero_ps(); }
  static T load(const float* p) { return _mm512_loadu_ps(p); }
  static void store(float* p, T v) { _mm512_storeu_ps(p, v); }
  static M tail(int64_t k) { return static_cast<__mmask16>((1u << k) - 1u); }
  static T load_tail(const float* p, M m) { return _mm512_maskz_loadu_ps(m, p); }
  static void store_tail(float* p, T v, M m) { _mm512_mask_storeu_ps(p, m, v); }
  static T keep(T v, M m) { return _mm512_maskz_mov_ps(m, v); }
  static T add(T a, T b) { return _mm512_add_ps(a, b); }
  static T sub(T a, T b) { return _mm512_sub_ps(a, b); }
  static T mul(T a, T b) { return _mm512_mul_ps(a, b); }
  static T div(T a, T b) { return _mm512_div_ps(a, b); }
  static T min(T a, T b) { return _mm512_min_ps(a, b); }
  static T max(T a, T b) { return _mm512_max_ps(a, b); }
  static T fmadd(T a, T b, T c) { return _mm512_fmadd_ps(a, b, c); }
  static T fnmadd(T a, T b, T c) { return _mm512_fnmadd_ps(a, b, c); }
  static T fmsub(T a, T b, T c) { return _mm512_fmsub_ps(a, b, c); }
  static T round(T v) { return _mm512_roundscale_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
  static T scalef(T a, T n) { return _mm512_scalef_ps(a, n); }
  static B none() { return 0; }
  static B unordered(T a, T b) { return _mm512_cmp_ps_mask(a, b, _CMP_UNORD_Q); }
  static B either(B a, B b) { return static_cast<B>(a | b); }
  static bool any(B b) { return b != 0; }
  static float hsum(T v) { return _mm512_reduce_add_ps(v); }
  static float hmax(T v) { return _mm512_reduce_max_ps(v); }
};

#include "simd_impl.h"

}  // namespace graft::simd::avx512
