// N-API entry points: unpack JavaScript arguments (typed arrays are used in place, zero copy; a
// subarray's byte offset is part of its data pointer) and call a kernel. Argument order follows
// the Backend interface in src/backends/backend.ts; src/backends/native/index.ts is the caller.
#include <napi.h>

#include <stdexcept>
#include <string>

#include "kernels.h"
#include "simd.h"

namespace {

using namespace graft;

// A typed array's data, checked to be of the element type T; null/undefined give nullptr.
template <typename T, napi_typedarray_type Type>
T* data(const Napi::Value& v, const char* what) {
  if (v.IsNull() || v.IsUndefined()) return nullptr;
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != Type)
    throw std::invalid_argument(std::string(what) + " must be a " + (Type == napi_float32_array ? "Float32Array" : "Int32Array"));
  return v.As<Napi::TypedArrayOf<T>>().Data();
}
float* F(const Napi::Value& v) { return data<float, napi_float32_array>(v, "a buffer"); }
uint8_t* U8(const Napi::Value& v) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) throw std::invalid_argument("packed codes must be a Uint8Array");
  return v.As<Napi::TypedArrayOf<uint8_t>>().Data();
}
int32_t* I(const Napi::Value& v) { return data<int32_t, napi_int32_array>(v, "an index buffer"); }
bool IsF32(const Napi::Value& v) { return v.IsTypedArray() && v.As<Napi::TypedArray>().TypedArrayType() == napi_float32_array; }
int64_t N(const Napi::Value& v) { return v.As<Napi::Number>().Int64Value(); }
float R(const Napi::Value& v) { return v.As<Napi::Number>().FloatValue(); }
double D(const Napi::Value& v) { return v.As<Napi::Number>().DoubleValue(); }
bool B(const Napi::Value& v) { return v.ToBoolean().Value(); }

std::vector<int64_t> Dims(const Napi::Value& v) {
  auto a = v.As<Napi::Array>();
  std::vector<int64_t> out(a.Length());
  for (uint32_t i = 0; i < a.Length(); i++) out[i] = a.Get(i).As<Napi::Number>().Int64Value();
  return out;
}

View ViewOf(const Napi::Value& offset, const Napi::Value& strides, const std::vector<int64_t>& shape) {
  View v;
  v.offset = N(offset);
  v.shape = shape;
  v.strides = Dims(strides);
  if (v.strides.size() != shape.size()) throw std::invalid_argument("a view's strides and shape differ in rank");
  return v;
}

ConvShape Conv(const Napi::Value& v) {
  auto d = Dims(v);
  if (d.size() != 16 && d.size() != 17) throw std::invalid_argument("convolution geometry needs 16 numbers and optionally the layout bits");
  ConvShape s{d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7], d[8], d[9], d[10], d[11], d[12], d[13], d[14], d[15]};
  if (d.size() == 17) {
    s.srcNhwc = (d[16] & 1) != 0;
    s.dstNhwc = (d[16] & 2) != 0;
    s.bf16 = (d[16] & 4) != 0;
  }
  return s;
}

PoolShape Pool(const Napi::Value& v, const Napi::Value& includePad) {
  auto d = Dims(v);
  if (d.size() != 12 && d.size() != 13) throw std::invalid_argument("pooling geometry needs 12 numbers and optionally the layout bit");
  PoolShape p{d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7], d[8], d[9], d[10], d[11], B(includePad)};
  p.nhwc = d.size() == 13 && d[12] != 0;
  return p;
}

// interp geometry: [n, c, h, w, outH, outW], bicubic, alignCorners, scaleH, scaleW (≤ 0: none)
InterpShape Interp(const Napi::CallbackInfo& a, size_t at) {
  auto d = Dims(a[at]);
  if (d.size() != 6) throw std::invalid_argument("resampling geometry needs 6 numbers");
  return InterpShape{d[0], d[1], d[2], d[3], d[4], d[5], B(a[at + 1]), B(a[at + 2]), D(a[at + 3]), D(a[at + 4])};
}

