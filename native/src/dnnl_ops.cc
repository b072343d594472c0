// Matrix products and convolutions on oneDNN. Primitives are created once per shape and kept in
// a bounded cache: building a primitive descriptor costs far more than running a small one.
#include <oneapi/dnnl/dnnl.hpp>

#include <list>
#include <memory>
#include <sstream>
#include <string>
#include <unordered_map>

#include "kernels.h"

namespace graft {
namespace {

using dnnl::memory;
using tag = memory::format_tag;
using dt = memory::data_type;

dnnl::engine& engine() {
  static dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  return eng;
}

dnnl::stream& stream() {
  static dnnl::stream s(engine());
  return s;
}

// A least-recently-used cache of built primitives with the memory descriptors they expect.
struct Entry {
  dnnl::primitive prim;
  std::vector<memory::desc> mds;
};

class PrimitiveCache {
 public:
  template <typename Build>
  Entry& get(const std::string& key, Build build) {
    auto it = index_.find(key);
    if (it != index_.end()) {
      order_.splice(order_.begin(), order_, it->second);
      return it->second->second;
    }
    order_.emplace_front(key, build());
    index_[key] = order_.begin();
    if (order_.size() > kCapacity) {
      index_.erase(order_.back().first);
      order_.pop_back();
    }
    return order_.front().second;
  }

 private:
  static constexpr size_t kCapacity = 512;
  std::list<std::pair<std::string, Entry>> order_;
  std::unordered_map<std::string, std::list<std::pair<std::string, Entry>>::iterator> index_;
};

PrimitiveCache& cache() {
  static PrimitiveCache c;
  return c;
}

template <typename... T>
std::string key(const char* name, T... parts) {
  std::ostringstream s;
  s << name;
  ((s << ',' << parts), ...);
  return s.str();
}

memory mem(const memory::desc& md, const void* p) { return memory(md, engine(), const_cast<void*>(p)); }

}  // namespace

void matmul(float* c, const float* a, const float* b, int64_t batch, int64_t m, int64_t n, int64_t k, bool transA, bool transB,
            int64_t strideA, int64_t strideB, int64_t strideC, int beta) {
  auto& e = cache().get(key("mm", batch, m, n, k, transA, transB, strideA, strideB, strideC, beta), [&] {
    // Batch broadcasting: a matrix with batch stride 0 is described with batch dimension 1.
    int64_t ba = strideA == 0 ? 1 : batch, bb = strideB == 0 ? 1 : batch;
    memory::desc a_md({ba, m, k}, dt::f32, transA ? memory::dims{strideA ? strideA : m * k, 1, m} : memory::dims{strideA ? strideA : m * k, k, 1});
    memory::desc b_md({bb, k, n}, dt::f32, transB ? memory::dims{strideB ? strideB : k * n, 1, k} : memory::dims{strideB ? strideB : k * n, n, 1});
    memory::desc c_md({batch, m, n}, dt::f32, memory::dims{strideC ? strideC : m * n, n, 1});
    dnnl::primitive_attr attr;
    if (beta) {
      dnnl::post_ops po;
      po.append_sum(1.f);
      attr.set_post_ops(po);
    }
    dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(a_md, b_md, c_md), attr, engine());
    return Entry{dnnl::matmul(pd), {a_md, b_md, c_md}};
  });
  e.prim.execute(stream(), {{DNNL_ARG_SRC, mem(e.mds[0], a)}, {DNNL_ARG_WEIGHTS, mem(e.mds[1], b)}, {DNNL_ARG_DST, mem(e.mds[2], c)}});
  stream().wait();
}

