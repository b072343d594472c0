// Products with a 4-bit block-quantised weight (bitsandbytes' NF4/FP4 layout: two codes per byte,
// the first element in the high nibble, one fp32 scale per block of the flattened weight). The
// weight is dequantised a chunk of rows at a time into one reused buffer of at most
// kQ4ChunkFloats floats and each chunk goes through the float kernels (oneDNN matmul and
// convolution), so no float copy of a whole large weight exists at any time.
#include <algorithm>
#include <vector>

#include "kernels.h"
#include "parallel.h"

namespace graft {

namespace {

// The dequantised chunk and the staging buffers of the current call (kernels run on the
// JavaScript thread, one at a time).
std::vector<float> g_chunk, g_stage, g_accum;
std::vector<uint16_t> g_chunk16, g_x16;
double g_peakChunkFloats = 0;

float* chunk_buffer(std::vector<float>& b, size_t floats) {
  if (b.size() < floats) b.resize(floats);
  return b.data();
}

uint16_t* bf16_buffer16(std::vector<uint16_t>& b, size_t count) {
  if (b.size() < count) b.resize(count);
  return b.data();
}

int64_t rows_per_chunk(int64_t rows, int64_t cols) {
  return std::clamp<int64_t>(kQ4ChunkFloats / std::max<int64_t>(cols, 1), 1, std::max<int64_t>(rows, 1));
}

}  // namespace

void q4_dequantize(float* out, const uint8_t* packed, const float* scales, const float* code, int64_t start, int64_t count, int64_t blocksize) {
  // By whole blocks: one scale per block, the nibbles of each byte in turn.
  const int64_t first = start / blocksize, last = (start + count - 1) / blocksize;
  parallel_chunks(last - first + 1, count, [&](int64_t lo, int64_t hi) {
    for (int64_t b = first + lo; b < first + hi; b++) {
      const float s = scales[b];
      const int64_t i0 = std::max(start, b * blocksize), i1 = std::min(start + count, (b + 1) * blocksize);
      int64_t i = i0;
      if (i & 1) {
        out[i - start] = code[packed[i >> 1] & 15] * s;
        i++;
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
// as q4_dequantize, rounded to bf16 as they are written.
void q4_dequantize_bf16(uint16_t* out, const uint8_t* packed, const float* scales, const float* code, int64_t start, int64_t count, int64_t blocksize) {
  const int64_t first = start / blocksize, last = (start + count - 1) / blocksize;
  parallel_chunks(last - first + 1, count, [&](int64_t lo, int64_t hi) {
    float tmp[256];
    for (int64_t b = first + lo; b < first + hi; b++) {
      const float s = scales[b];
      const int64_t i0 = std::max(start, b * blocksize), i1 = std::min(start + count, (b + 1) * blocksize);
      for (int64_t j0 = i0; j0 < i1; j0 += 256) {
        const int64_t j1 = std::min(i1, j0 + 256);
        for (int64_t i = j0; i < j1; i++) tmp[i - j0] = code[(packed[i >> 1] >> ((i & 1) ? 0 : 4)) & 15] * s;
        to_bf16_serial(out + (j0 - start), tmp, j1 - j0);
      }
    }
  });
}

// trans = false: y (m, rows) = x (m, cols) · Wᵀ; trans = true: y (m, cols) = x (m, rows) · W.
void q4_linear(float* y, const float* x, const uint8_t* packed, const float* scales, const float* code, const float* bias, int64_t m, int64_t rows,
               int64_t cols, int64_t blocksize, bool trans, bool bf16) {
  if (m <= 0 || rows <= 0 || cols <= 0) return;
  const int64_t rc = rows_per_chunk(rows, cols);
  g_peakChunkFloats = std::max(g_peakChunkFloats, static_cast<double>(rc * cols));
  if (bf16 && bf16_supported()) {
    // x rounded once; each chunk of W dequantised straight to bf16 and its product written in place.
    uint16_t* xb = bf16_buffer16(g_x16, static_cast<size_t>(m * (trans ? rows : cols)));
    to_bf16(xb, x, m * (trans ? rows : cols));
    uint16_t* w = bf16_buffer16(g_chunk16, static_cast<size_t>(rc * cols));
    for (int64_t r0 = 0; r0 < rows; r0 += rc) {
      const int64_t n = std::min(rc, rows - r0);
      q4_dequantize_bf16(w, packed, scales, code, r0 * cols, n * cols, blocksize);
      if (!trans) gemm_bf16(y + r0, xb, w, m, n, cols, true, cols, cols, rows, false, bias ? bias + r0 : nullptr);
      else gemm_bf16(y, xb + r0, w, m, cols, n, false, rows, cols, cols, r0 > 0, nullptr);
    }
    return;
  }
  float* w = chunk_buffer(g_chunk, static_cast<size_t>(rc * cols));
  for (int64_t r0 = 0; r0 < rows; r0 += rc) {
    const int64_t n = std::min(rc, rows - r0);
    q4_dequantize(w, packed, scales, code, r0 * cols, n * cols, blocksize);
    if (!trans) {
      const float* b = bias ? bias + r0 : nullptr;
      if (n == rows) {
        matmul(y, x, w, 1, m, n, cols, false, true, 0, 0, 0, 0, b);
        continue;
      }
      float* t = chunk_buffer(g_stage, static_cast<size_t>(m * n));
      matmul(t, x, w, 1, m, n, cols, false, true, 0, 0, 0, 0, b);
      parallel_items(m, m * n, [&](int64_t i) { std::copy(t + i * n, t + (i + 1) * n, y + i * rows + r0); });
    } else {
      const float* xs = x;
      if (n != rows) {
        float* t = chunk_buffer(g_stage, static_cast<size_t>(m * n));
        parallel_items(m, m * n, [&](int64_t i) { std::copy(x + i * rows + r0, x + i * rows + r0 + n, t + i * n); });
        xs = t;
      }
      matmul(y, xs, w, 1, m, cols, n, false, false, 0, 0, 0, r0 > 0 ? 1 : 0);
    }
  }
}

// y (B, Cout, OH, OW) = conv(x, W) + bias with W (Cout, Cin, KH, KW) 4-bit, by chunks of output channels.
void q4_conv2d(float* y, const float* x, const uint8_t* packed, const float* scales, const float* code, const float* bias, const ConvShape& s,
               int64_t blocksize) {
  const int64_t cols = s.cIn / s.groups * s.kh * s.kw, plane = s.outH * s.outW;
  const int64_t rc = rows_per_chunk(s.cOut, cols);
  float* w = chunk_buffer(g_chunk, static_cast<size_t>(rc * cols));
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
    float* t = chunk_buffer(g_stage, static_cast<size_t>(s.n * n * plane));
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
  float* w = chunk_buffer(g_chunk, static_cast<size_t>(rc * cols));
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
    float* g = chunk_buffer(g_stage, static_cast<size_t>(s.n * n * plane));
    parallel_items(s.n * n, s.n * n * plane, [&](int64_t i) {
      const int64_t b = i / n, o = i % n;
      const float* src = gy + (b * s.cOut + o0 + o) * plane;
      std::copy(src, src + plane, g + i * plane);
    });
    float* part = o0 == 0 ? gx : chunk_buffer(g_accum, static_cast<size_t>(inSize));
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