// Every entry point: a call with other than Arity arguments is refused (the argument lists are
// positional), and C++ exceptions (bad arguments, oneDNN errors) become JavaScript errors.
// The function's data is its name, for the message.
template <void (*Body)(const Napi::CallbackInfo&), size_t Arity>
Napi::Value Entry(const Napi::CallbackInfo& info) {
  const char* name = static_cast<const char*>(info.Data());
  try {
    if (info.Length() != Arity)
      throw std::invalid_argument("takes " + std::to_string(Arity) + " arguments; got " + std::to_string(info.Length()));
    Body(info);
  } catch (const Napi::Error&) {
    throw;
  } catch (const std::exception& e) {
    throw Napi::Error::New(info.Env(), std::string("graft native: ") + name + ": " + e.what());
  }
  return info.Env().Undefined();
}

// matmul(a, b, c, batch, m, n, k, transA, transB, strideA, strideB, strideC, beta, bias | null)
void Matmul(const Napi::CallbackInfo& a) {
  matmul(F(a[2]), F(a[0]), F(a[1]), N(a[3]), N(a[4]), N(a[5]), N(a[6]), B(a[7]), B(a[8]), N(a[9]), N(a[10]), N(a[11]), static_cast<int>(N(a[12])),
         F(a[13]));
}
// conv2d(x, w, bias, y, geometry)
void Conv2d(const Napi::CallbackInfo& a) { conv2d_forward(F(a[3]), F(a[0]), F(a[1]), F(a[2]), Conv(a[4])); }
// conv2dClip(x, w, bias, y, geometry, lo, hi)
void Conv2dClip(const Napi::CallbackInfo& a) { conv2d_forward_clip(F(a[3]), F(a[0]), F(a[1]), F(a[2]), Conv(a[4]), R(a[5]), R(a[6])); }
int64_t Length(const Napi::Value& v) { return static_cast<int64_t>(v.As<Napi::TypedArray>().ElementLength()); }
// conv2dPack(w, packed, geometry, hasBias, clipOn, lo, hi)
void Conv2dPack(const Napi::CallbackInfo& a) { conv2d_pack_weight(F(a[1]), Length(a[1]), F(a[0]), Conv(a[2]), B(a[3]), B(a[4]), R(a[5]), R(a[6])); }
// conv2dPacked(x, w, packed, bias, y, geometry, clipOn, lo, hi)
void Conv2dPacked(const Napi::CallbackInfo& a) {
  conv2d_forward_packed(F(a[4]), F(a[0]), F(a[1]), F(a[2]), Length(a[2]), F(a[3]), Conv(a[5]), B(a[6]), R(a[7]), R(a[8]));
}
// matmulPack(b, packed, n, k, transB, hasBias, bf16)
void MatmulPack(const Napi::CallbackInfo& a) { matmul_pack(F(a[1]), Length(a[1]), F(a[0]), N(a[2]), N(a[3]), B(a[4]), B(a[5]), B(a[6])); }
// matmulPacked(a, b, packed, c, m, n, k, transB, bias | null, act)
void MatmulPacked(const Napi::CallbackInfo& a) {
  matmul_packed(F(a[3]), F(a[0]), F(a[1]), F(a[2]), Length(a[2]), N(a[4]), N(a[5]), N(a[6]), B(a[7]), F(a[8]), static_cast<int>(N(a[9])));
}
// conv2dBackwardData(gy, w, gx, geometry)
void Conv2dBackwardData(const Napi::CallbackInfo& a) { conv2d_backward_data(F(a[2]), F(a[0]), F(a[1]), Conv(a[3])); }
// q4Linear(x, packed, scales, code, bias | null, y, m, rows, cols, blocksize, trans, bf16)
void Q4Linear(const Napi::CallbackInfo& a) {
  if (B(a[10]) && !a[4].IsNull()) throw std::invalid_argument("the gradient to the input takes no bias");
  q4_linear(F(a[5]), F(a[0]), U8(a[1]), F(a[2]), F(a[3]), F(a[4]), N(a[6]), N(a[7]), N(a[8]), N(a[9]), B(a[10]), B(a[11]));
}
// q4Conv2d(x, packed, scales, code, bias, y, geometry, blocksize)
void Q4Conv2d(const Napi::CallbackInfo& a) { q4_conv2d(F(a[5]), F(a[0]), U8(a[1]), F(a[2]), F(a[3]), F(a[4]), Conv(a[6]), N(a[7])); }
// q4Conv2dBackwardData(gy, packed, scales, code, gx, geometry, blocksize)
void Q4Conv2dBwd(const Napi::CallbackInfo& a) { q4_conv2d_backward_data(F(a[4]), F(a[0]), U8(a[1]), F(a[2]), F(a[3]), Conv(a[5]), N(a[6])); }
// q4Stats(out (Float64Array, 1), reset): out[0] = the most weight floats held dequantised at once
void Q4Stats(const Napi::CallbackInfo& a) {
  auto out = a[0].As<Napi::TypedArrayOf<double>>();
  out[0] = q4_peak_chunk_floats(B(a[1]));
}
// conv2dBackwardWeight(x, gy, gw, gb, geometry)
void Conv2dBackwardWeight(const Napi::CallbackInfo& a) { conv2d_backward_weight(F(a[2]), F(a[3]), F(a[0]), F(a[1]), Conv(a[4])); }
// unary(op, x, out, n, p0, p1)
void UnaryFwd(const Napi::CallbackInfo& a) { unary_forward(F(a[2]), F(a[1]), N(a[3]), static_cast<Unary>(N(a[0])), R(a[4]), R(a[5])); }
// unaryGrad(op, x, gy, gx, n, p0, p1)
void UnaryBwd(const Napi::CallbackInfo& a) { unary_backward(F(a[3]), F(a[2]), F(a[1]), N(a[4]), static_cast<Unary>(N(a[0])), R(a[5]), R(a[6])); }
// binary(op, a, aOffset, aStrides, b, bOffset, bStrides, out, shape)
void BinaryFwd(const Napi::CallbackInfo& a) {
  auto shape = Dims(a[8]);
  binary_forward(F(a[7]), F(a[1]), ViewOf(a[2], a[3], shape), F(a[4]), ViewOf(a[5], a[6], shape), shape, static_cast<Binary>(N(a[0])));
}
// where(c, cOffset, cStrides, a, aOffset, aStrides, b, bOffset, bStrides, out, shape)
void Where(const Napi::CallbackInfo& a) {
  auto shape = Dims(a[10]);
  where_forward(F(a[9]), F(a[0]), ViewOf(a[1], a[2], shape), F(a[3]), ViewOf(a[4], a[5], shape), F(a[6]), ViewOf(a[7], a[8], shape), shape);
}
// copy(src, srcOffset, srcStrides, dst, dstOffset, dstStrides, shape): Float32Array or Int32Array on either side
void Copy(const Napi::CallbackInfo& a) {
  auto shape = Dims(a[6]);
  View vs = ViewOf(a[1], a[2], shape), vd = ViewOf(a[4], a[5], shape);
  bool srcF = IsF32(a[0]), dstF = IsF32(a[3]);
  if (srcF && dstF) copy_strided<float, float>(F(a[3]), vd, F(a[0]), vs);
  else if (!srcF && !dstF) copy_strided<int32_t, int32_t>(I(a[3]), vd, I(a[0]), vs);
  else if (srcF) copy_strided<float, int32_t>(I(a[3]), vd, F(a[0]), vs);
  else copy_strided<int32_t, float>(F(a[3]), vd, I(a[0]), vs);
}
// fill(dst, offset, strides, shape, value)
void Fill(const Napi::CallbackInfo& a) { fill_strided(F(a[0]), ViewOf(a[1], a[2], Dims(a[3])), R(a[4])); }
// reduce(op, x, outer, len, inner, out, arg)
void ReduceFwd(const Napi::CallbackInfo& a) { reduce_forward(F(a[5]), I(a[6]), F(a[1]), N(a[2]), N(a[3]), N(a[4]), static_cast<Reduce>(N(a[0]))); }
// layerNorm(x, gamma, beta, y, mean, rstd, rows, n, eps)
void LayerNorm(const Napi::CallbackInfo& a) { layernorm_forward(F(a[3]), F(a[4]), F(a[5]), F(a[0]), F(a[1]), F(a[2]), N(a[6]), N(a[7]), R(a[8])); }
// layerNormBackward(x, gy, gamma, mean, rstd, gx, ggamma, gbeta, rows, n)
void LayerNormBwd(const Napi::CallbackInfo& a) {
  layernorm_backward(F(a[5]), F(a[6]), F(a[7]), F(a[0]), F(a[1]), F(a[2]), F(a[3]), F(a[4]), N(a[8]), N(a[9]));
}
// batchNorm(x, gamma, beta, runningMean, runningVar, y, mean, rstd, n, c, s, training, momentum, eps)
void BatchNorm(const Napi::CallbackInfo& a) {
  bool training = B(a[11]);
  if (!training && (!F(a[3]) || !F(a[4]))) throw std::invalid_argument("batchNorm in eval mode needs running statistics");
  batchnorm_forward(F(a[5]), F(a[6]), F(a[7]), F(a[3]), F(a[4]), F(a[0]), F(a[1]), F(a[2]), N(a[8]), N(a[9]), N(a[10]), training, R(a[12]), R(a[13]));
}
// batchNormBackward(x, gy, gamma, mean, rstd, gx, ggamma, gbeta, n, c, s, training)
void BatchNormBwd(const Napi::CallbackInfo& a) {
  batchnorm_backward(F(a[5]), F(a[6]), F(a[7]), F(a[0]), F(a[1]), F(a[2]), F(a[3]), F(a[4]), N(a[8]), N(a[9]), N(a[10]), B(a[11]));
}
// softmax(x, y, rows, n, log)
void Softmax(const Napi::CallbackInfo& a) { softmax_forward(F(a[1]), F(a[0]), N(a[2]), N(a[3]), B(a[4])); }
// softmaxBackward(y, gy, gx, rows, n, log)
void SoftmaxBwd(const Napi::CallbackInfo& a) { softmax_backward(F(a[2]), F(a[0]), F(a[1]), N(a[3]), N(a[4]), B(a[5])); }
// maxPool2d(x, y, arg, geometry, countIncludePad)
void MaxPool(const Napi::CallbackInfo& a) { maxpool_forward(F(a[1]), I(a[2]), F(a[0]), Pool(a[3], a[4])); }
// maxPool2dBackward(gy, arg, gx, geometry, countIncludePad)
void MaxPoolBwd(const Napi::CallbackInfo& a) { maxpool_backward(F(a[2]), F(a[0]), I(a[1]), Pool(a[3], a[4])); }
// avgPool2d(x, y, geometry, countIncludePad)
void AvgPool(const Napi::CallbackInfo& a) { avgpool_forward(F(a[1]), F(a[0]), Pool(a[2], a[3])); }
// avgPool2dBackward(gy, gx, geometry, countIncludePad)
void AvgPoolBwd(const Napi::CallbackInfo& a) { avgpool_backward(F(a[1]), F(a[0]), Pool(a[2], a[3])); }
// adaptiveAvgPool2d(x, y, planes, h, w, outH, outW)
void AdaptivePool(const Napi::CallbackInfo& a) { adaptive_avgpool_forward(F(a[1]), F(a[0]), N(a[2]), N(a[3]), N(a[4]), N(a[5]), N(a[6])); }
// adaptiveAvgPool2dBackward(gy, gx, planes, h, w, outH, outW)
void AdaptivePoolBwd(const Napi::CallbackInfo& a) { adaptive_avgpool_backward(F(a[1]), F(a[0]), N(a[2]), N(a[3]), N(a[4]), N(a[5]), N(a[6])); }
// attention(q, k, v, out, lse, probs | null, batch, n, m, d, scale, causal)
void Attention(const Napi::CallbackInfo& a) {
  attention_forward(F(a[3]), F(a[4]), F(a[5]), F(a[0]), F(a[1]), F(a[2]), N(a[6]), N(a[7]), N(a[8]), N(a[9]), R(a[10]), B(a[11]));
}
// A strided attention operand: buffer, offset, strides [batch, head, row].
AttentionView AttView(const Napi::Value& buf, const Napi::Value& offset, const Napi::Value& strides) {
  auto st = Dims(strides);
  if (st.size() != 3) throw std::invalid_argument("an attention view needs 3 strides (batch, head, row)");
  return AttentionView{F(buf) + N(offset), st[0], st[1], st[2]};
}
// attentionStrided(q, qOffset, qStrides, k, kOffset, kStrides, v, vOffset, vStrides, out, outOffset, outStrides, batch, heads, n, m, d, scale, causal)
void AttentionStrided(const Napi::CallbackInfo& a) {
  AttentionViews x{AttView(a[0], a[1], a[2]), AttView(a[3], a[4], a[5]), AttView(a[6], a[7], a[8]), AttView(a[9], a[10], a[11])};
  attention_forward_strided(x, N(a[12]), N(a[13]), N(a[14]), N(a[15]), N(a[16]), R(a[17]), B(a[18]));
}
// attentionBackward(q, k, v, out, lse, probs | null, gout, gq, gk, gv, batch, n, m, d, scale, causal)
void AttentionBwd(const Napi::CallbackInfo& a) {
  attention_backward(F(a[7]), F(a[8]), F(a[9]), F(a[0]), F(a[1]), F(a[2]), F(a[3]), F(a[4]), F(a[5]), F(a[6]), N(a[10]), N(a[11]), N(a[12]), N(a[13]),
                     R(a[14]), B(a[15]));
}
// indexSelect(x, idx, out, outer, len, inner, count): Float32Array or Int32Array x and out
void IndexSelect(const Napi::CallbackInfo& a) {
  if (IsF32(a[0])) index_select<float>(F(a[2]), F(a[0]), I(a[1]), N(a[3]), N(a[4]), N(a[5]), N(a[6]));
  else index_select<int32_t>(I(a[2]), I(a[0]), I(a[1]), N(a[3]), N(a[4]), N(a[5]), N(a[6]));
}
// indexAdd(gy, idx, gx, outer, len, inner, count)
void IndexAdd(const Napi::CallbackInfo& a) { index_add(F(a[2]), F(a[0]), I(a[1]), N(a[3]), N(a[4]), N(a[5]), N(a[6])); }
// interpolate(x, y, geometry, bicubic, alignCorners, scaleH, scaleW)
void Interpolate(const Napi::CallbackInfo& a) { interpolate_forward(F(a[1]), F(a[0]), Interp(a, 2)); }
// interpolateBackward(gy, gx, geometry, bicubic, alignCorners, scaleH, scaleW)
void InterpolateBwd(const Napi::CallbackInfo& a) { interpolate_backward(F(a[1]), F(a[0]), Interp(a, 2)); }

