// Elementwise kernels, strided copies and reductions: OpenMP C++, vectorised inner loops.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "kernels.h"
#include "vmath.h"

namespace graft {
namespace {

// Below this many elements a parallel region costs more than it saves.
constexpr int64_t kParallelMin = 1 << 15;

constexpr float kSqrt1_2 = 0.70710678118654752f;
constexpr float kGeluTanhC = 0.79788456080286536f;  // sqrt(2/pi)
constexpr float kInvSqrt2Pi = 0.39894228040143268f;

__attribute__((always_inline)) inline float sigmoidf(float x) { return vsigmoid(x); }

template <typename F>
void parallel_for(int64_t n, F f) {
  if (n < kParallelMin) {
    f(0, n);
    return;
  }
#pragma omp parallel
  {
    int nt = omp_get_num_threads(), t = omp_get_thread_num();
    int64_t chunk = (n + nt - 1) / nt, lo = t * chunk, hi = std::min(n, lo + chunk);
    if (lo < hi) f(lo, hi);
  }
}

// The element function is copied into each thread's loop so its parameters live in registers,
// and the pointers are declared unaliased (an in-place call only ever writes the element it read).
template <typename F>
void map_unary(float* out, const float* x, int64_t n, F f) {
  parallel_for(n, [out, x, f](int64_t lo, int64_t hi) {
    float* __restrict o = out;
    const float* __restrict in = x;
    const F fn = f;
#pragma omp simd
    for (int64_t i = lo; i < hi; i++) o[i] = fn(in[i]);
  });
}

template <typename F>
void map_grad(float* gx, const float* gy, const float* x, int64_t n, F d) {
  parallel_for(n, [gx, gy, x, d](int64_t lo, int64_t hi) {
    float* __restrict o = gx;
    const float* __restrict g = gy;
    const float* __restrict in = x;
    const F fn = d;
#pragma omp simd
    for (int64_t i = lo; i < hi; i++) o[i] = g[i] * fn(in[i]);
  });
}

// Collapses adjacent axes that are contiguous for every operand, so most walks become 1-D or 2-D.
struct Walk {
  std::vector<int64_t> shape;
  std::vector<std::vector<int64_t>> strides;  // per operand
};

Walk collapse(const std::vector<int64_t>& shape, const std::vector<const View*>& views) {
  Walk w;
  size_t nops = views.size();
  w.strides.resize(nops);
  for (size_t d = 0; d < shape.size(); d++) {
    if (shape[d] == 1) continue;
    bool merge = !w.shape.empty();
    for (size_t o = 0; o < nops && merge; o++) merge = w.strides[o].back() == views[o]->strides[d] * shape[d];
    if (merge) {
      w.shape.back() *= shape[d];
      for (size_t o = 0; o < nops; o++) w.strides[o].back() = views[o]->strides[d];
    } else {
      w.shape.push_back(shape[d]);
      for (size_t o = 0; o < nops; o++) w.strides[o].push_back(views[o]->strides[d]);
    }
  }
  if (w.shape.empty()) {
    w.shape.push_back(1);
    for (size_t o = 0; o < nops; o++) w.strides[o].push_back(0);
  }
  return w;
}

// Calls row(outIndex, offsets, lo, hi) for inner elements [lo, hi) of each row of the collapsed
// walk (all axes but the last); rows run in parallel, or a single long row is split.
template <size_t K, typename F>
void for_rows(const Walk& w, const int64_t (&base)[K], F row) {
  int64_t rank = w.shape.size(), inner = w.shape.back(), rows = 1;
  for (int64_t d = 0; d + 1 < rank; d++) rows *= w.shape[d];
  if (rows == 1) {
    parallel_for(inner, [&](int64_t lo, int64_t hi) { row(0, base, lo, hi); });
    return;
  }
  auto body = [&](int64_t lo, int64_t hi) {
    for (int64_t r = lo; r < hi; r++) {
      int64_t off[K];
      for (size_t o = 0; o < K; o++) off[o] = base[o];
      int64_t rem = r;
      for (int64_t d = rank - 2; d >= 0; d--) {
        int64_t idx = rem % w.shape[d];
        rem /= w.shape[d];
        for (size_t o = 0; o < K; o++) off[o] += idx * w.strides[o][d];
      }
      row(r * inner, off, 0, inner);
    }
  };
  if (rows * inner < kParallelMin) body(0, rows);
  else parallel_for(rows, body);
}

template <typename F>
void binary_walk(float* out, const float* a, const View& va, const float* b, const View& vb, const std::vector<int64_t>& shape, F f) {
  int64_t total = 1;
  for (auto s : shape) total *= s;
  View vo;
  vo.shape = shape;
  vo.strides.resize(shape.size());
  int64_t s = 1;
  for (int64_t d = shape.size() - 1; d >= 0; d--) vo.strides[d] = s, s *= shape[d];
  Walk w = collapse(shape, {&vo, &va, &vb});
  int64_t sa = w.strides[1].back(), sb = w.strides[2].back();
  // Fast paths for the common inner layouts: both contiguous, scalar on either side.
  if (w.shape.size() == 1) {
    const float* pa = a + va.offset;
    const float* pb = b + vb.offset;
    parallel_for(total, [&](int64_t lo, int64_t hi) {
      if (sa == 1 && sb == 1) {
#pragma omp simd
        for (int64_t i = lo; i < hi; i++) out[i] = f(pa[i], pb[i]);
      } else if (sa == 1 && sb == 0) {
        float bv = pb[0];
#pragma omp simd
        for (int64_t i = lo; i < hi; i++) out[i] = f(pa[i], bv);
      } else if (sa == 0 && sb == 1) {
        float av = pa[0];
#pragma omp simd
        for (int64_t i = lo; i < hi; i++) out[i] = f(av, pb[i]);
      } else {
        for (int64_t i = lo; i < hi; i++) out[i] = f(pa[i * sa], pb[i * sb]);
      }
    });
    return;
  }
  const int64_t base[3] = {0, va.offset, vb.offset};
  for_rows(w, base, [&](int64_t o, const int64_t* off, int64_t lo, int64_t hi) {
    float* po = out + o;
    const float* pa = a + off[1];
    const float* pb = b + off[2];
    if (sa == 1 && sb == 1) {
#pragma omp simd
      for (int64_t i = lo; i < hi; i++) po[i] = f(pa[i], pb[i]);
    } else if (sa == 1 && sb == 0) {
      float bv = pb[0];
#pragma omp simd
      for (int64_t i = lo; i < hi; i++) po[i] = f(pa[i], bv);
    } else if (sa == 0 && sb == 1) {
      float av = pa[0];
#pragma omp simd
      for (int64_t i = lo; i < hi; i++) po[i] = f(av, pb[i]);
    } else {
      for (int64_t i = lo; i < hi; i++) po[i] = f(pa[i * sa], pb[i * sb]);
    }
  });
}

}  // namespace

void unary_forward(float* out, const float* x, int64_t n, Unary op, float p0, float p1) {
  if (n >= kParallelMin && dnnl_unary_forward(out, x, n, op, p0)) return;
  switch (op) {
    case Unary::Neg: return map_unary(out, x, n, [](float v) { return -v; });
    case Unary::Exp: return map_unary(out, x, n, [](float v) { return vexp(v); });
    case Unary::Log: return map_unary(out, x, n, [](float v) { return std::log(v); });
    case Unary::Sqrt: return map_unary(out, x, n, [](float v) { return std::sqrt(v); });
    case Unary::Rsqrt: return map_unary(out, x, n, [](float v) { return 1.f / std::sqrt(v); });
    case Unary::Abs: return map_unary(out, x, n, [](float v) { return std::fabs(v); });
    case Unary::Sign: return map_unary(out, x, n, [](float v) { return v > 0 ? 1.f : v < 0 ? -1.f : 0.f; });
    case Unary::Square: return map_unary(out, x, n, [](float v) { return v * v; });
    case Unary::Reciprocal: return map_unary(out, x, n, [](float v) { return 1.f / v; });
    case Unary::Relu: return map_unary(out, x, n, [](float v) { return v <= 0 ? 0.f : v; });
    case Unary::Relu6: return map_unary(out, x, n, [](float v) { return v < 0.f ? 0.f : (v > 6.f ? 6.f : v); });
    case Unary::Sigmoid: return map_unary(out, x, n, [](float v) { return sigmoidf(v); });
    case Unary::Tanh: return map_unary(out, x, n, [](float v) { return vtanh(v); });
    case Unary::Gelu: return map_unary(out, x, n, [](float v) { return 0.5f * v * (1.f + verf(v * kSqrt1_2)); });
    case Unary::GeluTanh: return map_unary(out, x, n, [](float v) { return 0.5f * v * (1.f + vtanh(kGeluTanhC * (v + 0.044715f * v * v * v))); });
    case Unary::Silu: return map_unary(out, x, n, [](float v) { return v * sigmoidf(v); });
    case Unary::Hardswish: return map_unary(out, x, n, [](float v) { float r = v + 3.f; return v * (r < 0.f ? 0.f : (r > 6.f ? 6.f : r)) * (1.f / 6.f); });
    case Unary::Erf: return map_unary(out, x, n, [](float v) { return verf(v); });
    case Unary::PowScalar: return map_unary(out, x, n, [p0](float v) { return std::pow(v, p0); });
    case Unary::Clamp: return map_unary(out, x, n, [p0, p1](float v) { return v < p0 ? p0 : (v > p1 ? p1 : v); });
    case Unary::Affine: return map_unary(out, x, n, [p0, p1](float v) { return v * p0 + p1; });
  }
}

void unary_backward(float* gx, const float* gy, const float* x, int64_t n, Unary op, float p0, float p1) {
  if (n >= kParallelMin && dnnl_unary_backward(gx, gy, x, n, op, p0)) return;
  switch (op) {
    case Unary::Neg: return map_grad(gx, gy, x, n, [](float) { return -1.f; });
    case Unary::Exp: return map_grad(gx, gy, x, n, [](float v) { return vexp(v); });
    case Unary::Log: return map_grad(gx, gy, x, n, [](float v) { return 1.f / v; });
    case Unary::Sqrt: return map_grad(gx, gy, x, n, [](float v) { return 0.5f / std::sqrt(v); });
    case Unary::Rsqrt: return map_grad(gx, gy, x, n, [](float v) { return -0.5f / (v * std::sqrt(v)); });
    case Unary::Abs: return map_grad(gx, gy, x, n, [](float v) { return v > 0 ? 1.f : v < 0 ? -1.f : 0.f; });
    case Unary::Square: return map_grad(gx, gy, x, n, [](float v) { return 2.f * v; });
    case Unary::Reciprocal: return map_grad(gx, gy, x, n, [](float v) { return -1.f / (v * v); });
    case Unary::Relu: return map_grad(gx, gy, x, n, [](float v) { return v > 0 ? 1.f : 0.f; });
    case Unary::Relu6: return map_grad(gx, gy, x, n, [](float v) { return v > 0 && v < 6 ? 1.f : 0.f; });
    case Unary::Sigmoid: return map_grad(gx, gy, x, n, [](float v) { float s = sigmoidf(v); return s * (1.f - s); });
    case Unary::Tanh: return map_grad(gx, gy, x, n, [](float v) { float t = vtanh(v); return 1.f - t * t; });
    case Unary::Gelu:
      return map_grad(gx, gy, x, n, [](float v) { return 0.5f * (1.f + verf(v * kSqrt1_2)) + v * vexp(-0.5f * v * v) * kInvSqrt2Pi; });
    case Unary::GeluTanh:
      return map_grad(gx, gy, x, n, [](float v) {
        float t = vtanh(kGeluTanhC * (v + 0.044715f * v * v * v));
        return 0.5f * (1.f + t) + 0.5f * v * (1.f - t * t) * kGeluTanhC * (1.f + 3.f * 0.044715f * v * v);
      });
    case Unary::Silu: return map_grad(gx, gy, x, n, [](float v) { float s = sigmoidf(v); return s * (1.f + v * (1.f - s)); });
    case Unary::Hardswish: return map_grad(gx, gy, x, n, [](float v) { return v < -3.f ? 0.f : v > 3.f ? 1.f : (2.f * v + 3.f) / 6.f; });
    case Unary::PowScalar: return map_grad(gx, gy, x, n, [p0](float v) { return p0 == 0 ? 0.f : p0 * std::pow(v, p0 - 1.f); });
    case Unary::Clamp: return map_grad(gx, gy, x, n, [p0, p1](float v) { return v >= p0 && v <= p1 ? 1.f : 0.f; });
    case Unary::Affine: return map_grad(gx, gy, x, n, [p0](float) { return p0; });
    case Unary::Sign:
    case Unary::Erf: return;
  }
}

void binary_forward(float* out, const float* a, const View& va, const float* b, const View& vb, const std::vector<int64_t>& shape, Binary op) {
  switch (op) {
    case Binary::Add: return binary_walk(out, a, va, b, vb, shape, [](float x, float y) { return x + y; });
    case Binary::Sub: return binary_walk(out, a, va, b, vb, shape, [](float x, float y) { return x - y; });
    case Binary::Mul: return binary_walk(out, a, va, b, vb, shape, [](float x, float y) { return x * y; });
    case Binary::Div: return binary_walk(out, a, va, b, vb, shape, [](float x, float y) { return x / y; });
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
  int64_t s = 1;
  for (int64_t d = shape.size() - 1; d >= 0; d--) vo.strides[d] = s, s *= shape[d];
  Walk w = collapse(shape, {&vo, &vc, &va, &vb});
  int64_t sc = w.strides[1].back(), sa = w.strides[2].back(), sb = w.strides[3].back();
  const int64_t base[4] = {0, vc.offset, va.offset, vb.offset};
  for_rows(w, base, [&](int64_t o, const int64_t* off, int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; i++) out[o + i] = c[off[1] + i * sc] != 0 ? a[off[2] + i * sa] : b[off[3] + i * sb];
  });
}

template <typename S, typename D>
void copy_strided(D* dst, const View& vd, const S* src, const View& vs) {
  Walk w = collapse(vd.shape, {&vd, &vs});
  int64_t sd = w.strides[0].back(), ss = w.strides[1].back();
  const int64_t base[2] = {vd.offset, vs.offset};
  for_rows(w, base, [&](int64_t, const int64_t* off, int64_t lo, int64_t hi) {
    D* pd = dst + off[0];
    const S* ps = src + off[1];
    if (sd == 1 && ss == 1) {
#pragma omp simd
      for (int64_t i = lo; i < hi; i++) pd[i] = static_cast<D>(ps[i]);
    } else {
      for (int64_t i = lo; i < hi; i++) pd[i * sd] = static_cast<D>(ps[i * ss]);
    }
  });
}

template void copy_strided<float, float>(float*, const View&, const float*, const View&);
template void copy_strided<int32_t, int32_t>(int32_t*, const View&, const int32_t*, const View&);
template void copy_strided<int32_t, float>(float*, const View&, const int32_t*, const View&);
template void copy_strided<float, int32_t>(int32_t*, const View&, const float*, const View&);

void fill_strided(float* dst, const View& vd, float value) {
  Walk w = collapse(vd.shape, {&vd});
  int64_t sd = w.strides[0].back();
  const int64_t base[1] = {vd.offset};
  for_rows(w, base, [&](int64_t, const int64_t* off, int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; i++) dst[off[0] + i * sd] = value;
  });
}

