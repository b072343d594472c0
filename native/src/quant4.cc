// Products with a 4-bit block-quantised weight (bitsandbytes' NF4/FP4 layout: two codes per byte,
// the first element in the high nibble, one fp32 scale per block of the flattened weight). The
// weight is dequantised a chunk of rows at a time into one reused buffer of at most
// kQ4ChunkFloats floats and each chunk goes through the float kernels (oneDNN matmul and
// convolution), so no float copy of a whole large weight exists at any time.
#include <immintrin.h>

#include <algorithm>
#include <vector>

#include "gemm.h"
#include "kernels.h"
#include "parallel.h"

// GCC 12's AVX-512 intrinsics read an intentionally undefined register; its warning is spurious.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace graft {

namespace {

// Dequantising 32 elements (16 bytes) at a time on AVX-512: the block's 16 scaled code values sit
// in one register, each nibble picks its lane (vpermps), and the high- and low-nibble results are
// interleaved back into element order. The same products as the scalar loop, so the same bits.
bool dequant_avx512() {
  static const bool yes = __builtin_cpu_supports("avx512f");
  return yes;
}

// out[i..] for i in [i, i1) while 32 elements remain, from i even; returns where it stopped.
__attribute__((target("avx512f"))) int64_t dequant32_f32(float* out, const uint8_t* packed, int64_t i, int64_t i1, const float* table16) {
  const __m512 table = _mm512_loadu_ps(table16);
  const __m512i first = _mm512_set_epi32(23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
  const __m512i second = _mm512_set_epi32(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8);
  const __m512i low = _mm512_set1_epi32(15);
  for (; i + 32 <= i1; i += 32) {
    const __m512i b = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(packed + (i >> 1))));
    const __m512 hi = _mm512_permutexvar_ps(_mm512_srli_epi32(b, 4), table);
    const __m512 lo = _mm512_permutexvar_ps(_mm512_and_si512(b, low), table);
    _mm512_storeu_ps(out + i, _mm512_permutex2var_ps(hi, first, lo));
    _mm512_storeu_ps(out + i + 16, _mm512_permutex2var_ps(hi, second, lo));
  }
  return i;
}

// The same for bf16 values (the block's 16-entry bf16 table).
__attribute__((target("avx512f"))) int64_t dequant32_bf16(uint16_t* out, const uint8_t* packed, int64_t i, int64_t i1, const uint16_t* table16) {
  const __m512i table = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(table16)));
  const __m512i first = _mm512_set_epi32(23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
  const __m512i second = _mm512_set_epi32(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8);
  const __m512i low = _mm512_set1_epi32(15);
  for (; i + 32 <= i1; i += 32) {
    const __m512i b = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(packed + (i >> 1))));
    const __m512i hi = _mm512_permutexvar_epi32(_mm512_srli_epi32(b, 4), table);
    const __m512i lo = _mm512_permutexvar_epi32(_mm512_and_si512(b, low), table);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i), _mm512_cvtepi32_epi16(_mm512_permutex2var_epi32(hi, first, lo)));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i + 16), _mm512_cvtepi32_epi16(_mm512_permutex2var_epi32(hi, second, lo)));
  }
  return i;
}

// The dequantised chunk and the staging buffers of the current call (kernels run on the
// JavaScript thread, one at a time).
std::vector<float> g_chunk, g_stage, g_accum;
std::vector<uint16_t> g_chunk16, g_x16, g_a16, g_packed16;
double g_peakChunkFloats = 0;

int64_t rows_per_chunk(int64_t rows, int64_t cols) {
  return std::clamp<int64_t>(kQ4ChunkFloats / std::max<int64_t>(cols, 1), 1, std::max<int64_t>(rows, 1));
}

}  // namespace

void q4_dequantize(float* out, const uint8_t* packed, const float* scales, const float* code, int64_t start, int64_t count, int64_t blocksize) {
  // By whole blocks: one scale per block, the nibbles of each byte in turn.
  const int64_t first = start / blocksize, last = (start + count - 1) / blocksize;
  parallel_chunks(last - first + 1, count, [&](int64_t lo, int64_t hi) {
    const bool vec = dequant_avx512();
    float scaled[16];
    for (int64_t b = first + lo; b < first + hi; b++) {
      const float s = scales[b];
      const int64_t i0 = std::max(start, b * blocksize), i1 = std::min(start + count, (b + 1) * blocksize);
      int64_t i = i0;
      if (i & 1) {
        out[i - start] = code[packed[i >> 1] & 15] * s;
        i++;
      }
      if (vec) {
        for (int j = 0; j < 16; j++) scaled[j] = code[j] * s;
        i = dequant32_f32(out - start, packed, i, i1, scaled);
      }
      for (; i + 1 < i1; i += 2) {
        const uint8_t byte = packed[i >> 1];
        out[i - start] = code[byte >> 4] * s;
        out[i + 1 - start] = code[byte & 15] * s;
      }
      if (i < i1) out[i - start] = code[packed[i >> 1] >> 4] * s;
    }
  });
}

