// Raw oneDNN 2.6 reference for graft's op benchmarks (bench/run.ts compiles and runs it).
//
// stdin:  "policy <warmup> <minRuns> <maxRuns> <budgetMs> <threads>", then one case per line,
//         "<id> <op> key=value ...", as listed in bench/cases.ts.
// stdout: one JSON object {"dnnl_version", "threads", "results": [{id, pass, variant, ms, runs, impl}]}
//         with the median milliseconds per call; rates are computed by run.ts.
//
// Every op uses fp32 and the plain row-major layouts graft hands its kernels (NCHW / OIHW for
// convolutions); convolutions are also timed with format_tag::any ("any" variant), reorders
// to and from graft's layouts included, as the cost a blocked-layout backend would pay per call.
#include <oneapi/dnnl/dnnl.hpp>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <functional>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <unordered_map>
#include <vector>

using namespace dnnl;
using dt = memory::data_type;
using tag = memory::format_tag;
using dims = memory::dims;

struct Policy {
  int warmup = 3, minRuns = 7, maxRuns = 50;
  double budgetMs = 500;
  int threads = 2;
};

struct Sample {
  double ms;
  int runs;
};

static double nowMs() {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Same policy as bench/timing.ts: warm up, then median of runs until the budget is spent.
// `setup`, when given, runs untimed before each call of `body`: a backward pass is timed after
// its forward, as graft and PyTorch time theirs, so each finds the caches as a training step would.
static Sample measure(const std::function<void()>& body, const Policy& p, int callsPerRun = 1, const std::function<void()>& setup = nullptr) {
  double warm = 0;
  for (int i = 0; i < p.warmup && warm < p.budgetMs; i++) {
    if (setup) setup();
    double t0 = nowMs();
    body();
    warm += nowMs() - t0;
  }
  std::vector<double> times;
  double total = 0;
  while ((int)times.size() < p.maxRuns) {
    bool enough = (int)times.size() >= p.minRuns && total >= p.budgetMs;
    bool tooSlow = !times.empty() && total >= 3 * p.budgetMs;
    if (enough || tooSlow) break;
    if (setup) setup();
    double t0 = nowMs();
    body();
    double ms = nowMs() - t0;
    times.push_back(ms);
    total += ms;
  }
  std::sort(times.begin(), times.end());
  size_t mid = times.size() / 2;
  double med = times.size() % 2 ? times[mid] : (times[mid - 1] + times[mid]) / 2;
  return {med / callsPerRun, (int)times.size()};
}

struct Ctx {
  engine eng{engine::kind::cpu, 0};
  stream strm{eng};
  Policy policy;
  std::vector<std::string> results;
};

static std::string jsonString(const std::string& s) {
  std::string out = "\"";
  for (char ch : s) {
    if (ch == '"' || ch == '\\') out += '\\';
    if ((unsigned char)ch < 0x20) continue;
    out += ch;
  }
  return out + "\"";
}

static void report(Ctx& ctx, const std::string& id, const std::string& pass, const std::string& variant, const Sample& s, const std::string& impl) {
  char buf[512];
  snprintf(buf, sizeof buf, "{\"id\":%s,\"pass\":%s,\"variant\":%s,\"ms\":%.6g,\"runs\":%d,\"impl\":%s}", jsonString(id).c_str(),
           jsonString(pass).c_str(), jsonString(variant).c_str(), s.ms, s.runs, jsonString(impl).c_str());
  ctx.results.push_back(buf);
}

static void reportError(Ctx& ctx, const std::string& id, const std::string& msg) {
  ctx.results.push_back("{\"id\":" + jsonString(id) + ",\"error\":" + jsonString(msg) + "}");
}

// Uniform values in [-1, 1) from a fixed LCG, so every run sees the same data.
static void fillRandom(memory& m, float scale = 1.f) {
  auto* p = static_cast<float*>(m.get_data_handle());
  size_t n = m.get_desc().get_size() / sizeof(float);
  uint32_t s = 12345;
  for (size_t i = 0; i < n; i++) {
    s = s * 1664525u + 1013904223u;
    p[i] = scale * ((s >> 8) * (2.f / 16777216.f) - 1.f);
  }
}

static memory newMem(Ctx& ctx, const memory::desc& md, float scale = 1.f) {
  memory m(md, ctx.eng);
  fillRandom(m, scale);
  return m;
}

static memory::desc plain(const dims& d) {
  static const tag tags[] = {tag::undef, tag::a, tag::ab, tag::abc, tag::abcd, tag::abcde};
  return memory::desc(d, dt::f32, tags[d.size()]);
}

using Params = std::map<std::string, long>;

// ---- matmul / linear ----------------------------------------------------------------------
// x (M, K); linear's W is (N, K) (PyTorch layout), matmul's is (K, N). Backward: gx and gW.
static void benchLinear(Ctx& ctx, const std::string& id, const Params& p, bool isLinear) {
  long m = p.at("m"), k = p.at("k"), n = p.at("n");
  auto x = newMem(ctx, plain({m, k})), gy = newMem(ctx, plain({m, n}));
  auto w = newMem(ctx, plain(isLinear ? dims{n, k} : dims{k, n}), 0.05f);
  auto gx = newMem(ctx, plain({m, k})), gw = newMem(ctx, w.get_desc()), y = newMem(ctx, plain({m, n}));
  // Transposed views through strides, as graft's transA / transB flags.
  memory::desc wAsKN = isLinear ? memory::desc({k, n}, dt::f32, dims{1, k}) : plain({k, n});
  memory::desc wAsNK = isLinear ? plain({n, k}) : memory::desc({n, k}, dt::f32, dims{1, n});
  memory::desc gyT({n, m}, dt::f32, dims{1, n});
  memory::desc xT({k, m}, dt::f32, dims{1, k});

  auto bias = newMem(ctx, plain({1, n}));
  memory wKN(wAsKN, ctx.eng, w.get_data_handle());
  matmul::primitive_desc fwdPd = isLinear ? matmul::primitive_desc(matmul::desc(x.get_desc(), wAsKN, bias.get_desc(), y.get_desc()), ctx.eng)
                                          : matmul::primitive_desc(matmul::desc(x.get_desc(), wAsKN, y.get_desc()), ctx.eng);
  matmul fwdPrim(fwdPd);
  std::function<void()> forward = [&] {
    if (isLinear) fwdPrim.execute(ctx.strm, {{DNNL_ARG_SRC, x}, {DNNL_ARG_WEIGHTS, wKN}, {DNNL_ARG_BIAS, bias}, {DNNL_ARG_DST, y}});
    else fwdPrim.execute(ctx.strm, {{DNNL_ARG_SRC, x}, {DNNL_ARG_WEIGHTS, w}, {DNNL_ARG_DST, y}});
    ctx.strm.wait();
  };
  report(ctx, id, "fwd", "plain", measure(forward, ctx.policy), fwdPd.impl_info_str());
  // gx (M, K) = gy (M, N) · W as (N, K); gW = gyᵀ · x (linear) or xᵀ · gy (matmul).
  memory wNK(wAsNK, ctx.eng, w.get_data_handle());
  matmul::primitive_desc dataPd(matmul::desc(gy.get_desc(), wAsNK, gx.get_desc()), ctx.eng);
  matmul dataPrim(dataPd);
  memory::desc gwA = isLinear ? gyT : xT, gwB = isLinear ? x.get_desc() : gy.get_desc();
  matmul::primitive_desc weightPd(matmul::desc(gwA, gwB, gw.get_desc()), ctx.eng);
  matmul weightPrim(weightPd);
  memory a(gwA, ctx.eng, isLinear ? gy.get_data_handle() : x.get_data_handle());
  memory b(gwB, ctx.eng, isLinear ? x.get_data_handle() : gy.get_data_handle());
  auto s = measure([&] {
    dataPrim.execute(ctx.strm, {{DNNL_ARG_SRC, gy}, {DNNL_ARG_WEIGHTS, wNK}, {DNNL_ARG_DST, gx}});
    weightPrim.execute(ctx.strm, {{DNNL_ARG_SRC, a}, {DNNL_ARG_WEIGHTS, b}, {DNNL_ARG_DST, gw}});
    ctx.strm.wait();
  }, ctx.policy, 1, forward);
  report(ctx, id, "bwd", "plain", s, std::string(dataPd.impl_info_str()) + " + " + weightPd.impl_info_str());
}

// ---- attention, unfused: S = scale·q·kᵀ, P = softmax(S), O = P·v -------------------------
static matmul::primitive_desc matmulPd(Ctx& ctx, const memory::desc& a, const memory::desc& b, const memory::desc& c, float scale = 1.f) {
  primitive_attr attr;
  if (scale != 1.f) attr.set_output_scales(0, {scale});
  return matmul::primitive_desc(matmul::desc(a, b, c), attr, ctx.eng);
}

static void benchAttention(Ctx& ctx, const std::string& id, const Params& p) {
  long bh = p.at("batch") * p.at("heads"), n = p.at("n"), d = p.at("d");
  float scale = 1.f / std::sqrt((float)d);
  memory::desc qd = plain({bh, n, d}), sd = plain({bh, n, n});
  memory::desc kT({bh, d, n}, dt::f32, dims{n * d, 1, d});  // k (B, N, D) seen as (B, D, N)
  memory::desc pT({bh, n, n}, dt::f32, dims{n * n, 1, n});
  auto q = newMem(ctx, qd), k = newMem(ctx, qd), v = newMem(ctx, qd), o = newMem(ctx, qd), go = newMem(ctx, qd);
  auto gq = newMem(ctx, qd), gk = newMem(ctx, qd), gv = newMem(ctx, qd);
  auto S = newMem(ctx, sd), P = newMem(ctx, sd), gP = newMem(ctx, sd), gS = newMem(ctx, sd);
  memory kTm(kT, ctx.eng, k.get_data_handle()), vTm(kT, ctx.eng, v.get_data_handle());
  memory PT(pT, ctx.eng, P.get_data_handle()), gST(pT, ctx.eng, gS.get_data_handle());

  auto scorePd = matmulPd(ctx, qd, kT, sd, scale);
  auto smPd = softmax_forward::primitive_desc(softmax_forward::desc(prop_kind::forward_training, sd, 2), ctx.eng);
  auto outPd = matmulPd(ctx, sd, qd, qd);
  matmul score(scorePd), out(outPd);
  softmax_forward sm(smPd);
  auto fwd = [&] {
    score.execute(ctx.strm, {{DNNL_ARG_SRC, q}, {DNNL_ARG_WEIGHTS, kTm}, {DNNL_ARG_DST, S}});
    sm.execute(ctx.strm, {{DNNL_ARG_SRC, S}, {DNNL_ARG_DST, P}});
    out.execute(ctx.strm, {{DNNL_ARG_SRC, P}, {DNNL_ARG_WEIGHTS, v}, {DNNL_ARG_DST, o}});
    ctx.strm.wait();
  };
  report(ctx, id, "fwd", "unfused", measure(fwd, ctx.policy), std::string(scorePd.impl_info_str()) + " + " + smPd.impl_info_str());

  // gv = Pᵀ·go; gP = go·vᵀ; gS = softmax_bwd(P, gP); gq = scale·gS·k; gk = scale·gSᵀ·q.
  matmul gvMm(matmulPd(ctx, pT, qd, qd)), gPMm(matmulPd(ctx, qd, kT, sd)), gqMm(matmulPd(ctx, sd, qd, qd, scale)), gkMm(matmulPd(ctx, pT, qd, qd, scale));
  auto smBwdPd = softmax_backward::primitive_desc(softmax_backward::desc(sd, sd, 2), ctx.eng, smPd);
  softmax_backward smBwd(smBwdPd);
  auto bwd = [&] {
    gvMm.execute(ctx.strm, {{DNNL_ARG_SRC, PT}, {DNNL_ARG_WEIGHTS, go}, {DNNL_ARG_DST, gv}});
    gPMm.execute(ctx.strm, {{DNNL_ARG_SRC, go}, {DNNL_ARG_WEIGHTS, vTm}, {DNNL_ARG_DST, gP}});
    smBwd.execute(ctx.strm, {{DNNL_ARG_DST, P}, {DNNL_ARG_DIFF_DST, gP}, {DNNL_ARG_DIFF_SRC, gS}});
    gqMm.execute(ctx.strm, {{DNNL_ARG_SRC, gS}, {DNNL_ARG_WEIGHTS, k}, {DNNL_ARG_DST, gq}});
    gkMm.execute(ctx.strm, {{DNNL_ARG_SRC, gST}, {DNNL_ARG_WEIGHTS, q}, {DNNL_ARG_DST, gk}});
    ctx.strm.wait();
  };
  report(ctx, id, "bwd", "unfused", measure(bwd, ctx.policy, 1, fwd), smBwdPd.impl_info_str());
}

// ---- convolution ----------------------------------------------------------------------------
// A reorder from `from` into `to` when their layouts differ; otherwise nothing.
struct MaybeReorder {
  memory from, to;
  bool needed = false;
  reorder prim;
  MaybeReorder(Ctx& ctx, const memory& src, const memory::desc& want) : from(src) {
    needed = src.get_desc() != want;
    to = needed ? memory(want, ctx.eng) : src;
    if (needed) prim = reorder(from, to);
  }
  MaybeReorder(Ctx& ctx, const memory::desc& have, const memory& dst) : to(dst) {
    needed = dst.get_desc() != have;
    from = needed ? memory(have, ctx.eng) : dst;
    if (needed) prim = reorder(from, to);
  }
  void run(Ctx& ctx) {
    if (needed) prim.execute(ctx.strm, from, to);
  }
};

static void benchConv(Ctx& ctx, const std::string& id, const Params& p, bool anyLayout) {
  long n = p.at("n"), c = p.at("c"), h = p.at("h"), w = p.at("w"), co = p.at("cout"), kh = p.at("kh"), kw = p.at("kw");
  long st = p.at("stride"), pad = p.at("pad"), g = p.at("groups");
  long oh = (h + 2 * pad - kh) / st + 1, ow = (w + 2 * pad - kw) / st + 1;
  dims srcDims{n, c, h, w}, dstDims{n, co, oh, ow};
  dims weiDims = g == 1 ? dims{co, c, kh, kw} : dims{g, co / g, c / g, kh, kw};
  memory::desc srcPlain(srcDims, dt::f32, tag::nchw), dstPlain(dstDims, dt::f32, tag::nchw);
  memory::desc weiPlain(weiDims, dt::f32, g == 1 ? tag::oihw : tag::goihw);
  auto x = newMem(ctx, srcPlain), wei = newMem(ctx, weiPlain, 0.05f), y = newMem(ctx, dstPlain);
  auto gy = newMem(ctx, dstPlain), gx = newMem(ctx, srcPlain), gw = newMem(ctx, weiPlain);
  auto pick = [&](const memory::desc& md, const dims& d) { return anyLayout ? memory::desc(d, dt::f32, tag::any) : md; };
  memory::desc srcMd = pick(srcPlain, srcDims), weiMd = pick(weiPlain, weiDims), dstMd = pick(dstPlain, dstDims);
  dims strides{st, st}, padding{pad, pad};
  std::string variant = anyLayout ? "any" : "plain";

  auto fwdPd = convolution_forward::primitive_desc(
      convolution_forward::desc(prop_kind::forward_training, algorithm::convolution_direct, srcMd, weiMd, dstMd, strides, padding, padding), ctx.eng);
  MaybeReorder fwdIn(ctx, x, fwdPd.src_desc()), fwdW(ctx, wei, fwdPd.weights_desc()), fwdOut(ctx, fwdPd.dst_desc(), y);
  convolution_forward fwdPrim(fwdPd);
  std::function<void()> forward = [&] {
    fwdIn.run(ctx);
    fwdW.run(ctx);
    fwdPrim.execute(ctx.strm, {{DNNL_ARG_SRC, fwdIn.to}, {DNNL_ARG_WEIGHTS, fwdW.to}, {DNNL_ARG_DST, fwdOut.from}});
    fwdOut.run(ctx);
    ctx.strm.wait();
  };
  report(ctx, id, "fwd", variant, measure(forward, ctx.policy), fwdPd.impl_info_str());
  {
    auto pd = convolution_backward_data::primitive_desc(
        convolution_backward_data::desc(algorithm::convolution_direct, srcMd, weiMd, dstMd, strides, padding, padding), ctx.eng, fwdPd);
    MaybeReorder gyIn(ctx, gy, pd.diff_dst_desc()), wIn(ctx, wei, pd.weights_desc()), gxOut(ctx, pd.diff_src_desc(), gx);
    convolution_backward_data prim(pd);
    auto s = measure([&] {
      gyIn.run(ctx);
      wIn.run(ctx);
      prim.execute(ctx.strm, {{DNNL_ARG_DIFF_DST, gyIn.to}, {DNNL_ARG_WEIGHTS, wIn.to}, {DNNL_ARG_DIFF_SRC, gxOut.from}});
      gxOut.run(ctx);
      ctx.strm.wait();
    }, ctx.policy, 1, forward);
    report(ctx, id, "bwd-data", variant, s, pd.impl_info_str());
  }
  {
    auto pd = convolution_backward_weights::primitive_desc(
        convolution_backward_weights::desc(algorithm::convolution_direct, srcMd, weiMd, dstMd, strides, padding, padding), ctx.eng, fwdPd);
    MaybeReorder xIn(ctx, x, pd.src_desc()), gyIn(ctx, gy, pd.diff_dst_desc()), gwOut(ctx, pd.diff_weights_desc(), gw);
    convolution_backward_weights prim(pd);
    auto s = measure([&] {
      xIn.run(ctx);
      gyIn.run(ctx);
      prim.execute(ctx.strm, {{DNNL_ARG_SRC, xIn.to}, {DNNL_ARG_DIFF_DST, gyIn.to}, {DNNL_ARG_DIFF_WEIGHTS, gwOut.from}});
      gwOut.run(ctx);
      ctx.strm.wait();
    }, ctx.policy, 1, forward);
    report(ctx, id, "bwd-weight", variant, s, pd.impl_info_str());
  }
}

// ---- elementwise and normalisation -----------------------------------------------------------
static void benchBinaryAdd(Ctx& ctx, const std::string& id, const Params& p, bool bias) {
  long rows = p.at("rows"), cols = p.at("cols");
  memory::desc xd = plain({rows, cols}), bd = plain({bias ? 1 : rows, cols});
  auto a = newMem(ctx, xd), b = newMem(ctx, bd), y = newMem(ctx, xd);
  auto pd = binary::primitive_desc(binary::desc(algorithm::binary_add, xd, bd, xd), ctx.eng);
  binary prim(pd);
  std::function<void()> forward = [&] { prim.execute(ctx.strm, {{DNNL_ARG_SRC_0, a}, {DNNL_ARG_SRC_1, b}, {DNNL_ARG_DST, y}}); ctx.strm.wait(); };
  report(ctx, id, "fwd", "plain", measure(forward, ctx.policy), pd.impl_info_str());
  if (!bias) return;
  // The bias gradient gb (1, N) = column sums of gy (M, N), by the reduction primitive and as
  // the product ones (1, M) · gy, which is how GEMM-based frameworks often do it.
  auto gb = newMem(ctx, bd);
  auto rpd = reduction::primitive_desc(reduction::desc(algorithm::reduction_sum, xd, bd, 0.f, 0.f), ctx.eng);
  reduction red(rpd);
  auto sb = measure([&] { red.execute(ctx.strm, {{DNNL_ARG_SRC, a}, {DNNL_ARG_DST, gb}}); ctx.strm.wait(); }, ctx.policy, 1, forward);
  report(ctx, id, "bwd", "reduction", sb, rpd.impl_info_str());
  memory ones(plain({1, rows}), ctx.eng);
  std::fill_n(static_cast<float*>(ones.get_data_handle()), rows, 1.f);
  auto mpd = matmul::primitive_desc(matmul::desc(ones.get_desc(), xd, bd), ctx.eng);
  matmul gemv(mpd);
  auto sm = measure([&] { gemv.execute(ctx.strm, {{DNNL_ARG_SRC, ones}, {DNNL_ARG_WEIGHTS, a}, {DNNL_ARG_DST, gb}}); ctx.strm.wait(); }, ctx.policy, 1, forward);
  report(ctx, id, "bwd", "ones-matmul", sm, mpd.impl_info_str());
}

static void benchGelu(Ctx& ctx, const std::string& id, const Params& p) {
  memory::desc md = plain({p.at("rows"), p.at("cols")});
  auto x = newMem(ctx, md), y = newMem(ctx, md), gy = newMem(ctx, md), gx = newMem(ctx, md);
  auto fpd = eltwise_forward::primitive_desc(eltwise_forward::desc(prop_kind::forward_training, algorithm::eltwise_gelu_erf, md, 0.f, 0.f), ctx.eng);
  eltwise_forward fwd(fpd);
  std::function<void()> forward = [&] { fwd.execute(ctx.strm, {{DNNL_ARG_SRC, x}, {DNNL_ARG_DST, y}}); ctx.strm.wait(); };
  report(ctx, id, "fwd", "plain", measure(forward, ctx.policy), fpd.impl_info_str());
  auto bpd = eltwise_backward::primitive_desc(eltwise_backward::desc(algorithm::eltwise_gelu_erf, md, md, 0.f, 0.f), ctx.eng, fpd);
  eltwise_backward bwd(bpd);
  report(ctx, id, "bwd", "plain", measure([&] { bwd.execute(ctx.strm, {{DNNL_ARG_SRC, x}, {DNNL_ARG_DIFF_DST, gy}, {DNNL_ARG_DIFF_SRC, gx}}); ctx.strm.wait(); }, ctx.policy, 1, forward), bpd.impl_info_str());
}

static void benchSoftmax(Ctx& ctx, const std::string& id, const Params& p) {
  memory::desc md = plain({p.at("rows"), p.at("cols")});
  auto x = newMem(ctx, md), y = newMem(ctx, md), gy = newMem(ctx, md), gx = newMem(ctx, md);
  auto fpd = softmax_forward::primitive_desc(softmax_forward::desc(prop_kind::forward_training, md, 1), ctx.eng);
  softmax_forward fwd(fpd);
  std::function<void()> forward = [&] { fwd.execute(ctx.strm, {{DNNL_ARG_SRC, x}, {DNNL_ARG_DST, y}}); ctx.strm.wait(); };
  report(ctx, id, "fwd", "plain", measure(forward, ctx.policy), fpd.impl_info_str());
  auto bpd = softmax_backward::primitive_desc(softmax_backward::desc(md, md, 1), ctx.eng, fpd);
  softmax_backward bwd(bpd);
  report(ctx, id, "bwd", "plain", measure([&] { bwd.execute(ctx.strm, {{DNNL_ARG_DST, y}, {DNNL_ARG_DIFF_DST, gy}, {DNNL_ARG_DIFF_SRC, gx}}); ctx.strm.wait(); }, ctx.policy, 1, forward), bpd.impl_info_str());
}

static void benchLayerNorm(Ctx& ctx, const std::string& id, const Params& p) {
  long rows = p.at("rows"), cols = p.at("cols");
  memory::desc md = plain({rows, cols}), cd = plain({cols});
  auto flags = normalization_flags::use_scale | normalization_flags::use_shift;
  auto x = newMem(ctx, md), y = newMem(ctx, md), gy = newMem(ctx, md), gx = newMem(ctx, md);
  auto scale = newMem(ctx, cd), shift = newMem(ctx, cd), gscale = newMem(ctx, cd), gshift = newMem(ctx, cd);
  auto fpd = layer_normalization_forward::primitive_desc(layer_normalization_forward::desc(prop_kind::forward_training, md, 1e-5f, flags), ctx.eng);
  auto mean = newMem(ctx, fpd.mean_desc()), var = newMem(ctx, fpd.variance_desc());
  layer_normalization_forward fwd(fpd);
  std::function<void()> forward = [&] {
    fwd.execute(ctx.strm, {{DNNL_ARG_SRC, x}, {DNNL_ARG_SCALE, scale}, {DNNL_ARG_SHIFT, shift}, {DNNL_ARG_DST, y}, {DNNL_ARG_MEAN, mean}, {DNNL_ARG_VARIANCE, var}});
    ctx.strm.wait();
  };
  auto fs = measure(forward, ctx.policy);
  report(ctx, id, "fwd", "plain", fs, fpd.impl_info_str());
  auto bpd = layer_normalization_backward::primitive_desc(layer_normalization_backward::desc(prop_kind::backward, md, md, 1e-5f, flags), ctx.eng, fpd);
  layer_normalization_backward bwd(bpd);
  auto bs = measure([&] {
    bwd.execute(ctx.strm, {{DNNL_ARG_SRC, x}, {DNNL_ARG_DIFF_DST, gy}, {DNNL_ARG_MEAN, mean}, {DNNL_ARG_VARIANCE, var}, {DNNL_ARG_SCALE, scale}, {DNNL_ARG_SHIFT, shift},
                           {DNNL_ARG_DIFF_SRC, gx}, {DNNL_ARG_DIFF_SCALE, gscale}, {DNNL_ARG_DIFF_SHIFT, gshift}});
    ctx.strm.wait();
  }, ctx.policy, 1, forward);
  report(ctx, id, "bwd", "plain", bs, bpd.impl_info_str());
}

static void benchBatchNorm(Ctx& ctx, const std::string& id, const Params& p) {
  long n = p.at("n"), c = p.at("c"), h = p.at("h"), w = p.at("w");
  memory::desc md({n, c, h, w}, dt::f32, tag::nchw), cd = plain({c});
  auto flags = normalization_flags::use_scale | normalization_flags::use_shift;
  auto x = newMem(ctx, md), y = newMem(ctx, md), gy = newMem(ctx, md), gx = newMem(ctx, md);
  auto scale = newMem(ctx, cd), shift = newMem(ctx, cd), gscale = newMem(ctx, cd), gshift = newMem(ctx, cd);
  auto fpd = batch_normalization_forward::primitive_desc(batch_normalization_forward::desc(prop_kind::forward_training, md, 1e-5f, flags), ctx.eng);
  auto mean = newMem(ctx, fpd.mean_desc()), var = newMem(ctx, fpd.variance_desc());
  batch_normalization_forward fwd(fpd);
  std::function<void()> forward = [&] {
    fwd.execute(ctx.strm, {{DNNL_ARG_SRC, x}, {DNNL_ARG_SCALE, scale}, {DNNL_ARG_SHIFT, shift}, {DNNL_ARG_DST, y}, {DNNL_ARG_MEAN, mean}, {DNNL_ARG_VARIANCE, var}});
    ctx.strm.wait();
  };
  auto fs = measure(forward, ctx.policy);
  report(ctx, id, "fwd", "plain", fs, fpd.impl_info_str());
  auto bpd = batch_normalization_backward::primitive_desc(batch_normalization_backward::desc(prop_kind::backward, md, md, 1e-5f, flags), ctx.eng, fpd);
  batch_normalization_backward bwd(bpd);
  auto bs = measure([&] {
    bwd.execute(ctx.strm, {{DNNL_ARG_SRC, x}, {DNNL_ARG_DIFF_DST, gy}, {DNNL_ARG_MEAN, mean}, {DNNL_ARG_VARIANCE, var}, {DNNL_ARG_SCALE, scale}, {DNNL_ARG_SHIFT, shift},
                           {DNNL_ARG_DIFF_SRC, gx}, {DNNL_ARG_DIFF_SCALE, gscale}, {DNNL_ARG_DIFF_SHIFT, gshift}});
    ctx.strm.wait();
  }, ctx.policy, 1, forward);
  report(ctx, id, "bwd", "plain", bs, bpd.impl_info_str());
}

// ---- latency of one tiny primitive call --------------------------------------------------------
static const int kLatencyCalls = 2000;

static void benchOverhead(Ctx& ctx, const std::string& id, const Params& p, bool isMatmul) {
  primitive prim;
  std::unordered_map<int, memory> args;
  std::string impl;
  if (isMatmul) {
    long m = p.at("m"), k = p.at("k"), n = p.at("n");
    auto pd = matmul::primitive_desc(matmul::desc(plain({m, k}), plain({k, n}), plain({m, n})), ctx.eng);
    prim = matmul(pd);
    args = {{DNNL_ARG_SRC, newMem(ctx, plain({m, k}))}, {DNNL_ARG_WEIGHTS, newMem(ctx, plain({k, n}))}, {DNNL_ARG_DST, newMem(ctx, plain({m, n}))}};
    impl = pd.impl_info_str();
  } else {
    memory::desc md = plain({p.at("n")});
    auto pd = binary::primitive_desc(binary::desc(algorithm::binary_add, md, md, md), ctx.eng);
    prim = binary(pd);
    args = {{DNNL_ARG_SRC_0, newMem(ctx, md)}, {DNNL_ARG_SRC_1, newMem(ctx, md)}, {DNNL_ARG_DST, newMem(ctx, md)}};
    impl = pd.impl_info_str();
  }
  auto s = measure([&] {
    for (int i = 0; i < kLatencyCalls; i++) prim.execute(ctx.strm, args);
    ctx.strm.wait();
  }, ctx.policy, kLatencyCalls);
  report(ctx, id, "call", "plain", s, impl);
}

// ---- copy bandwidth ----------------------------------------------------------------------------
// Moves `bytes` in all (half read, half written), split over the OpenMP threads; both an
// auto-vectorised loop and glibc's memcpy per thread are timed and the faster one reported.
static void benchCopy(Ctx& ctx, const std::string& id, const Params& p) {
  size_t count = (size_t)p.at("bytes") / 2 / sizeof(float);
  float* src = static_cast<float*>(std::aligned_alloc(64, (count * sizeof(float) + 63) / 64 * 64));
  float* dst = static_cast<float*>(std::aligned_alloc(64, (count * sizeof(float) + 63) / 64 * 64));
#pragma omp parallel for schedule(static)
  for (size_t i = 0; i < count; i++) {
    src[i] = (float)(i % 97);
    dst[i] = 0.f;
  }
  auto loop = measure([&] {
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < count; i++) dst[i] = src[i];
  }, ctx.policy);
  auto chunks = measure([&] {
#pragma omp parallel
    {
      size_t t = omp_get_thread_num(), nt = omp_get_num_threads();
      size_t lo = count * t / nt, hi = count * (t + 1) / nt;
      std::memcpy(dst + lo, src + lo, (hi - lo) * sizeof(float));
    }
  }, ctx.policy);
  report(ctx, id, "copy", "loop", loop, "omp loop");
  report(ctx, id, "copy", "memcpy", chunks, "omp memcpy");
  std::free(src);
  std::free(dst);
}