// alignOffset(arrayBuffer): bytes from its start to the first 64-byte boundary, so that typed
// arrays the pool places there start on a cache line (oneDNN's GEMMs run ~8% slower on data
// that does not).
Napi::Value AlignOffset(const Napi::CallbackInfo& a) {
  const auto p = reinterpret_cast<uintptr_t>(a[0].As<Napi::ArrayBuffer>().Data());
  return Napi::Number::New(a.Env(), static_cast<double>((64 - p % 64) % 64));
}

// An entry point that returns a number, with the checks of Entry.
template <int64_t (*Body)(const Napi::CallbackInfo&), size_t Arity>
Napi::Value CountEntry(const Napi::CallbackInfo& info) {
  const char* name = static_cast<const char*>(info.Data());
  try {
    if (info.Length() != Arity)
      throw std::invalid_argument("takes " + std::to_string(Arity) + " arguments; got " + std::to_string(info.Length()));
    return Napi::Number::New(info.Env(), static_cast<double>(Body(info)));
  } catch (const Napi::Error&) {
    throw;
  } catch (const std::exception& e) {
    throw Napi::Error::New(info.Env(), std::string("graft native: ") + name + ": " + e.what());
  }
}
// conv2dPackedLength(geometry, hasBias, clipOn, lo, hi): floats a packed weight for the geometry takes (0: none)
int64_t Conv2dPackedLength(const Napi::CallbackInfo& a) { return conv2d_packed_length(Conv(a[0]), B(a[1]), B(a[2]), R(a[3]), R(a[4])); }
// matmulPackedLength(n, k, hasBias, bf16): floats a packed B (K, N) takes (0: none)
int64_t MatmulPackedLength(const Napi::CallbackInfo& a) { return matmul_packed_length(N(a[0]), N(a[1]), B(a[2]), B(a[3])); }
// bf16Supported(): 1 where bf16 products run in native kernels on this CPU, else 0
int64_t Bf16Supported(const Napi::CallbackInfo&) { return bf16_supported() ? 1 : 0; }
// Entry points that return a value, with their argument counts.
struct CountEntryPoint {
  const char* name;
  Napi::Function::Callback fn;
  size_t arity;
};
constexpr CountEntryPoint kCounts[] = {
    {"conv2dPackedLength", CountEntry<Conv2dPackedLength, 5>, 5},
    {"matmulPackedLength", CountEntry<MatmulPackedLength, 4>, 4},
    {"bf16Supported", CountEntry<Bf16Supported, 0>, 0},
};

