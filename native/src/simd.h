// Vector kernels for the transcendental-bound loops (softmax rows, attention's probabilities,
// GELU, erf) and for layer norm's rows, built twice from one source (simd_impl.h): for AVX2 + FMA, which the addon requires,
// and for AVX-512, used when the CPU has it (about 1.5× on these loops: twice the lanes per
// instruction). GRAFT_SIMD=avx2 in the environment, read when the addon loads, keeps AVX2.
#pragma once
#include <cstdint>

namespace graft::simd {

struct Kernels {
  const char* level;
  // max of x[0..n) (n ≥ 1); NaN if any element is NaN.
  float (*row_max)(const float* x, int64_t n);
  // y[i] = exp(x[i]·scale − shift) for i in [0, n); returns Σ y. y may be x, or null to only sum.
  float (*row_exp)(float* y, const float* x, int64_t n, float scale, float shift);
  // y[i] = x[i]·a + b (y may be x).
  void (*row_affine)(float* y, const float* x, int64_t n, float a, float b);
  // y = x·Φ(x), Φ(x) = (1 + erf(x/√2)) / 2
  void (*gelu)(float* y, const float* x, int64_t n);
  // gx = gy·(Φ(x) + x·φ(x)), φ(x) = exp(−x²/2) / √(2π)
  void (*gelu_grad)(float* gx, const float* gy, const float* x, int64_t n);
  void (*erf)(float* y, const float* x, int64_t n);
  // One row of layer norm: y = (x − mean)·rstd·gamma + beta (gamma, beta may be null).
  void (*layernorm_row)(float* y, float* mean, float* rstd, const float* x, const float* gamma, const float* beta, int64_t n, float eps);
  // Its gradient: gx = rstd·(g − mean(g) − x̂·mean(g·x̂)), g = gy·gamma, x̂ = (x − mean)·rstd (gx may
  // be null); adds gy·x̂ to accGamma and gy to accBeta where they are not null.
  void (*layernorm_grad_row)(float* gx, float* accGamma, float* accBeta, const float* x, const float* gy, const float* gamma, float mean, float rstd, int64_t n);
};

// The kernels for this CPU, chosen once.
const Kernels& kernels();

namespace avx2 {
extern const Kernels table;
}
namespace avx512 {
extern const Kernels table;
}

}  // namespace graft::simd