void reduce_forward(float* out, int32_t* arg, const float* x, int64_t outer, int64_t len, int64_t inner, Reduce op) {
  auto body = [&](int64_t lo, int64_t hi) {
    for (int64_t o = lo; o < hi; o++) {
      const float* px = x + o * len * inner;
      float* po = out + o * inner;
      if (op == Reduce::Sum) {
        if (inner == 1) {
          float acc = 0;
#pragma omp simd reduction(+ : acc)
          for (int64_t l = 0; l < len; l++) acc += px[l];
          po[0] = acc;
        } else {
          std::fill(po, po + inner, 0.f);
          for (int64_t l = 0; l < len; l++) {
#pragma omp simd
            for (int64_t i = 0; i < inner; i++) po[i] += px[l * inner + i];
          }
        }
      } else {
        bool isMax = op == Reduce::Max;
        for (int64_t i = 0; i < inner; i++) {
          float best = px[i];
          int32_t at = 0;
          for (int64_t l = 1; l < len; l++) {
            float v = px[l * inner + i];
            if ((isMax ? v > best : v < best) || (v != v && best == best)) best = v, at = static_cast<int32_t>(l);
          }
          po[i] = best;
          if (arg) arg[o * inner + i] = at;
        }
      }
    }
  };
  if (outer == 1 && inner > 1) {
    // Reducing the rows of a matrix (bias gradients): threads own column blocks and walk the
    // rows contiguously.
    auto cols = [&](int64_t lo, int64_t hi) {
      for (int64_t i = lo; i < hi; i++) {
        out[i] = x[i];
        if (arg) arg[i] = 0;
      }
      for (int64_t l = 1; l < len; l++) {
        const float* row = x + l * inner;
        if (op == Reduce::Sum) {
#pragma omp simd
          for (int64_t i = lo; i < hi; i++) out[i] += row[i];
        } else {
          bool isMax = op == Reduce::Max;
          for (int64_t i = lo; i < hi; i++) {
            float v = row[i], best = out[i];
            if ((isMax ? v > best : v < best) || (v != v && best == best)) {
              out[i] = v;
              if (arg) arg[i] = static_cast<int32_t>(l);
            }
          }
        }
      }
    };
    if (len * inner < kParallelMin) cols(0, inner);
    else {
#pragma omp parallel
      {
        int nt = omp_get_num_threads(), t = omp_get_thread_num();
        int64_t chunk = ((inner + nt - 1) / nt + 15) / 16 * 16, lo = t * chunk, hi = std::min(inner, lo + chunk);
        if (lo < hi) cols(lo, hi);
      }
    }
    return;
  }
  if (outer == 1 && op == Reduce::Sum && len >= kParallelMin) {
    double total = 0;
#pragma omp parallel for reduction(+ : total)
    for (int64_t l = 0; l < len; l++) total += x[l];
    out[0] = static_cast<float>(total);
    return;
  }
  if (outer * len * inner < kParallelMin || outer == 1) {
    body(0, outer);
    return;
  }
  parallel_for(outer, body);
}

}  // namespace graft
