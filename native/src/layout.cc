// Strided copies (with float ↔ int32 casts) and fills. A copy whose destination rows run along
// a source column (a transpose) goes tile by tile, so each source cache line is read once.
#include <cmath>

#include "kernels.h"
#include "strided.h"

namespace graft {
namespace {

constexpr int64_t kTile = 32;

template <typename S, typename D>
inline D cast(S v) {
  return static_cast<D>(v);
}

// As JavaScript stores a number into an Int32Array after truncation: NaN and ±∞ become 0,
// values outside the int32 range wrap modulo 2³².
template <>
inline int32_t cast<float, int32_t>(float v) {
  if (v >= -2147483648.f && v < 2147483648.f) return static_cast<int32_t>(v);
  if (v != v || std::isinf(v)) return 0;
  double t = std::fmod(std::trunc(static_cast<double>(v)), 4294967296.0);
  return static_cast<int32_t>(static_cast<uint32_t>(t < 0 ? t + 4294967296.0 : t));
}

// dst (rows, cols) with unit column stride ← src with unit row stride, for each outer index.
template <typename S, typename D>
void copy_transposed(D* dst, const S* src, const Walk<2>& w) {
  size_t r = w.shape.size();
  int64_t rows = w.shape[r - 2], cols = w.shape[r - 1];
  int64_t dRow = w.strides[0][r - 2], sCol = w.strides[1][r - 1];
  int64_t outer = 1;
  for (size_t d = 0; d + 2 < r; d++) outer *= w.shape[d];
  int64_t rowTiles = (rows + kTile - 1) / kTile, colTiles = (cols + kTile - 1) / kTile;
  Walk<2> outerWalk;  // the walk of the outer axes alone, to find each outer index's offsets
  outerWalk.shape.assign(w.shape.begin(), w.shape.end() - 1);
  for (size_t o = 0; o < 2; o++) outerWalk.strides[o].assign(w.strides[o].begin(), w.strides[o].end() - 1), outerWalk.offset[o] = w.offset[o];
  parallel_items(outer * rowTiles, outer * rows * cols, [&](int64_t t) {
    int64_t o = t / rowTiles, i0 = (t % rowTiles) * kTile, i1 = std::min(rows, i0 + kTile);
    int64_t off[2];
    row_offsets(outerWalk, o, off);  // offsets at (o, 0, 0)
    for (int64_t jt = 0; jt < colTiles; jt++) {
      int64_t j0 = jt * kTile, j1 = std::min(cols, j0 + kTile);
      for (int64_t i = i0; i < i1; i++) {
        D* pd = dst + off[0] + i * dRow;
        const S* ps = src + off[1] + i;
        for (int64_t j = j0; j < j1; j++) pd[j] = cast<S, D>(ps[j * sCol]);
      }
    }
  });
}

}  // namespace

template <typename S, typename D>
void copy_strided(D* dst, const View& vd, const S* src, const View& vs) {
  Walk<2> w = collapse<2>(vd.shape, {&vd, &vs});
  size_t r = w.shape.size();
  int64_t sd = w.strides[0].back(), ss = w.strides[1].back();
  if (r >= 2 && sd == 1 && ss != 1 && w.strides[1][r - 2] == 1 && w.shape[r - 2] >= 8 && w.inner() >= 8) return copy_transposed(dst, src, w);
  for_rows(w, [=](int64_t, const int64_t* off, int64_t lo, int64_t hi) {
    D* __restrict pd = dst + off[0];
    const S* __restrict ps = src + off[1];
    if (sd == 1 && ss == 1) {
#pragma omp simd
      for (int64_t i = lo; i < hi; i++) pd[i] = cast<S, D>(ps[i]);
    } else if (sd == 1 && ss == 0) {
      const D v = cast<S, D>(ps[0]);
#pragma omp simd
      for (int64_t i = lo; i < hi; i++) pd[i] = v;
    } else {
      for (int64_t i = lo; i < hi; i++) pd[i * sd] = cast<S, D>(ps[i * ss]);
    }
  });
}

template void copy_strided<float, float>(float*, const View&, const float*, const View&);
template void copy_strided<int32_t, int32_t>(int32_t*, const View&, const int32_t*, const View&);
template void copy_strided<int32_t, float>(float*, const View&, const int32_t*, const View&);
template void copy_strided<float, int32_t>(int32_t*, const View&, const float*, const View&);

void fill_strided(float* dst, const View& vd, float value) {
  Walk<1> w = collapse<1>(vd.shape, {&vd});
  int64_t sd = w.strides[0].back();
  for_rows(w, [=](int64_t, const int64_t* off, int64_t lo, int64_t hi) {
    float* pd = dst + off[0];
    if (sd == 1) {
#pragma omp simd
      for (int64_t i = lo; i < hi; i++) pd[i] = value;
    } else {
      for (int64_t i = lo; i < hi; i++) pd[i * sd] = value;
    }
  });
}

}  // namespace graft