// ---- frozen linear in bf16 -------------------------------------------------------------------
// What a user of raw oneDNN would run for a frozen (N, K) weight in bf16: the weight reordered once
// (outside the timing) into the layout the bf16 matmul picks, the float32 input reordered to bf16
// on every call (inside it), float32 outputs. fwd: y = x Wᵀ + b; bwd: gx = gy W (the gradient to
// the input a frozen layer computes), its own packed copy of W.
static void benchLinearBf16(Ctx& ctx, const std::string& id, const Params& p) {
  long m = p.at("m"), k = p.at("k"), n = p.at("n");
  auto x = newMem(ctx, plain({m, k})), gy = newMem(ctx, plain({m, n})), w = newMem(ctx, plain({n, k}), 0.05f);
  auto y = newMem(ctx, plain({m, n})), gx = newMem(ctx, plain({m, k})), bias = newMem(ctx, plain({1, n}));
  auto one = [&](const memory& src, long rows, long inner, long outer, const memory::desc& wPlain, memory& dst, bool withBias) {
    memory::desc a({rows, inner}, dt::bf16, tag::ab), b({inner, outer}, dt::bf16, tag::any);
    auto pd = withBias ? matmul::primitive_desc(matmul::desc(a, b, bias.get_desc(), dst.get_desc()), ctx.eng)
                       : matmul::primitive_desc(matmul::desc(a, b, dst.get_desc()), ctx.eng);
    auto packed = std::make_shared<memory>(pd.weights_desc(), ctx.eng);
    memory wView(wPlain, ctx.eng, w.get_data_handle());
    reorder(wView, *packed).execute(ctx.strm, wView, *packed);
    auto a16 = std::make_shared<memory>(a, ctx.eng);
    auto toBf16 = std::make_shared<reorder>(src, *a16);
    auto prim = std::make_shared<matmul>(pd);
    std::string impl = pd.impl_info_str();
    std::function<void()> run = [&ctx, src, a16, toBf16, prim, packed, &dst, &bias, withBias] {
      toBf16->execute(ctx.strm, const_cast<memory&>(src), *a16);
      if (withBias) prim->execute(ctx.strm, {{DNNL_ARG_SRC, *a16}, {DNNL_ARG_WEIGHTS, *packed}, {DNNL_ARG_BIAS, bias}, {DNNL_ARG_DST, dst}});
      else prim->execute(ctx.strm, {{DNNL_ARG_SRC, *a16}, {DNNL_ARG_WEIGHTS, *packed}, {DNNL_ARG_DST, dst}});
      ctx.strm.wait();
    };
    return std::make_pair(run, impl);
  };
  auto [fwd, fwdImpl] = one(x, m, k, n, memory::desc({k, n}, dt::f32, dims{1, k}), y, true);
  report(ctx, id, "fwd", "bf16", measure(fwd, ctx.policy), fwdImpl);
  auto [bwd, bwdImpl] = one(gy, m, n, k, plain({n, k}), gx, false);
  report(ctx, id, "bwd-data", "bf16", measure(bwd, ctx.policy), bwdImpl);
}

