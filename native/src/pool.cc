// Max, average and adaptive average pooling over NCHW planes, OpenMP over planes. Max pooling
// is direct rather than oneDNN's: the interface keeps the arg-max as a flat index per output
// (h·W + w within the plane), which oneDNN's workspace does not expose.
#include <algorithm>
#include <stdexcept>
#include <cmath>
#include <limits>

#include "kernels.h"
#include "parallel.h"

namespace graft {
namespace {

template <typename F>
void planes_parallel(int64_t planes, int64_t work, F f) {
  parallel_items(planes, planes * work, f);
}

// PyTorch counts padding inside the window but not past the padded border.
inline int64_t padded_count(const PoolShape& p, int64_t h0, int64_t w0) {
  return (std::min(h0 + p.kh, p.h + p.padH) - h0) * (std::min(w0 + p.kw, p.w + p.padW) - w0);
}

}  // namespace

// Channels-last, without the argmax: each output is a running maximum along the channels,
// contiguous in x and y. NaN propagates as in the NCHW kernel.
void maxpool_forward_nhwc(float* y, const float* x, const PoolShape& p) {
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < p.n * p.outH; r++) {
    const int64_t b = r / p.outH, oh = r % p.outH;
    const int64_t h0 = oh * p.strideH - p.padH, hs = std::max<int64_t>(h0, 0), he = std::min(h0 + p.kh, p.h);
    for (int64_t ow = 0; ow < p.outW; ow++) {
      float* __restrict out = y + ((b * p.outH + oh) * p.outW + ow) * p.c;
      std::fill(out, out + p.c, -std::numeric_limits<float>::infinity());
      const int64_t w0 = ow * p.strideW - p.padW, ws = std::max<int64_t>(w0, 0), we = std::min(w0 + p.kw, p.w);
      for (int64_t i = hs; i < he; i++)
        for (int64_t j = ws; j < we; j++) {
          const float* __restrict src = x + ((b * p.h + i) * p.w + j) * p.c;
#pragma omp simd
          for (int64_t c = 0; c < p.c; c++) {
            const float v = src[c];
            out[c] = (v > out[c]) | (v != v) ? v : out[c];
          }
        }
    }
  }
}

void maxpool_forward(float* y, int32_t* arg, const float* x, const PoolShape& p) {
  if (p.nhwc) return maxpool_forward_nhwc(y, x, p);
  // Taps outer, output columns inner: the columns' running maxima are independent, so the loop
  // pipelines (and vectorises for stride 1) instead of waiting on one compare-select chain.
  planes_parallel(p.n * p.c, p.h * p.w, [&](int64_t pl) {
    const float* px = x + pl * p.h * p.w;
    float* py = y + pl * p.outH * p.outW;
    int32_t* pa = arg + pl * p.outH * p.outW;
    for (int64_t oh = 0; oh < p.outH; oh++) {
      int64_t h0 = oh * p.strideH - p.padH;
      int64_t hs = std::max<int64_t>(h0, 0), he = std::min(h0 + p.kh, p.h);
      float* best = py + oh * p.outW;
      int32_t* at = pa + oh * p.outW;
      for (int64_t ow = 0; ow < p.outW; ow++) {
        int64_t w0 = ow * p.strideW - p.padW;
        best[ow] = -std::numeric_limits<float>::infinity();
        at[ow] = hs < he && w0 + p.kw > 0 && w0 < p.w ? static_cast<int32_t>(hs * p.w + std::max<int64_t>(w0, 0)) : 0;
      }
      for (int64_t i = hs; i < he; i++) {
        const float* row = px + i * p.w;
        for (int64_t j = 0; j < p.kw; j++) {
          // Columns ow with 0 ≤ ow·stride − pad + j < w.
          int64_t off = j - p.padW;
          int64_t lo = off >= 0 ? 0 : (-off + p.strideW - 1) / p.strideW;
          int64_t hi = p.w - 1 - off < 0 ? 0 : std::min(p.outW, (p.w - 1 - off) / p.strideW + 1);
          const int64_t sw = p.strideW;
          for (int64_t ow = lo; ow < hi; ow++) {
            int64_t iw = ow * sw + off;
            float v = row[iw];
            bool take = (v > best[ow]) | (v != v);
            best[ow] = take ? v : best[ow];
            at[ow] = take ? static_cast<int32_t>(i * p.w + iw) : at[ow];
          }
        }
      }
    }
  });
}

