// OpenMP helpers shared by the hand-written kernels. Waking the thread team costs a few
// microseconds, so work below kParallelMin elements runs on the calling thread; inside an
// enclosing parallel region (attention's per-thread tiles) the inner regions run serially.
#pragma once
#include <omp.h>

#include <algorithm>
#include <cstdint>

namespace graft {

constexpr int64_t kParallelMin = 1 << 15;

// f(lo, hi) over contiguous per-thread chunks of [0, n); `work` is the total element count.
template <typename F>
void parallel_chunks(int64_t n, int64_t work, F f) {
  if (n <= 1 || work < kParallelMin || omp_in_parallel()) {
    if (n > 0) f(int64_t{0}, n);
    return;
  }
#pragma omp parallel
  {
    int64_t nt = omp_get_num_threads(), t = omp_get_thread_num();
    int64_t chunk = (n + nt - 1) / nt, lo = t * chunk, hi = std::min(n, lo + chunk);
    if (lo < hi) f(lo, hi);
  }
}

// f(i) for every item of [0, n), items split statically across threads.
template <typename F>
void parallel_items(int64_t n, int64_t work, F f) {
  parallel_chunks(n, work, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; i++) f(i);
  });
}

}  // namespace graft
