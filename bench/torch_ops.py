"""PyTorch CPU reference for graft's op benchmarks (bench/run.ts runs it with /usr/bin/python3).

stdin:  JSON {"policy": {warmup, minRuns, maxRuns, budgetMs, threads}, "cases": [...]}, the cases
        of bench/cases.ts.
stdout: JSON {"torch_version", "threads", "results": [{id, pass, variant, ms, runs}]}, the median
        milliseconds per call under the same timing policy as bench/timing.ts.

Forward runs under torch.no_grad(); backward times `y.backward(gy)` after an untimed forward,
with requires_grad only on the inputs whose gradient the pass computes (as graft's runner does).
"""
import json
import math
import os
import sys
import time

import torch
import torch.nn.functional as F

LATENCY_CALLS = 2000


def measure(iteration, policy, calls_per_run=1):
    warm = 0.0
    for _ in range(policy["warmup"]):
        if warm >= policy["budgetMs"]:
            break
        warm += iteration()
    times = []
    total = 0.0
    while len(times) < policy["maxRuns"]:
        enough = len(times) >= policy["minRuns"] and total >= policy["budgetMs"]
        too_slow = len(times) > 0 and total >= 3 * policy["budgetMs"]
        if enough or too_slow:
            break
        ms = iteration()
        times.append(ms)
        total += ms
    times.sort()
    mid = len(times) // 2
    med = times[mid] if len(times) % 2 else (times[mid - 1] + times[mid]) / 2
    return {"ms": med / calls_per_run, "runs": len(times)}


def now_ms():
    return time.perf_counter() * 1e3


def forward_pass(op):
    def iteration():
        with torch.no_grad():
            t0 = now_ms()
            op()
            return now_ms() - t0
    return "fwd", iteration


def backward_pass(name, op, wrt, everything, gy):
    def iteration():
        for t in everything:
            t.requires_grad_(any(t is w for w in wrt))
        y = op()
        t0 = now_ms()
        y.backward(gy)
        ms = now_ms() - t0
        for t in everything:
            t.grad = None
            t.requires_grad_(False)
        return ms
    return name, iteration


def latency_pass(op):
    def iteration():
        with torch.no_grad():
            t0 = now_ms()
            for _ in range(LATENCY_CALLS):
                op()
            return now_ms() - t0
    return "call", iteration


def randn(*shape, std=1.0):
    return torch.randn(*shape) * std


def attention(q, k, v):
    # torch 1.13 has no fused scaled_dot_product_attention; this is its definition.
    scale = 1.0 / math.sqrt(q.shape[-1])
    return torch.softmax((q @ k.transpose(-2, -1)) * scale, dim=-1) @ v