struct EntryPoint {
  const char* name;
  Napi::Function::Callback fn;
  size_t arity;
};
template <void (*Body)(const Napi::CallbackInfo&), size_t Arity>
constexpr EntryPoint Kernel(const char* name) {
  return {name, Entry<Body, Arity>, Arity};
}

// Every kernel with its argument count (as in the comment above each function here).
constexpr EntryPoint kKernels[] = {
    Kernel<Matmul, 14>("matmul"),
    Kernel<Conv2d, 5>("conv2d"),
    Kernel<Conv2dClip, 7>("conv2dClip"),
    Kernel<MatmulPack, 7>("matmulPack"),
    Kernel<MatmulPacked, 10>("matmulPacked"),
    Kernel<Conv2dPack, 7>("conv2dPack"),
    Kernel<Conv2dPacked, 9>("conv2dPacked"),
    Kernel<Conv2dBackwardData, 4>("conv2dBackwardData"),
    Kernel<Conv2dBackwardWeight, 5>("conv2dBackwardWeight"),
    Kernel<Q4Linear, 12>("q4Linear"),
    Kernel<Q4Conv2d, 8>("q4Conv2d"),
    Kernel<Q4Conv2dBwd, 7>("q4Conv2dBackwardData"),
    Kernel<Q4Stats, 2>("q4Stats"),
    Kernel<UnaryFwd, 6>("unary"),
    Kernel<UnaryBwd, 7>("unaryGrad"),
    Kernel<BinaryFwd, 9>("binary"),
    Kernel<Where, 11>("where"),
    Kernel<Copy, 7>("copy"),
    Kernel<Fill, 5>("fill"),
    Kernel<ReduceFwd, 7>("reduce"),
    Kernel<LayerNorm, 9>("layerNorm"),
    Kernel<LayerNormBwd, 10>("layerNormBackward"),
    Kernel<BatchNorm, 14>("batchNorm"),
    Kernel<BatchNormBwd, 12>("batchNormBackward"),
    Kernel<Softmax, 5>("softmax"),
    Kernel<SoftmaxBwd, 6>("softmaxBackward"),
    Kernel<MaxPool, 5>("maxPool2d"),
    Kernel<MaxPoolBwd, 5>("maxPool2dBackward"),
    Kernel<AvgPool, 4>("avgPool2d"),
    Kernel<AvgPoolBwd, 4>("avgPool2dBackward"),
    Kernel<AdaptivePool, 7>("adaptiveAvgPool2d"),
    Kernel<AdaptivePoolBwd, 7>("adaptiveAvgPool2dBackward"),
    Kernel<Attention, 12>("attention"),
    Kernel<AttentionBwd, 16>("attentionBackward"),
    Kernel<AttentionStrided, 19>("attentionStrided"),
    Kernel<IndexSelect, 7>("indexSelect"),
    Kernel<IndexAdd, 7>("indexAdd"),
    Kernel<Interpolate, 7>("interpolate"),
    Kernel<InterpolateBwd, 7>("interpolateBackward"),
};