namespace {

struct ConvDescs {
  memory::desc src, wei, bias, dst;
  memory::dims strides, dilates, padL, padR;
};

ConvDescs conv_descs(const ConvShape& s) {
  ConvDescs d;
  d.src = memory::desc({s.n, s.cIn, s.h, s.w}, dt::f32, tag::nchw);
  d.wei = s.groups > 1 ? memory::desc({s.groups, s.cOut / s.groups, s.cIn / s.groups, s.kh, s.kw}, dt::f32, tag::goihw)
                       : memory::desc({s.cOut, s.cIn, s.kh, s.kw}, dt::f32, tag::oihw);
  d.bias = memory::desc({s.cOut}, dt::f32, tag::x);
  d.dst = memory::desc({s.n, s.cOut, s.outH, s.outW}, dt::f32, tag::nchw);
  d.strides = {s.strideH, s.strideW};
  // oneDNN counts dilation from 0 (PyTorch from 1).
  d.dilates = {s.dilH - 1, s.dilW - 1};
  d.padL = {s.padH, s.padW};
  // Right padding that makes oneDNN's output-size formula give exactly outH/outW.
  d.padR = {(s.outH - 1) * s.strideH + (s.kh - 1) * s.dilH + 1 - s.h - s.padH, (s.outW - 1) * s.strideW + (s.kw - 1) * s.dilW + 1 - s.w - s.padW};
  return d;
}

std::string conv_key(const char* name, const ConvShape& s, bool bias) {
  return key(name, s.n, s.cIn, s.h, s.w, s.cOut, s.kh, s.kw, s.outH, s.outW, s.strideH, s.strideW, s.padH, s.padW, s.dilH, s.dilW, s.groups, bias);
}

dnnl::convolution_forward::primitive_desc conv_fwd_pd(const ConvDescs& d, bool bias) {
  auto desc = bias ? dnnl::convolution_forward::desc(dnnl::prop_kind::forward_training, dnnl::algorithm::convolution_direct, d.src, d.wei, d.bias, d.dst,
                                                     d.strides, d.dilates, d.padL, d.padR)
                   : dnnl::convolution_forward::desc(dnnl::prop_kind::forward_training, dnnl::algorithm::convolution_direct, d.src, d.wei, d.dst,
                                                     d.strides, d.dilates, d.padL, d.padR);
  return dnnl::convolution_forward::primitive_desc(desc, engine());
}

}  // namespace

namespace {

// A 1×1, stride-1, unpadded, ungrouped convolution is a matrix product per image:
// y[b] (Cout, HW) = W (Cout, Cin) · x[b] (Cin, HW), which oneDNN's matmul runs far faster than
// its plain-layout convolution.
bool is_pointwise(const ConvShape& s) {
  return s.kh == 1 && s.kw == 1 && s.strideH == 1 && s.strideW == 1 && s.padH == 0 && s.padW == 0 && s.groups == 1;
}

void add_channel_bias(float* y, const float* bias, int64_t n, int64_t c, int64_t hw) {
#pragma omp parallel for schedule(static) if (n * c * hw > (1 << 15))
  for (int64_t p = 0; p < n * c; p++) {
    float b = bias[p % c];
    float* row = y + p * hw;
#pragma omp simd
    for (int64_t i = 0; i < hw; i++) row[i] += b;
  }
}

}  // namespace

void conv2d_forward(float* y, const float* x, const float* w, const float* bias, const ConvShape& s) {
  if (is_depthwise(s)) return depthwise_forward(y, x, w, bias, s);
  if (is_pointwise(s)) {
    int64_t hw = s.h * s.w;
    matmul(y, w, x, s.n, s.cOut, hw, s.cIn, false, false, 0, s.cIn * hw, s.cOut * hw, 0);
    if (bias) add_channel_bias(y, bias, s.n, s.cOut, hw);
    return;
  }
  auto& e = cache().get(conv_key("cf", s, bias != nullptr), [&] {
    auto d = conv_descs(s);
    auto pd = conv_fwd_pd(d, bias != nullptr);
    return Entry{dnnl::convolution_forward(pd), {d.src, d.wei, d.bias, d.dst}};
  });
  std::unordered_map<int, memory> args{{DNNL_ARG_SRC, mem(e.mds[0], x)}, {DNNL_ARG_WEIGHTS, mem(e.mds[1], w)}, {DNNL_ARG_DST, mem(e.mds[3], y)}};
  if (bias) args.emplace(DNNL_ARG_BIAS, mem(e.mds[2], bias));
  e.prim.execute(stream(), args);
  stream().wait();
}

void conv2d_backward_data(float* gx, const float* gy, const float* w, const ConvShape& s) {
  if (is_depthwise(s)) return depthwise_backward_data(gx, gy, w, s);
  if (is_pointwise(s)) {
    // gx[b] (Cin, HW) = Wᵀ (Cin, Cout) · gy[b] (Cout, HW)
    int64_t hw = s.h * s.w;
    return matmul(gx, w, gy, s.n, s.cIn, hw, s.cOut, true, false, 0, s.cOut * hw, s.cIn * hw, 0);
  }
  auto& e = cache().get(conv_key("cbd", s, false), [&] {
    auto d = conv_descs(s);
    auto hint = conv_fwd_pd(d, false);
    dnnl::convolution_backward_data::desc desc(dnnl::algorithm::convolution_direct, d.src, d.wei, d.dst, d.strides, d.dilates, d.padL, d.padR);
    dnnl::convolution_backward_data::primitive_desc pd(desc, engine(), hint);
    return Entry{dnnl::convolution_backward_data(pd), {d.src, d.wei, d.dst}};
  });
  e.prim.execute(stream(), {{DNNL_ARG_DIFF_SRC, mem(e.mds[0], gx)}, {DNNL_ARG_WEIGHTS, mem(e.mds[1], w)}, {DNNL_ARG_DIFF_DST, mem(e.mds[2], gy)}});
  stream().wait();
}

