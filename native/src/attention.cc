// Scaled-dot-product attention in one native call: batched GEMMs on oneDNN for q kᵀ and p v,
// a row softmax that keeps the log-sum-exp, and the backward pass recomputing p from it.
#include <omp.h>

#include <cmath>
#include <limits>
#include <vector>

#include "kernels.h"
#include "vmath.h"

namespace graft {
namespace {

// s (B, N, M) ← softmax rows of scale·s in place (masked above the diagonal when causal); lse (B, N).
void softmax_rows(float* s, float* lse, int64_t rows, int64_t n, int64_t m, float scale, bool causal) {
#pragma omp parallel for schedule(static) if (rows * m > (1 << 14))
  for (int64_t r = 0; r < rows; r++) {
    float* p = s + r * m;
    int64_t i = r % n;
    int64_t valid = causal ? std::min<int64_t>(i + 1, m) : m;
    float mx = -std::numeric_limits<float>::infinity();
    for (int64_t j = 0; j < valid; j++) {
      p[j] *= scale;
      mx = std::max(mx, p[j]);
    }
    float sum = 0;
#pragma omp simd reduction(+ : sum)
    for (int64_t j = 0; j < valid; j++) {
      p[j] = vexp(p[j] - mx);
      sum += p[j];
    }
    float inv = 1.f / sum;
#pragma omp simd
    for (int64_t j = 0; j < valid; j++) p[j] *= inv;
    for (int64_t j = valid; j < m; j++) p[j] = 0.f;
    if (lse) lse[r] = mx + std::log(sum);
  }
}

}  // namespace

void attention_forward(float* out, float* lse, const float* q, const float* k, const float* v, int64_t batch, int64_t n, int64_t m, int64_t d, float scale, bool causal) {
  std::vector<float> s(static_cast<size_t>(batch * n * m));
  // s = q kᵀ: q (B, N, D) @ k (B, M, D)ᵀ
  matmul(s.data(), q, k, batch, n, m, d, false, true, n * d, m * d, n * m, 0);
  softmax_rows(s.data(), lse, batch * n, n, m, scale, causal);
  // out = p v: (B, N, M) @ (B, M, D)
  matmul(out, s.data(), v, batch, n, d, m, false, false, n * m, m * d, n * d, 0);
}

void attention_backward(float* gq, float* gk, float* gv, const float* q, const float* k, const float* v, const float* out, const float* lse, const float* gout,
                        int64_t batch, int64_t n, int64_t m, int64_t d, float scale, bool causal) {
  size_t nm = static_cast<size_t>(batch * n * m);
  std::vector<float> p(nm), dp(nm);
  matmul(p.data(), q, k, batch, n, m, d, false, true, n * d, m * d, n * m, 0);
  // p = exp(scale · s − lse), recomputed from the saved log-sum-exp.
  int64_t rows = batch * n;
#pragma omp parallel for schedule(static) if (static_cast<int64_t>(nm) > (1 << 15))
  for (int64_t r = 0; r < rows; r++) {
    float* pr = p.data() + r * m;
    int64_t i = r % n, valid = causal ? std::min<int64_t>(i + 1, m) : m;
    float l = lse[r];
#pragma omp simd
    for (int64_t j = 0; j < valid; j++) pr[j] = vexp(pr[j] * scale - l);
    for (int64_t j = valid; j < m; j++) pr[j] = 0.f;
  }
  // gv = pᵀ gout: (B, M, N) @ (B, N, D)
  matmul(gv, p.data(), gout, batch, m, d, n, true, false, n * m, n * d, m * d, 0);
  // dp = gout vᵀ: (B, N, D) @ (B, M, D)ᵀ
  matmul(dp.data(), gout, v, batch, n, m, d, false, true, n * d, m * d, n * m, 0);
  // ds = p ⊙ (dp − rowsum(gout ⊙ out)) · scale, written over dp
#pragma omp parallel for schedule(static) if (static_cast<int64_t>(nm) > (1 << 15))
  for (int64_t r = 0; r < rows; r++) {
    const float* go = gout + r * d;
    const float* o = out + r * d;
    float dot = 0;
#pragma omp simd reduction(+ : dot)
    for (int64_t t = 0; t < d; t++) dot += go[t] * o[t];
    float* dpr = dp.data() + r * m;
    const float* pr = p.data() + r * m;
#pragma omp simd
    for (int64_t j = 0; j < m; j++) dpr[j] = pr[j] * (dpr[j] - dot) * scale;
  }
  // gq = ds k: (B, N, M) @ (B, M, D);  gk = dsᵀ q: (B, M, N) @ (B, N, D)
  matmul(gq, dp.data(), k, batch, n, d, m, false, false, n * m, m * d, n * d, 0);
  matmul(gk, dp.data(), q, batch, m, d, n, true, false, n * m, n * d, m * d, 0);
}

}  // namespace graft
