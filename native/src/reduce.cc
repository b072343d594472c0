// Sum, max and min over the middle axis of x (outer, len, inner), with the first arg-max/min.
#include <algorithm>
#include <vector>

#include "kernels.h"
#include "parallel.h"
#include "vmath.h"

namespace graft {
namespace {

// NaN wins, as in PyTorch; otherwise the first strict improvement.
inline bool better(float v, float best, bool isMax) { return (isMax ? v > best : v < best) || (v != v && best == best); }

// out (inner) over columns [lo, hi) of x (len, inner), walking rows contiguously.
void reduce_columns(float* out, int32_t* arg, const float* x, int64_t len, int64_t inner, int64_t lo, int64_t hi, Reduce op) {
  for (int64_t i = lo; i < hi; i++) {
    out[i] = x[i];
    if (arg) arg[i] = 0;
  }
  bool isMax = op == Reduce::Max;
  for (int64_t l = 1; l < len; l++) {
    const float* row = x + l * inner;
    if (op == Reduce::Sum) {
#pragma omp simd
      for (int64_t i = lo; i < hi; i++) out[i] += row[i];
    } else {
      for (int64_t i = lo; i < hi; i++)
        if (better(row[i], out[i], isMax)) {
          out[i] = row[i];
          if (arg) arg[i] = static_cast<int32_t>(l);
        }
    }
  }
}

}  // namespace

void reduce_forward(float* out, int32_t* arg, const float* x, int64_t outer, int64_t len, int64_t inner, Reduce op) {
  if (outer <= 0 || inner <= 0) return;
  if (len <= 0) {
    // Only a sum has a value over an empty axis.
    std::fill(out, out + outer * inner, 0.f);
    return;
  }
  const bool isMax = op == Reduce::Max;
  if (outer == 1 && inner > 1 && op == Reduce::Sum && len >= 64 && inner <= (1 << 14) && len * inner >= kParallelMin && !omp_in_parallel()) {
    // Column sums of one matrix (bias gradients): each thread streams a block of whole rows into
    // its own accumulator row (in L1/L2), eight rows per pass over it, then the accumulators are added.
    const int threads = omp_get_max_threads();
    std::vector<float> partial(static_cast<size_t>(threads) * inner, 0.f);
#pragma omp parallel num_threads(threads)
    {
      const int t = omp_get_thread_num(), nt = omp_get_num_threads();
      const int64_t chunk = (len + nt - 1) / nt, lo = t * chunk, hi = std::min(len, lo + chunk);
      float* __restrict acc = partial.data() + static_cast<size_t>(t) * inner;
      int64_t l = lo;
      for (; l + 8 <= hi; l += 8) {
        const float* __restrict r0 = x + l * inner;
        const float* __restrict r1 = r0 + inner;
        const float* __restrict r2 = r1 + inner;
        const float* __restrict r3 = r2 + inner;
        const float* __restrict r4 = r3 + inner;
        const float* __restrict r5 = r4 + inner;
        const float* __restrict r6 = r5 + inner;
        const float* __restrict r7 = r6 + inner;
#pragma omp simd
        for (int64_t i = 0; i < inner; i++) acc[i] += ((r0[i] + r1[i]) + (r2[i] + r3[i])) + ((r4[i] + r5[i]) + (r6[i] + r7[i]));
      }
      for (; l + 4 <= hi; l += 4) {
        const float* __restrict r0 = x + l * inner;
        const float* __restrict r1 = r0 + inner;
        const float* __restrict r2 = r1 + inner;
        const float* __restrict r3 = r2 + inner;
#pragma omp simd
        for (int64_t i = 0; i < inner; i++) acc[i] += (r0[i] + r1[i]) + (r2[i] + r3[i]);
      }
      for (; l < hi; l++) {
        const float* __restrict row = x + l * inner;
#pragma omp simd
        for (int64_t i = 0; i < inner; i++) acc[i] += row[i];
      }
    }
    for (int64_t i = 0; i < inner; i++) {
      float v = 0;
      for (int t = 0; t < threads; t++) v += partial[static_cast<size_t>(t) * inner + i];
      out[i] = v;
    }
    return;
  }
  if (outer == 1 && inner > 1) {
    // The rows of one matrix: threads own blocks of 16 columns.
    int64_t blocks = (inner + 15) / 16;
    parallel_chunks(blocks, len * inner, [&](int64_t lo, int64_t hi) { reduce_columns(out, arg, x, len, inner, lo * 16, std::min(inner, hi * 16), op); });
    return;
  }
  if (outer == 1 && op == Reduce::Sum && len >= kParallelMin) {
    double total = 0;
#pragma omp parallel for reduction(+ : total)
    for (int64_t l = 0; l < len; l += 4096) total += vsum(std::min<int64_t>(4096, len - l), [x, l](int64_t i) { return x[l + i]; });
    out[0] = static_cast<float>(total);
    return;
  }
  parallel_items(outer, outer * len * inner, [&](int64_t o) {
    const float* px = x + o * len * inner;
    float* po = out + o * inner;
    int32_t* pa = arg ? arg + o * inner : nullptr;
    if (inner == 1) {
      if (op == Reduce::Sum) {
        po[0] = vsum(len, [px](int64_t i) { return px[i]; });
        return;
      }
      float best = px[0];
      int32_t at = 0;
      for (int64_t l = 1; l < len; l++)
        if (better(px[l], best, isMax)) best = px[l], at = static_cast<int32_t>(l);
      po[0] = best;
      if (pa) pa[0] = at;
      return;
    }
    reduce_columns(po, pa, px, len, inner, 0, inner, op);
  });
}

}  // namespace graft
