// Depthwise convolution (groups = Cin = Cout) computed directly on NCHW planes: oneDNN's
// plain-layout depthwise path is slow, and a plane fits in cache. Stride-1 rows vectorise along W.
#include <omp.h>

#include <algorithm>
#include <limits>
#include <vector>

#include "kernels.h"

namespace graft {
namespace {

// Output columns [lo, hi) whose input column ow·stride − pad + j·dil lies inside [0, w).
inline void valid_cols(const ConvShape& s, int64_t j, int64_t& lo, int64_t& hi) {
  int64_t off = j * s.dilW - s.padW;  // iw = ow·stride + off
  lo = off >= 0 ? 0 : (-off + s.strideW - 1) / s.strideW;
  hi = s.w - 1 - off < 0 ? 0 : (s.w - 1 - off) / s.strideW + 1;
  hi = std::min(hi, s.outW);
}

template <typename F>
void planes_parallel(int64_t planes, F f) {
#pragma omp parallel for schedule(static)
  for (int64_t p = 0; p < planes; p++) f(p);
}

// y (B, C, OH, OW) = depthwise(x (B, C, H, W), w (C, 1, KH, KW)) + bias (C)
void depthwise_forward_rows(float* y, const float* x, const float* w, const float* bias, const ConvShape& s, float clipLo, float clipHi) {
  planes_parallel(s.n * s.cOut, [&](int64_t pl) {
    int64_t c = pl % s.cOut;
    const float* px = x + pl * s.h * s.w;
    const float* pw = w + c * s.kh * s.kw;
    float* py = y + pl * s.outH * s.outW;
    float b = bias ? bias[c] : 0.f;
    std::fill(py, py + s.outH * s.outW, b);
    for (int64_t oh = 0; oh < s.outH; oh++) {
      float* row = py + oh * s.outW;
      for (int64_t i = 0; i < s.kh; i++) {
        int64_t ih = oh * s.strideH - s.padH + i * s.dilH;
        if (ih < 0 || ih >= s.h) continue;
        const float* in = px + ih * s.w;
        for (int64_t j = 0; j < s.kw; j++) {
          int64_t lo, hi;
          valid_cols(s, j, lo, hi);
          float wv = pw[i * s.kw + j];
          const float* src = in + j * s.dilW - s.padW;
          if (s.strideW == 1) {
#pragma omp simd
            for (int64_t ow = lo; ow < hi; ow++) row[ow] += wv * src[ow];
          } else {
            for (int64_t ow = lo; ow < hi; ow++) row[ow] += wv * src[ow * s.strideW];
          }
        }
      }
      if (clipLo > -std::numeric_limits<float>::infinity() || clipHi < std::numeric_limits<float>::infinity()) {
#pragma omp simd
        for (int64_t ow = 0; ow < s.outW; ow++) row[ow] = std::min(std::max(row[ow], clipLo), clipHi);
      }
    }
  });
}

// One output plane. Every output element accumulates its KH·KW taps in a register and is stored
// once. Rows outside the input read a zero row; columns whose taps all lie inside the input (the
// interior) run without bounds checks, vectorised along W for stride 1, and the few edge columns
// check each tap. K > 0 fixes the kernel size at compile time (3×3, 5×5) so the tap loops unroll.
// Kernels larger than 5×5 keep row-wise accumulation (depthwise_forward_rows), measured faster there.
template <int K>
void depthwise_plane(float* py, const float* px, const float* pw, float b, const ConvShape& s, const float* zeros, float clipLo, float clipHi) {
  const int64_t kh = K > 0 ? K : s.kh, kw = K > 0 ? K : s.kw;
  const int64_t sw = s.strideW, dw = s.dilW, pw_ = s.padW;
  // Interior columns: ow·sw − padW ≥ 0 and ow·sw − padW + (kw − 1)·dw ≤ w − 1.
  int64_t lo = pw_ > 0 ? (pw_ + sw - 1) / sw : 0;
  int64_t last = s.w - 1 - (kw - 1) * dw + pw_;
  int64_t hi = last < 0 ? 0 : std::min(s.outW, last / sw + 1);
  if (hi < lo) hi = lo = std::min(lo, s.outW);
  const float* rows[16];
  for (int64_t oh = 0; oh < s.outH; oh++) {
    for (int64_t i = 0; i < kh; i++) {
      int64_t ih = oh * s.strideH - s.padH + i * s.dilH;
      rows[i] = ih >= 0 && ih < s.h ? px + ih * s.w : zeros;
    }
    float* out = py + oh * s.outW;
    auto edge = [&](int64_t ow) {
      float acc = b;
      for (int64_t i = 0; i < kh; i++)
        for (int64_t j = 0; j < kw; j++) {
          int64_t iw = ow * sw - pw_ + j * dw;
          if (iw >= 0 && iw < s.w) acc += pw[i * kw + j] * rows[i][iw];
        }
      out[ow] = std::min(std::max(acc, clipLo), clipHi);
    };
    for (int64_t ow = 0; ow < lo; ow++) edge(ow);
    if (sw == 1) {
#pragma omp simd
      for (int64_t ow = lo; ow < hi; ow++) {
        float acc = b;
        for (int64_t i = 0; i < kh; i++)
          for (int64_t j = 0; j < kw; j++) acc += pw[i * kw + j] * rows[i][ow - pw_ + j * dw];
        out[ow] = std::min(std::max(acc, clipLo), clipHi);
      }
    } else {
      for (int64_t ow = lo; ow < hi; ow++) {
        float acc = b;
        for (int64_t i = 0; i < kh; i++)
          for (int64_t j = 0; j < kw; j++) acc += pw[i * kw + j] * rows[i][ow * sw - pw_ + j * dw];
        out[ow] = std::min(std::max(acc, clipLo), clipHi);
      }
    }
    for (int64_t ow = std::max(hi, lo); ow < s.outW; ow++) edge(ow);
  }
}

// y (B, C, OH, OW) = depthwise(x (B, C, H, W), w (C, 1, KH, KW)) + bias (C)
void depthwise_direct(float* y, const float* x, const float* w, const float* bias, const ConvShape& s,
                      float clipLo = -std::numeric_limits<float>::infinity(), float clipHi = std::numeric_limits<float>::infinity()) {
  std::vector<float> zeros(static_cast<size_t>(s.w), 0.f);
  auto plane = s.kh == 3 && s.kw == 3 ? depthwise_plane<3> : s.kh == 5 && s.kw == 5 ? depthwise_plane<5> : depthwise_plane<0>;
  planes_parallel(s.n * s.cOut, [&](int64_t pl) {
    int64_t c = pl % s.cOut;
    plane(y + pl * s.outH * s.outW, x + pl * s.h * s.w, w + c * s.kh * s.kw, bias ? bias[c] : 0.f, s, zeros.data(), clipLo, clipHi);
  });
}

// Small planes (W ≤ 32: a 14 × 14 or 7 × 7 map) leave a row too short for vectors along W, and
// the edge columns dominate. There, 16 channels at a time are copied into a zero-padded,
// channel-interleaved tile (row, column, 16 lanes) in the thread's cache, every output element is
// KH·KW FMAs across the 16 channels without a bounds check, and the results go back to their
// planes, clamped on the way.
constexpr int64_t kLanes = 16;

bool lanes_fit(const ConvShape& s) { return s.w <= 32 && s.kh <= 7 && s.kw <= 7; }

void depthwise_lanes(float* y, const float* x, const float* w, const float* bias, const ConvShape& s, float clipLo, float clipHi) {
  const int64_t groups = (s.cOut + kLanes - 1) / kLanes;
  // The padded input extent the outputs read.
  const int64_t hp = (s.outH - 1) * s.strideH + (s.kh - 1) * s.dilH + 1, wp = (s.outW - 1) * s.strideW + (s.kw - 1) * s.dilW + 1;
  const int64_t taps = s.kh * s.kw;
#pragma omp parallel for schedule(static)
  for (int64_t task = 0; task < s.n * groups; task++) {
    static thread_local std::vector<float> buffer;
    const size_t need = static_cast<size_t>((hp * wp + s.outH * s.outW + taps + 1) * kLanes);
    if (buffer.size() < need) buffer.resize(need);
    float* tile = buffer.data();
    float* out = tile + hp * wp * kLanes;
    float* wt = out + s.outH * s.outW * kLanes;
    float* bt = wt + taps * kLanes;
    const int64_t b = task / groups, c0 = (task % groups) * kLanes, nc = std::min(kLanes, s.cOut - c0);
    std::fill(tile, tile + hp * wp * kLanes, 0.f);
    for (int64_t l = 0; l < kLanes; l++) {
      bt[l] = l < nc && bias ? bias[c0 + l] : 0.f;
      for (int64_t t = 0; t < taps; t++) wt[t * kLanes + l] = l < nc ? w[(c0 + l) * taps + t] : 0.f;
    }
    for (int64_t l = 0; l < nc; l++) {
      const float* plane = x + (b * s.cIn + c0 + l) * s.h * s.w;
      for (int64_t ih = 0; ih < s.h; ih++) {
        const int64_t r = ih + s.padH;
        if (r < 0 || r >= hp) continue;
        for (int64_t iw = 0; iw < s.w; iw++) {
          const int64_t q = iw + s.padW;
          if (q >= 0 && q < wp) tile[(r * wp + q) * kLanes + l] = plane[ih * s.w + iw];
        }
      }
    }
    for (int64_t oh = 0; oh < s.outH; oh++)
      for (int64_t ow = 0; ow < s.outW; ow++) {
        float acc[kLanes];
#pragma omp simd
        for (int64_t l = 0; l < kLanes; l++) acc[l] = bt[l];
        for (int64_t i = 0; i < s.kh; i++)
          for (int64_t j = 0; j < s.kw; j++) {
            const float* src = tile + ((oh * s.strideH + i * s.dilH) * wp + ow * s.strideW + j * s.dilW) * kLanes;
            const float* wv = wt + (i * s.kw + j) * kLanes;
#pragma omp simd
            for (int64_t l = 0; l < kLanes; l++) acc[l] += wv[l] * src[l];
          }
        float* o = out + (oh * s.outW + ow) * kLanes;
#pragma omp simd
        for (int64_t l = 0; l < kLanes; l++) o[l] = std::min(std::max(acc[l], clipLo), clipHi);
      }
    const int64_t plane = s.outH * s.outW;
    for (int64_t l = 0; l < nc; l++) {
      float* py = y + (b * s.cOut + c0 + l) * plane;
      for (int64_t p = 0; p < plane; p++) py[p] = out[p * kLanes + l];
    }
  }
}

}  // namespace

// Channels-last: every tap is one vector FMA along the channels, contiguous in both x and y.
// Rows of output (image, oh) are the parallel tasks; the weights are first laid out (tap, C).
void depthwise_forward_nhwc(float* y, const float* x, const float* w, const float* bias, const ConvShape& s, float lo, float hi) {
  const int64_t C = s.cOut, taps = s.kh * s.kw;
  std::vector<float> wt(static_cast<size_t>(taps * C));
  for (int64_t c = 0; c < C; c++)
    for (int64_t t = 0; t < taps; t++) wt[t * C + c] = w[c * taps + t];
  const float* W = wt.data();
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < s.n * s.outH; r++) {
    const int64_t b = r / s.outH, oh = r % s.outH;
    for (int64_t ow = 0; ow < s.outW; ow++) {
      float* __restrict out = y + ((b * s.outH + oh) * s.outW + ow) * C;
      if (bias) std::copy(bias, bias + C, out);
      else std::fill(out, out + C, 0.f);
      for (int64_t i = 0; i < s.kh; i++) {
        const int64_t ih = oh * s.strideH - s.padH + i * s.dilH;
        if (ih < 0 || ih >= s.h) continue;
        for (int64_t j = 0; j < s.kw; j++) {
          const int64_t iw = ow * s.strideW - s.padW + j * s.dilW;
          if (iw < 0 || iw >= s.w) continue;
          const float* __restrict src = x + ((b * s.h + ih) * s.w + iw) * C;
          const float* __restrict wv = W + (i * s.kw + j) * C;
#pragma omp simd
          for (int64_t c = 0; c < C; c++) out[c] += wv[c] * src[c];
        }
      }
#pragma omp simd
      for (int64_t c = 0; c < C; c++) out[c] = std::min(std::max(out[c], lo), hi);
    }
  }
}

