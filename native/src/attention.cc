// Fused scaled-dot-product attention, tiled as FlashAttention tiles it on a GPU: each task owns
// one (batch·head, query block), computes its score tile S = q kᵀ with a oneDNN matmul, turns it
// into probabilities in place, and multiplies by v. A query block spans all M keys, and its rows
// (≤ 256 KiB of scores) stay in L2 between the two products, so the row softmax is exact rather
// than online. The probabilities either stay in per-thread tiles (the (B, N, M) tensor never
// exists, and the backward pass recomputes them from the saved log-sum-exp) or, when the caller
// passes `probs` because they fit its memory budget, are written out for the backward pass, which
// then runs as batched GEMMs over groups of batch·heads (as an unfused implementation would, but
// with dP held one group at a time). Recomputing, dK and dV sum over query blocks, so backward
// tasks are whole batch·heads. Tasks run in parallel, each on a single-threaded oneDNN matmul
// with its own scratchpad; with fewer tasks than threads, they run in turn on multi-threaded
// matmuls.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "gemm.h"
#include "kernels.h"
#include "parallel.h"
#include "simd.h"
#include "vmath.h"

namespace graft {
namespace {

constexpr int64_t kTileFloats = 1 << 16;  // one score tile: 256 KiB
constexpr int64_t kMinBlock = 16;

// A per-thread buffer that grows to the largest request and is kept between calls.
float* thread_buffer(int slot, size_t floats) {
  static thread_local std::vector<float> buffers[2];
  auto& b = buffers[slot];
  if (b.size() < floats) b.resize(floats);
  return b.data();
}

void* thread_scratchpad(size_t bytes) {
  static thread_local std::vector<char> buffer;
  if (buffer.size() < bytes) buffer.resize(bytes);
  return buffer.data();
}

// Query blocks: as large as a score tile allows, but enough of them for every thread to have
// two tasks when the batch·heads alone do not.
struct Blocks {
  int64_t size, count;
};

Blocks query_blocks(int64_t batch, int64_t n, int64_t m, bool forTasks) {
  int64_t size = std::clamp<int64_t>(kTileFloats / std::max<int64_t>(m, 1), kMinBlock, std::max<int64_t>(n, 1));
  int64_t count = (n + size - 1) / size;
  int64_t want = 2 * omp_get_max_threads();
  if (forTasks && batch * count < want) {
    count = std::min((n + kMinBlock - 1) / kMinBlock, (want + batch - 1) / batch);
    count = std::max<int64_t>(count, 1);
    size = (n + count - 1) / count;
    count = (n + size - 1) / size;
  }
  return {size, count};
}

// The GEMMs of one block height (full blocks and the shorter last one have their own).
struct ForwardGemms {
  onednn::Primitive scores, output;  // S (rows, M) = q kᵀ; out (rows, D) = P v
};

ForwardGemms forward_gemms(int64_t rows, int64_t m, int64_t d) {
  return {gemm_primitive({1, rows, m, d, false, true, 0, 0, 0, 0}, true), gemm_primitive({1, rows, d, m, false, false, 0, 0, 0, 0}, true)};
}

// Row i of the tile (query index qi): p = softmax(scale · s) over the keys it may see; returns the log-sum-exp.
float softmax_row(float* s, int64_t m, int64_t qi, float scale, bool causal) {
  const int64_t valid = causal ? std::min<int64_t>(qi + 1, m) : m;
  if (!(scale > 0)) {
    simd::kernels().row_affine(s, s, valid, scale, 0.f);
    scale = 1.f;
  }
  // max(scale·s) = scale·max(s) for scale > 0.
  const float mx = scale * simd::kernels().row_max(s, valid);
  const float sum = simd::kernels().row_exp(s, s, valid, scale, mx);
  simd::kernels().row_affine(s, s, valid, 1.f / sum, 0.f);
  std::fill(s + valid, s + m, 0.f);
  return mx + std::log(sum);
}

// Runs task(t) for t in [0, tasks): in parallel when there are enough tasks for the threads,
// else one after another (and each GEMM then uses every thread).
template <typename F>
void run_tasks(int64_t tasks, F task) {
  if (tasks >= omp_get_max_threads() && omp_get_max_threads() > 1) {
#pragma omp parallel for schedule(dynamic, 1)
    for (int64_t t = 0; t < tasks; t++) task(t);
  } else {
    for (int64_t t = 0; t < tasks; t++) task(t);
  }
}

}  // namespace

// q (B, N, D), k/v (B, M, D) → out (B, N, D), lse (B, N)
void attention_forward(float* out, float* lse, float* probs, const float* q, const float* k, const float* v, int64_t batch, int64_t n, int64_t m,
                       int64_t d, float scale, bool causal) {
  if (batch <= 0 || n <= 0 || d <= 0) return;
  if (m <= 0) {
    // No keys: an empty softmax.
    std::fill(out, out + batch * n * d, 0.f);
    std::fill(lse, lse + batch * n, -std::numeric_limits<float>::infinity());
    return;
  }
  const Blocks qb = query_blocks(batch, n, m, true);
  const int64_t lastRows = n - (qb.count - 1) * qb.size;
  // Primitives are fetched from the (single-threaded) cache before any task runs.
  const ForwardGemms full = forward_gemms(qb.size, m, d);
  const ForwardGemms last = forward_gemms(lastRows, m, d);
  const size_t scratch = std::max({full.scores.scratchpad, full.output.scratchpad, last.scores.scratchpad, last.output.scratchpad});
  run_tasks(batch * qb.count, [&](int64_t t) {
    const int64_t b = t / qb.count, i0 = (t % qb.count) * qb.size, rows = std::min(qb.size, n - i0);
    const ForwardGemms& g = rows == qb.size ? full : last;
    // With `probs`, each tile is written where the backward pass will read it.
    float* s = probs ? probs + (b * n + i0) * m : thread_buffer(0, static_cast<size_t>(qb.size * m));
    void* pad = thread_scratchpad(scratch);
    auto& st = onednn::stream();
    gemm_execute(g.scores, st, s, q + (b * n + i0) * d, k + b * m * d, pad);
    parallel_items(rows, rows * m, [&](int64_t i) { lse[b * n + i0 + i] = softmax_row(s + i * m, m, i0 + i, scale, causal); });
    gemm_execute(g.output, st, out + (b * n + i0) * d, s, v + b * m * d, pad);
  });
}

void attention_forward_strided(const AttentionViews& x, int64_t batch, int64_t heads, int64_t n, int64_t m, int64_t d, float scale, bool causal) {
  if (batch <= 0 || heads <= 0 || n <= 0 || d <= 0) return;
  const int64_t bh = batch * heads;
  const Blocks qb = query_blocks(bh, n, m, true);
  const int64_t lastRows = n - (qb.count - 1) * qb.size;
  // S (rows, M) = q kᵀ reads q's and k's rows at their strides; out = P v writes out's.
  auto gemms = [&](int64_t rows) {
    GemmShape scores{1, rows, m, d, false, true, 0, 0, 0, 0};
    scores.lda = x.q.row;
    scores.ldb = x.k.row;
    GemmShape output{1, rows, d, m, false, false, 0, 0, 0, 0};
    output.ldb = x.v.row;
    output.ldc = x.out.row;
    return ForwardGemms{gemm_primitive(scores, true), gemm_primitive(output, true)};
  };
  if (m <= 0) {
    for (int64_t t = 0; t < bh; t++)
      for (int64_t i = 0; i < n; i++) std::fill_n(const_cast<float*>(x.out.at(t / heads, t % heads, i)), d, 0.f);
    return;
  }
  const ForwardGemms full = gemms(qb.size);
  const ForwardGemms last = gemms(lastRows);
  const size_t scratch = std::max({full.scores.scratchpad, full.output.scratchpad, last.scores.scratchpad, last.output.scratchpad});
  run_tasks(bh * qb.count, [&](int64_t t) {
    const int64_t b = t / qb.count / heads, h = t / qb.count % heads, i0 = (t % qb.count) * qb.size, rows = std::min(qb.size, n - i0);
    const ForwardGemms& g = rows == qb.size ? full : last;
    float* s = thread_buffer(0, static_cast<size_t>(qb.size * m));
    void* pad = thread_scratchpad(scratch);
    auto& st = onednn::stream();
    gemm_execute(g.scores, st, s, x.q.at(b, h, i0), x.k.at(b, h, 0), pad);
    parallel_items(rows, rows * m, [&](int64_t i) { softmax_row(s + i * m, m, i0 + i, scale, causal); });
    gemm_execute(g.output, st, const_cast<float*>(x.out.at(b, h, i0)), s, x.v.at(b, h, 0), pad);
  });
}

namespace {

constexpr int64_t kGroupFloats = 1 << 20;  // the dP tiles of one group of batch·heads: 4 MiB

// The backward pass from saved probabilities: batched GEMMs over groups of batch·heads, each
// GEMM on every thread, with dP for the group in a per-thread buffer (it stays in L2/L3).
void attention_backward_saved(float* gq, float* gk, float* gv, const float* q, const float* k, const float* v, const float* out,
                              const float* probs, const float* gout, int64_t batch, int64_t n, int64_t m, int64_t d, float scale) {
  const int64_t per = n * m;
  // Whole multiples of the thread count, so oneDNN's split of each batched GEMM is even.
  const int64_t threads = omp_get_max_threads();
  int64_t group = std::clamp<int64_t>(kGroupFloats / per, 1, batch);
  if (group > threads) group -= group % threads;
  float* dp = thread_buffer(1, static_cast<size_t>(group * per));
  for (int64_t b0 = 0; b0 < batch; b0 += group) {
    const int64_t g = std::min(group, batch - b0);
    const float* pb = probs + b0 * per;
    const float* gob = gout + b0 * n * d;
    matmul(gv + b0 * m * d, pb, gob, g, m, d, n, true, false, per, n * d, m * d, 0);          // gv = Pᵀ gout
    matmul(dp, gob, v + b0 * m * d, g, n, m, d, false, true, n * d, m * d, per, 0);           // dP = gout vᵀ
    parallel_items(g * n, g * per, [&](int64_t r) {                                           // dS = P ∘ (dP − D) · scale
      const float* go = gob + r * d;
      const float* o = out + b0 * n * d + r * d;
      const float di = vsum(d, [go, o](int64_t t) { return go[t] * o[t]; });
      float* __restrict dpr = dp + r * m;
      const float* __restrict pr = pb + r * m;
#pragma omp simd
      for (int64_t j = 0; j < m; j++) dpr[j] = pr[j] * (dpr[j] - di) * scale;
    });
    matmul(gq + b0 * n * d, dp, k + b0 * m * d, g, n, d, m, false, false, per, m * d, n * d, 0);  // gq = dS k
    matmul(gk + b0 * m * d, dp, q + b0 * n * d, g, m, d, n, true, false, per, n * d, m * d, 0);   // gk = dSᵀ q
  }
}

}  // namespace

// Per query block, with P as the forward saved it (`probs`) or recomputed as exp(scale · q kᵀ − lse)
// (probs null), and Dᵢ = Σ_d gout·out:
//   gv += Pᵀ gout;  dP = gout vᵀ;  dS = P ∘ (dP − Dᵢ) · scale;  gq = dS k;  gk += dSᵀ q
void attention_backward(float* gq, float* gk, float* gv, const float* q, const float* k, const float* v, const float* out, const float* lse,
                        const float* probs, const float* gout, int64_t batch, int64_t n, int64_t m, int64_t d, float scale, bool causal) {
  if (batch <= 0 || d <= 0) return;
  if (n <= 0 || m <= 0) {
    std::fill(gq, gq + batch * std::max<int64_t>(n, 0) * d, 0.f);
    std::fill(gk, gk + batch * std::max<int64_t>(m, 0) * d, 0.f);
    std::fill(gv, gv + batch * std::max<int64_t>(m, 0) * d, 0.f);
    return;
  }
  if (probs && !omp_in_parallel()) return attention_backward_saved(gq, gk, gv, q, k, v, out, probs, gout, batch, n, m, d, scale);
  const Blocks qb = query_blocks(batch, n, m, false);
  const int64_t lastRows = n - (qb.count - 1) * qb.size;
  struct BackwardGemms {
    onednn::Primitive scores, gradV, gradVAcc, gradP, gradQ, gradK, gradKAcc;
  };
  auto make = [&](int64_t rows) {
    return BackwardGemms{
        gemm_primitive({1, rows, m, d, false, true, 0, 0, 0, 0}, true),   // S = q kᵀ
        gemm_primitive({1, m, d, rows, true, false, 0, 0, 0, 0}, true),   // gv = Pᵀ gout
        gemm_primitive({1, m, d, rows, true, false, 0, 0, 0, 1}, true),   // gv += Pᵀ gout
        gemm_primitive({1, rows, m, d, false, true, 0, 0, 0, 0}, true),   // dP = gout vᵀ
        gemm_primitive({1, rows, d, m, false, false, 0, 0, 0, 0}, true),  // gq = dS k
        gemm_primitive({1, m, d, rows, true, false, 0, 0, 0, 0}, true),   // gk = dSᵀ q
        gemm_primitive({1, m, d, rows, true, false, 0, 0, 0, 1}, true),   // gk += dSᵀ q
    };
  };
  const BackwardGemms full = make(qb.size), last = make(lastRows);
  size_t scratch = 0;
  for (const BackwardGemms* g : {&full, &last})
    for (const onednn::Primitive* p : {&g->scores, &g->gradV, &g->gradVAcc, &g->gradP, &g->gradQ, &g->gradK, &g->gradKAcc})
      scratch = std::max(scratch, p->scratchpad);
  run_tasks(batch, [&](int64_t b) {
    float* pbuf = probs ? nullptr : thread_buffer(0, static_cast<size_t>(qb.size * m));
    float* dp = thread_buffer(1, static_cast<size_t>(qb.size * m));
    void* pad = thread_scratchpad(scratch);
    auto& st = onednn::stream();
    const float* kb = k + b * m * d;
    const float* vb = v + b * m * d;
    for (int64_t blk = 0; blk < qb.count; blk++) {
      const int64_t i0 = blk * qb.size, rows = std::min(qb.size, n - i0);
      const BackwardGemms& g = rows == qb.size ? full : last;
      const int64_t row0 = b * n + i0;
      const float* p = probs ? probs + row0 * m : nullptr;
      if (!probs) {
        gemm_execute(g.scores, st, pbuf, q + row0 * d, kb, pad);
        parallel_items(rows, rows * m, [&](int64_t i) {
          float* pr = pbuf + i * m;
          const int64_t valid = causal ? std::min<int64_t>(i0 + i + 1, m) : m;
          simd::kernels().row_exp(pr, pr, valid, scale, lse[row0 + i]);
          std::fill(pr + valid, pr + m, 0.f);
        });
        p = pbuf;
      }
      gemm_execute(blk ? g.gradVAcc : g.gradV, st, gv + b * m * d, p, gout + row0 * d, pad);
      gemm_execute(g.gradP, st, dp, gout + row0 * d, vb, pad);
      parallel_items(rows, rows * m, [&](int64_t i) {
        const float* go = gout + (row0 + i) * d;
        const float* o = out + (row0 + i) * d;
        const float di = vsum(d, [go, o](int64_t t) { return go[t] * o[t]; });
        float* dpr = dp + i * m;
        const float* pr = p + i * m;
#pragma omp simd
        for (int64_t j = 0; j < m; j++) dpr[j] = pr[j] * (dpr[j] - di) * scale;
      });
      gemm_execute(g.gradQ, st, gq + row0 * d, dp, kb, pad);
      gemm_execute(blk ? g.gradKAcc : g.gradK, st, gk + b * m * d, dp, q + row0 * d, pad);
    }
  });
}

}  // namespace graft