void conv2d_backward_weight(float* gw, float* gb, const float* x, const float* gy, const ConvShape& s) {
  if (is_depthwise(s)) return depthwise_backward_weight(gw, gb, x, gy, s);
  if (is_pointwise(s)) {
    // gW (Cout, Cin) = Σ_b gy[b] (Cout, HW) · x[b]ᵀ (HW, Cin), accumulated image by image.
    int64_t hw = s.h * s.w;
    for (int64_t b = 0; b < s.n; b++) matmul(gw, gy + b * s.cOut * hw, x + b * s.cIn * hw, 1, s.cOut, s.cIn, hw, false, true, 0, 0, 0, b > 0 ? 1 : 0);
    if (gb) {
#pragma omp parallel for schedule(static)
      for (int64_t c = 0; c < s.cOut; c++) {
        double acc = 0;
        for (int64_t b = 0; b < s.n; b++) {
          const float* row = gy + (b * s.cOut + c) * hw;
          float part = 0;
#pragma omp simd reduction(+ : part)
          for (int64_t i = 0; i < hw; i++) part += row[i];
          acc += part;
        }
        gb[c] = static_cast<float>(acc);
      }
    }
    return;
  }
  bool bias = gb != nullptr;
  auto& e = cache().get(conv_key("cbw", s, bias), [&] {
    auto d = conv_descs(s);
    auto hint = conv_fwd_pd(d, bias);
    auto desc = bias ? dnnl::convolution_backward_weights::desc(dnnl::algorithm::convolution_direct, d.src, d.wei, d.bias, d.dst, d.strides, d.dilates, d.padL, d.padR)
                     : dnnl::convolution_backward_weights::desc(dnnl::algorithm::convolution_direct, d.src, d.wei, d.dst, d.strides, d.dilates, d.padL, d.padR);
    dnnl::convolution_backward_weights::primitive_desc pd(desc, engine(), hint);
    return Entry{dnnl::convolution_backward_weights(pd), {d.src, d.wei, d.bias, d.dst}};
  });
  std::unordered_map<int, memory> args{{DNNL_ARG_SRC, mem(e.mds[0], x)}, {DNNL_ARG_DIFF_WEIGHTS, mem(e.mds[1], gw)}, {DNNL_ARG_DIFF_DST, mem(e.mds[3], gy)}};
  if (bias) args.emplace(DNNL_ARG_DIFF_BIAS, mem(e.mds[2], gb));
  e.prim.execute(stream(), args);
  stream().wait();
}

}  // namespace graft