bool is_depthwise(const ConvShape& s) { return s.groups == s.cIn && s.cOut == s.cIn && s.groups > 1; }

void depthwise_forward(float* y, const float* x, const float* w, const float* bias, const ConvShape& s, float lo, float hi) {
  if (lanes_fit(s)) return depthwise_lanes(y, x, w, bias, s, lo, hi);
  if (s.kh <= 5 && s.kw <= 5) return depthwise_direct(y, x, w, bias, s, lo, hi);
  depthwise_forward_rows(y, x, w, bias, s, lo, hi);
}

// gx (B, C, H, W) from gy (B, C, OH, OW). With stride 1 this is the forward kernel on gy with the
// taps flipped and padding (K − 1)·dil − pad; otherwise each output scatters into its window.
void depthwise_backward_data(float* gx, const float* gy, const float* w, const ConvShape& s) {
  int64_t padH2 = (s.kh - 1) * s.dilH - s.padH, padW2 = (s.kw - 1) * s.dilW - s.padW;
  if (s.strideH == 1 && s.strideW == 1 && padH2 >= 0 && padW2 >= 0 && s.kh <= 5 && s.kw <= 5) {
    std::vector<float> flipped(static_cast<size_t>(s.cIn * s.kh * s.kw));
    int64_t taps = s.kh * s.kw;
    for (int64_t c = 0; c < s.cIn; c++)
      for (int64_t k = 0; k < taps; k++) flipped[c * taps + k] = w[c * taps + (taps - 1 - k)];
    ConvShape t = s;
    t.h = s.outH;
    t.w = s.outW;
    t.outH = s.h;
    t.outW = s.w;
    t.padH = padH2;
    t.padW = padW2;
    return depthwise_direct(gx, gy, flipped.data(), nullptr, t);
  }
  planes_parallel(s.n * s.cIn, [&](int64_t pl) {
    int64_t c = pl % s.cIn;
    const float* pg = gy + pl * s.outH * s.outW;
    const float* pw = w + c * s.kh * s.kw;
    float* px = gx + pl * s.h * s.w;
    std::fill(px, px + s.h * s.w, 0.f);
    for (int64_t oh = 0; oh < s.outH; oh++) {
      const float* row = pg + oh * s.outW;
      for (int64_t i = 0; i < s.kh; i++) {
        int64_t ih = oh * s.strideH - s.padH + i * s.dilH;
        if (ih < 0 || ih >= s.h) continue;
        float* out = px + ih * s.w;
        for (int64_t j = 0; j < s.kw; j++) {
          int64_t lo, hi;
          valid_cols(s, j, lo, hi);
          float wv = pw[i * s.kw + j];
          float* dst = out + j * s.dilW - s.padW;
          if (s.strideW == 1) {
#pragma omp simd
            for (int64_t ow = lo; ow < hi; ow++) dst[ow] += wv * row[ow];
          } else {
            for (int64_t ow = lo; ow < hi; ow++) dst[ow * s.strideW] += wv * row[ow];
          }
        }
      }
    }
  });
}

