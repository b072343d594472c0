// N-API entry points: unpack JavaScript typed arrays (zero-copy) and numbers, call a kernel.
#include <napi.h>

#include <string>

#include "kernels.h"

namespace {

using namespace graft;

float* F(const Napi::Value& v) { return v.IsNull() || v.IsUndefined() ? nullptr : v.As<Napi::TypedArrayOf<float>>().Data(); }
int32_t* I(const Napi::Value& v) { return v.IsNull() || v.IsUndefined() ? nullptr : v.As<Napi::TypedArrayOf<int32_t>>().Data(); }
int64_t N(const Napi::Value& v) { return v.As<Napi::Number>().Int64Value(); }
float R(const Napi::Value& v) { return v.As<Napi::Number>().FloatValue(); }
bool B(const Napi::Value& v) { return v.As<Napi::Boolean>().Value(); }

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
  return v;
}

ConvShape Conv(const Napi::Value& v) {
  auto d = Dims(v);
  return ConvShape{d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7], d[8], d[9], d[10], d[11], d[12], d[13], d[14], d[15]};
}

PoolShape Pool(const Napi::Value& v, const Napi::Value& includePad) {
  auto d = Dims(v);
  return PoolShape{d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7], d[8], d[9], d[10], d[11], B(includePad)};
}

// Wraps a kernel call so C++ exceptions (oneDNN errors) become JavaScript errors.
template <typename F>
Napi::Value Guard(const Napi::CallbackInfo& info, const char* name, F f) {
  try {
    f();
  } catch (const std::exception& e) {
    Napi::Error::New(info.Env(), std::string("graft native ") + name + ": " + e.what()).ThrowAsJavaScriptException();
  }
  return info.Env().Undefined();
}