namespace graft {
namespace {

// Unary ops that oneDNN's eltwise primitive computes with the same definition (forward and
// derivative) as graft's reference: the algorithm and its alpha/beta from graft's parameters.
bool eltwise_algorithm(Unary op, float p0, dnnl::algorithm& alg, float& alpha, float& beta) {
  using a = dnnl::algorithm;
  alpha = 0.f;
  beta = 0.f;
  switch (op) {
    case Unary::Relu: alg = a::eltwise_relu; return true;
    case Unary::Exp: alg = a::eltwise_exp; return true;
    case Unary::Log: alg = a::eltwise_log; return true;
    case Unary::Sqrt: alg = a::eltwise_sqrt; return true;
    case Unary::Abs: alg = a::eltwise_abs; return true;
    case Unary::Square: alg = a::eltwise_square; return true;
    case Unary::Tanh: alg = a::eltwise_tanh; return true;
    case Unary::Sigmoid: alg = a::eltwise_logistic; return true;
    case Unary::Gelu: alg = a::eltwise_gelu_erf; return true;
    case Unary::GeluTanh: alg = a::eltwise_gelu_tanh; return true;
    case Unary::Silu: alg = a::eltwise_swish; alpha = 1.f; return true;
    case Unary::Hardswish: alg = a::eltwise_hardswish; return true;
    case Unary::PowScalar: alg = a::eltwise_pow; alpha = 1.f; beta = p0; return true;
    default: return false;
  }
}

memory::desc flat(int64_t n) { return memory::desc({n}, dt::f32, tag::x); }

dnnl::eltwise_forward::primitive_desc eltwise_fwd_pd(dnnl::algorithm alg, int64_t n, float alpha, float beta) {
  return dnnl::eltwise_forward::primitive_desc(dnnl::eltwise_forward::desc(dnnl::prop_kind::forward_training, alg, flat(n), alpha, beta), engine());
}

}  // namespace

bool dnnl_unary_forward(float* out, const float* x, int64_t n, Unary op, float p0) {
  dnnl::algorithm alg;
  float alpha, beta;
  if (!eltwise_algorithm(op, p0, alg, alpha, beta)) return false;
  auto& e = cache().get(key("ew", static_cast<int>(op), n, alpha, beta), [&] {
    return Entry{dnnl::eltwise_forward(eltwise_fwd_pd(alg, n, alpha, beta)), {flat(n)}};
  });
  e.prim.execute(stream(), {{DNNL_ARG_SRC, mem(e.mds[0], x)}, {DNNL_ARG_DST, mem(e.mds[0], out)}});
  stream().wait();
  return true;
}

bool dnnl_unary_backward(float* gx, const float* gy, const float* x, int64_t n, Unary op, float p0) {
  dnnl::algorithm alg;
  float alpha, beta;
  if (!eltwise_algorithm(op, p0, alg, alpha, beta)) return false;
  auto& e = cache().get(key("ewb", static_cast<int>(op), n, alpha, beta), [&] {
    auto hint = eltwise_fwd_pd(alg, n, alpha, beta);
    dnnl::eltwise_backward::primitive_desc pd(dnnl::eltwise_backward::desc(alg, flat(n), flat(n), alpha, beta), engine(), hint);
    return Entry{dnnl::eltwise_backward(pd), {flat(n)}};
  });
  e.prim.execute(stream(), {{DNNL_ARG_SRC, mem(e.mds[0], x)}, {DNNL_ARG_DIFF_DST, mem(e.mds[0], gy)}, {DNNL_ARG_DIFF_SRC, mem(e.mds[0], gx)}});
  stream().wait();
  return true;
}

namespace {
memory::desc rows_md(int64_t rows, int64_t n) { return memory::desc({rows, n}, dt::f32, tag::ab); }
}  // namespace

void softmax_forward(float* y, const float* x, int64_t rows, int64_t n, bool log) {
  auto& e = cache().get(key("sm", rows, n, log), [&] {
    auto md = rows_md(rows, n);
    if (log) return Entry{dnnl::logsoftmax_forward(dnnl::logsoftmax_forward::primitive_desc(dnnl::logsoftmax_forward::desc(dnnl::prop_kind::forward_training, md, 1), engine())), {md}};
    return Entry{dnnl::softmax_forward(dnnl::softmax_forward::primitive_desc(dnnl::softmax_forward::desc(dnnl::prop_kind::forward_training, md, 1), engine())), {md}};
  });
  e.prim.execute(stream(), {{DNNL_ARG_SRC, mem(e.mds[0], x)}, {DNNL_ARG_DST, mem(e.mds[0], y)}});
  stream().wait();
}

void softmax_backward(float* gx, const float* y, const float* gy, int64_t rows, int64_t n, bool log) {
  auto& e = cache().get(key("smb", rows, n, log), [&] {
    auto md = rows_md(rows, n);
    if (log) {
      dnnl::logsoftmax_forward::primitive_desc hint(dnnl::logsoftmax_forward::desc(dnnl::prop_kind::forward_training, md, 1), engine());
      dnnl::logsoftmax_backward::primitive_desc pd(dnnl::logsoftmax_backward::desc(md, md, 1), engine(), hint);
      return Entry{dnnl::logsoftmax_backward(pd), {md}};
    }
    dnnl::softmax_forward::primitive_desc hint(dnnl::softmax_forward::desc(dnnl::prop_kind::forward_training, md, 1), engine());
    dnnl::softmax_backward::primitive_desc pd(dnnl::softmax_backward::desc(md, md, 1), engine(), hint);
    return Entry{dnnl::softmax_backward(pd), {md}};
  });
  e.prim.execute(stream(), {{DNNL_ARG_DST, mem(e.mds[0], y)}, {DNNL_ARG_DIFF_DST, mem(e.mds[0], gy)}, {DNNL_ARG_DIFF_SRC, mem(e.mds[0], gx)}});
  stream().wait();
}

}  // namespace graft
