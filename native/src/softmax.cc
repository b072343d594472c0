// Softmax and log-softmax over rows. Large softmax forwards run on oneDNN's primitive; the rest
// (log-softmax, small inputs, every backward) on the kernels below: one pass for the max, one
// that exponentiates and sums, one that scales.
#include <cmath>

#include "kernels.h"
#include "onednn.h"
#include "parallel.h"
#include "vmath.h"

namespace graft {

namespace {

const onednn::Primitive& softmax_primitive(int64_t rows, int64_t n) {
  using namespace onednn;
  return cached(key("softmax", rows, n), [&] {
    memory::desc md({rows, n}, dt::f32, tag::ab);
    dnnl::softmax_forward::primitive_desc fwd(dnnl::softmax_forward::desc(dnnl::prop_kind::forward_training, md, 1), engine());
    return Primitive{dnnl::softmax_forward(fwd), {md}};
  });
}

// oneDNN's forward beat the kernel below on attention-sized inputs (9456×197: ~620 vs ~1040 µs);
// on small inputs its call costs more (8×1000: 12 vs 7 µs), and its backward was never faster.
bool use_onednn(int64_t rows, int64_t n, bool log) { return !log && rows * n >= (int64_t{1} << 16) && !omp_in_parallel(); }

}  // namespace

// x, y (rows, N)
void softmax_forward(float* y, const float* x, int64_t rows, int64_t n, bool log) {
  if (use_onednn(rows, n, log)) {
    const onednn::Primitive& p = softmax_primitive(rows, n);
    dnnl::stream& s = onednn::stream();
    p.prim.execute(s, {{DNNL_ARG_SRC, onednn::mem(p.mds[0], x)}, {DNNL_ARG_DST, onednn::mem(p.mds[0], y)}});
    s.wait();
    return;
  }
  parallel_items(rows, rows * n, [=](int64_t r) {
    const float* __restrict px = x + r * n;
    float* __restrict py = y + r * n;
    const float mx = vmax(px, n);
    if (log) {
      const float lse = mx + std::log(vsum(n, [px, mx](int64_t i) { return vexp(px[i] - mx); }));
#pragma omp simd
      for (int64_t i = 0; i < n; i++) py[i] = px[i] - lse;
      return;
    }
    const float sum = vsum(n, [px, py, mx](int64_t i) {
      float e = vexp(px[i] - mx);
      py[i] = e;
      return e;
    });
    const float inv = 1.f / sum;
#pragma omp simd
    for (int64_t i = 0; i < n; i++) py[i] *= inv;
  });
}

// softmax: gx = y · (gy − Σ gy·y); log-softmax: gx = gy − exp(y) · Σ gy
void softmax_backward(float* gx, const float* y, const float* gy, int64_t rows, int64_t n, bool log) {
  parallel_items(rows, rows * n, [=](int64_t r) {
    const float* py = y + r * n;
    const float* pg = gy + r * n;
    float* pgx = gx + r * n;
    if (log) {
      const float sum = vsum(n, [pg](int64_t i) { return pg[i]; });
#pragma omp simd
      for (int64_t i = 0; i < n; i++) pgx[i] = pg[i] - vexp(py[i]) * sum;
      return;
    }
    const float dot = vsum(n, [pg, py](int64_t i) { return pg[i] * py[i]; });
#pragma omp simd
    for (int64_t i = 0; i < n; i++) pgx[i] = py[i] * (pg[i] - dot);
  });
}

}  // namespace graft