// out (count) = bf16 of code[nibble(start + j)] · scales[(start + j) / blocksize]: the same values
// as q4_dequantize, rounded to bf16, read from a 16-entry table made per block.
void q4_dequantize_bf16(uint16_t* out, const uint8_t* packed, const float* scales, const float* code, int64_t start, int64_t count, int64_t blocksize) {
  const int64_t first = start / blocksize, last = (start + count - 1) / blocksize;
  parallel_chunks(last - first + 1, count, [&](int64_t lo, int64_t hi) {
    const bool vec = dequant_avx512();
    float scaled[16];
    uint16_t t[16];
    for (int64_t b = first + lo; b < first + hi; b++) {
      const float s = scales[b];
      for (int j = 0; j < 16; j++) scaled[j] = code[j] * s;
      to_bf16_serial(t, scaled, 16);
      const int64_t i0 = std::max(start, b * blocksize), i1 = std::min(start + count, (b + 1) * blocksize);
      int64_t i = i0;
      uint16_t* o = out - start;
      if (i & 1) {
        o[i] = t[packed[i >> 1] & 15];
        i++;
      }
      if (vec) i = dequant32_bf16(o, packed, i, i1, t);
      for (; i + 1 < i1; i += 2) {
        const uint8_t byte = packed[i >> 1];
        o[i] = t[byte >> 4];
        o[i + 1] = t[byte & 15];
      }
      if (i < i1) o[i] = t[packed[i >> 1] >> 4];
    }
  });
}

namespace {

// Rows per chunk when a chunk may hold `limit` elements: as few chunks as fit, of equal size in
// multiples of 16 rows where the weight has more than one chunk (oneDNN's blocking of N).
int64_t balanced_rows(int64_t rows, int64_t cols, int64_t limit) {
  const int64_t most = std::clamp<int64_t>(limit / std::max<int64_t>(cols, 1), 1, std::max<int64_t>(rows, 1));
  if (most >= rows) return rows;
  const int64_t chunks = (rows + most - 1) / most;
  const int64_t even = (rows + chunks - 1) / chunks;
  const int64_t rounded = (even + 15) / 16 * 16;
  return rounded <= most ? rounded : even;
}

}  // namespace

namespace {

// c (m, n) (+ c when accumulate) = a (m, k) · B (+ bias), a and B bf16, c float32: B (k, n) read
// from plain bf16 `b`, stored (n, k) when transB, reordered first into the layout oneDNN's bf16
// kernel picks for it.
// c's rows are `ldc` apart (0: n, dense).
void bf16_chunk_product(float* c, const uint16_t* a, const uint16_t* b, int64_t m, int64_t n, int64_t k, bool transB, bool accumulate, const float* bias,
                        int64_t ldc = 0) {
  using namespace onednn;
  const Primitive& p = cached(key("q4_bf16", m, n, k, transB, accumulate, bias != nullptr, ldc), [&] {
    memory::desc a_md({m, k}, dt::bf16, tag::ab), b_any({k, n}, dt::bf16, tag::any), bias_md({1, n}, dt::f32, tag::ab);
    memory::desc c_md = ldc ? memory::desc({m, n}, dt::f32, memory::dims{ldc, 1}) : memory::desc({m, n}, dt::f32, tag::ab);
    memory::desc b_plain({k, n}, dt::bf16, transB ? tag::ba : tag::ab);
    dnnl::primitive_attr attr;
    if (accumulate) {
      dnnl::post_ops po;
      po.append_sum(1.f);
      attr.set_post_ops(po);
    }
    auto pd = bias ? dnnl::matmul::primitive_desc(dnnl::matmul::desc(a_md, b_any, bias_md, c_md), attr, engine())
                   : dnnl::matmul::primitive_desc(dnnl::matmul::desc(a_md, b_any, c_md), attr, engine());
    const memory::desc b_md = pd.weights_desc();
    dnnl::reorder::primitive_desc rpd(engine(), b_plain, engine(), b_md);
    return Primitive{dnnl::matmul(pd), {a_md, b_md, c_md, bias_md, b_plain}, 0, {dnnl::reorder(rpd)}};
  });
  uint16_t* blocked = staging(g_packed16, (p.mds[1].get_size() + 1) / 2);
  memory plain = mem(p.mds[4], b), packed_b = mem(p.mds[1], blocked);
  p.aux[0].execute(stream(), {{DNNL_ARG_FROM, plain}, {DNNL_ARG_TO, packed_b}});
  std::unordered_map<int, memory> args{{DNNL_ARG_SRC, mem(p.mds[0], a)}, {DNNL_ARG_WEIGHTS, packed_b}, {DNNL_ARG_DST, mem(p.mds[2], c)}};
  if (bias) args.emplace(DNNL_ARG_BIAS, mem(p.mds[3], bias));
  p.prim.execute(stream(), args);
  stream().wait();
}

}  // namespace

