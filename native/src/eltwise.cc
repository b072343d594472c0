// Unary elementwise forward and gradient: vectorised OpenMP loops, and oneDNN's eltwise
// primitive for large inputs of the ops it defines exactly as graft does.
#include <cmath>

#include "kernels.h"
#include "onednn.h"
#include "parallel.h"
#include "simd.h"
#include "vmath.h"

namespace graft {
namespace {

constexpr float kSqrt1_2 = 0.70710678118654752f;
constexpr float kGeluTanhC = 0.79788456080286536f;  // sqrt(2/pi)
constexpr float kInvSqrt2Pi = 0.39894228040143268f;
constexpr float kTwoOverSqrtPi = 1.12837916709551257f;  // erf'(x) = 2/sqrt(pi) · exp(-x^2)

// The element function is copied into each thread's loop so its parameters live in registers;
// the pointers are declared unaliased (an in-place call only writes the element it read).
template <typename F>
void map_unary(float* out, const float* x, int64_t n, F f) {
  parallel_chunks(n, n, [out, x, f](int64_t lo, int64_t hi) {
    float* __restrict o = out;
    const float* __restrict in = x;
    const F fn = f;
#pragma omp simd
    for (int64_t i = lo; i < hi; i++) o[i] = fn(in[i]);
  });
}

template <typename F>
void map_grad(float* gx, const float* gy, const float* x, int64_t n, F d) {
  parallel_chunks(n, n, [gx, gy, x, d](int64_t lo, int64_t hi) {
    float* __restrict o = gx;
    const float* __restrict g = gy;
    const float* __restrict in = x;
    const F fn = d;
#pragma omp simd
    for (int64_t i = lo; i < hi; i++) o[i] = g[i] * fn(in[i]);
  });
}

// GELU (erf form) and erf on the vector kernels of simd.h: the rational erf needs no exp, which
// makes the forward ~3× oneDNN 2.6's gelu_erf on a ViT-S fc1 output (AVX-512; ~1.5× on AVX2).
void gelu_forward(float* out, const float* x, int64_t n) {
  const auto& k = simd::kernels();
  parallel_chunks(n, n, [&](int64_t lo, int64_t hi) { k.gelu(out + lo, x + lo, hi - lo); });
}

void gelu_backward(float* gx, const float* gy, const float* x, int64_t n) {
  const auto& k = simd::kernels();
  parallel_chunks(n, n, [&](int64_t lo, int64_t hi) { k.gelu_grad(gx + lo, gy + lo, x + lo, hi - lo); });
}

void erf_forward(float* out, const float* x, int64_t n) {
  const auto& k = simd::kernels();
  parallel_chunks(n, n, [&](int64_t lo, int64_t hi) { k.erf(out + lo, x + lo, hi - lo); });
}

// oneDNN runs these at least as fast as the loops below on large inputs (its JIT uses
// AVX-512, which this file is not compiled for), with the same definitions and derivatives.
bool eltwise_algorithm(Unary op, float p0, dnnl::algorithm& alg, float& alpha, float& beta) {
  using a = dnnl::algorithm;
  alpha = 0.f;
  beta = 0.f;
  switch (op) {
    case Unary::Tanh: alg = a::eltwise_tanh; return true;
    case Unary::Sigmoid: alg = a::eltwise_logistic; return true;
    case Unary::GeluTanh: alg = a::eltwise_gelu_tanh; return true;
    case Unary::Silu: alg = a::eltwise_swish; alpha = 1.f; return true;
    case Unary::PowScalar: alg = a::eltwise_pow; alpha = 1.f; beta = p0; return true;
    default: return false;
  }
}

onednn::memory::desc flat(int64_t n) { return onednn::memory::desc({n}, onednn::dt::f32, onednn::tag::x); }

dnnl::eltwise_forward::primitive_desc eltwise_forward_pd(dnnl::algorithm alg, int64_t n, float alpha, float beta) {
  return dnnl::eltwise_forward::primitive_desc(dnnl::eltwise_forward::desc(dnnl::prop_kind::forward_training, alg, flat(n), alpha, beta), onednn::engine());
}

bool onednn_forward(float* out, const float* x, int64_t n, Unary op, float p0) {
  dnnl::algorithm alg;
  float alpha, beta;
  if (n < kParallelMin || !eltwise_algorithm(op, p0, alg, alpha, beta)) return false;
  const auto& p = onednn::cached(onednn::key("eltwise_fwd", static_cast<int>(op), n, alpha, beta), [&] {
    return onednn::Primitive{dnnl::eltwise_forward(eltwise_forward_pd(alg, n, alpha, beta)), {flat(n)}};
  });
  p.prim.execute(onednn::stream(), {{DNNL_ARG_SRC, onednn::mem(p.mds[0], x)}, {DNNL_ARG_DST, onednn::mem(p.mds[0], out)}});
  onednn::stream().wait();
  return true;
}

bool onednn_backward(float* gx, const float* gy, const float* x, int64_t n, Unary op, float p0) {
  dnnl::algorithm alg;
  float alpha, beta;
  if (n < kParallelMin || !eltwise_algorithm(op, p0, alg, alpha, beta)) return false;
  const auto& p = onednn::cached(onednn::key("eltwise_bwd", static_cast<int>(op), n, alpha, beta), [&] {
    auto hint = eltwise_forward_pd(alg, n, alpha, beta);
    dnnl::eltwise_backward::primitive_desc pd(dnnl::eltwise_backward::desc(alg, flat(n), flat(n), alpha, beta), onednn::engine(), hint);
    return onednn::Primitive{dnnl::eltwise_backward(pd), {flat(n)}};
  });
  p.prim.execute(onednn::stream(),
                 {{DNNL_ARG_SRC, onednn::mem(p.mds[0], x)}, {DNNL_ARG_DIFF_DST, onednn::mem(p.mds[0], gy)}, {DNNL_ARG_DIFF_SRC, onednn::mem(p.mds[0], gx)}});
  onednn::stream().wait();
  return true;
}

}  // namespace

void unary_forward(float* out, const float* x, int64_t n, Unary op, float p0, float p1) {
  if (onednn_forward(out, x, n, op, p0)) return;
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
    case Unary::Relu6: return map_unary(out, x, n, [](float v) { return v != v ? v : (v < 0.f ? 0.f : (v > 6.f ? 6.f : v)); });
    case Unary::Sigmoid: return map_unary(out, x, n, [](float v) { return vsigmoid(v); });
    case Unary::Tanh: return map_unary(out, x, n, [](float v) { return vtanh(v); });
    case Unary::Gelu: return gelu_forward(out, x, n);
    case Unary::GeluTanh: return map_unary(out, x, n, [](float v) { return 0.5f * v * (1.f + vtanh(kGeluTanhC * (v + 0.044715f * v * v * v))); });
    case Unary::Silu: return map_unary(out, x, n, [](float v) { return v * vsigmoid(v); });
    case Unary::Hardswish:
      return map_unary(out, x, n, [](float v) {
        float r = v + 3.f;
        return v * (r != r ? r : (r < 0.f ? 0.f : (r > 6.f ? 6.f : r))) * (1.f / 6.f);
      });
    case Unary::Erf: return erf_forward(out, x, n);
    case Unary::PowScalar: return map_unary(out, x, n, [p0](float v) { return std::pow(v, p0); });
    case Unary::Clamp: return map_unary(out, x, n, [p0, p1](float v) { return v != v ? v : (v < p0 ? p0 : (v > p1 ? p1 : v)); });
    case Unary::Affine: return map_unary(out, x, n, [p0, p1](float v) { return v * p0 + p1; });
  }
}

