// 2-D convolutions on oneDNN, NCHW activations and OIHW weights as graft stores them. 1×1
// convolutions run as matrix products and most depthwise ones on direct kernels (depthwise.cc),
// both far faster than oneDNN's plain-layout convolution for those shapes. The others run either on plain
// layouts (no reorders per call) or, where the convolution is large enough to pay for them, on the
// blocked layouts oneDNN prefers, with the caller's buffers reordered in and out per call.
#include <algorithm>
#include <array>
#include <limits>
#include <cstdlib>
#include <cstring>
#include <new>
#include <stdexcept>
#include <unordered_map>
#include <vector>

#include <omp.h>

#include "gemm.h"
#include "kernels.h"
#include "onednn.h"

namespace graft {
namespace {

using namespace onednn;

struct ConvDescs {
  memory::desc src, wei, bias, dst;
  memory::dims strides, dilates, padL, padR;
};

// With `any`, src, weights and dst leave their layouts to the primitive; bias stays plain.
ConvDescs conv_descs(const ConvShape& s, bool any = false) {
  ConvDescs d;
  d.src = memory::desc({s.n, s.cIn, s.h, s.w}, dt::f32, s.srcNhwc ? tag::nhwc : tag::nchw);
  // Grouped weights (G, Cout/G, Cin/G, KH, KW) are the same memory as PyTorch's (Cout, Cin/G, KH, KW).
  d.wei = s.groups > 1 ? memory::desc({s.groups, s.cOut / s.groups, s.cIn / s.groups, s.kh, s.kw}, dt::f32, tag::goihw)
                       : memory::desc({s.cOut, s.cIn, s.kh, s.kw}, dt::f32, tag::oihw);
  d.bias = memory::desc({s.cOut}, dt::f32, tag::x);
  d.dst = memory::desc({s.n, s.cOut, s.outH, s.outW}, dt::f32, s.dstNhwc ? tag::nhwc : tag::nchw);
  d.strides = {s.strideH, s.strideW};
  d.dilates = {s.dilH - 1, s.dilW - 1};  // oneDNN counts dilation from 0, PyTorch from 1
  d.padL = {s.padH, s.padW};
  // The right padding for which oneDNN's output-size formula gives exactly outH × outW.
  d.padR = {(s.outH - 1) * s.strideH + (s.kh - 1) * s.dilH + 1 - s.h - s.padH, (s.outW - 1) * s.strideW + (s.kw - 1) * s.dilW + 1 - s.w - s.padW};
  if (any) {
    d.src = memory::desc(d.src.dims(), dt::f32, tag::any);
    d.wei = memory::desc(d.wei.dims(), dt::f32, tag::any);
    d.dst = memory::desc(d.dst.dims(), dt::f32, tag::any);
  }
  return d;
}

std::string conv_key(const char* name, const ConvShape& s, bool bias) {
  return key(name, s.n, s.cIn, s.h, s.w, s.cOut, s.kh, s.kw, s.outH, s.outW, s.strideH, s.strideW, s.padH, s.padW, s.dilH, s.dilW, s.groups, bias,
             s.srcNhwc, s.dstNhwc, s.bf16);
}

// The descriptors of a bf16 convolution: src (or diff_dst) and weights bf16, dst (or diff_src)
// f32, every layout the primitive's choice.
ConvDescs bf16_descs(const ConvShape& s) {
  ConvDescs d = conv_descs(s, true);
  d.src = memory::desc(d.src.dims(), dt::bf16, tag::any);
  d.wei = memory::desc(d.wei.dims(), dt::bf16, tag::any);
  return d;
}

// The output clamp of a fused convolution: none, or [lo, hi] (ReLU: [0, ∞), ReLU6: [0, 6]).
struct Clip {
  bool on = false;
  float lo = 0, hi = 0;
};

// oneDNN's eltwise post-op for `clip`: relu for [0, ∞), clip otherwise (finite bounds).
dnnl::primitive_attr clip_attr(const Clip& clip) {
  dnnl::primitive_attr attr;
  if (!clip.on) return attr;
  dnnl::post_ops po;
  constexpr float big = std::numeric_limits<float>::max();
  if (clip.lo == 0.f && clip.hi == std::numeric_limits<float>::infinity()) po.append_eltwise(1.f, dnnl::algorithm::eltwise_relu, 0.f, 0.f);
  else po.append_eltwise(1.f, dnnl::algorithm::eltwise_clip, std::max(clip.lo, -big), std::min(clip.hi, big));
  attr.set_post_ops(po);
  return attr;
}

// A clamped convolution is inference only, so its primitive is built for forward_inference.
dnnl::convolution_forward::primitive_desc forward_pd(const ConvDescs& d, bool bias, const Clip& clip = {}) {
  using dnnl::convolution_forward;
  auto prop = clip.on ? dnnl::prop_kind::forward_inference : dnnl::prop_kind::forward_training;
  auto desc = bias ? convolution_forward::desc(prop, dnnl::algorithm::convolution_direct, d.src, d.wei, d.bias, d.dst,
                                               d.strides, d.dilates, d.padL, d.padR)
                   : convolution_forward::desc(prop, dnnl::algorithm::convolution_direct, d.src, d.wei, d.dst,
                                               d.strides, d.dilates, d.padL, d.padR);
  return convolution_forward::primitive_desc(desc, clip_attr(clip), engine());
}

std::string clip_key(const char* name, const ConvShape& s, bool bias, const Clip& clip) {
  // The bounds by their bits (key() writes whole numbers).
  auto bits = [](float v) {
    uint32_t u;
    std::memcpy(&u, &v, sizeof u);
    return static_cast<int64_t>(u);
  };
  return conv_key(name, s, bias) + (clip.on ? key("clip", bits(clip.lo), bits(clip.hi)) : std::string());
}

// A 1×1, stride-1, unpadded, ungrouped convolution is one matrix product per image:
// y[b] (Cout, HW) = W (Cout, Cin) · x[b] (Cin, HW).
bool is_pointwise(const ConvShape& s) {
  return s.kh == 1 && s.kw == 1 && s.strideH == 1 && s.strideW == 1 && s.padH == 0 && s.padW == 0 && s.groups == 1 && s.outH == s.h &&
         s.outW == s.w;
}

// Scratchpad of the calling thread for primitives run inside a parallel region.
void* thread_scratchpad(size_t bytes) {
  static thread_local std::vector<char> buffer;
  if (buffer.size() < bytes) buffer.resize(bytes);
  return buffer.data();
}

// A pointwise forward pass in column tiles, one task per (image, tile), each a single-threaded
// matmul y[b][:, j0:j0+cols] = W · x[b][:, j0:j0+cols] followed by the bias and the clamp while the
// tile is still in cache: the output is written once instead of written, then read and written
// again by a separate bias pass (oneDNN 2.6's matmul has no fast kernel for a bias along the
// rows). Returns false where the tiles are too few to occupy every thread (small planes at batch
// 1); the caller then runs one multi-threaded product and the bias pass.
bool pointwise_tiled(float* y, const float* x, const float* w, const float* bias, const ConvShape& s, const Clip& clip) {
  const int threads = omp_get_max_threads();
  if (threads < 2 || omp_in_parallel()) return false;
  const int64_t hw = s.h * s.w;
  // About 32K output floats per tile (128 KiB, in L2 with its inputs), a multiple of 16 columns, at least 64.
  const int64_t cols = std::min(hw, std::max<int64_t>(64, (int64_t(1) << 15) / s.cOut / 16 * 16));
  const int64_t tiles = (hw + cols - 1) / cols;
  if (s.n * tiles < threads) return false;
  const int64_t lastCols = hw - (tiles - 1) * cols;
  // Copies, taken before the parallel region (the cache is single-threaded).
  const Primitive full = gemm_primitive({1, s.cOut, cols, s.cIn, false, false, 0, 0, 0, 0, false, hw, hw}, true);
  const Primitive last = gemm_primitive({1, s.cOut, lastCols, s.cIn, false, false, 0, 0, 0, 0, false, hw, hw}, true);
  const size_t scratch = std::max(full.scratchpad, last.scratchpad);
  const float lo = clip.on ? clip.lo : -std::numeric_limits<float>::infinity();
  const float hi = clip.on ? clip.hi : std::numeric_limits<float>::infinity();
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < s.n * tiles; t++) {
    const int64_t b = t / tiles, j0 = (t % tiles) * cols, nc = std::min(cols, hw - j0);
    float* yt = y + b * s.cOut * hw + j0;
    gemm_execute(nc == cols ? full : last, onednn::stream(), yt, w, x + b * s.cIn * hw + j0, thread_scratchpad(scratch));
    if (!bias && !clip.on) continue;
    for (int64_t r = 0; r < s.cOut; r++) {
      float* row = yt + r * hw;
      const float add = bias ? bias[r] : 0.f;
#pragma omp simd
      for (int64_t i = 0; i < nc; i++) row[i] = std::min(std::max(row[i] + add, lo), hi);
    }
  }
  return true;
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

// y (B, C, HW) = clamp(y + bias (C, may be null), lo, hi) in one pass.
void add_channel_bias_clip(float* y, const float* bias, int64_t n, int64_t c, int64_t hw, float lo, float hi) {
#pragma omp parallel for schedule(static) if (n * c * hw > (1 << 15))
  for (int64_t p = 0; p < n * c; p++) {
    float b = bias ? bias[p % c] : 0.f;
    float* row = y + p * hw;
#pragma omp simd
    for (int64_t i = 0; i < hw; i++) row[i] = std::min(std::max(row[i] + b, lo), hi);
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

// ---- blocked layouts ----------------------------------------------------------------------------
// A blocked entry in the primitive cache holds, for each of the convolution's three tensor
// arguments (slot i), the caller's plain descriptor in mds[2i], the primitive's chosen descriptor
// in mds[2i + 1] and, in aux[i], the reorder between them (a null primitive where the two agree);
// mds[6] is the plain bias descriptor. The reorders are built once per shape with the primitive;
// the blocked copies live in the calling thread's workspace, and memory objects wrapping the
// caller's buffers are made per call.

size_t page_round(size_t bytes) { return (bytes + 4095) & ~size_t(4095); }

// Scratch memory of the calling thread for blocked copies: grown to the largest request seen and
// reused, so a call neither allocates nor touches fresh pages once it has reached its size. It
// holds at most the blocked src, weights and dst of the largest convolution run blocked.
char* workspace(size_t bytes) {
  struct Buffer {
    char* data = nullptr;
    size_t capacity = 0;
    ~Buffer() { std::free(data); }
  };
  static thread_local Buffer b;
  if (bytes > b.capacity) {
    std::free(b.data);
    b.data = nullptr;
    b.capacity = 0;
    size_t size = page_round(bytes);
    b.data = static_cast<char*>(std::aligned_alloc(4096, size));
    if (!b.data) throw std::bad_alloc();
    b.capacity = size;
  }
  return b.data;
}

// The cache entry for `prim`, whose slot i takes `chosen[i]` where the caller holds `user[i]`;
// `input[i]`: the slot is read by the primitive (reordered in), else written (reordered out).
Primitive with_layouts(dnnl::primitive prim, const std::array<memory::desc, 3>& user, const std::array<memory::desc, 3>& chosen,
                       const std::array<bool, 3>& input, const memory::desc& bias) {
  Primitive p{std::move(prim), {}, 0, {}};
  for (int i = 0; i < 3; i++) {
    p.mds.push_back(user[i]);
    p.mds.push_back(chosen[i]);
    if (user[i] == chosen[i]) {
      p.aux.emplace_back();
    } else {
      const memory::desc& from = input[i] ? user[i] : chosen[i];
      const memory::desc& to = input[i] ? chosen[i] : user[i];
      p.aux.emplace_back(dnnl::reorder(dnnl::reorder::primitive_desc(engine(), from, engine(), to)));
    }
  }
  p.mds.push_back(bias);
  return p;
}

// Runs a blocked entry: reorders the inputs into the workspace, runs the primitive, reorders the
// outputs back into the caller's buffers. `bias` (may be null) is passed plain as `biasArg`.
void execute_with_layouts(const Primitive& p, const std::array<int, 3>& args, const std::array<void*, 3>& buffers,
                          const std::array<bool, 3>& input, int biasArg, const float* bias) {
  std::array<size_t, 3> offset{};
  size_t total = 0;
  for (int i = 0; i < 3; i++) {
    if (!p.aux[i]) continue;
    offset[i] = total;
    total += page_round(p.mds[2 * i + 1].get_size());
  }
  char* ws = total ? workspace(total) : nullptr;
  std::array<memory, 3> user, blocked;
  std::unordered_map<int, memory> primArgs;
  for (int i = 0; i < 3; i++) {
    user[i] = mem(p.mds[2 * i], buffers[i]);
    if (!p.aux[i]) {
      primArgs.emplace(args[i], user[i]);
      continue;
    }
    blocked[i] = mem(p.mds[2 * i + 1], ws + offset[i]);
    if (input[i]) p.aux[i].execute(stream(), {{DNNL_ARG_FROM, user[i]}, {DNNL_ARG_TO, blocked[i]}});
    primArgs.emplace(args[i], blocked[i]);
  }
  if (bias) primArgs.emplace(biasArg, mem(p.mds[6], bias));
  p.prim.execute(stream(), primArgs);
  for (int i = 0; i < 3; i++)
    if (p.aux[i] && !input[i]) p.aux[i].execute(stream(), {{DNNL_ARG_FROM, blocked[i]}, {DNNL_ARG_TO, user[i]}});
  stream().wait();
}

enum class Pass { forward, backward_data, backward_weight };

// Whether a pass runs on oneDNN's preferred (blocked) layouts, reorders included, rather than on
// plain ones. Measured on 2 AVX-512 cores (3×3, 5×5 and 7×7 kernels, batch 1–8, 3–512 channels,
// grouped, strided and dilated), the blocked kernels run 1.2–2.5× faster almost everywhere;
// plain wins only
// - below about 1M multiply-adds, where the reorders' fixed cost dominates (0.8–0.9×);
// - for backward-data with few input channels (a 3-channel stem: 0.25–0.6×; 8: 0.8–1.2×);
// - for backward-weights of a single image whose output plane has fewer positions than the
//   convolution has input channels per group (512 channels at 7² or 10²: 0.65–0.85×).
// Forward at channel counts that are not multiples of 16 (24 → 40) loses about 7% blocked and is
// left blocked to keep the rule simple.
bool prefer_blocked(const ConvShape& s, Pass pass) {
  int64_t plane = s.outH * s.outW;
  int64_t macs = s.n * plane * s.cOut * (s.cIn / s.groups) * s.kh * s.kw;
  if (macs < (int64_t(1) << 20)) return false;
  if (pass == Pass::backward_data) return s.cIn >= 16;
  if (pass == Pass::backward_weight) return s.n >= 2 || plane >= s.cIn / s.groups;
  return true;
}

// Depthwise convolutions run on depthwise.cc's direct kernels, except forward and backward-data
// passes of large kernels: oneDNN's blocked depthwise kernels, reorders included, ran a 7×7 over
// 8×96×56² (ConvNeXt-T) 5.4× (forward) and 4.1× (backward data) faster; at 3×3 the two are within
// ~10% (forward) and the direct kernel wins backward. Weight gradients stay direct (5× faster).
bool depthwise_on_onednn(const ConvShape& s, Pass pass) {
  return is_depthwise(s) && s.kh * s.kw >= 49 && pass != Pass::backward_weight && prefer_blocked(s, pass);
}

// A forward pass with x or y channels-last (inference). A pointwise convolution into NHWC is one
// matmul with the bias along its columns and the clamp as post-ops: y (N·HW, Cout) = x (N·HW, Cin)
// · Wᵀ, or per image with x[b] (Cin, HW) read transposed when x is NCHW. A depthwise one from NHWC
// to NHWC runs on the channel-vectorised direct kernel. Returns false for the other cases, which
// oneDNN's convolution runs on the layouts as given.
bool conv_forward_nhwc(float* y, const float* x, const float* w, const float* bias, const ConvShape& s, const Clip& clip) {
  const float lo = clip.on ? clip.lo : -std::numeric_limits<float>::infinity();
  const float hi = clip.on ? clip.hi : std::numeric_limits<float>::infinity();
  if (is_depthwise(s) && s.srcNhwc && s.dstNhwc) {
    depthwise_forward_nhwc(y, x, w, bias, s, lo, hi);
    return true;
  }
  if (!is_pointwise(s) || !s.dstNhwc) return false;
  const int64_t hw = s.h * s.w;
  GemmShape g = s.srcNhwc ? GemmShape{1, s.n * hw, s.cOut, s.cIn, false, true, 0, 0, 0, 0}
                          : GemmShape{s.n, hw, s.cOut, s.cIn, true, true, s.cIn * hw, 0, hw * s.cOut, 0};
  g.bias = bias != nullptr;
  g.clip = clip.on;
  g.lo = clip.lo;
  g.hi = clip.hi;
  const Primitive& p = gemm_primitive(g, false);
  gemm_execute(p, stream(), y, x, w, nullptr, bias);
  return true;
}

void check_bf16(const ConvShape& s) {
  if (s.groups != 1 || s.srcNhwc || s.dstNhwc) throw std::invalid_argument("a bf16 convolution is groups = 1 and NCHW");
  if (!bf16_supported()) throw std::invalid_argument("this CPU has no AVX512_BF16: a bf16 convolution cannot run (bf16Supported() is false)");
}

// A bf16 forward pass: x and w reordered (rounded to nearest even) into the bf16 layouts the
// primitive chose, the output f32 reordered back to NCHW.
void conv_forward_bf16(float* y, const float* x, const float* w, const float* bias, const ConvShape& s, const Clip& clip) {
  check_bf16(s);
  const bool hasBias = bias != nullptr;
  const Primitive& p = cached(clip_key("conv_fwd_bf16", s, hasBias, clip), [&] {
    ConvShape plainShape = s;
    plainShape.bf16 = false;
    auto plain = conv_descs(plainShape);
    auto pd = forward_pd(bf16_descs(s), hasBias, clip);
    return with_layouts(dnnl::convolution_forward(pd), {plain.src, plain.wei, plain.dst}, {pd.src_desc(), pd.weights_desc(), pd.dst_desc()},
                        {true, true, false}, plain.bias);
  });
  execute_with_layouts(p, {DNNL_ARG_SRC, DNNL_ARG_WEIGHTS, DNNL_ARG_DST}, {const_cast<float*>(x), const_cast<float*>(w), y}, {true, true, false},
                       DNNL_ARG_BIAS, bias);
}

// The forward pass, its outputs clamped when `clip` is on (fused into the same kernel).
void conv_forward(float* y, const float* x, const float* w, const float* bias, const ConvShape& s, const Clip& clip) {
  if (s.bf16) return conv_forward_bf16(y, x, w, bias, s, clip);
  if ((s.srcNhwc || s.dstNhwc) && conv_forward_nhwc(y, x, w, bias, s, clip)) return;
  const bool nchw = !s.srcNhwc && !s.dstNhwc;
  if (nchw && is_depthwise(s) && !depthwise_on_onednn(s, Pass::forward)) {
    if (clip.on) return depthwise_forward(y, x, w, bias, s, clip.lo, clip.hi);
    return depthwise_forward(y, x, w, bias, s);
  }
  if (nchw && is_pointwise(s)) {
    // oneDNN 2.6's matmul has no fast kernel for a bias along the rows (it falls back to its
    // reference one), so the bias and the clamp follow the product in one pass of their own.
    if (pointwise_tiled(y, x, w, bias, s, clip)) return;
    int64_t hw = s.h * s.w;
    matmul(y, w, x, s.n, s.cOut, hw, s.cIn, false, false, 0, s.cIn * hw, s.cOut * hw, 0);
    if (clip.on) add_channel_bias_clip(y, bias, s.n, s.cOut, hw, clip.lo, clip.hi);
    else if (bias) add_channel_bias(y, bias, s.n, s.cOut, hw);
    return;
  }
  bool hasBias = bias != nullptr;
  if (prefer_blocked(s, Pass::forward)) {
    const Primitive& p = cached(clip_key("conv_fwd_blocked", s, hasBias, clip), [&] {
      auto plain = conv_descs(s);
      auto pd = forward_pd(conv_descs(s, true), hasBias, clip);
      return with_layouts(dnnl::convolution_forward(pd), {plain.src, plain.wei, plain.dst}, {pd.src_desc(), pd.weights_desc(), pd.dst_desc()},
                          {true, true, false}, plain.bias);
    });
    return execute_with_layouts(p, {DNNL_ARG_SRC, DNNL_ARG_WEIGHTS, DNNL_ARG_DST}, {const_cast<float*>(x), const_cast<float*>(w), y},
                                {true, true, false}, DNNL_ARG_BIAS, bias);
  }
  const Primitive& p = cached(clip_key("conv_fwd", s, hasBias, clip), [&] {
    auto d = conv_descs(s);
    return Primitive{dnnl::convolution_forward(forward_pd(d, hasBias, clip)), {d.src, d.wei, d.bias, d.dst}};
  });
  std::unordered_map<int, memory> args{{DNNL_ARG_SRC, mem(p.mds[0], x)}, {DNNL_ARG_WEIGHTS, mem(p.mds[1], w)}, {DNNL_ARG_DST, mem(p.mds[3], y)}};
  if (bias) args.emplace(DNNL_ARG_BIAS, mem(p.mds[2], bias));
  p.prim.execute(stream(), args);
  stream().wait();
}

// Prepacked inference convolutions. oneDNN's fast NHWC kernels (brgconv, brgconv_1x1,
// brdgmm_dw on AVX-512) read their weights in a blocked layout of their own choosing; given plain
// OIHW weights they either reorder them on every call or fall back to a reference kernel. A
// packed weight (onednn.h) is that layout, made once for weights reused over many calls. The
// layout depends on the weights' shape, stride, padding, bias and post-ops, not on the batch or
// plane size, so one packed copy serves every batch size.
// The primitive for s with NHWC src and dst and weights in the layout it prefers.
const Primitive& packed_primitive(const ConvShape& s, bool bias, const Clip& clip) {
  ConvShape t = s;
  t.srcNhwc = t.dstNhwc = true;
  return cached(clip_key("conv_fwd_packed", t, bias, clip), [&] {
    auto d = conv_descs(t);
    d.wei = memory::desc(d.wei.dims(), dt::f32, tag::any);
    using dnnl::convolution_forward;
    auto desc = bias ? convolution_forward::desc(dnnl::prop_kind::forward_inference, dnnl::algorithm::convolution_direct, d.src, d.wei, d.bias, d.dst,
                                                 d.strides, d.dilates, d.padL, d.padR)
                     : convolution_forward::desc(dnnl::prop_kind::forward_inference, dnnl::algorithm::convolution_direct, d.src, d.wei, d.dst,
                                                 d.strides, d.dilates, d.padL, d.padR);
    convolution_forward::primitive_desc pd(desc, clip_attr(clip), engine());
    // Only the JIT kernels pay for packing; oneDNN's reference kernel is what the plain path avoids.
    const bool jit = std::strncmp(pd.impl_info_str(), "ref", 3) != 0;
    return Primitive{jit ? dnnl::primitive(convolution_forward(pd)) : dnnl::primitive(), {d.src, pd.weights_desc(), d.bias, d.dst}};
  });
}

// NCHW → NHWC for one input, through a cached oneDNN reorder.
void to_nhwc(float* dst, const float* src, const ConvShape& s) {
  const Primitive& p = cached(key("conv_src_nhwc", s.n, s.cIn, s.h, s.w), [&] {
    memory::desc from({s.n, s.cIn, s.h, s.w}, dt::f32, tag::nchw), to({s.n, s.cIn, s.h, s.w}, dt::f32, tag::nhwc);
    return Primitive{dnnl::reorder(dnnl::reorder::primitive_desc(engine(), from, engine(), to)), {from, to}};
  });
  p.prim.execute(stream(), {{DNNL_ARG_FROM, mem(p.mds[0], src)}, {DNNL_ARG_TO, mem(p.mds[1], dst)}});
}

}  // namespace

int64_t conv2d_packed_length(const ConvShape& s, bool bias, bool clipOn, float lo, float hi) {
  if (!s.dstNhwc) return 0;
  const Primitive& p = packed_primitive(s, bias, Clip{clipOn, lo, hi});
  return p.prim ? packed_length(p.mds[1]) : 0;
}

void conv2d_pack_weight(float* packed, int64_t length, const float* w, const ConvShape& s, bool bias, bool clipOn, float lo, float hi) {
  const Primitive& p = packed_primitive(s, bias, Clip{clipOn, lo, hi});
  if (!s.dstNhwc || !p.prim) throw std::invalid_argument("no packed layout for this geometry (conv2dPackedLength gives 0)");
  pack_weights(packed, length, conv_descs(s).wei, w, p.mds[1]);
}

void conv2d_forward_packed(float* y, const float* x, const float* w, const float* packed, int64_t length, const float* bias, const ConvShape& s,
                           bool clipOn, float lo, float hi) {
  const Clip clip{clipOn, lo, hi};
  const Primitive& p = packed_primitive(s, bias != nullptr, clip);
  const bool usable = s.dstNhwc && p.prim && packed_as(packed, length, p.mds[1]);
  if (!usable) return conv_forward(y, x, w, bias, s, clip);
  const float* src = x;
  if (!s.srcNhwc) {
    static thread_local std::vector<float> nhwc;
    nhwc.resize(static_cast<size_t>(s.n * s.cIn * s.h * s.w));
    to_nhwc(nhwc.data(), x, s);
    src = nhwc.data();
  }
  std::unordered_map<int, memory> args{{DNNL_ARG_SRC, mem(p.mds[0], src)}, {DNNL_ARG_WEIGHTS, mem(p.mds[1], packed + kPackHeader)}, {DNNL_ARG_DST, mem(p.mds[3], y)}};
  if (bias) args.emplace(DNNL_ARG_BIAS, mem(p.mds[2], bias));
  p.prim.execute(stream(), args);
  stream().wait();
}

void conv2d_forward(float* y, const float* x, const float* w, const float* bias, const ConvShape& s) { conv_forward(y, x, w, bias, s, Clip{}); }

void conv2d_forward_clip(float* y, const float* x, const float* w, const float* bias, const ConvShape& s, float lo, float hi) {
  conv_forward(y, x, w, bias, s, Clip{true, lo, hi});
}

void conv2d_backward_data(float* gx, const float* gy, const float* w, const ConvShape& s) {
  if (s.srcNhwc || s.dstNhwc) throw std::invalid_argument("conv2d backward passes take NCHW tensors only");
  if (s.bf16) {
    // gy and w reordered into bf16, gx accumulated and written in f32.
    check_bf16(s);
    const Primitive& p = cached(conv_key("conv_bwd_data_bf16", s, false), [&] {
      ConvShape plainShape = s;
      plainShape.bf16 = false;
      auto plain = conv_descs(plainShape);
      ConvDescs d = bf16_descs(s);
      ConvDescs fwd = d;
      fwd.dst = memory::desc(d.dst.dims(), dt::bf16, tag::any);
      auto hint = forward_pd(fwd, false);
      // diff_src f32; weights and diff_dst bf16
      memory::desc diffSrc(d.src.dims(), dt::f32, tag::any), diffDst(d.dst.dims(), dt::bf16, tag::any);
      dnnl::convolution_backward_data::desc desc(dnnl::algorithm::convolution_direct, diffSrc, d.wei, diffDst, d.strides, d.dilates, d.padL, d.padR);
      dnnl::convolution_backward_data::primitive_desc pd(desc, engine(), hint);
      return with_layouts(dnnl::convolution_backward_data(pd), {plain.src, plain.wei, plain.dst},
                          {pd.diff_src_desc(), pd.weights_desc(), pd.diff_dst_desc()}, {false, true, true}, plain.bias);
    });
    return execute_with_layouts(p, {DNNL_ARG_DIFF_SRC, DNNL_ARG_WEIGHTS, DNNL_ARG_DIFF_DST}, {gx, const_cast<float*>(w), const_cast<float*>(gy)},
                                {false, true, true}, 0, nullptr);
  }
  if (is_depthwise(s) && !depthwise_on_onednn(s, Pass::backward_data)) return depthwise_backward_data(gx, gy, w, s);
  if (is_pointwise(s)) {
    // gx[b] (Cin, HW) = Wᵀ (Cin, Cout) · gy[b] (Cout, HW)
    int64_t hw = s.h * s.w;
    return matmul(gx, w, gy, s.n, s.cIn, hw, s.cOut, true, false, 0, s.cOut * hw, s.cIn * hw, 0);
  }
  if (prefer_blocked(s, Pass::backward_data)) {
    const Primitive& p = cached(conv_key("conv_bwd_data_blocked", s, false), [&] {
      auto plain = conv_descs(s);
      auto d = conv_descs(s, true);
      auto hint = forward_pd(d, false);
      dnnl::convolution_backward_data::desc desc(dnnl::algorithm::convolution_direct, d.src, d.wei, d.dst, d.strides, d.dilates, d.padL, d.padR);
      dnnl::convolution_backward_data::primitive_desc pd(desc, engine(), hint);
      return with_layouts(dnnl::convolution_backward_data(pd), {plain.src, plain.wei, plain.dst},
                          {pd.diff_src_desc(), pd.weights_desc(), pd.diff_dst_desc()}, {false, true, true}, plain.bias);
    });
    return execute_with_layouts(p, {DNNL_ARG_DIFF_SRC, DNNL_ARG_WEIGHTS, DNNL_ARG_DIFF_DST}, {gx, const_cast<float*>(w), const_cast<float*>(gy)},
                                {false, true, true}, 0, nullptr);
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
  if (s.srcNhwc || s.dstNhwc) throw std::invalid_argument("conv2d backward passes take NCHW tensors only");
  if (s.bf16) throw std::invalid_argument("a convolution's weight gradient is computed in f32 (a bf16 convolution's weight is frozen)");
  if (is_depthwise(s)) return depthwise_backward_weight(gw, gb, x, gy, s);
  if (is_pointwise(s)) {
    // gW (Cout, Cin) = Σ_b gy[b] (Cout, HW) · x[b]ᵀ (HW, Cin), accumulated image by image.
    int64_t hw = s.h * s.w;
    for (int64_t b = 0; b < s.n; b++) matmul(gw, gy + b * s.cOut * hw, x + b * s.cIn * hw, 1, s.cOut, s.cIn, hw, false, true, 0, 0, 0, b > 0 ? 1 : 0);
    if (gb) channel_sums(gb, gy, s.n, s.cOut, hw);
    return;
  }
  bool bias = gb != nullptr;
  if (prefer_blocked(s, Pass::backward_weight)) {
    const Primitive& p = cached(conv_key("conv_bwd_weight_blocked", s, bias), [&] {
      using dnnl::convolution_backward_weights;
      auto plain = conv_descs(s);
      auto d = conv_descs(s, true);
      auto hint = forward_pd(d, bias);
      auto desc = bias ? convolution_backward_weights::desc(dnnl::algorithm::convolution_direct, d.src, d.wei, d.bias, d.dst, d.strides, d.dilates, d.padL, d.padR)
                       : convolution_backward_weights::desc(dnnl::algorithm::convolution_direct, d.src, d.wei, d.dst, d.strides, d.dilates, d.padL, d.padR);
      convolution_backward_weights::primitive_desc pd(desc, engine(), hint);
      return with_layouts(convolution_backward_weights(pd), {plain.src, plain.wei, plain.dst},
                          {pd.src_desc(), pd.diff_weights_desc(), pd.diff_dst_desc()}, {true, false, true}, plain.bias);
    });
    // The bias gradient is an output the primitive writes straight into gb (plain).
    return execute_with_layouts(p, {DNNL_ARG_SRC, DNNL_ARG_DIFF_WEIGHTS, DNNL_ARG_DIFF_DST}, {const_cast<float*>(x), gw, const_cast<float*>(gy)},
                                {true, false, true}, DNNL_ARG_DIFF_BIAS, gb);
  }
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