// The addon's side of src/backends/native/contract.ts: {enums: {unary, binary, reduce: name →
// code}, arity: entry point → argument count}, from the same enum lists and table as the code.
Napi::Object Contract(Napi::Env env) {
  auto enums = Napi::Object::New(env);
  auto add = [&](const char* enumName, std::initializer_list<std::pair<const char*, int>> members) {
    auto codes = Napi::Object::New(env);
    for (auto& [name, code] : members) codes.Set(name, Napi::Number::New(env, code));
    enums.Set(enumName, codes);
  };
#define GRAFT_UNARY_CODE(member, name) {name, static_cast<int>(Unary::member)},
#define GRAFT_BINARY_CODE(member, name) {name, static_cast<int>(Binary::member)},
#define GRAFT_REDUCE_CODE(member, name) {name, static_cast<int>(Reduce::member)},
  add("unary", {GRAFT_UNARY_OPS(GRAFT_UNARY_CODE)});
  add("binary", {GRAFT_BINARY_OPS(GRAFT_BINARY_CODE)});
  add("reduce", {GRAFT_REDUCE_OPS(GRAFT_REDUCE_CODE)});
  auto arity = Napi::Object::New(env);
  for (const auto& k : kKernels) arity.Set(k.name, Napi::Number::New(env, static_cast<double>(k.arity)));
  // alignOffset and the entry points of kCounts return values, so they are not among kKernels.
  arity.Set("alignOffset", Napi::Number::New(env, 1));
  for (const auto& k : kCounts) arity.Set(k.name, Napi::Number::New(env, static_cast<double>(k.arity)));
  auto contract = Napi::Object::New(env);
  contract.Set("enums", enums);
  contract.Set("arity", arity);
  return contract;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  for (const auto& k : kKernels) exports.Set(k.name, Napi::Function::New(env, k.fn, k.name, const_cast<char*>(k.name)));
  exports.Set("alignOffset", Napi::Function::New(env, AlignOffset, "alignOffset"));
  for (const auto& k : kCounts) exports.Set(k.name, Napi::Function::New(env, k.fn, k.name, const_cast<char*>(k.name)));
  // The vector instruction set the exp/erf kernels use on this CPU ("avx512" or "avx2").
  exports.Set("simd", Napi::String::New(env, simd::kernels().level));
  exports.Set("contract", Contract(env));
  return exports;
}

}  // namespace

NODE_API_MODULE(graft_native, Init)
