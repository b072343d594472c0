// The simd.h kernels on AVX2 + FMA (8 lanes), and the choice between them and AVX-512's.
#include <immintrin.h>

#include <cstdlib>
#include <cstring>
#include <type_traits>

#include "simd.h"

namespace graft::simd {
namespace avx2 {

struct V {
  using T = __m256;
  using M = __m256i;  // tail lanes: all ones where kept
  using B = __m256;   // per-lane flags
  static constexpr int L = 8;
  static constexpr const char* level = "avx2";
  static constexpr bool has_scalef = false;
  static T set1(float v) { return _mm256_set1_ps(v); }
  static T zero() { return _mm256_setzero_ps(); }
  static T load(const float* p) { return _mm256_loadu_ps(p); }
  static void store(float* p, T v) { _mm256_storeu_ps(p, v); }
  static M tail(int64_t k) { return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(k)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)); }
  static T load_tail(const float* p, M m) { return _mm256_maskload_ps(p, m); }
  static void store_tail(float* p, T v, M m) { _mm256_maskstore_ps(p, m, v); }
  static T keep(T v, M m) { return _mm256_and_ps(v, _mm256_castsi256_ps(m)); }
  static T add(T a, T b) { return _mm256_add_ps(a, b); }
  static T sub(T a, T b) { return _mm256_sub_ps(a, b); }
  static T mul(T a, T b) { return _mm256_mul_ps(a, b); }
  static T div(T a, T b) { return _mm256_div_ps(a, b); }
  static T min(T a, T b) { return _mm256_min_ps(a, b); }
  static T max(T a, T b) { return _mm256_max_ps(a, b); }
  static T fmadd(T a, T b, T c) { return _mm256_fmadd_ps(a, b, c); }
  static T fnmadd(T a, T b, T c) { return _mm256_fnmadd_ps(a, b, c); }
  static T fmsub(T a, T b, T c) { return _mm256_fmsub_ps(a, b, c); }
  // 2ⁿ from t, whose low mantissa bits hold n + 127.
  static T exponent(T t) { return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_castps_si256(t), 23)); }
  static T inf_above(T y, T x, T hi) { return _mm256_blendv_ps(y, _mm256_set1_ps(__builtin_huge_valf()), _mm256_cmp_ps(x, hi, _CMP_GT_OQ)); }
  static B none() { return _mm256_setzero_ps(); }
  static B unordered(T a, T b) { return _mm256_cmp_ps(a, b, _CMP_UNORD_Q); }
  static B either(B a, B b) { return _mm256_or_ps(a, b); }
  static bool any(B b) { return _mm256_movemask_ps(b) != 0; }
  static float hsum(T v) {
    __m128 a = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    a = _mm_add_ps(a, _mm_movehl_ps(a, a));
    a = _mm_add_ss(a, _mm_movehdup_ps(a));
    return _mm_cvtss_f32(a);
  }
  static float hmax(T v) {
    __m128 a = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    a = _mm_max_ps(a, _mm_movehl_ps(a, a));
    a = _mm_max_ss(a, _mm_movehdup_ps(a));
    return _mm_cvtss_f32(a);
  }
};

#include "simd_impl.h"

}  // namespace avx2

const Kernels& kernels() {
  static const Kernels chosen = [] {
    const char* want = std::getenv("GRAFT_SIMD");
    if (want && std::strcmp(want, "avx2") == 0) return avx2::table;
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx512f")) return avx2::table;
    Kernels k = avx512::table;
    // Layer norm's gradient, load/store-bound with little arithmetic, ran faster on AVX2 on an
    // AVX-512 machine (AMD EPYC, 1576×384: ~100 vs ~136 µs).
    k.layernorm_grad_row = avx2::table.layernorm_grad_row;
    return k;
  }();
  return chosen;
}

}  // namespace graft::simd
