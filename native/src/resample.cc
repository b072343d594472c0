// Bilinear and bicubic resampling of NCHW planes with PyTorch's source-index rules
// (align_corners, an explicit scale factor, the bicubic kernel with A = −0.75).
#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels.h"
#include "parallel.h"

namespace graft {
namespace {

struct Taps {
  int64_t idx[4];
  double wt[4];
  int count;
};

constexpr double kA = -0.75;
double cubic1(double x) { return ((kA + 2) * x - (kA + 3)) * x * x + 1; }
double cubic2(double x) { return ((kA * x - 5 * kA) * x + 8 * kA) * x - 4 * kA; }

// The input taps and weights of output coordinate `o` along an axis of `in` → `out` elements.
Taps taps(int64_t o, int64_t in, int64_t out, const InterpShape& p, double scale) {
  double src;
  if (p.alignCorners) {
    src = out > 1 ? static_cast<double>(o) * (in - 1) / (out - 1) : 0.0;
  } else {
    double s = scale > 0 ? scale : static_cast<double>(in) / out;
    src = s * (o + 0.5) - 0.5;
    if (!p.bicubic && src < 0) src = 0;
  }
  int64_t i0 = static_cast<int64_t>(std::floor(src));
  double t = src - i0;
  auto clampI = [in](int64_t i) { return std::min(std::max<int64_t>(i, 0), in - 1); };
  if (!p.bicubic) {
    int64_t lo = std::min(i0, in - 1), hi = std::min(lo + 1, in - 1);
    return {{lo, hi, 0, 0}, {1 - t, t, 0, 0}, 2};
  }
  return {{clampI(i0 - 1), clampI(i0), clampI(i0 + 1), clampI(i0 + 2)}, {cubic2(t + 1), cubic1(t), cubic1(1 - t), cubic2(2 - t)}, 4};
}

std::vector<Taps> axis_taps(int64_t in, int64_t out, const InterpShape& p, double scale) {
  std::vector<Taps> t(static_cast<size_t>(out));
  for (int64_t o = 0; o < out; o++) t[o] = taps(o, in, out, p, scale);
  return t;
}

}  // namespace

// y (B, C, OH, OW) from x (B, C, H, W)
void interpolate_forward(float* y, const float* x, const InterpShape& p) {
  const auto rows = axis_taps(p.h, p.outH, p, p.scaleH), cols = axis_taps(p.w, p.outW, p, p.scaleW);
  parallel_items(p.n * p.c, p.n * p.c * p.outH * p.outW * 4, [&](int64_t pl) {
    const float* px = x + pl * p.h * p.w;
    float* py = y + pl * p.outH * p.outW;
    for (int64_t oh = 0; oh < p.outH; oh++) {
      const Taps& r = rows[oh];
      for (int64_t ow = 0; ow < p.outW; ow++) {
        const Taps& c = cols[ow];
        double acc = 0;
        for (int a = 0; a < r.count; a++)
          for (int b = 0; b < c.count; b++) acc += r.wt[a] * c.wt[b] * px[r.idx[a] * p.w + c.idx[b]];
        py[oh * p.outW + ow] = static_cast<float>(acc);
      }
    }
  });
}

// gx (B, C, H, W), overwritten, from gy (B, C, OH, OW)
void interpolate_backward(float* gx, const float* gy, const InterpShape& p) {
  const auto rows = axis_taps(p.h, p.outH, p, p.scaleH), cols = axis_taps(p.w, p.outW, p, p.scaleW);
  parallel_items(p.n * p.c, p.n * p.c * p.outH * p.outW * 4, [&](int64_t pl) {
    float* pgx = gx + pl * p.h * p.w;
    const float* pgy = gy + pl * p.outH * p.outW;
    std::fill(pgx, pgx + p.h * p.w, 0.f);
    for (int64_t oh = 0; oh < p.outH; oh++) {
      const Taps& r = rows[oh];
      for (int64_t ow = 0; ow < p.outW; ow++) {
        const Taps& c = cols[ow];
        const double g = pgy[oh * p.outW + ow];
        for (int a = 0; a < r.count; a++)
          for (int b = 0; b < c.count; b++) pgx[r.idx[a] * p.w + c.idx[b]] += static_cast<float>(r.wt[a] * c.wt[b] * g);
      }
    }
  });
}

}  // namespace graft
