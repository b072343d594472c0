// 2-D convolutions on oneDNN, NCHW activations and OIHW weights as graft stores them. Plain
// layouts cost no reorders per call, which wins at the small batches of fine-tuning; 1×1
// convolutions run as matrix products and depthwise ones on direct kernels (depthwise.cc),
// both far faster than oneDNN's plain-layout convolution for those shapes.
#include <unordered_map>

#include "kernels.h"
#include "onednn.h"

namespace graft {
namespace {

using namespace onednn;

struct ConvDescs {
  memory::desc src, wei, bias, dst;
  memory::dims strides, dilates, padL, padR;
};

ConvDescs conv_descs(const ConvShape& s) {
  ConvDescs d;
  d.src = memory::desc({s.n, s.cIn, s.h, s.w}, dt::f32, tag::nchw);
  // Grouped weights (G, Cout/G, Cin/G, KH, KW) are the same memory as PyTorch's (Cout, Cin/G, KH, KW).
  d.wei = s.groups > 1 ? memory::desc({s.groups, s.cOut / s.groups, s.cIn / s.groups, s.kh, s.kw}, dt::f32, tag::goihw)
                       : memory::desc({s.cOut, s.cIn, s.kh, s.kw}, dt::f32, tag::oihw);
  d.bias = memory::desc({s.cOut}, dt::f32, tag::x);
  d.dst = memory::desc({s.n, s.cOut, s.outH, s.outW}, dt::f32, tag::nchw);
  d.strides = {s.strideH, s.strideW};
  d.dilates = {s.dilH - 1, s.dilW - 1};  // oneDNN counts dilation from 0, PyTorch from 1
  d.padL = {s.padH, s.padW};
  // The right padding for which oneDNN's output-size formula gives exactly outH × outW.
  d.padR = {(s.outH - 1) * s.strideH + (s.kh - 1) * s.dilH + 1 - s.h - s.padH, (s.outW - 1) * s.strideW + (s.kw - 1) * s.dilW + 1 - s.w - s.padW};
  return d;
}

std::string conv_key(const char* name, const ConvShape& s, bool bias) {
  return key(name, s.n, s.cIn, s.h, s.w, s.cOut, s.kh, s.kw, s.outH, s.outW, s.strideH, s.strideW, s.padH, s.padW, s.dilH, s.dilW, s.groups, bias);
}

dnnl::convolution_forward::primitive_desc forward_pd(const ConvDescs& d, bool bias) {
  using dnnl::convolution_forward;
  auto desc = bias ? convolution_forward::desc(dnnl::prop_kind::forward_training, dnnl::algorithm::convolution_direct, d.src, d.wei, d.bias, d.dst,
                                               d.strides, d.dilates, d.padL, d.padR)
                   : convolution_forward::desc(dnnl::prop_kind::forward_training, dnnl::algorithm::convolution_direct, d.src, d.wei, d.dst,
                                               d.strides, d.dilates, d.padL, d.padR);
  return convolution_forward::primitive_desc(desc, engine());
}

// A 1×1, stride-1, unpadded, ungrouped convolution is one matrix product per image:
// y[b] (Cout, HW) = W (Cout, Cin) · x[b] (Cin, HW).
bool is_pointwise(const ConvShape& s) {
  return s.kh == 1 && s.kw == 1 && s.strideH == 1 && s.strideW == 1 && s.padH == 0 && s.padW == 0 && s.groups == 1;
}

// y (B, C, HW) += bias (C)
void add_channel_bias(float* y, const float* bias, int64_t n, int64_t c, int64_t hw) {
#pragma omp parallel for schedule(static) if (n * c * hw > (1 << 15))
  for (int64_t p = 0; p < n * c; p++) {
    float b = bias[p % c];
    float* row = y + p * hw;
#pragma omp simd
    for (int64_t i = 0; i < hw; i++) row[i] += b;
  }
}

// gb (C) = Σ over batch and plane of gy (B, C, HW)
void channel_sums(float* gb, const float* gy, int64_t n, int64_t c, int64_t hw) {
#pragma omp parallel for schedule(static) if (n * c * hw > (1 << 15))
  for (int64_t ch = 0; ch < c; ch++) {
    double acc = 0;
    for (int64_t b = 0; b < n; b++) {
      const float* row = gy + (b * c + ch) * hw;
      float part = 0;
#pragma omp simd reduction(+ : part)
      for (int64_t i = 0; i < hw; i++) part += row[i];
      acc += part;
    }
    gb[ch] = static_cast<float>(acc);
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
  const Primitive& p = cached(conv_key("conv_fwd", s, bias != nullptr), [&] {
    auto d = conv_descs(s);
    return Primitive{dnnl::convolution_forward(forward_pd(d, bias != nullptr)), {d.src, d.wei, d.bias, d.dst}};
  });
  std::unordered_map<int, memory> args{{DNNL_ARG_SRC, mem(p.mds[0], x)}, {DNNL_ARG_WEIGHTS, mem(p.mds[1], w)}, {DNNL_ARG_DST, mem(p.mds[3], y)}};
  if (bias) args.emplace(DNNL_ARG_BIAS, mem(p.mds[2], bias));
  p.prim.execute(stream(), args);
  stream().wait();
}

void conv2d_backward_data(float* gx, const float* gy, const float* w, const ConvShape& s) {
  if (is_depthwise(s)) return depthwise_backward_data(gx, gy, w, s);
  if (is_pointwise(s)) {
    // gx[b] (Cin, HW) = Wᵀ (Cin, Cout) · gy[b] (Cout, HW)
    int64_t hw = s.h * s.w;
    return matmul(gx, w, gy, s.n, s.cIn, hw, s.cOut, true, false, 0, s.cOut * hw, s.cIn * hw, 0);
  }
  const Primitive& p = cached(conv_key("conv_bwd_data", s, false), [&] {
    auto d = conv_descs(s);
    auto hint = forward_pd(d, false);
    dnnl::convolution_backward_data::desc desc(dnnl::algorithm::convolution_direct, d.src, d.wei, d.dst, d.strides, d.dilates, d.padL, d.padR);
    return Primitive{dnnl::convolution_backward_data(dnnl::convolution_backward_data::primitive_desc(desc, engine(), hint)), {d.src, d.wei, d.dst}};
  });
  p.prim.execute(stream(), {{DNNL_ARG_DIFF_SRC, mem(p.mds[0], gx)}, {DNNL_ARG_WEIGHTS, mem(p.mds[1], w)}, {DNNL_ARG_DIFF_DST, mem(p.mds[2], gy)}});
  stream().wait();
}

void conv2d_backward_weight(float* gw, float* gb, const float* x, const float* gy, const ConvShape& s) {
  if (is_depthwise(s)) return depthwise_backward_weight(gw, gb, x, gy, s);
  if (is_pointwise(s)) {
    // gW (Cout, Cin) = Σ_b gy[b] (Cout, HW) · x[b]ᵀ (HW, Cin), accumulated image by image.
    int64_t hw = s.h * s.w;
    for (int64_t b = 0; b < s.n; b++) matmul(gw, gy + b * s.cOut * hw, x + b * s.cIn * hw, 1, s.cOut, s.cIn, hw, false, true, 0, 0, 0, b > 0 ? 1 : 0);
    if (gb) channel_sums(gb, gy, s.n, s.cOut, hw);
    return;
  }
  bool bias = gb != nullptr;
  const Primitive& p = cached(conv_key("conv_bwd_weight", s, bias), [&] {
    using dnnl::convolution_backward_weights;
    auto d = conv_descs(s);
    auto hint = forward_pd(d, bias);
    auto desc = bias ? convolution_backward_weights::desc(dnnl::algorithm::convolution_direct, d.src, d.wei, d.bias, d.dst, d.strides, d.dilates, d.padL, d.padR)
                     : convolution_backward_weights::desc(dnnl::algorithm::convolution_direct, d.src, d.wei, d.dst, d.strides, d.dilates, d.padL, d.padR);
    return Primitive{convolution_backward_weights(convolution_backward_weights::primitive_desc(desc, engine(), hint)), {d.src, d.wei, d.bias, d.dst}};
  });
  std::unordered_map<int, memory> args{{DNNL_ARG_SRC, mem(p.mds[0], x)}, {DNNL_ARG_DIFF_WEIGHTS, mem(p.mds[1], gw)}, {DNNL_ARG_DIFF_DST, mem(p.mds[3], gy)}};
  if (bias) args.emplace(DNNL_ARG_DIFF_BIAS, mem(p.mds[2], gb));
  p.prim.execute(stream(), args);
  stream().wait();
}

}  // namespace graft
