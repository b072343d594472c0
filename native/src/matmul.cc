// Matrix products on oneDNN's matmul primitive. Transposes and batch broadcasting are expressed
// as memory-descriptor strides (a batch stride of 0 becomes a batch dimension of 1, which oneDNN
// broadcasts), and beta = 1 is a sum post-op, so no operand is ever copied.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>

#include "gemm.h"
#include "kernels.h"
#include "parallel.h"

namespace graft {

using namespace onednn;

const Primitive& gemm_primitive(const GemmShape& g, bool userScratchpad) {
  auto bits = [](float v) {
    uint32_t u;
    std::memcpy(&u, &v, sizeof u);
    return static_cast<int64_t>(u);
  };
  return cached(key("mm", g.batch, g.m, g.n, g.k, g.transA, g.transB, g.strideA, g.strideB, g.strideC, g.beta, g.bias, userScratchpad, g.ldb, g.ldc, g.clip, bits(g.lo), bits(g.hi), g.lda), [&] {
    int64_t ba = g.strideA == 0 ? 1 : g.batch, bb = g.strideB == 0 ? 1 : g.batch;
    int64_t sa = g.strideA ? g.strideA : g.m * g.k, sb = g.strideB ? g.strideB : g.k * g.n, sc = g.strideC ? g.strideC : g.m * g.n;
    // a (M, K) viewed from storage (K, M) when transposed; likewise b (K, N) from (N, K).
    const int64_t lda = g.lda ? g.lda : (g.transA ? g.m : g.k);
    memory::desc a_md({ba, g.m, g.k}, dt::f32, g.transA ? memory::dims{sa, 1, lda} : memory::dims{sa, lda, 1});
    const int64_t ldb = g.ldb ? g.ldb : (g.transB ? g.k : g.n), ldc = g.ldc ? g.ldc : g.n;
    memory::desc b_md({bb, g.k, g.n}, dt::f32, g.transB ? memory::dims{sb, 1, ldb} : memory::dims{sb, ldb, 1});
    memory::desc c_md({g.batch, g.m, g.n}, dt::f32, memory::dims{sc, ldc, 1});
    dnnl::primitive_attr attr;
    if (g.beta || g.clip) {
      dnnl::post_ops po;
      if (g.beta) po.append_sum(1.f);
      if (g.clip) {
        constexpr float big = std::numeric_limits<float>::max();
        if (g.lo == 0.f && g.hi == std::numeric_limits<float>::infinity()) po.append_eltwise(1.f, dnnl::algorithm::eltwise_relu, 0.f, 0.f);
        else po.append_eltwise(1.f, dnnl::algorithm::eltwise_clip, std::max(g.lo, -big), std::min(g.hi, big));
      }
      attr.set_post_ops(po);
    }
    if (userScratchpad) attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
    // The bias (1, 1, N) broadcasts over the batch and the rows.
    memory::desc bias_md({1, 1, g.n}, dt::f32, memory::dims{g.n, g.n, 1});
    dnnl::matmul::primitive_desc pd = g.bias ? dnnl::matmul::primitive_desc(dnnl::matmul::desc(a_md, b_md, bias_md, c_md), attr, engine())
                                             : dnnl::matmul::primitive_desc(dnnl::matmul::desc(a_md, b_md, c_md), attr, engine());
    return Primitive{dnnl::matmul(pd), {a_md, b_md, c_md, pd.scratchpad_desc(), bias_md}, userScratchpad ? pd.scratchpad_desc().get_size() : 0};
  });
}

void gemm_execute(const Primitive& p, dnnl::stream& s, float* c, const float* a, const float* b, void* scratchpad, const float* bias) {
  std::unordered_map<int, memory> args{{DNNL_ARG_SRC, mem(p.mds[0], a)}, {DNNL_ARG_WEIGHTS, mem(p.mds[1], b)}, {DNNL_ARG_DST, mem(p.mds[2], c)}};
  if (p.scratchpad) args.emplace(DNNL_ARG_SCRATCHPAD, mem(p.mds[3], scratchpad));
  if (bias) args.emplace(DNNL_ARG_BIAS, mem(p.mds[4], bias));
  p.prim.execute(s, args);
  s.wait();
}

void matmul(float* c, const float* a, const float* b, int64_t batch, int64_t m, int64_t n, int64_t k, bool transA, bool transB,
            int64_t strideA, int64_t strideB, int64_t strideC, int beta, const float* bias) {
  if (batch <= 0 || m <= 0 || n <= 0) return;
  if (k <= 0) {
    // An empty sum: C = 0 (or the bias), or C unchanged (plus the bias) when accumulating.
    for (int64_t i = 0; i < batch; i++) {
      float* ci = c + i * (strideC ? strideC : m * n);
      for (int64_t r = 0; r < m; r++)
        for (int64_t j = 0; j < n; j++) ci[r * n + j] = (beta ? ci[r * n + j] : 0.f) + (bias ? bias[j] : 0.f);
    }
    return;
  }
  const Primitive& p = gemm_primitive(GemmShape{batch, m, n, k, transA, transB, strideA, strideB, strideC, beta, bias != nullptr}, false);
  gemm_execute(p, stream(), c, a, b, nullptr, bias);
}

// Products with a packed B (onednn.h), for inference layers whose weights many calls reuse:
// c (M, N) = a (M, K) · B (+ bias), B packed from (K, N), or from (N, K) when transB. oneDNN's
// AVX-512 kernel then reads B in its own blocked layout instead of copying blocks of it on every
// call. Its layout depends on K and N only, so one packed copy serves every M.
namespace {

// The activation fused as an eltwise post-op: the unary op's code (kernels.h), or -1 for none.
dnnl::primitive_attr activation_attr(int act) {
  dnnl::primitive_attr attr;
  if (act < 0) return attr;
  dnnl::post_ops po;
  switch (static_cast<Unary>(act)) {
    case Unary::Gelu: po.append_eltwise(1.f, dnnl::algorithm::eltwise_gelu_erf, 0.f, 0.f); break;
    case Unary::GeluTanh: po.append_eltwise(1.f, dnnl::algorithm::eltwise_gelu_tanh, 0.f, 0.f); break;
    case Unary::Silu: po.append_eltwise(1.f, dnnl::algorithm::eltwise_swish, 1.f, 0.f); break;
    case Unary::Relu: po.append_eltwise(1.f, dnnl::algorithm::eltwise_relu, 0.f, 0.f); break;
    default: throw std::invalid_argument("a product fuses only gelu, gelu_tanh, silu or relu");
  }
  attr.set_post_ops(po);
  return attr;
}

// Products on packed B in float32, or (bf16) on bf16 copies of a and B with float32 outputs.
const Primitive& packed_matmul(int64_t m, int64_t n, int64_t k, bool bias, int act = -1, bool bf16 = false) {
  return cached(key("mm_packed", m, n, k, bias, act, bf16), [&] {
    const dt in = bf16 ? dt::bf16 : dt::f32;
    memory::desc a({m, k}, in, tag::ab), b({k, n}, in, tag::any), c({m, n}, dt::f32, tag::ab), bias_md({1, n}, dt::f32, tag::ab);
    const auto attr = activation_attr(act);
    auto pd = bias ? dnnl::matmul::primitive_desc(dnnl::matmul::desc(a, b, bias_md, c), attr, engine())
                   : dnnl::matmul::primitive_desc(dnnl::matmul::desc(a, b, c), attr, engine());
    const bool jit = std::strncmp(pd.impl_info_str(), "ref", 3) != 0 && (!bf16 || bf16_supported());
    return Primitive{jit ? dnnl::primitive(dnnl::matmul(pd)) : dnnl::primitive(), {a, pd.weights_desc(), c, bias_md}};
  });
}

// The layout is chosen for a typical M: the same for every M on the shapes measured.
constexpr int64_t kPackRows = 256;

// bf16 staging of the current call's a operand (one per thread: kernels run on the JavaScript
// thread of each worker).
thread_local std::vector<uint16_t> t_bf16_a;

// Whether the packed copy's header describes bf16 weights.
bool packed_bf16(const float* packed, int64_t length) {
  if (length < static_cast<int64_t>(kPackHeader)) return false;
  dnnl_memory_desc_t header;
  std::memcpy(&header, packed, sizeof header);
  return header.data_type == dnnl_bf16;
}

}  // namespace

void to_bf16_serial(uint16_t* out, const float* in, int64_t count) {
  for (int64_t i = 0; i < count; i++) {
    uint32_t u;
    std::memcpy(&u, in + i, sizeof u);
    // Round to nearest, ties to even; a NaN stays a (quiet) NaN.
    out[i] = (u & 0x7fffffffu) > 0x7f800000u ? static_cast<uint16_t>((u >> 16) | 0x40u) : static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
  }
}

void to_bf16(uint16_t* out, const float* in, int64_t count) {
  parallel_chunks(count, count, [&](int64_t lo, int64_t hi) { to_bf16_serial(out + lo, in + lo, hi - lo); });
}

bool bf16_supported() {
  static const bool ok = [] {
    const auto isa = dnnl::get_effective_cpu_isa();
    return isa == dnnl::cpu_isa::avx512_core_bf16 || isa == dnnl::cpu_isa::avx512_core_amx;
  }();
  return ok;
}

int64_t matmul_packed_length(int64_t n, int64_t k, bool bias, bool bf16) {
  const Primitive& p = packed_matmul(kPackRows, n, k, bias, -1, bf16);
  return p.prim ? packed_length(p.mds[1]) : 0;
}

void matmul_pack(float* packed, int64_t length, const float* b, int64_t n, int64_t k, bool transB, bool bias, bool bf16) {
  const Primitive& p = packed_matmul(kPackRows, n, k, bias, -1, bf16);
  if (!p.prim) throw std::invalid_argument("no packed layout for this product (matmulPackedLength gives 0)");
  pack_weights(packed, length, memory::desc({k, n}, dt::f32, transB ? tag::ba : tag::ab), b, p.mds[1]);
}

void matmul_packed(float* c, const float* a, const float* b, const float* packed, int64_t length, int64_t m, int64_t n, int64_t k, bool transB,
                   const float* bias, int act) {
  if (m <= 0) return;
  const bool bf16 = packed_bf16(packed, length);
  const Primitive& p = packed_matmul(m, n, k, bias != nullptr, act, bf16);
  if (!p.prim || !packed_as(packed, length, p.mds[1])) {
    matmul(c, a, b, 1, m, n, k, false, transB, 0, 0, 0, 0, bias);
    if (act >= 0) unary_forward(c, c, m * n, static_cast<Unary>(act), 0.f, 0.f);
    return;
  }
  const void* src = a;
  if (bf16) {
    uint16_t* ab = staging(t_bf16_a, static_cast<size_t>(m * k));
    to_bf16(ab, a, m * k);
    src = ab;
  }
  std::unordered_map<int, memory> args{{DNNL_ARG_SRC, mem(p.mds[0], src)}, {DNNL_ARG_WEIGHTS, mem(p.mds[1], packed + kPackHeader)}, {DNNL_ARG_DST, mem(p.mds[2], c)}};
  if (bias) args.emplace(DNNL_ARG_BIAS, mem(p.mds[3], bias));
  p.prim.execute(stream(), args);
  stream().wait();
}

}  // namespace graft