// trans = false: y (m, rows) = x (m, cols) · Wᵀ; trans = true: y (m, cols) = x (m, rows) · W.
// Each chunk of rows of W is one product: on output columns r0.. (row stride `rows`) forward, on
// input columns r0.. of x accumulating into y for the gradient to the input.
void q4_linear(float* y, const float* x, const uint8_t* packed, const float* scales, const float* code, const float* bias, int64_t m, int64_t rows,
               int64_t cols, int64_t blocksize, bool trans, bool bf16) {
  if (m <= 0 || rows <= 0 || cols <= 0) return;
  if (bf16 && bf16_supported()) {
    // A chunk in bf16 and its blocked copy take the bytes of one float32 chunk.
    const int64_t rc = balanced_rows(rows, cols, kQ4ChunkFloats);
    g_peakChunkFloats = std::max(g_peakChunkFloats, static_cast<double>(rc * cols));
    // x rounded once; each chunk of W dequantised straight to bf16, then reordered into the
    // blocked layout the bf16 kernel reads (which it would otherwise build from plain B inside
    // every call, once per block of rows of x).
    const int64_t xcols = trans ? rows : cols;
    uint16_t* xb = staging(g_x16, static_cast<size_t>(m * xcols));
    to_bf16(xb, x, m * xcols);
    uint16_t* w = staging(g_chunk16, static_cast<size_t>(rc * cols));
    for (int64_t r0 = 0; r0 < rows; r0 += rc) {
      const int64_t n = std::min(rc, rows - r0);
      q4_dequantize_bf16(w, packed, scales, code, r0 * cols, n * cols, blocksize);
      if (!trans) {
        // y[:, r0:r0+n] = x · Wcᵀ (+ bias), B = Wcᵀ (cols, n) read from Wc (n, cols).
        // (In place or staged by the chunk's width, as in the float32 path below.)
        const bool direct = n == rows || n >= 512;
        float* out = direct ? y + r0 : staging(g_stage, static_cast<size_t>(m * n));
        bf16_chunk_product(out, xb, w, m, n, cols, true, false, bias ? bias + r0 : nullptr, n == rows ? 0 : (direct ? rows : 0));
        if (!direct) parallel_items(m, m * n, [&](int64_t i) { std::copy(out + i * n, out + (i + 1) * n, y + i * rows + r0); });
      } else {
        // y (+)= x[:, r0:r0+n] · Wc, B = Wc (n, cols).
        const uint16_t* a = xb;
        if (n != rows) {
          uint16_t* t = staging(g_a16, static_cast<size_t>(m * n));
          parallel_items(m, m * n, [&](int64_t i) { std::copy(xb + i * rows + r0, xb + i * rows + r0 + n, t + i * n); });
          a = t;
        }
        bf16_chunk_product(y, a, w, m, cols, n, false, r0 > 0, nullptr);
      }
    }
    return;
  }
  const int64_t rc = balanced_rows(rows, cols, kQ4ChunkFloats);
  g_peakChunkFloats = std::max(g_peakChunkFloats, static_cast<double>(rc * cols));
  float* w = staging(g_chunk, static_cast<size_t>(rc * cols));
  for (int64_t r0 = 0; r0 < rows; r0 += rc) {
    const int64_t n = std::min(rc, rows - r0);
    q4_dequantize(w, packed, scales, code, r0 * cols, n * cols, blocksize);
    if (n == rows) {
      // One chunk: the plain product.
      if (!trans) matmul(y, x, w, 1, m, n, cols, false, true, 0, 0, 0, 0, bias);
      else matmul(y, x, w, 1, m, cols, n, false, false, 0, 0, 0, 0);
      continue;
    }
    if (!trans) {
      // Chunks of at least 512 rows write their columns of y in place (row stride `rows`); narrower
      // ones go through a dense staging block and are copied: at M = 1576 oneDNN ran 1152- and
      // 1024-column slices in place 1.1–1.2× faster than staged, and 256-column slices of a
      // 3072-deep product 0.75× as fast.
      if (n >= 512) {
        GemmShape shape{1, m, n, cols, false, true, 0, 0, 0, 0};
        shape.ldc = rows;
        shape.bias = bias != nullptr;
        gemm_execute(gemm_primitive(shape, false), onednn::stream(), y + r0, x, w, nullptr, bias ? bias + r0 : nullptr);
        continue;
      }
      float* t = staging(g_stage, static_cast<size_t>(m * n));
      matmul(t, x, w, 1, m, n, cols, false, true, 0, 0, 0, 0, bias ? bias + r0 : nullptr);
      parallel_items(m, m * n, [&](int64_t i) { std::copy(t + i * n, t + (i + 1) * n, y + i * rows + r0); });
      continue;
    }
    GemmShape shape{1, m, cols, n, false, false, 0, 0, 0, r0 > 0 ? 1 : 0};
    shape.lda = rows;
    gemm_execute(gemm_primitive(shape, false), onednn::stream(), y, x + r0, w, nullptr);
  }
}

