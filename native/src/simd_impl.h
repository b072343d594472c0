// The vector kernels of simd.h, written once over a lane type `V` that the including file
// defines (simd_avx2.cc: 8 lanes, simd_avx512.cc: 16) inside its own namespace.
//
// exp: x = n·ln2 + r, ln2 split in two (Cephes), eʳ by its degree-7 polynomial (Cephes'
//   coefficients, in Horner form); about 1 ulp. 2ⁿ comes from AVX-512's scalef, or on AVX2 from
//   rounding by adding 1.5·2²³ + 127 (the float's low mantissa bits then hold n + 127, the
//   exponent field of 2ⁿ). Inputs below −88 give 0 or a denormal below 1.2e-38 (−∞ gives 0),
//   above 88.376 +∞; NaN stays NaN.
// erf: the rational form erf(x) ≈ x·P(x²)/Q(x²) on [−4, 4] (odd degree-13 numerator, degree-8
//   denominator; |erf(±4) − 1| is below float resolution, so x is clamped there); absolute and
//   relative error < 4e-7, without an exp.
// Loops run whole vectors, then one masked vector for the tail.

using T = V::T;

// A template so that only the branch for this lane type is compiled.
template <typename W = V>
static inline T vexp(T x) {
  const T hi = W::set1(88.3762626647949f);
  // max/min return their second operand when either is NaN, so NaN reaches the arithmetic.
  const T xc = W::min(hi, W::max(W::set1(-88.f), x));
  T n, scale;
  if constexpr (W::has_scalef) {
    n = W::round(W::mul(xc, W::set1(1.44269504088896341f)));
  } else {
    const T magic = W::set1(12582912.f + 127.f);
    const T t = W::fmadd(xc, W::set1(1.44269504088896341f), magic);
    n = W::sub(t, magic);
    scale = W::exponent(t);
  }
  T r = W::fnmadd(n, W::set1(0.693359375f), xc);
  r = W::fnmadd(n, W::set1(-2.12194440e-4f), r);
  T p = W::set1(1.9875691500e-4f);
  p = W::fmadd(p, r, W::set1(1.3981999507e-3f));
  p = W::fmadd(p, r, W::set1(8.3334519073e-3f));
  p = W::fmadd(p, r, W::set1(4.1665795894e-2f));
  p = W::fmadd(p, r, W::set1(1.6666665459e-1f));
  p = W::fmadd(p, r, W::set1(5.0000001201e-1f));
  p = W::fmadd(p, r, W::set1(1.f));
  p = W::fmadd(p, r, W::set1(1.f));
  if constexpr (W::has_scalef) {
    // p·2ⁿ: n = −127 (x ≤ −88) gives a denormal or 0, n = 128 (x > 88.376) gives +∞.
    return W::scalef(p, n);
  } else {
    return W::inf_above(W::mul(p, scale), x, hi);
  }
}

static inline T verf(T a) {
  const T x = V::min(V::set1(4.f), V::max(V::set1(-4.f), a));
  const T x2 = V::mul(x, x);
  T p = V::set1(-2.72614225801306e-10f);
  p = V::fmadd(p, x2, V::set1(2.77068142495902e-08f));
  p = V::fmadd(p, x2, V::set1(-2.10102402082508e-06f));
  p = V::fmadd(p, x2, V::set1(-5.69250639462346e-05f));
  p = V::fmadd(p, x2, V::set1(-7.34990630326855e-04f));
  p = V::fmadd(p, x2, V::set1(-2.95459980854025e-03f));
  p = V::fmadd(p, x2, V::set1(-1.60960333262415e-02f));
  p = V::mul(p, x);
  T q = V::set1(-1.45660718464996e-05f);
  q = V::fmadd(q, x2, V::set1(-2.13374055278905e-04f));
  q = V::fmadd(q, x2, V::set1(-1.68282697438203e-03f));
  q = V::fmadd(q, x2, V::set1(-7.37332916720468e-03f));
  q = V::fmadd(q, x2, V::set1(-1.42647390514189e-02f));
  return V::div(p, q);
}

