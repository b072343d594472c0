// The machine's arithmetic peak, measured: FMA loops per instruction set, on one thread and on
// every thread (OpenMP), for bench/models.ts and bench/run.ts to show each rate as a share of it.
//
// stdout: one JSON object {"threads", "results": [{"isa", "dtype", "threads", "gflops"}]}.
// Each loop keeps enough independent accumulators to cover the FMA latency on two ports, so it
// runs at the issue rate; an ISA the CPU lacks is left out (its entry says "unsupported").
//   fp32 avx2     8 lanes × 2 FLOP per vfmadd231ps ymm
//   fp32 avx512  16 lanes × 2 FLOP per vfmadd231ps zmm
//   bf16 avx512  16 lanes × 2 pairs × 2 FLOP per vdpbf16ps zmm (bf16 products, fp32 sums)
#include <immintrin.h>
#include <omp.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

static double nowS() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

constexpr int ACC = 12;

__attribute__((target("avx2,fma"))) static float loopAvx2(long iters) {
  __m256 acc[ACC];
  for (int i = 0; i < ACC; i++) acc[i] = _mm256_set1_ps(0.001f * i);
  const __m256 a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-7f);
  for (long n = 0; n < iters; n++) {
    for (int i = 0; i < ACC; i++) acc[i] = _mm256_fmadd_ps(acc[i], a, b);
  }
  __m256 s = acc[0];
  for (int i = 1; i < ACC; i++) s = _mm256_add_ps(s, acc[i]);
  float out[8];
  _mm256_storeu_ps(out, s);
  return out[0];
}

__attribute__((target("avx512f"))) static float loopAvx512(long iters) {
  __m512 acc[ACC];
  for (int i = 0; i < ACC; i++) acc[i] = _mm512_set1_ps(0.001f * i);
  const __m512 a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-7f);
  for (long n = 0; n < iters; n++) {
    for (int i = 0; i < ACC; i++) acc[i] = _mm512_fmadd_ps(acc[i], a, b);
  }
  __m512 s = acc[0];
  for (int i = 1; i < ACC; i++) s = _mm512_add_ps(s, acc[i]);
  return _mm512_reduce_add_ps(s);
}

__attribute__((target("avx512f,avx512bf16"))) static float loopBf16(long iters) {
  __m512 acc[ACC];
  for (int i = 0; i < ACC; i++) acc[i] = _mm512_set1_ps(0.001f * i);
  const __m512bh a = _mm512_cvtne2ps_pbh(_mm512_set1_ps(1e-3f), _mm512_set1_ps(2e-3f));
  const __m512bh b = _mm512_cvtne2ps_pbh(_mm512_set1_ps(1e-3f), _mm512_set1_ps(1e-3f));
  for (long n = 0; n < iters; n++) {
    for (int i = 0; i < ACC; i++) acc[i] = _mm512_dpbf16_ps(acc[i], a, b);
  }
  __m512 s = acc[0];
  for (int i = 1; i < ACC; i++) s = _mm512_add_ps(s, acc[i]);
  return _mm512_reduce_add_ps(s);
}

struct Isa {
  const char* isa;
  const char* dtype;
  bool supported;
  double flopsPerIter;
  float (*loop)(long);
};

volatile float sink;

// GFLOP/s of `loop` on `threads` threads: the best of 20 runs of ~50 ms each (the best, because
// on a shared machine another process's time slices only ever slow a run down).
static double measure(const Isa& k, int threads) {
  long iters = 1 << 20;
  for (;;) {  // size the run to ~50 ms on one thread
    double t0 = nowS();
    sink = k.loop(iters);
    if (nowS() - t0 > 0.025) break;
    iters *= 2;
  }
  iters *= 2;
  double best = 0;
  for (int r = 0; r < 20; r++) {
    double t0 = nowS();
#pragma omp parallel num_threads(threads)
    { sink = k.loop(iters); }
    double s = nowS() - t0;
    best = std::max(best, threads * iters * k.flopsPerIter / s / 1e9);
  }
  return best;
}

int main() {
  __builtin_cpu_init();
  const Isa isas[] = {
      {"avx2", "fp32", __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"), ACC * 8.0 * 2, loopAvx2},
      {"avx512", "fp32", (bool)__builtin_cpu_supports("avx512f"), ACC * 16.0 * 2, loopAvx512},
      {"avx512_bf16", "bf16", __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bf16"), ACC * 16.0 * 4, loopBf16},
  };
  const int all = omp_get_max_threads();
  std::string out = "{\"threads\":" + std::to_string(all) + ",\"results\":[";
  bool first = true;
  for (const Isa& k : isas) {
    for (int t : {1, all}) {
      if (t == 1 && all > 1) {
      } else if (t == 1) {
        continue;  // one thread only: the all-threads entry below is the same
      }
      char buf[256];
      if (k.supported) {
        std::snprintf(buf, sizeof buf, "%s{\"isa\":\"%s\",\"dtype\":\"%s\",\"threads\":%d,\"gflops\":%.2f}", first ? "" : ",", k.isa, k.dtype, t, measure(k, t));
      } else {
        std::snprintf(buf, sizeof buf, "%s{\"isa\":\"%s\",\"dtype\":\"%s\",\"threads\":%d,\"unsupported\":true}", first ? "" : ",", k.isa, k.dtype, t);
      }
      out += buf;
      first = false;
    }
  }
  out += "]}";
  std::puts(out.c_str());
  return 0;
}
