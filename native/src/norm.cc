// Layer norm and batch norm. Layer norm runs row by row on the vector kernels of simd.h (a row
// stays in L1 across its passes); they beat oneDNN 2.6's layer normalisation primitives here,
// which also keep a variance where graft keeps rstd. Batch norm is OpenMP: statistics in two
// passes over a channel's planes while they stay in cache, then one pass to write; oneDNN 2.6's
// batch norm on NCHW is a reference loop, ~5× slower.
#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels.h"
#include "parallel.h"
#include "simd.h"
#include "vmath.h"

namespace graft {

// x (rows, N)
void layernorm_forward(float* y, float* mean, float* rstd, const float* x, const float* gamma, const float* beta, int64_t rows, int64_t n, float eps) {
  const auto& k = simd::kernels();
  parallel_items(rows, rows * n, [&](int64_t r) { k.layernorm_row(y + r * n, mean + r, rstd + r, x + r * n, gamma, beta, n, eps); });
}

// gx = rstd · (g − mean(g) − x̂ · mean(g · x̂)) with g = gy · gamma and x̂ = (x − mean) · rstd;
// ggamma = Σ_rows gy · x̂, gbeta = Σ_rows gy, from per-thread partial sums.
void layernorm_backward(float* gx, float* ggamma, float* gbeta, const float* x, const float* gy, const float* gamma, const float* mean, const float* rstd,
                        int64_t rows, int64_t n) {
  if (rows <= 0 || n <= 0) {
    if (ggamma) std::fill(ggamma, ggamma + std::max<int64_t>(n, 0), 0.f);
    if (gbeta) std::fill(gbeta, gbeta + std::max<int64_t>(n, 0), 0.f);
    return;
  }
  const auto& k = simd::kernels();
  const bool params = ggamma || gbeta;
  const int threads = rows * n < kParallelMin || omp_in_parallel() ? 1 : omp_get_max_threads();
  std::vector<float> partial(params ? static_cast<size_t>(threads) * 2 * n : 0, 0.f);
#pragma omp parallel num_threads(threads)
  {
    const size_t t = static_cast<size_t>(omp_get_thread_num());
    float* pgam = ggamma ? partial.data() + t * 2 * n : nullptr;
    float* pbet = gbeta ? partial.data() + t * 2 * n + n : nullptr;
#pragma omp for schedule(static)
    for (int64_t r = 0; r < rows; r++) k.layernorm_grad_row(gx ? gx + r * n : nullptr, pgam, pbet, x + r * n, gy + r * n, gamma, mean[r], rstd[r], n);
  }
  if (!params) return;
  for (int64_t i = 0; i < n; i++) {
    float sg = 0, sb = 0;
    for (int t = 0; t < threads; t++) {
      sg += partial[static_cast<size_t>(t) * 2 * n + i];
      sb += partial[static_cast<size_t>(t) * 2 * n + n + i];
    }
    if (ggamma) ggamma[i] = sg;
    if (gbeta) gbeta[i] = sb;
  }
}

namespace {

// Σ over the batch of f applied to each element of channel ch's plane, in double across planes.
template <typename F>
double channel_sum(int64_t n, int64_t c, int64_t s, int64_t ch, F f) {
  double acc = 0;
  for (int64_t b = 0; b < n; b++) {
    int64_t base = (b * c + ch) * s;
    acc += vsum(s, [&f, base](int64_t i) { return f(base + i); });
  }
  return acc;
}

}  // namespace

// x (B, C, S)
void batchnorm_forward(float* y, float* mean, float* rstd, float* runMean, float* runVar, const float* x, const float* gamma, const float* beta,
                       int64_t n, int64_t c, int64_t s, bool training, float momentum, float eps) {
  const int64_t count = n * s;
  parallel_items(c, c * count, [&](int64_t ch) {
    double mu, var;
    if (training) {
      mu = channel_sum(n, c, s, ch, [x](int64_t k) { return x[k]; }) / count;
      const float m = static_cast<float>(mu);
      var = channel_sum(n, c, s, ch, [x, m](int64_t k) { return (x[k] - m) * (x[k] - m); }) / count;
      // Running statistics keep the unbiased variance, as PyTorch does.
      if (runMean) runMean[ch] = static_cast<float>((1 - momentum) * runMean[ch] + momentum * mu);
      if (runVar) runVar[ch] = static_cast<float>((1 - momentum) * runVar[ch] + momentum * (count > 1 ? var * count / (count - 1) : var));
    } else {
      mu = runMean[ch];
      var = runVar[ch];
    }
    const float rs = static_cast<float>(1.0 / std::sqrt(var + eps));
    mean[ch] = static_cast<float>(mu);
    rstd[ch] = rs;
    const float scale = rs * (gamma ? gamma[ch] : 1.f);
    const float shift = (beta ? beta[ch] : 0.f) - static_cast<float>(mu) * scale;
    for (int64_t b = 0; b < n; b++) {
      const float* p = x + (b * c + ch) * s;
      float* q = y + (b * c + ch) * s;
#pragma omp simd
      for (int64_t i = 0; i < s; i++) q[i] = p[i] * scale + shift;
    }
  });
}

void batchnorm_backward(float* gx, float* ggamma, float* gbeta, const float* x, const float* gy, const float* gamma, const float* mean, const float* rstd,
                        int64_t n, int64_t c, int64_t s, bool training) {
  const int64_t count = n * s;
  parallel_items(c, c * count, [&](int64_t ch) {
    const float mu = mean[ch], rs = rstd[ch];
    const double sumG = channel_sum(n, c, s, ch, [gy](int64_t k) { return gy[k]; });
    const double sumGX = channel_sum(n, c, s, ch, [gy, x, mu, rs](int64_t k) { return gy[k] * (x[k] - mu) * rs; });
    if (ggamma) ggamma[ch] = static_cast<float>(sumGX);
    if (gbeta) gbeta[ch] = static_cast<float>(sumG);
    const float scale = (gamma ? gamma[ch] : 1.f) * rs;
    const float a = static_cast<float>(sumG / count), bcoef = static_cast<float>(sumGX / count);
    for (int64_t b = 0; b < n; b++) {
      const float* p = x + (b * c + ch) * s;
      const float* g = gy + (b * c + ch) * s;
      float* q = gx + (b * c + ch) * s;
      if (training) {
#pragma omp simd
        for (int64_t i = 0; i < s; i++) q[i] = scale * (g[i] - a - (p[i] - mu) * rs * bcoef);
      } else {
#pragma omp simd
        for (int64_t i = 0; i < s; i++) q[i] = g[i] * scale;
      }
    }
  });
}

}  // namespace graft
