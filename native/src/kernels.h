// graft native kernels: plain C++ functions over raw pointers, outputs first, then inputs, then
// sizes, one kernel family per file. No N-API in here: binding.cc unpacks JavaScript arguments
// and calls these. Shape vocabulary: B batch, N tokens, C channels, H/W spatial, K kernel,
// D head dim. Every buffer is contiguous unless it comes with a View.
#pragma once
#include <cstdint>
#include <limits>
#include <vector>

namespace graft {

// A strided window: element offset and per-axis sizes/strides (a stride of 0 broadcasts).
struct View {
  int64_t offset = 0;
  std::vector<int64_t> shape;
  std::vector<int64_t> strides;
};

// ---- unary elementwise (eltwise.cc) ----
// Each enum is written once as a list of (member, JavaScript name): binding.cc exports the same
// list as the addon's contract, which src/backends/native/contract.ts checks at load.
#define GRAFT_UNARY_OPS(X) \
  X(Neg, "neg") X(Exp, "exp") X(Log, "log") X(Sqrt, "sqrt") X(Rsqrt, "rsqrt") X(Abs, "abs") X(Sign, "sign") X(Square, "square") \
  X(Reciprocal, "reciprocal") X(Relu, "relu") X(Relu6, "relu6") X(Sigmoid, "sigmoid") X(Tanh, "tanh") X(Gelu, "gelu") \
  X(GeluTanh, "gelu_tanh") X(Silu, "silu") X(Hardswish, "hardswish") X(Erf, "erf") X(PowScalar, "pow_scalar") \
  X(Clamp, "clamp") X(Affine, "affine")
#define GRAFT_ENUM_MEMBER(member, name) member,
enum class Unary { GRAFT_UNARY_OPS(GRAFT_ENUM_MEMBER) };
// out (n) = f(x (n); p0, p1)
void unary_forward(float* out, const float* x, int64_t n, Unary op, float p0, float p1);
// gx (n) = gy (n) · f'(x (n))
void unary_backward(float* gx, const float* gy, const float* x, int64_t n, Unary op, float p0, float p1);

// ---- binary elementwise and select (binary.cc) ----
#define GRAFT_BINARY_OPS(X) \
  X(Add, "add") X(Sub, "sub") X(Mul, "mul") X(Div, "div") X(Maximum, "maximum") X(Minimum, "minimum") X(Pow, "pow") \
  X(Eq, "eq") X(Lt, "lt") X(Gt, "gt") X(Le, "le") X(Ge, "ge")
enum class Binary { GRAFT_BINARY_OPS(GRAFT_ENUM_MEMBER) };
// out (contiguous, shape) = a ∘ b, both views already broadcast to shape
void binary_forward(float* out, const float* a, const View& va, const float* b, const View& vb, const std::vector<int64_t>& shape, Binary op);
// out (contiguous, shape) = c ≠ 0 ? a : b
void where_forward(float* out, const float* c, const View& vc, const float* a, const View& va, const float* b, const View& vb, const std::vector<int64_t>& shape);

// ---- layout (layout.cc) ----
// dst view ← src view over dst's shape; float or int32 on either side (float → int32 truncates)
template <typename S, typename D>
void copy_strided(D* dst, const View& vd, const S* src, const View& vs);
void fill_strided(float* dst, const View& vd, float value);

// ---- reductions (reduce.cc) ----
#define GRAFT_REDUCE_OPS(X) X(Sum, "sum") X(Max, "max") X(Min, "min")
enum class Reduce { GRAFT_REDUCE_OPS(GRAFT_ENUM_MEMBER) };
// x (outer, len, inner) → out (outer, inner); arg (outer, inner) int32 first argmax/argmin, may be null
void reduce_forward(float* out, int32_t* arg, const float* x, int64_t outer, int64_t len, int64_t inner, Reduce op);

// ---- matrix product (matmul.cc, oneDNN) ----
// c[b] (M, N) = op(a[b]) · op(b[b]) (+ c[b] when beta = 1) (+ bias (N) on every row when not null);
// a[b] is (K, M) when transA else (M, K), b[b] is (N, K) when transB else (K, N); a batch stride
// of 0 broadcasts one matrix.
// c (M, N) = a (M, K) · B (+ bias) on B packed once (matmul.cc): the packed length in floats (0:
// no packed layout), the packing from b (K, N), or (N, K) when transB, and the product, which
// runs on the plain b when `packed` holds another layout.
// With bf16, B is packed as bf16 and the product rounds a to bf16 too (float32 accumulation and
// outputs); the packed copy's header says which.
int64_t matmul_packed_length(int64_t n, int64_t k, bool bias, bool bf16 = false);
void matmul_pack(float* packed, int64_t length, const float* b, int64_t n, int64_t k, bool transB, bool bias, bool bf16 = false);
// `act`: a Unary code (gelu, gelu_tanh, silu, relu) applied to each output as it is stored, or -1.
void matmul_packed(float* c, const float* a, const float* b, const float* packed, int64_t length, int64_t m, int64_t n, int64_t k, bool transB,
                   const float* bias, int act);
void matmul(float* c, const float* a, const float* b, int64_t batch, int64_t m, int64_t n, int64_t k, bool transA, bool transB,
            int64_t strideA, int64_t strideB, int64_t strideC, int beta, const float* bias = nullptr);
// The first `count` elements of a staging buffer reused across calls, grown as needed.
template <typename T>
T* staging(std::vector<T>& b, size_t count) {
  if (b.size() < count) b.resize(count);
  return b.data();
}

// bf16 (stored as uint16): out = x rounded to nearest, ties to even.
void to_bf16(uint16_t* out, const float* in, int64_t count);
// The same on the calling thread only (inside a parallel region).
void to_bf16_serial(uint16_t* out, const float* in, int64_t count);
// Whether this CPU runs bf16 products in oneDNN's native kernels (AVX512_BF16 or AMX).
bool bf16_supported();

// ---- convolution (conv.cc on oneDNN; depthwise.cc direct) ----
struct ConvShape {
  int64_t n, cIn, h, w, cOut, kh, kw, outH, outW, strideH, strideW, padH, padW, dilH, dilW, groups;
  // Channels-last (N, H, W, C) memory of x and of y, forward passes only; otherwise NCHW.
  bool srcNhwc = false, dstNhwc = false;
  // bf16 operands (x or gy, and w), fp32 accumulation and outputs: forward and backward-data passes
  // of groups = 1 NCHW convolutions on CPUs with AVX512_BF16 (conv.cc reorders the operands in).
  bool bf16 = false;
};
// y (B, Cout, OH, OW) = conv(x (B, Cin, H, W), w (Cout, Cin/G, KH, KW)) + bias (Cout)
void conv2d_forward(float* y, const float* x, const float* w, const float* bias, const ConvShape& s);
// conv2d_forward with each output clamped to [lo, hi] in the same pass (an inference
// convolution fused with its ReLU / ReLU6: oneDNN's eltwise post-op, or the direct kernels' store)
void conv2d_forward_clip(float* y, const float* x, const float* w, const float* bias, const ConvShape& s, float lo, float hi);
// Inference convolutions into NHWC on weights packed once into the layout oneDNN's kernel for the
// geometry reads (conv.cc): the packed buffer's length in floats, 0 where the geometry has no such
// kernel (the plain path is used then); the packing; and the forward pass, which runs on the plain
// weights `w` when `packed` was made for another layout.
int64_t conv2d_packed_length(const ConvShape& s, bool bias, bool clipOn, float lo, float hi);
void conv2d_pack_weight(float* packed, int64_t length, const float* w, const ConvShape& s, bool bias, bool clipOn, float lo, float hi);
void conv2d_forward_packed(float* y, const float* x, const float* w, const float* packed, int64_t length, const float* bias, const ConvShape& s,
                           bool clipOn, float lo, float hi);
// gx (B, Cin, H, W) from gy (B, Cout, OH, OW)
void conv2d_backward_data(float* gx, const float* gy, const float* w, const ConvShape& s);
// gw (Cout, Cin/G, KH, KW) and gb (Cout, may be null), overwritten
void conv2d_backward_weight(float* gw, float* gb, const float* x, const float* gy, const ConvShape& s);

// ---- 4-bit block-quantised weights (quant4.cc): bitsandbytes' packing, one scale per block ----
// The largest number of weight floats one call holds dequantised at a time.
constexpr int64_t kQ4ChunkFloats = 1 << 20;
// out (count) = code[nibble(start + j)] · scales[(start + j) / blocksize]
void q4_dequantize(float* out, const uint8_t* packed, const float* scales, const float* code, int64_t start, int64_t count, int64_t blocksize);
// trans = false: y (m, rows) = x (m, cols) · Wᵀ (+ bias (rows) on every row); true: y (m, cols) = x (m, rows) · W
// (bias must be null); W (rows, cols) 4-bit
// (bf16: the weight dequantised to bf16 and x rounded to bf16, float32 accumulation)
void q4_linear(float* y, const float* x, const uint8_t* packed, const float* scales, const float* code, const float* bias, int64_t m, int64_t rows,
               int64_t cols, int64_t blocksize, bool trans, bool bf16 = false);
void q4_conv2d(float* y, const float* x, const uint8_t* packed, const float* scales, const float* code, const float* bias, const ConvShape& s,
               int64_t blocksize);
void q4_conv2d_backward_data(float* gx, const float* gy, const uint8_t* packed, const float* scales, const float* code, const ConvShape& s,
                             int64_t blocksize);
// The most weight floats held dequantised at once since the last reset.
double q4_peak_chunk_floats(bool reset);

bool is_depthwise(const ConvShape& s);  // groups = Cin = Cout > 1
// Outputs clamped to [lo, hi] as they are stored (the defaults leave them as they are).
// y (B, OH, OW, C) = depthwise(x (B, H, W, C), w (C, 1, KH, KW)) + bias (C, may be null), clamped to [lo, hi]
void depthwise_forward_nhwc(float* y, const float* x, const float* w, const float* bias, const ConvShape& s, float lo, float hi);
void depthwise_forward(float* y, const float* x, const float* w, const float* bias, const ConvShape& s,
                       float lo = -std::numeric_limits<float>::infinity(), float hi = std::numeric_limits<float>::infinity());
void depthwise_backward_data(float* gx, const float* gy, const float* w, const ConvShape& s);
void depthwise_backward_weight(float* gw, float* gb, const float* x, const float* gy, const ConvShape& s);

// ---- pooling (pool.cc), NCHW ----
struct PoolShape {
  int64_t n, c, h, w, outH, outW, kh, kw, strideH, strideW, padH, padW;
  bool countIncludePad;
  // maxpool_forward only: x and y channels-last (N, H, W, C), arg not written (inference).
  bool nhwc = false;
};
// y (B, C, OH, OW), arg (B, C, OH, OW) int32 flat index h·W + w of each max within its plane
void maxpool_forward(float* y, int32_t* arg, const float* x, const PoolShape& p);
void maxpool_backward(float* gx, const float* gy, const int32_t* arg, const PoolShape& p);
void avgpool_forward(float* y, const float* x, const PoolShape& p);
void avgpool_backward(float* gx, const float* gy, const PoolShape& p);
// planes = B·C; y (planes, OH, OW) averages PyTorch's adaptive bins of x (planes, H, W)
void adaptive_avgpool_forward(float* y, const float* x, int64_t planes, int64_t h, int64_t w, int64_t outH, int64_t outW);
void adaptive_avgpool_backward(float* gx, const float* gy, int64_t planes, int64_t h, int64_t w, int64_t outH, int64_t outW);

// ---- normalisation (norm.cc) ----
// x (rows, N); mean, rstd (rows); gamma, beta (N) may be null
void layernorm_forward(float* y, float* mean, float* rstd, const float* x, const float* gamma, const float* beta, int64_t rows, int64_t n, float eps);
void layernorm_backward(float* gx, float* ggamma, float* gbeta, const float* x, const float* gy, const float* gamma, const float* mean, const float* rstd,
                        int64_t rows, int64_t n);
// x (B, C, S); mean, rstd, runMean, runVar, gamma, beta (C)
void batchnorm_forward(float* y, float* mean, float* rstd, float* runMean, float* runVar, const float* x, const float* gamma, const float* beta,
                       int64_t n, int64_t c, int64_t s, bool training, float momentum, float eps);
void batchnorm_backward(float* gx, float* ggamma, float* gbeta, const float* x, const float* gy, const float* gamma, const float* mean, const float* rstd,
                        int64_t n, int64_t c, int64_t s, bool training);

// ---- softmax (softmax.cc) ----
// y (rows, N) = softmax or log-softmax of each row of x (rows, N)
void softmax_forward(float* y, const float* x, int64_t rows, int64_t n, bool log);
void softmax_backward(float* gx, const float* y, const float* gy, int64_t rows, int64_t n, bool log);

// ---- attention (attention.cc) ----
// out (B, N, D) = softmax(scale · q kᵀ) v with q (B, N, D), k/v (B, M, D); lse (B, N); probs (B, N, M)
// receives the probabilities when not null, and the backward pass then reads them from there.
// One operand of strided attention: element (b, h, row, 0) at p + b·batch + h·head + row·row, unit stride along D.
struct AttentionView {
  const float* p;
  int64_t batch, head, row;
  const float* at(int64_t b, int64_t h, int64_t r) const { return p + b * batch + h * head + r * row; }
};
struct AttentionViews {
  AttentionView q, k, v, out;
};
// Inference attention on (B, H, rows, D) views, no copies and nothing saved: out = softmax(q kᵀ · scale) v.
void attention_forward_strided(const AttentionViews& x, int64_t batch, int64_t heads, int64_t n, int64_t m, int64_t d, float scale, bool causal);
void attention_forward(float* out, float* lse, float* probs, const float* q, const float* k, const float* v, int64_t batch, int64_t n, int64_t m,
                       int64_t d, float scale, bool causal);
void attention_backward(float* gq, float* gk, float* gv, const float* q, const float* k, const float* v, const float* out, const float* lse,
                        const float* probs, const float* gout, int64_t batch, int64_t n, int64_t m, int64_t d, float scale, bool causal);

// ---- gather / scatter (index.cc) ----
// out (outer, count, inner) = x (outer, len, inner) at idx (count); element type float or int32
template <typename T>
void index_select(T* out, const T* x, const int32_t* idx, int64_t outer, int64_t len, int64_t inner, int64_t count);
// gx (outer, len, inner) += gy (outer, count, inner) scattered to idx (count)
void index_add(float* gx, const float* gy, const int32_t* idx, int64_t outer, int64_t len, int64_t inner, int64_t count);

// ---- resampling (resample.cc), NCHW ----
struct InterpShape {
  int64_t n, c, h, w, outH, outW;
  bool bicubic, alignCorners;
  double scaleH, scaleW;  // source-index scale; ≤ 0 means in/out
};
void interpolate_forward(float* y, const float* x, const InterpShape& p);
void interpolate_backward(float* gx, const float* gy, const InterpShape& p);

}  // namespace graft
