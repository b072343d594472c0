// GEMM as a cached oneDNN matmul primitive, for kernels that run matrix products themselves
// (attention executes them from OpenMP worker threads, with per-thread scratchpads).
#pragma once
#include "onednn.h"

namespace graft {

// c[b] (M, N) = op(a[b]) · op(b[b]) (+ c[b] when beta = 1) (+ bias (N) on every row when `bias`),
// as matmul() in kernels.h.
struct GemmShape {
  int64_t batch, m, n, k;
  bool transA, transB;
  int64_t strideA, strideB, strideC;
  int beta;
  bool bias = false;
  // Row strides of b and c when they are column slices of wider matrices (0: dense rows).
  int64_t ldb = 0, ldc = 0;
  // Each output clamped to [lo, hi] as it is stored (an eltwise post-op after the bias).
  bool clip = false;
  float lo = 0, hi = 0;
  // Row stride of a when its rows are spaced wider than k (m when transposed); 0: dense. With
  // transB, ldb is the row stride of b's (N, K) storage.
  int64_t lda = 0;
};

// userScratchpad: the caller passes scratchpad memory of prim.scratchpad bytes to gemm_execute,
// which makes concurrent execution of the one primitive from several threads safe.
const onednn::Primitive& gemm_primitive(const GemmShape& g, bool userScratchpad);
void gemm_execute(const onednn::Primitive& p, dnnl::stream& s, float* c, const float* a, const float* b, void* scratchpad, const float* bias = nullptr);

}  // namespace graft