def passes(case):
    p = case["params"]
    op = case["op"]
    if op == "linear":
        x, w, b, gy = randn(p["m"], p["k"]), randn(p["n"], p["k"], std=0.05), randn(p["n"]), randn(p["m"], p["n"])
        f = lambda: F.linear(x, w, b)
        return [forward_pass(f), backward_pass("bwd", f, [x, w], [x, w, b], gy)]
    if op == "matmul":
        x, w, gy = randn(p["m"], p["k"]), randn(p["k"], p["n"], std=0.05), randn(p["m"], p["n"])
        f = lambda: x @ w
        return [forward_pass(f), backward_pass("bwd", f, [x, w], [x, w], gy)]
    if op == "attention":
        shape = (p["batch"], p["heads"], p["n"], p["d"])
        q, k, v, gy = randn(*shape), randn(*shape), randn(*shape), randn(*shape)
        f = lambda: attention(q, k, v)
        return [forward_pass(f), backward_pass("bwd", f, [q, k, v], [q, k, v], gy)]
    if op == "conv":
        x = randn(p["n"], p["c"], p["h"], p["w"])
        w = randn(p["cout"], p["c"] // p["groups"], p["kh"], p["kw"], std=0.05)
        f = lambda: F.conv2d(x, w, None, stride=p["stride"], padding=p["pad"], groups=p["groups"])
        with torch.no_grad():
            gy = torch.randn_like(f())
        return [forward_pass(f), backward_pass("bwd-data", f, [x], [x, w], gy), backward_pass("bwd-weight", f, [w], [x, w], gy)]
    if op == "add":
        a, b = randn(p["rows"], p["cols"]), randn(p["rows"], p["cols"])
        return [forward_pass(lambda: a + b)]
    if op == "bias_add":
        x, b, gy = randn(p["rows"], p["cols"]), randn(p["cols"]), randn(p["rows"], p["cols"])
        f = lambda: x + b
        return [forward_pass(f), backward_pass("bwd", f, [b], [x, b], gy)]
    if op == "gelu":
        x, gy = randn(p["rows"], p["cols"]), randn(p["rows"], p["cols"])
        f = lambda: F.gelu(x)
        return [forward_pass(f), backward_pass("bwd", f, [x], [x], gy)]
    if op == "layernorm":
        n = p["cols"]
        x, w, b, gy = randn(p["rows"], n), torch.ones(n), torch.zeros(n), randn(p["rows"], n)
        f = lambda: F.layer_norm(x, (n,), w, b, 1e-5)
        return [forward_pass(f), backward_pass("bwd", f, [x, w, b], [x, w, b], gy)]
    if op == "softmax":
        x, gy = randn(p["rows"], p["cols"]), randn(p["rows"], p["cols"])
        f = lambda: torch.softmax(x, dim=-1)
        return [forward_pass(f), backward_pass("bwd", f, [x], [x], gy)]
    if op == "batchnorm":
        shape = (p["n"], p["c"], p["h"], p["w"])
        x, gy = randn(*shape), randn(*shape)
        rm, rv, w, b = torch.zeros(p["c"]), torch.ones(p["c"]), torch.ones(p["c"]), torch.zeros(p["c"])
        f = lambda: F.batch_norm(x, rm, rv, w, b, training=True, momentum=0.1, eps=1e-5)
        return [forward_pass(f), backward_pass("bwd", f, [x, w, b], [x, w, b], gy)]
    if op == "overhead_add":
        a, b = randn(p["n"]), randn(p["n"])
        return [latency_pass(lambda: a + b)]
    if op == "overhead_matmul":
        a, b = randn(p["m"], p["k"]), randn(p["k"], p["n"])
        return [latency_pass(lambda: a @ b)]
    raise ValueError(f"torch_ops.py has no op '{op}'")


def blas_info(threads):
    """The BLAS library this process has mapped, and its threads (set to `threads` for OpenBLAS)."""
    libs = set()
    with open("/proc/self/maps") as f:
        for line in f:
            path = line.split()[-1] if len(line.split()) >= 6 else ""
            name = os.path.basename(path)
            if "blas" in name or "mkl" in name or "blis" in name:
                libs.add(os.path.realpath(path))
    kind = "none"
    for lib in sorted(libs):
        low = lib.lower()
        if "openblas" in low:
            kind = "openblas"
        elif "blis" in low and kind == "none":
            kind = "blis"
        elif "mkl" in low and kind == "none":
            kind = "mkl"
        elif kind == "none" and os.path.basename(low).startswith("libblas"):
            kind = "reference"
    blas_threads = None
    if kind == "openblas":
        import ctypes
        for lib in sorted(libs):
            try:
                h = ctypes.CDLL(lib)
                h.openblas_set_num_threads(int(threads))
                blas_threads = int(h.openblas_get_num_threads())
                break
            except (OSError, AttributeError):
                continue
    return {"kind": kind, "libraries": sorted(libs), "threads": blas_threads}


def main():
    spec = json.load(sys.stdin)
    policy = spec["policy"]
    torch.set_num_threads(policy["threads"])
    blas = blas_info(policy["threads"])
    torch.manual_seed(0)
    results = []
    for case in spec["cases"]:
        try:
            for name, iteration in passes(case):
                calls = LATENCY_CALLS if name == "call" else 1
                results.append({"id": case["id"], "pass": name, "variant": "torch", **measure(iteration, policy, calls)})
        except Exception as e:  # one failing case must not hide the others
            results.append({"id": case["id"], "error": f"{type(e).__name__}: {e}"})
        print(f"torch_ops: {case['id']} done", file=sys.stderr, flush=True)
    json.dump({"torch_version": torch.__version__, "threads": torch.get_num_threads(), "blas": blas, "results": results}, sys.stdout)
    print()


if __name__ == "__main__":
    main()