void unary_backward(float* gx, const float* gy, const float* x, int64_t n, Unary op, float p0, float p1) {
  if (onednn_backward(gx, gy, x, n, op, p0)) return;
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
    case Unary::Sigmoid: return map_grad(gx, gy, x, n, [](float v) { float s = vsigmoid(v); return s * (1.f - s); });
    case Unary::Tanh: return map_grad(gx, gy, x, n, [](float v) { float t = vtanh(v); return 1.f - t * t; });
    case Unary::Gelu: return gelu_backward(gx, gy, x, n);
    case Unary::GeluTanh:
      return map_grad(gx, gy, x, n, [](float v) {
        float t = vtanh(kGeluTanhC * (v + 0.044715f * v * v * v));
        return 0.5f * (1.f + t) + 0.5f * v * (1.f - t * t) * kGeluTanhC * (1.f + 3.f * 0.044715f * v * v);
      });
    case Unary::Silu: return map_grad(gx, gy, x, n, [](float v) { float s = vsigmoid(v); return s * (1.f + v * (1.f - s)); });
    case Unary::Hardswish: return map_grad(gx, gy, x, n, [](float v) { return v < -3.f ? 0.f : v > 3.f ? 1.f : (2.f * v + 3.f) / 6.f; });
    case Unary::PowScalar: return map_grad(gx, gy, x, n, [p0](float v) { return p0 == 0 ? 0.f : p0 * std::pow(v, p0 - 1.f); });
    case Unary::Clamp: return map_grad(gx, gy, x, n, [p0, p1](float v) { return v >= p0 && v <= p1 ? 1.f : 0.f; });
    case Unary::Affine: return map_grad(gx, gy, x, n, [p0](float) { return p0; });
    case Unary::Erf: return map_grad(gx, gy, x, n, [](float v) { return kTwoOverSqrtPi * vexp(-v * v); });
    case Unary::Sign: return map_grad(gx, gy, x, n, [](float) { return 0.f; });
  }
}

}  // namespace graft