void maxpool_backward(float* gx, const float* gy, const int32_t* arg, const PoolShape& p) {
  if (p.nhwc) throw std::invalid_argument("max pooling's backward pass takes NCHW tensors only");
  int64_t hw = p.h * p.w, ohw = p.outH * p.outW;
  planes_parallel(p.n * p.c, hw, [&](int64_t pl) {
    float* g = gx + pl * hw;
    std::fill(g, g + hw, 0.f);
    for (int64_t o = 0; o < ohw; o++) g[arg[pl * ohw + o]] += gy[pl * ohw + o];
  });
}

void avgpool_forward(float* y, const float* x, const PoolShape& p) {
  planes_parallel(p.n * p.c, p.h * p.w, [&](int64_t pl) {
    const float* px = x + pl * p.h * p.w;
    for (int64_t oh = 0; oh < p.outH; oh++)
      for (int64_t ow = 0; ow < p.outW; ow++) {
        int64_t h0 = oh * p.strideH - p.padH, w0 = ow * p.strideW - p.padW;
        int64_t hs = std::max<int64_t>(h0, 0), he = std::min(h0 + p.kh, p.h), ws = std::max<int64_t>(w0, 0), we = std::min(w0 + p.kw, p.w);
        float acc = 0;
        for (int64_t i = hs; i < he; i++)
          for (int64_t j = ws; j < we; j++) acc += px[i * p.w + j];
        int64_t count = p.countIncludePad ? padded_count(p, h0, w0) : (he - hs) * (we - ws);
        y[(pl * p.outH + oh) * p.outW + ow] = acc / count;
      }
  });
}

void avgpool_backward(float* gx, const float* gy, const PoolShape& p) {
  int64_t hw = p.h * p.w;
  planes_parallel(p.n * p.c, hw, [&](int64_t pl) {
    float* g = gx + pl * hw;
    std::fill(g, g + hw, 0.f);
    for (int64_t oh = 0; oh < p.outH; oh++)
      for (int64_t ow = 0; ow < p.outW; ow++) {
        int64_t h0 = oh * p.strideH - p.padH, w0 = ow * p.strideW - p.padW;
        int64_t hs = std::max<int64_t>(h0, 0), he = std::min(h0 + p.kh, p.h), ws = std::max<int64_t>(w0, 0), we = std::min(w0 + p.kw, p.w);
        int64_t count = p.countIncludePad ? padded_count(p, h0, w0) : (he - hs) * (we - ws);
        float v = gy[(pl * p.outH + oh) * p.outW + ow] / count;
        for (int64_t i = hs; i < he; i++)
          for (int64_t j = ws; j < we; j++) g[i * p.w + j] += v;
      }
  });
}

void adaptive_avgpool_forward(float* y, const float* x, int64_t planes, int64_t h, int64_t w, int64_t outH, int64_t outW) {
  planes_parallel(planes, h * w, [&](int64_t pl) {
    const float* px = x + pl * h * w;
    for (int64_t oh = 0; oh < outH; oh++) {
      int64_t h0 = oh * h / outH, h1 = ((oh + 1) * h + outH - 1) / outH;
      for (int64_t ow = 0; ow < outW; ow++) {
        int64_t w0 = ow * w / outW, w1 = ((ow + 1) * w + outW - 1) / outW;
        float acc = 0;
        for (int64_t i = h0; i < h1; i++)
          for (int64_t j = w0; j < w1; j++) acc += px[i * w + j];
        y[(pl * outH + oh) * outW + ow] = acc / ((h1 - h0) * (w1 - w0));
      }
    }
  });
}

void adaptive_avgpool_backward(float* gx, const float* gy, int64_t planes, int64_t h, int64_t w, int64_t outH, int64_t outW) {
  planes_parallel(planes, h * w, [&](int64_t pl) {
    float* g = gx + pl * h * w;
    std::fill(g, g + h * w, 0.f);
    for (int64_t oh = 0; oh < outH; oh++) {
      int64_t h0 = oh * h / outH, h1 = ((oh + 1) * h + outH - 1) / outH;
      for (int64_t ow = 0; ow < outW; ow++) {
        int64_t w0 = ow * w / outW, w1 = ((ow + 1) * w + outW - 1) / outW;
        float v = gy[(pl * outH + oh) * outW + ow] / ((h1 - h0) * (w1 - w0));
        for (int64_t i = h0; i < h1; i++)
          for (int64_t j = w0; j < w1; j++) g[i * w + j] += v;
      }
    }
  });
}

}  // namespace graft
