// --deterministic: the same numbers on every x86-64 CPU graft supports. Two things pick kernels
// by CPU: graft's vector kernels (softmax, GELU, erf, layer norm; AVX-512 when the CPU has it,
// native/src/simd_avx2.cc) and oneDNN (matmul, convolutions, eltwise), whose JIT emits AVX-512
// code with other blockings and summation orders on AVX-512 machines. Capping both at AVX2, the
// level the addon requires, leaves one code path. Both are read lazily by the addon (graft's on
// the first vector kernel, oneDNN's on the first primitive), so they must be set before the
// first tensor operation; docs/reproducibility.md says what this does and does not cover.
export const DETERMINISTIC_ENV: Readonly<Record<string, string>> = {
  GRAFT_SIMD: 'avx2',
  ONEDNN_MAX_CPU_ISA: 'AVX2',
};

/** Sets the environment that pins the kernels; an explicit other value is an error naming it. */
export function useDeterministicKernels(env: NodeJS.ProcessEnv = process.env): void {
  for (const [key, value] of Object.entries(DETERMINISTIC_ENV)) {
    const now = env[key];
    if (now !== undefined && now.toLowerCase() !== value.toLowerCase()) {
      throw new Error(`--deterministic needs ${key}=${value}, but the environment sets ${key}=${now}; unset it or drop --deterministic`);
    }
    env[key] = value;
  }
}
