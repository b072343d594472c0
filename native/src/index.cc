// Gather along an axis (indexSelect) and its scatter-add gradient (indexAdd).
#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <string>

#include "kernels.h"
#include "parallel.h"

namespace graft {
namespace {

void check_indices(const int32_t* idx, int64_t count, int64_t len) {
  for (int64_t c = 0; c < count; c++)
    if (idx[c] < 0 || idx[c] >= len)
      throw std::out_of_range("index " + std::to_string(idx[c]) + " at position " + std::to_string(c) + " is outside [0, " + std::to_string(len) + ")");
}

}  // namespace

// out (outer, count, inner) = x (outer, len, inner) at idx (count)
template <typename T>
void index_select(T* out, const T* x, const int32_t* idx, int64_t outer, int64_t len, int64_t inner, int64_t count) {
  check_indices(idx, count, len);
  parallel_items(outer * count, outer * count * inner, [=](int64_t r) {
    int64_t o = r / count, c = r % count;
    std::memcpy(out + r * inner, x + (o * len + idx[c]) * inner, static_cast<size_t>(inner) * sizeof(T));
  });
}

template void index_select<float>(float*, const float*, const int32_t*, int64_t, int64_t, int64_t, int64_t);
template void index_select<int32_t>(int32_t*, const int32_t*, const int32_t*, int64_t, int64_t, int64_t, int64_t);

// gx (outer, len, inner) += gy (outer, count, inner) at idx (count). Repeated indices add up, so
// threads own disjoint (outer, column block) pieces rather than positions of idx.
void index_add(float* gx, const float* gy, const int32_t* idx, int64_t outer, int64_t len, int64_t inner, int64_t count) {
  check_indices(idx, count, len);
  constexpr int64_t kColumns = 64;
  int64_t blocks = (inner + kColumns - 1) / kColumns;
  parallel_items(outer * blocks, outer * count * inner, [=](int64_t t) {
    int64_t o = t / blocks, lo = (t % blocks) * kColumns, hi = std::min(inner, lo + kColumns);
    for (int64_t c = 0; c < count; c++) {
      float* dst = gx + (o * len + idx[c]) * inner;
      const float* src = gy + (o * count + c) * inner;
#pragma omp simd
      for (int64_t i = lo; i < hi; i++) dst[i] += src[i];
    }
  });
}

}  // namespace graft