static void runCase(Ctx& ctx, const std::string& id, const std::string& op, const Params& p) {
  if (op == "linear" || op == "matmul") return benchLinear(ctx, id, p, op == "linear");
  if (op == "linear_bf16") return benchLinearBf16(ctx, id, p);
  if (op == "attention") return benchAttention(ctx, id, p);
  if (op == "conv") {
    benchConv(ctx, id, p, false);
    try {
      benchConv(ctx, id, p, true);
    } catch (const dnnl::error& e) {
      reportError(ctx, id + " (any)", e.what());
    }
    return;
  }
  if (op == "add" || op == "bias_add") return benchBinaryAdd(ctx, id, p, op == "bias_add");
  if (op == "gelu") return benchGelu(ctx, id, p);
  if (op == "softmax") return benchSoftmax(ctx, id, p);
  if (op == "layernorm") return benchLayerNorm(ctx, id, p);
  if (op == "batchnorm") return benchBatchNorm(ctx, id, p);
  if (op == "overhead_add" || op == "overhead_matmul") return benchOverhead(ctx, id, p, op == "overhead_matmul");
  if (op == "copy") return benchCopy(ctx, id, p);
  reportError(ctx, id, "raw_bench has no op '" + op + "'");
}

int main() {
  Ctx ctx;
  std::string line;
  while (std::getline(std::cin, line)) {
    std::istringstream in(line);
    std::string id, op;
    if (!(in >> id)) continue;
    if (id == "policy") {
      in >> ctx.policy.warmup >> ctx.policy.minRuns >> ctx.policy.maxRuns >> ctx.policy.budgetMs >> ctx.policy.threads;
      omp_set_num_threads(ctx.policy.threads);
      continue;
    }
    in >> op;
    Params params;
    std::string kv;
    while (in >> kv) {
      auto eq = kv.find('=');
      if (eq != std::string::npos) params[kv.substr(0, eq)] = std::stol(kv.substr(eq + 1));
    }
    try {
      runCase(ctx, id, op, params);
    } catch (const std::exception& e) {
      reportError(ctx, id, e.what());
    }
    std::cerr << "raw_bench: " << id << " done\n";
  }
  const dnnl_version_t* v = dnnl_version();
  std::printf("{\"dnnl_version\":\"%d.%d.%d\",\"threads\":%d,\"results\":[\n", v->major, v->minor, v->patch, ctx.policy.threads);
  for (size_t i = 0; i < ctx.results.size(); i++) std::printf("%s%s\n", ctx.results[i].c_str(), i + 1 < ctx.results.size() ? "," : "");
  std::printf("]}\n");
  return 0;
}