// y (B, Cout, OH, OW) = conv(x, W) + bias with W (Cout, Cin, KH, KW) 4-bit, by chunks of output channels.
void q4_conv2d(float* y, const float* x, const uint8_t* packed, const float* scales, const float* code, const float* bias, const ConvShape& s,
               int64_t blocksize) {
  const int64_t cols = s.cIn / s.groups * s.kh * s.kw, plane = s.outH * s.outW;
  const int64_t rc = rows_per_chunk(s.cOut, cols);
  float* w = staging(g_chunk, static_cast<size_t>(rc * cols));
  g_peakChunkFloats = std::max(g_peakChunkFloats, static_cast<double>(rc * cols));
  for (int64_t o0 = 0; o0 < s.cOut; o0 += rc) {
    const int64_t n = std::min(rc, s.cOut - o0);
    q4_dequantize(w, packed, scales, code, o0 * cols, n * cols, blocksize);
    ConvShape c = s;
    c.cOut = n;
    if (n == s.cOut) {
      conv2d_forward(y, x, w, bias, c);
      continue;
    }
    float* t = staging(g_stage, static_cast<size_t>(s.n * n * plane));
    conv2d_forward(t, x, w, bias ? bias + o0 : nullptr, c);
    parallel_items(s.n * n, s.n * n * plane, [&](int64_t i) {
      const int64_t b = i / n, o = i % n;
      std::copy(t + i * plane, t + (i + 1) * plane, y + (b * s.cOut + o0 + o) * plane);
    });
  }
}

// gx (B, Cin, H, W) from gy (B, Cout, OH, OW): the sum over chunks of output channels.
void q4_conv2d_backward_data(float* gx, const float* gy, const uint8_t* packed, const float* scales, const float* code, const ConvShape& s,
                             int64_t blocksize) {
  const int64_t cols = s.cIn / s.groups * s.kh * s.kw, plane = s.outH * s.outW, inSize = s.n * s.cIn * s.h * s.w;
  const int64_t rc = rows_per_chunk(s.cOut, cols);
  float* w = staging(g_chunk, static_cast<size_t>(rc * cols));
  g_peakChunkFloats = std::max(g_peakChunkFloats, static_cast<double>(rc * cols));
  for (int64_t o0 = 0; o0 < s.cOut; o0 += rc) {
    const int64_t n = std::min(rc, s.cOut - o0);
    q4_dequantize(w, packed, scales, code, o0 * cols, n * cols, blocksize);
    ConvShape c = s;
    c.cOut = n;
    if (n == s.cOut) {
      conv2d_backward_data(gx, gy, w, c);
      continue;
    }
    float* g = staging(g_stage, static_cast<size_t>(s.n * n * plane));
    parallel_items(s.n * n, s.n * n * plane, [&](int64_t i) {
      const int64_t b = i / n, o = i % n;
      const float* src = gy + (b * s.cOut + o0 + o) * plane;
      std::copy(src, src + plane, g + i * plane);
    });
    float* part = o0 == 0 ? gx : staging(g_accum, static_cast<size_t>(inSize));
    conv2d_backward_data(part, g, w, c);
    if (o0 > 0) parallel_chunks(inSize, inSize, [&](int64_t lo, int64_t hi) {
      for (int64_t i = lo; i < hi; i++) gx[i] += part[i];
    });
  }
}

double q4_peak_chunk_floats(bool reset) {
  const double p = g_peakChunkFloats;
  if (reset) g_peakChunkFloats = 0;
  return p;
}

}  // namespace graft
