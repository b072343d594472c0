// graft native kernels: plain C++ functions over raw float pointers, outputs first, then inputs,
// then sizes. Shape vocabulary: B batch, N tokens, C channels, H/W spatial, K kernel, D head dim.
// No N-API in here; binding.cc unpacks JavaScript arguments and calls these.
#pragma once
#include <cstdint>
#include <vector>

namespace graft {

// A strided view: element offset and per-axis sizes/strides (strides may be 0 for broadcast).
struct View {
  int64_t offset = 0;
  std::vector<int64_t> shape;
  std::vector<int64_t> strides;
};

// ---- elementwise (eltwise.cc) ----
enum class Unary { Neg, Exp, Log, Sqrt, Rsqrt, Abs, Sign, Square, Reciprocal, Relu, Relu6, Sigmoid, Tanh, Gelu, GeluTanh, Silu, Hardswish, Erf, PowScalar, Clamp, Affine };
enum class Binary { Add, Sub, Mul, Div, Maximum, Minimum, Pow, Eq, Lt, Gt, Le, Ge };
enum class Reduce { Sum, Max, Min };

// out (n) = f(x (n))
void unary_forward(float* out, const float* x, int64_t n, Unary op, float p0, float p1);
// gx (n) = gy · f'(x)
void unary_backward(float* gx, const float* gy, const float* x, int64_t n, Unary op, float p0, float p1);
// out (contiguous, shape) = a ∘ b over views already broadcast to shape
void binary_forward(float* out, const float* a, const View& va, const float* b, const View& vb, const std::vector<int64_t>& shape, Binary op);
void where_forward(float* out, const float* c, const View& vc, const float* a, const View& va, const float* b, const View& vb, const std::vector<int64_t>& shape);
// dst view ← src view (same shape); element types float or int32 on either side
template <typename S, typename D> void copy_strided(D* dst, const View& vd, const S* src, const View& vs);
void fill_strided(float* dst, const View& vd, float value);
// x (outer, len, inner) → out (outer, inner), arg (outer, inner) int32 for max/min
void reduce_forward(float* out, int32_t* arg, const float* x, int64_t outer, int64_t len, int64_t inner, Reduce op);

// ---- oneDNN (dnnl_ops.cc) ----
// C[b] (m, n) = op(A[b]) op(B[b]) (+ C[b] when beta = 1)
void matmul(float* c, const float* a, const float* b, int64_t batch, int64_t m, int64_t n, int64_t k, bool transA, bool transB,
            int64_t strideA, int64_t strideB, int64_t strideC, int beta);
struct ConvShape {
  int64_t n, cIn, h, w, cOut, kh, kw, outH, outW, strideH, strideW, padH, padW, dilH, dilW, groups;
};
// y (B, Cout, OH, OW) = conv(x (B, Cin, H, W), w (Cout, Cin/G, KH, KW)) + bias (Cout)
void conv2d_forward(float* y, const float* x, const float* w, const float* bias, const ConvShape& s);
void conv2d_backward_data(float* gx, const float* gy, const float* w, const ConvShape& s);
void conv2d_backward_weight(float* gw, float* gb, const float* x, const float* gy, const ConvShape& s);

// oneDNN eltwise for the unary ops it defines as graft does; false when `op` is not one of them.
bool dnnl_unary_forward(float* out, const float* x, int64_t n, Unary op, float p0);
bool dnnl_unary_backward(float* gx, const float* gy, const float* x, int64_t n, Unary op, float p0);

// ---- depthwise convolution (depthwise.cc): groups = Cin = Cout ----
bool is_depthwise(const ConvShape& s);
void depthwise_forward(float* y, const float* x, const float* w, const float* bias, const ConvShape& s);
void depthwise_backward_data(float* gx, const float* gy, const float* w, const ConvShape& s);
void depthwise_backward_weight(float* gw, float* gb, const float* x, const float* gy, const ConvShape& s);

// ---- normalisation (norm.cc) ----
void layernorm_forward(float* y, float* mean, float* rstd, const float* x, const float* gamma, const float* beta, int64_t rows, int64_t n, float eps);
void layernorm_backward(float* gx, float* ggamma, float* gbeta, const float* x, const float* gy, const float* gamma, const float* mean, const float* rstd, int64_t rows, int64_t n);
void batchnorm_forward(float* y, float* mean, float* rstd, float* runMean, float* runVar, const float* x, const float* gamma, const float* beta,
                       int64_t n, int64_t c, int64_t s, bool training, float momentum, float eps);
void batchnorm_backward(float* gx, float* ggamma, float* gbeta, const float* x, const float* gy, const float* gamma, const float* mean, const float* rstd,
                        int64_t n, int64_t c, int64_t s, bool training);
// rows of length n (oneDNN softmax / logsoftmax, in dnnl_ops.cc)
void softmax_forward(float* y, const float* x, int64_t rows, int64_t n, bool log);
void softmax_backward(float* gx, const float* y, const float* gy, int64_t rows, int64_t n, bool log);

// ---- pooling (pool.cc), NCHW ----
struct PoolShape {
  int64_t n, c, h, w, outH, outW, kh, kw, strideH, strideW, padH, padW;
  bool countIncludePad;
};
void maxpool_forward(float* y, int32_t* arg, const float* x, const PoolShape& p);
void maxpool_backward(float* gx, const float* gy, const int32_t* arg, const PoolShape& p);
void avgpool_forward(float* y, const float* x, const PoolShape& p);
void avgpool_backward(float* gx, const float* gy, const PoolShape& p);
void adaptive_avgpool_forward(float* y, const float* x, int64_t planes, int64_t h, int64_t w, int64_t outH, int64_t outW);
void adaptive_avgpool_backward(float* gx, const float* gy, int64_t planes, int64_t h, int64_t w, int64_t outH, int64_t outW);

// ---- attention (attention.cc) ----
// out (B, N, D) = softmax(scale · q kᵀ) v, q (B, N, D), k/v (B, M, D); lse (B, N)
void attention_forward(float* out, float* lse, const float* q, const float* k, const float* v, int64_t batch, int64_t n, int64_t m, int64_t d, float scale, bool causal);
void attention_backward(float* gq, float* gk, float* gv, const float* q, const float* k, const float* v, const float* out, const float* lse, const float* gout,
                        int64_t batch, int64_t n, int64_t m, int64_t d, float scale, bool causal);

}  // namespace graft