// f(i, v) → value stored at i, for every lane of x[0..n); the tail's spare lanes read zeros.
template <typename F>
static inline void map(float* y, const float* x, int64_t n, F f) {
  int64_t i = 0;
  for (; i + V::L <= n; i += V::L) V::store(y + i, f(i, V::load(x + i)));
  if (i < n) {
    const V::M m = V::tail(n - i);
    V::store_tail(y + i, f(i, V::load_tail(x + i, m)), m);
  }
}

// p[i..i+L) where whole, else its tail with zeros beyond n.
static inline T at(const float* p, int64_t i, int64_t n) { return i + V::L <= n ? V::load(p + i) : V::load_tail(p + i, V::tail(n - i)); }

static float row_max(const float* x, int64_t n) {
  T m0 = V::set1(-__builtin_huge_valf()), m1 = m0;
  V::B nan = V::none();
  int64_t i = 0;
  for (; i + 2 * V::L <= n; i += 2 * V::L) {
    const T a = V::load(x + i), b = V::load(x + i + V::L);
    m0 = V::max(m0, a);
    m1 = V::max(m1, b);
    nan = V::either(nan, V::unordered(a, b));
  }
  float m = V::hmax(V::max(m0, m1));
  bool isnan = V::any(nan);
  for (; i < n; i++) {
    isnan |= x[i] != x[i];
    m = x[i] > m ? x[i] : m;
  }
  return isnan ? __builtin_nanf("") : m;
}

static float row_exp(float* y, const float* x, int64_t n, float scale, float shift) {
  const T vs = V::set1(scale), vb = V::set1(shift);
  T s0 = V::zero(), s1 = s0;
  int64_t i = 0;
  for (; i + 2 * V::L <= n; i += 2 * V::L) {
    const T e0 = vexp(V::fmsub(V::load(x + i), vs, vb));
    const T e1 = vexp(V::fmsub(V::load(x + i + V::L), vs, vb));
    if (y) {
      V::store(y + i, e0);
      V::store(y + i + V::L, e1);
    }
    s0 = V::add(s0, e0);
    s1 = V::add(s1, e1);
  }
  for (; i < n; i += V::L) {
    const bool whole = i + V::L <= n;
    const V::M m = V::tail(whole ? V::L : n - i);
    const T e = V::keep(vexp(V::fmsub(whole ? V::load(x + i) : V::load_tail(x + i, m), vs, vb)), m);
    if (y) whole ? V::store(y + i, e) : V::store_tail(y + i, e, m);
    s0 = V::add(s0, e);
  }
  return V::hsum(V::add(s0, s1));
}

static void row_affine(float* y, const float* x, int64_t n, float a, float b) {
  const T va = V::set1(a), vb = V::set1(b);
  map(y, x, n, [&](int64_t, T v) { return V::fmadd(v, va, vb); });
}

static void gelu(float* y, const float* x, int64_t n) {
  map(y, x, n, [&](int64_t, T v) {
    const T h = V::mul(V::set1(0.5f), v);
    return V::fmadd(h, verf(V::mul(v, V::set1(0.70710678118654752f))), h);
  });
}

static void gelu_grad(float* gx, const float* gy, const float* x, int64_t n) {
  const T half = V::set1(0.5f);
  map(gx, x, n, [&](int64_t i, T v) {
    const T cdf = V::fmadd(half, verf(V::mul(v, V::set1(0.70710678118654752f))), half);
    const T pdf = vexp(V::mul(V::mul(V::set1(-0.5f), v), v));
    const T d = V::fmadd(V::mul(v, pdf), V::set1(0.39894228040143268f), cdf);
    return V::mul(at(gy, i, n), d);
  });
}

static void erf(float* y, const float* x, int64_t n) {
  map(y, x, n, [&](int64_t, T v) { return verf(v); });
}