Napi::Value Matmul(const Napi::CallbackInfo& a) {
  return Guard(a, "matmul", [&] { matmul(F(a[2]), F(a[0]), F(a[1]), N(a[3]), N(a[4]), N(a[5]), N(a[6]), B(a[7]), B(a[8]), N(a[9]), N(a[10]), N(a[11]), (int)N(a[12])); });
}
Napi::Value Conv2d(const Napi::CallbackInfo& a) {
  return Guard(a, "conv2d", [&] { conv2d_forward(F(a[3]), F(a[0]), F(a[1]), F(a[2]), Conv(a[4])); });
}
Napi::Value Conv2dBackwardData(const Napi::CallbackInfo& a) {
  return Guard(a, "conv2dBackwardData", [&] { conv2d_backward_data(F(a[2]), F(a[0]), F(a[1]), Conv(a[3])); });
}
Napi::Value Conv2dBackwardWeight(const Napi::CallbackInfo& a) {
  return Guard(a, "conv2dBackwardWeight", [&] { conv2d_backward_weight(F(a[2]), F(a[3]), F(a[0]), F(a[1]), Conv(a[4])); });
}
Napi::Value UnaryFwd(const Napi::CallbackInfo& a) {
  unary_forward(F(a[2]), F(a[1]), N(a[3]), static_cast<Unary>(N(a[0])), R(a[4]), R(a[5]));
  return a.Env().Undefined();
}
Napi::Value UnaryBwd(const Napi::CallbackInfo& a) {
  unary_backward(F(a[3]), F(a[2]), F(a[1]), N(a[4]), static_cast<Unary>(N(a[0])), R(a[5]), R(a[6]));
  return a.Env().Undefined();
}
// binary(op, a, aOff, aStrides, b, bOff, bStrides, out, shape)
Napi::Value BinaryFwd(const Napi::CallbackInfo& a) {
  auto shape = Dims(a[8]);
  binary_forward(F(a[7]), F(a[1]), ViewOf(a[2], a[3], shape), F(a[4]), ViewOf(a[5], a[6], shape), shape, static_cast<Binary>(N(a[0])));
  return a.Env().Undefined();
}
// where(c, cOff, cStrides, a, aOff, aStrides, b, bOff, bStrides, out, shape)
Napi::Value Where(const Napi::CallbackInfo& a) {
  auto shape = Dims(a[10]);
  where_forward(F(a[9]), F(a[0]), ViewOf(a[1], a[2], shape), F(a[3]), ViewOf(a[4], a[5], shape), F(a[6]), ViewOf(a[7], a[8], shape), shape);
  return a.Env().Undefined();
}
// copy(src, srcOff, srcStrides, dst, dstOff, dstStrides, shape): float32 / int32 on either side
Napi::Value Copy(const Napi::CallbackInfo& a) {
  auto shape = Dims(a[6]);
  View vs = ViewOf(a[1], a[2], shape), vd = ViewOf(a[4], a[5], shape);
  bool srcF = a[0].As<Napi::TypedArray>().TypedArrayType() == napi_float32_array;
  bool dstF = a[3].As<Napi::TypedArray>().TypedArrayType() == napi_float32_array;
  if (srcF && dstF) copy_strided<float, float>(F(a[3]), vd, F(a[0]), vs);
  else if (!srcF && !dstF) copy_strided<int32_t, int32_t>(I(a[3]), vd, I(a[0]), vs);
  else if (srcF) copy_strided<float, int32_t>(I(a[3]), vd, F(a[0]), vs);
  else copy_strided<int32_t, float>(F(a[3]), vd, I(a[0]), vs);
  return a.Env().Undefined();
}
// fill(dst, off, strides, shape, value)
Napi::Value Fill(const Napi::CallbackInfo& a) {
  auto shape = Dims(a[3]);
  fill_strided(F(a[0]), ViewOf(a[1], a[2], shape), R(a[4]));
  return a.Env().Undefined();
}
// reduce(op, x, outer, len, inner, out, arg)
Napi::Value ReduceFwd(const Napi::CallbackInfo& a) {
  reduce_forward(F(a[5]), I(a[6]), F(a[1]), N(a[2]), N(a[3]), N(a[4]), static_cast<Reduce>(N(a[0])));
  return a.Env().Undefined();
}
// layerNorm(x, gamma, beta, y, mean, rstd, rows, n, eps)
Napi::Value LayerNorm(const Napi::CallbackInfo& a) {
  layernorm_forward(F(a[3]), F(a[4]), F(a[5]), F(a[0]), F(a[1]), F(a[2]), N(a[6]), N(a[7]), R(a[8]));
  return a.Env().Undefined();
}
// layerNormBackward(x, gy, gamma, mean, rstd, gx, ggamma, gbeta, rows, n)
Napi::Value LayerNormBwd(const Napi::CallbackInfo& a) {
  layernorm_backward(F(a[5]), F(a[6]), F(a[7]), F(a[0]), F(a[1]), F(a[2]), F(a[3]), F(a[4]), N(a[8]), N(a[9]));
  return a.Env().Undefined();
}
// batchNorm(x, gamma, beta, runMean, runVar, y, mean, rstd, n, c, s, training, momentum, eps)
Napi::Value BatchNorm(const Napi::CallbackInfo& a) {
  batchnorm_forward(F(a[5]), F(a[6]), F(a[7]), F(a[3]), F(a[4]), F(a[0]), F(a[1]), F(a[2]), N(a[8]), N(a[9]), N(a[10]), B(a[11]), R(a[12]), R(a[13]));
  return a.Env().Undefined();
}
// batchNormBackward(x, gy, gamma, mean, rstd, gx, ggamma, gbeta, n, c, s, training)
Napi::Value BatchNormBwd(const Napi::CallbackInfo& a) {
  batchnorm_backward(F(a[5]), F(a[6]), F(a[7]), F(a[0]), F(a[1]), F(a[2]), F(a[3]), F(a[4]), N(a[8]), N(a[9]), N(a[10]), B(a[11]));
  return a.Env().Undefined();
}
Napi::Value Softmax(const Napi::CallbackInfo& a) {
  softmax_forward(F(a[1]), F(a[0]), N(a[2]), N(a[3]), B(a[4]));
  return a.Env().Undefined();
}
Napi::Value SoftmaxBwd(const Napi::CallbackInfo& a) {
  softmax_backward(F(a[2]), F(a[0]), F(a[1]), N(a[3]), N(a[4]), B(a[5]));
  return a.Env().Undefined();
}
// maxPool2d(x, y, arg, pool, includePad)
Napi::Value MaxPool(const Napi::CallbackInfo& a) {
  maxpool_forward(F(a[1]), I(a[2]), F(a[0]), Pool(a[3], a[4]));
  return a.Env().Undefined();
}
Napi::Value MaxPoolBwd(const Napi::CallbackInfo& a) {
  maxpool_backward(F(a[2]), F(a[0]), I(a[1]), Pool(a[3], a[4]));
  return a.Env().Undefined();
}
Napi::Value AvgPool(const Napi::CallbackInfo& a) {
  avgpool_forward(F(a[1]), F(a[0]), Pool(a[2], a[3]));
  return a.Env().Undefined();
}
Napi::Value AvgPoolBwd(const Napi::CallbackInfo& a) {
  avgpool_backward(F(a[1]), F(a[0]), Pool(a[2], a[3]));
  return a.Env().Undefined();
}
// adaptiveAvgPool2d(x, y, planes, h, w, outH, outW)
Napi::Value AdaptivePool(const Napi::CallbackInfo& a) {
  adaptive_avgpool_forward(F(a[1]), F(a[0]), N(a[2]), N(a[3]), N(a[4]), N(a[5]), N(a[6]));
  return a.Env().Undefined();
}
Napi::Value AdaptivePoolBwd(const Napi::CallbackInfo& a) {
  adaptive_avgpool_backward(F(a[1]), F(a[0]), N(a[2]), N(a[3]), N(a[4]), N(a[5]), N(a[6]));
  return a.Env().Undefined();
}
// attention(q, k, v, out, lse, batch, n, m, d, scale, causal)
Napi::Value Attention(const Napi::CallbackInfo& a) {
  return Guard(a, "attention", [&] { attention_forward(F(a[3]), F(a[4]), F(a[0]), F(a[1]), F(a[2]), N(a[5]), N(a[6]), N(a[7]), N(a[8]), R(a[9]), B(a[10])); });
}
// attentionBackward(q, k, v, out, lse, gout, gq, gk, gv, batch, n, m, d, scale, causal)
Napi::Value AttentionBwd(const Napi::CallbackInfo& a) {
  return Guard(a, "attentionBackward", [&] {
    attention_backward(F(a[6]), F(a[7]), F(a[8]), F(a[0]), F(a[1]), F(a[2]), F(a[3]), F(a[4]), F(a[5]), N(a[9]), N(a[10]), N(a[11]), N(a[12]), R(a[13]), B(a[14]));
  });
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  const std::pair<const char*, Napi::Function::Callback> fns[] = {
      {"matmul", Matmul}, {"conv2d", Conv2d}, {"conv2dBackwardData", Conv2dBackwardData}, {"conv2dBackwardWeight", Conv2dBackwardWeight},
      {"unary", UnaryFwd}, {"unaryGrad", UnaryBwd}, {"binary", BinaryFwd}, {"where", Where}, {"copy", Copy}, {"fill", Fill},
      {"reduce", ReduceFwd}, {"layerNorm", LayerNorm}, {"layerNormBackward", LayerNormBwd}, {"batchNorm", BatchNorm},
      {"batchNormBackward", BatchNormBwd}, {"softmax", Softmax}, {"softmaxBackward", SoftmaxBwd}, {"maxPool2d", MaxPool},
      {"maxPool2dBackward", MaxPoolBwd}, {"avgPool2d", AvgPool}, {"avgPool2dBackward", AvgPoolBwd}, {"adaptiveAvgPool2d", AdaptivePool},
      {"adaptiveAvgPool2dBackward", AdaptivePoolBwd}, {"attention", Attention}, {"attentionBackward", AttentionBwd},
  };
  for (auto& [name, fn] : fns) exports.Set(name, Napi::Function::New(env, fn, name));
  return exports;
}

}  // namespace

NODE_API_MODULE(graft_native, Init)
