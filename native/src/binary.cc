// Binary elementwise ops over broadcast views, and the select `where`. The inner loop is chosen
// once per call from the operands' innermost strides: both contiguous, a scalar on either side
// (bias or row-vector broadcast after collapsing), or a general strided loop.
#include <cmath>

#include "kernels.h"
#include "strided.h"

namespace graft {
namespace {

template <typename F>
void binary_walk(float* out, const float* a, const View& va, const float* b, const View& vb, const std::vector<int64_t>& shape, F f) {
  View vo;
  vo.shape = shape;
  vo.strides.resize(shape.size());
  for (int64_t d = static_cast<int64_t>(shape.size()) - 1, s = 1; d >= 0; d--) vo.strides[d] = s, s *= shape[d];
  Walk<3> w = collapse<3>(shape, {&vo, &va, &vb});
  const int64_t sa = w.strides[1].back(), sb = w.strides[2].back();
  for_rows(w, [out, a, b, sa, sb, f](int64_t, const int64_t* off, int64_t lo, int64_t hi) {
    float* __restrict po = out + off[0];
    const float* __restrict pa = a + off[1];
    const float* __restrict pb = b + off[2];
    const F fn = f;
    if (sa == 1 && sb == 1) {
#pragma omp simd
      for (int64_t i = lo; i < hi; i++) po[i] = fn(pa[i], pb[i]);
    } else if (sa == 1 && sb == 0) {
      const float bv = pb[0];
#pragma omp simd
      for (int64_t i = lo; i < hi; i++) po[i] = fn(pa[i], bv);
    } else if (sa == 0 && sb == 1) {
      const float av = pa[0];
#pragma omp simd
      for (int64_t i = lo; i < hi; i++) po[i] = fn(av, pb[i]);
    } else {
      for (int64_t i = lo; i < hi; i++) po[i] = fn(pa[i * sa], pb[i * sb]);
    }
  });
}

}  // namespace

void binary_forward(float* out, const float* a, const View& va, const float* b, const View& vb, const std::vector<int64_t>& shape, Binary op) {
  switch (op) {
    case Binary::Add: return binary_walk(out, a, va, b, vb, shape, [](float x, float y) { return x + y; });
    case Binary::Sub: return binary_walk(out, a, va, b, vb, shape, [](float x, float y) { return x - y; });
    case Binary::Mul: return binary_walk(out, a, va, b, vb, shape, [](float x, float y) { return x * y; });
    case Binary::Div: return binary_walk(out, a, va, b, vb, shape, [](float x, float y) { return x / y; });
    // NaN propagates, as in PyTorch.
    case Binary::Maximum: return binary_walk(out, a, va, b, vb, shape, [](float x, float y) { return x >= y || x != x ? x : y; });
    case Binary::Minimum: return binary_walk(out, a, va, b, vb, shape, [](float x, float y) { return x <= y || x != x ? x : y; });
    case Binary::Pow: return binary_walk(out, a, va, b, vb, shape, [](float x, float y) { return std::pow(x, y); });
    case Binary::Eq: return binary_walk(out, a, va, b, vb, shape, [](float x, float y) { return x == y ? 1.f : 0.f; });
    case Binary::Lt: return binary_walk(out, a, va, b, vb, shape, [](float x, float y) { return x < y ? 1.f : 0.f; });
    case Binary::Gt: return binary_walk(out, a, va, b, vb, shape, [](float x, float y) { return x > y ? 1.f : 0.f; });
    case Binary::Le: return binary_walk(out, a, va, b, vb, shape, [](float x, float y) { return x <= y ? 1.f : 0.f; });
    case Binary::Ge: return binary_walk(out, a, va, b, vb, shape, [](float x, float y) { return x >= y ? 1.f : 0.f; });
  }
}

void where_forward(float* out, const float* c, const View& vc, const float* a, const View& va, const float* b, const View& vb, const std::vector<int64_t>& shape) {
  View vo;
  vo.shape = shape;
  vo.strides.resize(shape.size());
  for (int64_t d = static_cast<int64_t>(shape.size()) - 1, s = 1; d >= 0; d--) vo.strides[d] = s, s *= shape[d];
  Walk<4> w = collapse<4>(shape, {&vo, &vc, &va, &vb});
  const int64_t sc = w.strides[1].back(), sa = w.strides[2].back(), sb = w.strides[3].back();
  for_rows(w, [=](int64_t, const int64_t* off, int64_t lo, int64_t hi) {
    float* __restrict po = out + off[0];
    const float* pc = c + off[1];
    const float* pa = a + off[2];
    const float* pb = b + off[3];
    if (sc == 1 && sa == 1 && sb == 1) {
#pragma omp simd
      for (int64_t i = lo; i < hi; i++) po[i] = pc[i] != 0 ? pa[i] : pb[i];
    } else {
      for (int64_t i = lo; i < hi; i++) po[i] = pc[i * sc] != 0 ? pa[i * sa] : pb[i * sb];
    }
  });
}

}  // namespace graft
