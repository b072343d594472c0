// Layer norm and batch norm. Layer norm runs on oneDNN's layer normalisation primitives (graft
// keeps rstd where oneDNN keeps a variance; the two are converted per row); its OpenMP kernels
// remain for the cases oneDNN does not take (a bias without a weight, calls from inside a
// parallel region). Batch norm is OpenMP: statistics in two passes over a channel's planes while
// they stay in cache, then one pass to write; oneDNN 2.6's batch norm on NCHW is a reference
// loop, ~5× slower.
#include <cmath>
#include <unordered_map>
#include <vector>

#include "kernels.h"
#include "onednn.h"
#include "parallel.h"
#include "vmath.h"

namespace graft {

// x (rows, N); gamma and beta both present or both absent (else the OpenMP kernel below).
static void layernorm_forward_onednn(float* y, float* mean, float* rstd, const float* x, const float* gamma, const float* beta, int64_t rows, int64_t n, float eps) {
  using namespace onednn;
  const bool affine = gamma != nullptr;
  const Primitive& p = cached(key("ln", rows, n, eps, affine), [&] {
    memory::desc md({rows, n}, dt::f32, tag::ab), sd({rows}, dt::f32, tag::a), cd({n}, dt::f32, tag::a);
    auto flags = affine ? dnnl::normalization_flags::use_scale | dnnl::normalization_flags::use_shift : dnnl::normalization_flags::none;
    dnnl::layer_normalization_forward::primitive_desc pd(
        dnnl::layer_normalization_forward::desc(dnnl::prop_kind::forward_training, md, eps, flags), engine());
    return Primitive{dnnl::layer_normalization_forward(pd), {md, sd, cd}};
  });
  std::unordered_map<int, memory> args{{DNNL_ARG_SRC, mem(p.mds[0], x)}, {DNNL_ARG_DST, mem(p.mds[0], y)},
                                       {DNNL_ARG_MEAN, mem(p.mds[1], mean)}, {DNNL_ARG_VARIANCE, mem(p.mds[1], rstd)}};
  if (affine) {
    args.emplace(DNNL_ARG_SCALE, mem(p.mds[2], gamma));
    args.emplace(DNNL_ARG_SHIFT, mem(p.mds[2], beta));
  }
  dnnl::stream& s = stream();
  p.prim.execute(s, args);
  s.wait();
  // The variance was written where rstd goes: rstd = 1 / sqrt(var + eps).
#pragma omp simd
  for (int64_t r = 0; r < rows; r++) rstd[r] = 1.f / std::sqrt(rstd[r] + eps);
}

// x (rows, N)
void layernorm_forward(float* y, float* mean, float* rstd, const float* x, const float* gamma, const float* beta, int64_t rows, int64_t n, float eps) {
  if (rows > 0 && n > 0 && (gamma != nullptr) == (beta != nullptr) && !omp_in_parallel())
    return layernorm_forward_onednn(y, mean, rstd, x, gamma, beta, rows, n, eps);
  parallel_items(rows, rows * n, [&](int64_t r) {
    const float* px = x + r * n;
    float* py = y + r * n;
    float mu = vsum(n, [px](int64_t i) { return px[i]; }) / n;
    float var = vsum(n, [px, mu](int64_t i) { return (px[i] - mu) * (px[i] - mu); }) / n;
    float rs = 1.f / std::sqrt(var + eps);
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

// oneDNN's layer normalisation backward. It takes a variance and an epsilon where graft keeps
// rstd, so it gets var = 1 / rstd² with epsilon 0 (the same rstd to rounding).
static void layernorm_backward_onednn(float* gx, float* ggamma, float* gbeta, const float* x, const float* gy, const float* gamma, const float* mean,
                                      const float* rstd, int64_t rows, int64_t n) {
  using namespace onednn;
  const bool affine = gamma != nullptr, params = ggamma || gbeta;
  const Primitive& p = cached(key("lnb", rows, n, affine, params), [&] {
    memory::desc md({rows, n}, dt::f32, tag::ab), sd({rows}, dt::f32, tag::a), cd({n}, dt::f32, tag::a);
    auto flags = affine ? dnnl::normalization_flags::use_scale | dnnl::normalization_flags::use_shift : dnnl::normalization_flags::none;
    dnnl::layer_normalization_forward::primitive_desc hint(
        dnnl::layer_normalization_forward::desc(dnnl::prop_kind::forward_training, md, 0.f, flags), engine());
    dnnl::layer_normalization_backward::primitive_desc pd(
        dnnl::layer_normalization_backward::desc(params ? dnnl::prop_kind::backward : dnnl::prop_kind::backward_data, md, md, 0.f, flags), engine(), hint);
    return Primitive{dnnl::layer_normalization_backward(pd), {md, sd, cd}};
  });
  std::vector<float> var(static_cast<size_t>(rows));
  for (int64_t r = 0; r < rows; r++) var[r] = 1.f / (rstd[r] * rstd[r]);
  std::vector<float> scratch(affine ? static_cast<size_t>(3 * n) : 0, 0.f);  // shift input, unwanted parameter gradients
  std::unordered_map<int, memory> args{{DNNL_ARG_SRC, mem(p.mds[0], x)}, {DNNL_ARG_DIFF_DST, mem(p.mds[0], gy)}, {DNNL_ARG_DIFF_SRC, mem(p.mds[0], gx)},
                                       {DNNL_ARG_MEAN, mem(p.mds[1], mean)}, {DNNL_ARG_VARIANCE, mem(p.mds[1], var.data())}};
  if (affine) {
    args.emplace(DNNL_ARG_SCALE, mem(p.mds[2], gamma));
    args.emplace(DNNL_ARG_SHIFT, mem(p.mds[2], scratch.data()));
    if (params) {
      args.emplace(DNNL_ARG_DIFF_SCALE, mem(p.mds[2], ggamma ? ggamma : scratch.data() + n));
      args.emplace(DNNL_ARG_DIFF_SHIFT, mem(p.mds[2], gbeta ? gbeta : scratch.data() + 2 * n));
    }
  }
  dnnl::stream& s = stream();
  p.prim.execute(s, args);
  s.wait();
}

// gx = rstd · (g − mean(g) − x̂ · mean(g · x̂)) with g = gy · gamma and x̂ = (x − mean) · rstd;
// ggamma = Σ_rows gy · x̂, gbeta = Σ_rows gy, from per-thread partial sums.
void layernorm_backward(float* gx, float* ggamma, float* gbeta, const float* x, const float* gy, const float* gamma, const float* mean, const float* rstd,
                        int64_t rows, int64_t n) {
  const bool params = ggamma || gbeta;
  if (rows > 0 && n > 0 && gx && (gamma || !params) && !omp_in_parallel())
    return layernorm_backward_onednn(gx, ggamma, gbeta, x, gy, gamma, mean, rstd, rows, n);
  const int threads = rows * n < kParallelMin || omp_in_parallel() ? 1 : omp_get_max_threads();
  std::vector<float> partial(params ? static_cast<size_t>(threads) * 2 * n : 0, 0.f);
#pragma omp parallel num_threads(threads)
  {
    const int t = omp_get_thread_num();
    float* pgam = params ? partial.data() + static_cast<size_t>(t) * 2 * n : nullptr;
    float* pbet = params ? pgam + n : nullptr;
#pragma omp for schedule(static)
    for (int64_t r = 0; r < rows; r++) {
      const float* px = x + r * n;
      const float* pg = gy + r * n;
      float* pgx = gx + r * n;
      const float mu = mean[r], rs = rstd[r];
      float sumG, sumGX;
      if (gamma) {
        sumG = vsum(n, [pg, gamma](int64_t i) { return pg[i] * gamma[i]; });
        sumGX = vsum(n, [pg, gamma, px, mu](int64_t i) { return pg[i] * gamma[i] * (px[i] - mu); });
      } else {
        sumG = vsum(n, [pg](int64_t i) { return pg[i]; });
        sumGX = vsum(n, [pg, px, mu](int64_t i) { return pg[i] * (px[i] - mu); });
      }
      const float a = sumG / n, b = sumGX * rs / n;
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
