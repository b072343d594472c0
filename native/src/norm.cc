// Layer norm and batch norm: one pass for statistics, one to write, OpenMP over rows
// or channels, statistics accumulated in double.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "kernels.h"
#include "vmath.h"

namespace graft {
namespace {

template <typename F>
void rows_parallel(int64_t rows, int64_t work, F f) {
  if (rows * work < (1 << 14) || rows == 1) {
    for (int64_t r = 0; r < rows; r++) f(r);
    return;
  }
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; r++) f(r);
}

}  // namespace

// x (rows, n)
void layernorm_forward(float* y, float* mean, float* rstd, const float* x, const float* gamma, const float* beta, int64_t rows, int64_t n, float eps) {
  rows_parallel(rows, n, [&](int64_t r) {
    const float* px = x + r * n;
    float* py = y + r * n;
    float sum = 0;
#pragma omp simd reduction(+ : sum)
    for (int64_t i = 0; i < n; i++) sum += px[i];
    float mu = sum / n;
    float sq = 0;
#pragma omp simd reduction(+ : sq)
    for (int64_t i = 0; i < n; i++) sq += (px[i] - mu) * (px[i] - mu);
    float rs = 1.f / std::sqrt(sq / n + eps);
    mean[r] = mu;
    rstd[r] = rs;
    if (gamma && beta) {
#pragma omp simd
      for (int64_t i = 0; i < n; i++) py[i] = (px[i] - mu) * rs * gamma[i] + beta[i];
    } else {
#pragma omp simd
      for (int64_t i = 0; i < n; i++) py[i] = (px[i] - mu) * rs * (gamma ? gamma[i] : 1.f) + (beta ? beta[i] : 0.f);
    }
  });
}

void layernorm_backward(float* gx, float* ggamma, float* gbeta, const float* x, const float* gy, const float* gamma, const float* mean, const float* rstd, int64_t rows, int64_t n) {
  // One pass over x and gy: gx per row, and per-thread partial sums for the parameter gradients.
  bool params = ggamma || gbeta;
  int nt = rows * n < (1 << 14) ? 1 : omp_get_max_threads();
  std::vector<float> partial(params ? static_cast<size_t>(nt) * 2 * n : 0, 0.f);
#pragma omp parallel num_threads(nt)
  {
    int t = omp_get_thread_num();
    float* pgam = params ? partial.data() + static_cast<size_t>(t) * 2 * n : nullptr;
    float* pbet = params ? pgam + n : nullptr;
#pragma omp for schedule(static)
    for (int64_t r = 0; r < rows; r++) {
      const float* px = x + r * n;
      const float* pg = gy + r * n;
      float* pgx = gx + r * n;
      float mu = mean[r], rs = rstd[r];
      float sumG = 0, sumGX = 0;
      if (gamma) {
#pragma omp simd reduction(+ : sumG, sumGX)
        for (int64_t i = 0; i < n; i++) {
          float g = pg[i] * gamma[i];
          sumG += g;
          sumGX += g * (px[i] - mu);
        }
      } else {
#pragma omp simd reduction(+ : sumG, sumGX)
        for (int64_t i = 0; i < n; i++) {
          sumG += pg[i];
          sumGX += pg[i] * (px[i] - mu);
        }
      }
      float a = sumG / n, b = sumGX * rs / n;
      if (gamma) {
#pragma omp simd
        for (int64_t i = 0; i < n; i++) pgx[i] = rs * (pg[i] * gamma[i] - a - (px[i] - mu) * rs * b);
      } else {
#pragma omp simd
        for (int64_t i = 0; i < n; i++) pgx[i] = rs * (pg[i] - a - (px[i] - mu) * rs * b);
      }
      if (params) {
#pragma omp simd
        for (int64_t i = 0; i < n; i++) {
          pgam[i] += pg[i] * (px[i] - mu) * rs;
          pbet[i] += pg[i];
        }
      }
    }
  }
  if (params) {
    for (int64_t i = 0; i < n; i++) {
      float sg = 0, sb = 0;
      for (int t = 0; t < nt; t++) {
        sg += partial[static_cast<size_t>(t) * 2 * n + i];
        sb += partial[static_cast<size_t>(t) * 2 * n + n + i];
      }
      if (ggamma) ggamma[i] = sg;
      if (gbeta) gbeta[i] = sb;
    }
  }
}

// x (N, C, S)
void batchnorm_forward(float* y, float* mean, float* rstd, float* runMean, float* runVar, const float* x, const float* gamma, const float* beta,
                       int64_t n, int64_t c, int64_t s, bool training, float momentum, float eps) {
  int64_t count = n * s;
  rows_parallel(c, count, [&](int64_t ch) {
    double mu, var;
    if (training) {
      double sum = 0;
      for (int64_t b = 0; b < n; b++) {
        const float* p = x + (b * c + ch) * s;
        float part = 0;
#pragma omp simd reduction(+ : part)
        for (int64_t i = 0; i < s; i++) part += p[i];
        sum += part;
      }
      mu = sum / count;
      double sq = 0;
      for (int64_t b = 0; b < n; b++) {
        const float* p = x + (b * c + ch) * s;
        float m = static_cast<float>(mu), part = 0;
#pragma omp simd reduction(+ : part)
        for (int64_t i = 0; i < s; i++) part += (p[i] - m) * (p[i] - m);
        sq += part;
      }
      var = sq / count;
      if (runMean) runMean[ch] = static_cast<float>((1 - momentum) * runMean[ch] + momentum * mu);
      if (runVar) runVar[ch] = static_cast<float>((1 - momentum) * runVar[ch] + momentum * (count > 1 ? var * count / (count - 1) : var));
    } else {
      mu = runMean[ch];
      var = runVar[ch];
    }
    float rs = static_cast<float>(1.0 / std::sqrt(var + eps));
    mean[ch] = static_cast<float>(mu);
    rstd[ch] = rs;
    float scale = rs * (gamma ? gamma[ch] : 1.f);
    float shift = (beta ? beta[ch] : 0.f) - static_cast<float>(mu) * scale;
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
  int64_t count = n * s;
  rows_parallel(c, count, [&](int64_t ch) {
    float mu = mean[ch], rs = rstd[ch];
    double sumG = 0, sumGX = 0;
    for (int64_t b = 0; b < n; b++) {
      const float* p = x + (b * c + ch) * s;
      const float* g = gy + (b * c + ch) * s;
      float pg = 0, pgx = 0;
#pragma omp simd reduction(+ : pg, pgx)
      for (int64_t i = 0; i < s; i++) {
        pg += g[i];
        pgx += g[i] * (p[i] - mu) * rs;
      }
      sumG += pg;
      sumGX += pgx;
    }
    if (ggamma) ggamma[ch] = static_cast<float>(sumGX);
    if (gbeta) gbeta[ch] = static_cast<float>(sumG);
    float gm = gamma ? gamma[ch] : 1.f;
    float a = static_cast<float>(sumG / count), bcoef = static_cast<float>(sumGX / count);
    for (int64_t b = 0; b < n; b++) {
      const float* p = x + (b * c + ch) * s;
      const float* g = gy + (b * c + ch) * s;
      float* q = gx + (b * c + ch) * s;
      if (training) {
#pragma omp simd
        for (int64_t i = 0; i < s; i++) q[i] = gm * rs * (g[i] - a - (p[i] - mu) * rs * bcoef);
      } else {
#pragma omp simd
        for (int64_t i = 0; i < s; i++) q[i] = g[i] * gm * rs;
      }
    }
  });
}

}  // namespace graft
