// Vectorisable float math for `#pragma omp simd` loops: libm's expf/erff/tanhf are scalar calls
// that stop vectorisation. exp: Cephes range reduction (x = n·ln2 + r) and a degree-6
// polynomial, about 1 ulp. NaN propagates. (The AVX2 forms for the hottest loops are in simd.h.)
// The row reductions keep 32 partial sums (four AVX2 registers) so the adds do not wait on each
// other's latency.
#pragma once
#include <cstdint>
#include <cstring>

namespace graft {

__attribute__((always_inline)) inline float vexp(float x) {
  float xc = x < -87.3365f ? -87.3365f : (x > 88.3762f ? 88.3762f : x);
  float n = __builtin_floorf(xc * 1.44269504088896341f + 0.5f);
  float r = xc - n * 0.693359375f + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  float e = p * r * r + r + 1.0f;
  int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float scale = __builtin_bit_cast(float, bits);
  float y = e * scale;
  y = x < -87.3365f ? 0.0f : y;
  y = x > 88.3762f ? __builtin_huge_valf() : y;
  return x != x ? x : y;
}

__attribute__((always_inline)) inline float vsigmoid(float x) { return 1.0f / (1.0f + vexp(-x)); }

__attribute__((always_inline)) inline float vtanh(float x) {
  // tanh(x) = 1 − 2 / (e^{2x} + 1), with the sign handled so large |x| saturates cleanly.
  float a = x < 0 ? -x : x;
  float t = 1.0f - 2.0f / (vexp(2.0f * a) + 1.0f);
  return x < 0 ? -t : t;
}

constexpr int kLanes = 32;

// Σ f(i) for i in [0, n) with kLanes independent partial sums.
template <typename F>
__attribute__((always_inline)) inline float vsum(int64_t n, F f) {
  float acc[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
#pragma omp simd
    for (int j = 0; j < kLanes; j++) acc[j] += f(i + j);
  }
  float tail = 0;
  for (; i < n; i++) tail += f(i);
  float s = 0;
#pragma omp simd reduction(+ : s)
  for (int j = 0; j < kLanes; j++) s += acc[j];
  return s + tail;
}

// max of x[0..n), NaN if any element is NaN; -inf for n = 0.
__attribute__((always_inline)) inline float vmax(const float* x, int64_t n) {
  float acc[kLanes];
  for (int j = 0; j < kLanes; j++) acc[j] = -__builtin_huge_valf();
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
#pragma omp simd
    for (int j = 0; j < kLanes; j++) acc[j] = x[i + j] > acc[j] || x[i + j] != x[i + j] ? x[i + j] : acc[j];
  }
  float m = -__builtin_huge_valf();
  for (; i < n; i++) m = x[i] > m || x[i] != x[i] ? x[i] : m;
  for (int j = 0; j < kLanes; j++) m = acc[j] > m || acc[j] != acc[j] ? acc[j] : m;
  return m;
}

}  // namespace graft