// gw (C, 1, KH, KW) and gb (C): threads own channels, so no reduction across threads is needed.
void depthwise_backward_weight(float* gw, float* gb, const float* x, const float* gy, const ConvShape& s) {
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < s.cOut; c++) {
    std::vector<double> acc(static_cast<size_t>(s.kh * s.kw), 0.0);
    double bsum = 0;
    for (int64_t b = 0; b < s.n; b++) {
      const float* px = x + (b * s.cIn + c) * s.h * s.w;
      const float* pg = gy + (b * s.cOut + c) * s.outH * s.outW;
      for (int64_t oh = 0; oh < s.outH; oh++) {
        const float* row = pg + oh * s.outW;
        if (gb) {
          float part = 0;
#pragma omp simd reduction(+ : part)
          for (int64_t ow = 0; ow < s.outW; ow++) part += row[ow];
          bsum += part;
        }
        for (int64_t i = 0; i < s.kh; i++) {
          int64_t ih = oh * s.strideH - s.padH + i * s.dilH;
          if (ih < 0 || ih >= s.h) continue;
          const float* in = px + ih * s.w;
          for (int64_t j = 0; j < s.kw; j++) {
            int64_t lo, hi;
            valid_cols(s, j, lo, hi);
            const float* src = in + j * s.dilW - s.padW;
            float part = 0;
            if (s.strideW == 1) {
#pragma omp simd reduction(+ : part)
              for (int64_t ow = lo; ow < hi; ow++) part += row[ow] * src[ow];
            } else {
              for (int64_t ow = lo; ow < hi; ow++) part += row[ow] * src[ow * s.strideW];
            }
            acc[i * s.kw + j] += part;
          }
        }
      }
    }
    for (int64_t k = 0; k < s.kh * s.kw; k++) gw[c * s.kh * s.kw + k] = static_cast<float>(acc[k]);
    if (gb) gb[c] = static_cast<float>(bsum);
  }
}

}  // namespace graft