// Σ x[i], or Σ (x[i] − mu)² when `centred`.
static inline float row_sum(const float* x, int64_t n, bool centred, float mu) {
  const T vm = V::set1(mu);
  T s0 = V::zero(), s1 = s0;
  int64_t i = 0;
  for (; i + 2 * V::L <= n; i += 2 * V::L) {
    T a = V::load(x + i), b = V::load(x + i + V::L);
    if (centred) {
      a = V::sub(a, vm);
      b = V::sub(b, vm);
      s0 = V::fmadd(a, a, s0);
      s1 = V::fmadd(b, b, s1);
    } else {
      s0 = V::add(s0, a);
      s1 = V::add(s1, b);
    }
  }
  for (; i < n; i += V::L) {
    const V::M m = V::tail(i + V::L <= n ? V::L : n - i);
    T a = V::load_tail(x + i, m);
    if (centred) a = V::keep(V::sub(a, vm), m);
    s0 = centred ? V::fmadd(a, a, s0) : V::add(s0, a);
  }
  return V::hsum(V::add(s0, s1));
}

static void layernorm_row(float* y, float* mean, float* rstd, const float* x, const float* gamma, const float* beta, int64_t n, float eps) {
  const float mu = row_sum(x, n, false, 0.f) / static_cast<float>(n);
  const float rs = 1.f / __builtin_sqrtf(row_sum(x, n, true, mu) / static_cast<float>(n) + eps);
  *mean = mu;
  *rstd = rs;
  const T vm = V::set1(mu), vr = V::set1(rs);
  map(y, x, n, [&](int64_t i, T v) {
    T h = V::mul(V::sub(v, vm), vr);
    if (gamma) h = V::mul(h, at(gamma, i, n));
    return beta ? V::add(h, at(beta, i, n)) : h;
  });
}

// Two passes over the row: sums (and the parameter gradients' rows), then gx.
static void layernorm_grad_row(float* gx, float* accGamma, float* accBeta, const float* x, const float* gy, const float* gamma, float mu, float rs, int64_t n) {
  const T vm = V::set1(mu), vr = V::set1(rs);
  // Σ g and Σ g·x̂ with g = gy·gamma, x̂ = (x − mu)·rs; the tail's lanes load zeros, so add nothing.
  T sg = V::zero(), sgx = sg;
  auto sums = [&](int64_t i, auto whole, V::M m) {
    const auto ld = [&](const float* p) { return whole ? V::load(p + i) : V::load_tail(p + i, m); };
    const auto st = [&](float* p, T v) { whole ? V::store(p + i, v) : V::store_tail(p + i, v, m); };
    const T d = ld(gy);
    const T xh = V::mul(V::sub(ld(x), vm), vr);
    const T g = gamma ? V::mul(d, ld(gamma)) : d;
    sg = V::add(sg, g);
    sgx = V::fmadd(g, xh, sgx);
    if (accGamma) st(accGamma, V::fmadd(d, xh, ld(accGamma)));
    if (accBeta) st(accBeta, V::add(d, ld(accBeta)));
  };
  int64_t i = 0;
  for (; i + V::L <= n; i += V::L) sums(i, std::true_type{}, V::M{});
  if (i < n) sums(i, std::false_type{}, V::tail(n - i));
  if (!gx) return;
  // gx = rs·(g − a − x̂·b), a = mean(g), b = mean(g·x̂)
  const T va = V::set1(V::hsum(sg) / static_cast<float>(n)), vb = V::set1(V::hsum(sgx) / static_cast<float>(n));
  auto grad = [&](int64_t i, auto whole, V::M m) {
    const auto ld = [&](const float* p) { return whole ? V::load(p + i) : V::load_tail(p + i, m); };
    const T d = ld(gy);
    const T g = gamma ? V::mul(d, ld(gamma)) : d;
    const T xh = V::mul(V::sub(ld(x), vm), vr);
    const T r = V::mul(vr, V::fnmadd(xh, vb, V::sub(g, va)));
    whole ? V::store(gx + i, r) : V::store_tail(gx + i, r, m);
  };
  for (i = 0; i + V::L <= n; i += V::L) grad(i, std::true_type{}, V::M{});
  if (i < n) grad(i, std::false_type{}, V::tail(n - i));
}

const Kernels table{V::level, row_max, row_exp, row_affine, gelu, gelu_grad, erf, layernorm_row, layernorm_grad_row};
