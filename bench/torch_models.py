"""PyTorch side of graft's model-level benchmark (bench/models.ts runs it with /usr/bin/python3).

stdin: JSON {"mode": "prepare" | "infer" | "train", ...}; stdout: one JSON object.

prepare {"cache", "models": [key, ...], "cases": [training case, ...]}
    Builds each torchvision model from a fixed seed and writes, into the cache folder, unless
    already there: <key>.safetensors (the state dict), <key>.onnx (torch.onnx.export, dynamic
    batch) and <key>.check.safetensors (a fixed input batch "x" of 8 images, its eval-mode
    "logits", labels "y", and the 10-class head "head.weight"/"head.bias" that training starts
    from in both systems).
    Prints {"torch_version", "files": {key: {...}}, "flops": {key: forward FLOPs per image},
    "train_flops": {case id: a training step's FLOPs per image}}.

infer {"cache", "model", "batches", "policy"}
    Eval mode under torch.inference_mode(), torch.set_num_threads(policy.threads). Prints
    {"results": [{"batch", "ms", "runs"}], "max_rss_mb"}.

train {"cache", "case", "policy"}
    One training case (forward + backward + AdamW step at batch 8) in this process, so that
    ru_maxrss is the case's peak. Prints {"ms", "runs", "loss0", "max_rss_mb", "trainable",
    "flops"} (the step's arithmetic per image, counted as below).

Every mode also prints "blas": which BLAS library this process has loaded (from
/proc/self/maps: "openblas", "blis", "mkl", or "reference" for netlib's libblas) and its
thread count. Debian's python3-torch is built with BLAS=generic, so its matrix products run on
whatever libblas.so.3 the alternatives system points at; OpenBLAS's threads are set to the
benchmark's thread count here, as torch.set_num_threads does not reach them.

FLOPs count multiply-adds as 2 and nothing else (elementwise work, softmax and normalisation
are left out): Conv2d 2·out·(C_in/groups)·k_h·k_w, Linear 2·in·out per row, attention's two
products 2·2·N²·d per head. A training step's count is the forward's, plus each product's
gradient to its input where that input needs one (attention's cores: both operands), plus each
trainable weight's gradient (the same FLOPs as the layer's forward).

LoRA/DoRA follow huggingface/peft's math (peft is not installed here): y = base(x) +
B(A(dropout(x)))·alpha/r with A kaiming-uniform and B zero; DoRA rescales by m/‖W + ΔW‖ per
output row, the norm detached, base(x) − bias reused from the base output. Conv LoRA: A is a
conv with the layer's kernel/stride/padding to r channels, B a 1×1 conv. The ViT's
nn.MultiheadAttention is replaced by an equivalent fused-qkv Linear + proj Linear module for
training, so that LoRA can wrap qkv and proj as PEFT does on timm ViTs (inference uses the
stock torchvision module).
"""
import json
import math
import os
import resource
import struct
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_ops import blas_info, measure  # noqa: E402  (the same timing policy as bench/timing.ts)

SEED = 0
CHECK_BATCH = 8
NUM_CLASSES = 10
IMAGE = 224


# ---- models -------------------------------------------------------------------------------------

def build(key):
    """The torchvision model `key`, initialised from a fixed seed (with non-trivial BatchNorm
    statistics and ViT class token / head, so that the logits check means something)."""
    torch.manual_seed(SEED)
    if key == "vit_s16":
        m = torchvision.models.VisionTransformer(image_size=224, patch_size=16, num_layers=12, num_heads=6, hidden_dim=384, mlp_dim=1536)
    elif key == "vit_b16":
        m = torchvision.models.vit_b_16(weights=None)
    elif key == "resnet18":
        m = torchvision.models.resnet18(weights=None)
    elif key == "mobilenet_v2":
        m = torchvision.models.mobilenet_v2(weights=None)
    else:
        raise ValueError(f"torch_models.py has no model '{key}'")
    g = torch.Generator().manual_seed(SEED + 1)
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, nn.BatchNorm2d):
                c = mod.num_features
                mod.running_mean.copy_(torch.randn(c, generator=g) * 0.1)
                mod.running_var.copy_(torch.rand(c, generator=g) + 0.5)
                mod.weight.copy_(torch.rand(c, generator=g) + 0.5)
                mod.bias.copy_(torch.randn(c, generator=g) * 0.1)
        if key.startswith("vit"):
            # torchvision initialises the head and class token to zero.
            m.class_token.copy_(torch.randn(m.class_token.shape, generator=g) * 0.02)
            m.heads.head.weight.copy_(torch.randn(m.heads.head.weight.shape, generator=g) * 0.02)
    return m.eval()


def head_of(model, key):
    """(parent module, attribute) of the classifier Linear."""
    if key.startswith("vit"):
        return model.heads, "head"
    if key == "resnet18":
        return model, "fc"
    return model.classifier, "1"


# ---- safetensors ----------------------------------------------------------------------------------

def write_safetensors(path, state):
    """u64 LE header length, JSON header, raw LE tensor bytes (the safetensors module is not installed)."""
    header, blobs, offset = {}, [], 0
    for name in sorted(state):
        t = state[name].detach().contiguous()
        if t.dtype in (torch.int64, torch.int32):
            dtype, arr = "I32", t.numpy().astype("<i4")
        else:
            dtype, arr = "F32", t.float().numpy().astype("<f4")
        blob = arr.tobytes()
        header[name] = {"dtype": dtype, "shape": list(t.shape), "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    data = json.dumps(header, separators=(",", ":")).encode("utf-8")
    data += b" " * ((8 - len(data) % 8) % 8)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(data)))
        f.write(data)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


def read_safetensors(path):
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        b, e = info["data_offsets"]
        dt = {"F32": "<f4", "I32": "<i4", "I64": "<i8"}[info["dtype"]]
        out[name] = torch.from_numpy(np.frombuffer(data[b:e], dtype=dt).copy()).reshape(info["shape"])
    return out


def paths(cache, key):
    return {
        "weights": os.path.join(cache, f"{key}.safetensors"),
        "onnx": os.path.join(cache, f"{key}.onnx"),
        "check": os.path.join(cache, f"{key}.check.safetensors"),
    }


def load(cache, key):
    m = build(key)
    state = read_safetensors(paths(cache, key)["weights"])
    m.load_state_dict({k: v.to(m.state_dict()[k].dtype) for k, v in state.items()})
    return m.eval()


# ---- LoRA / DoRA ----------------------------------------------------------------------------------

class LoraLinear(nn.Module):
    def __init__(self, base, r, alpha, dropout=0.0, dora=False):
        super().__init__()
        self.base_layer = base
        self.lora_A = nn.Linear(base.in_features, r, bias=False)
        self.lora_B = nn.Linear(r, base.out_features, bias=False)
        nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))
        nn.init.zeros_(self.lora_B.weight)
        self.lora_dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.scaling = alpha / r
        self.dora = dora
        if dora:
            self.lora_magnitude_vector = nn.Parameter(self.weight_norm())

    def weight_norm(self):
        with torch.no_grad():
            w = self.base_layer.weight + self.scaling * (self.lora_B.weight @ self.lora_A.weight)
            return w.norm(p=2, dim=1)

    def forward(self, x):
        result = self.base_layer(x)
        xd = self.lora_dropout(x)
        lora = self.lora_B(self.lora_A(xd)) * self.scaling
        if not self.dora:
            return result + lora
        scale = self.lora_magnitude_vector / self.weight_norm()
        base = result - self.base_layer.bias if self.base_layer.bias is not None else result
        return result + (scale - 1) * base + scale * lora


class LoraConv2d(nn.Module):
    def __init__(self, base, r, alpha, dropout=0.0):
        super().__init__()
        if base.groups != 1:
            raise ValueError("conv LoRA here is for groups=1 convolutions")
        self.base_layer = base
        self.lora_A = nn.Conv2d(base.in_channels, r, base.kernel_size, base.stride, base.padding, base.dilation, bias=False)
        self.lora_B = nn.Conv2d(r, base.out_channels, 1, bias=False)
        nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))
        nn.init.zeros_(self.lora_B.weight)
        self.lora_dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.scaling = alpha / r

    def forward(self, x):
        return self.base_layer(x) + self.lora_B(self.lora_A(self.lora_dropout(x))) * self.scaling


class QkvAttention(nn.Module):
    """nn.MultiheadAttention(batch_first) as timm's Attention: one qkv Linear and a proj Linear."""

    def __init__(self, mha):
        super().__init__()
        d = mha.embed_dim
        self.heads = mha.num_heads
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        with torch.no_grad():
            self.qkv.weight.copy_(mha.in_proj_weight)
            self.qkv.bias.copy_(mha.in_proj_bias)
            self.proj.weight.copy_(mha.out_proj.weight)
            self.proj.bias.copy_(mha.out_proj.bias)

    def forward(self, query, key=None, value=None, need_weights=False):
        x = query
        b, n, c = x.shape
        h = self.heads
        q, k, v = self.qkv(x).reshape(b, n, 3, h, c // h).permute(2, 0, 3, 1, 4)
        attn = torch.softmax((q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(c // h)), dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, c)), None


def set_module(root, path, new):
    parent, _, name = path.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, name, new)


def prepare_training(cache, case):
    """The model of `case` ready to train: new 10-class head (from the check file), method applied."""
    key = case["model"]
    model = load(cache, key)
    check = read_safetensors(paths(cache, key)["check"])
    parent, attr = head_of(model, key)
    old = getattr(parent, attr)
    head = nn.Linear(old.in_features, NUM_CLASSES)
    with torch.no_grad():
        head.weight.copy_(check["head.weight"])
        head.bias.copy_(check["head.bias"])
    setattr(parent, attr, head)
    method = case["method"]
    if method == "full":
        model.requires_grad_(True)
    else:
        model.requires_grad_(False)
        torch.manual_seed(SEED + 2)
        r, alpha = case["r"], case["alpha"]
        if key.startswith("vit"):
            for layer in model.encoder.layers:
                layer.self_attention = QkvAttention(layer.self_attention)
            targets = [(p, m) for p, m in model.named_modules() if isinstance(m, nn.Linear) and not p.startswith("heads")]
            for p, m in targets:
                m.requires_grad_(False)
                set_module(model, p, LoraLinear(m, r, alpha, dora=method == "dora"))
        else:
            targets = [(p, m) for p, m in model.named_modules() if isinstance(m, nn.Conv2d)]
            for p, m in targets:
                set_module(model, p, LoraConv2d(m, r, alpha))
        head.requires_grad_(True)
    model.train()
    # As graft: a LoRA backbone keeps its BatchNorm statistics frozen; classifier dropout is off
    # in both systems so that the first loss compares.
    for m in model.modules():
        if (method != "full" and isinstance(m, nn.BatchNorm2d)) or isinstance(m, nn.Dropout):
            m.eval()
    return model, check


def train_step_fn(model, x, y, lr):
    params = [p for p in model.parameters() if p.requires_grad]
    # graft's decayGroups: weight decay on rank >= 2 parameters only.
    opt = torch.optim.AdamW([
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": 0.01},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ], lr=lr)
    losses = []

    def iteration():
        t0 = time.perf_counter()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
        return (time.perf_counter() - t0) * 1e3

    return iteration, losses, sum(p.numel() for p in params)


def max_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# ---- the BLAS in use and arithmetic counts ------------------------------------------------------

class FlopCounter:
    """Counts the products' FLOPs of one forward pass (and what its backward pass would add)."""

    def __init__(self, model):
        self.forward = 0
        self.backward = 0
        self.handles = []
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear, nn.MultiheadAttention, QkvAttention)):
                self.handles.append(m.register_forward_hook(self.hook))

    def hook(self, m, inputs, output):
        if isinstance(m, nn.Conv2d):
            x = inputs[0]
            f = 2 * output.numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]
            self.add(f, x.requires_grad, m.weight.requires_grad)
        elif isinstance(m, nn.Linear):
            x = inputs[0]
            f = 2 * output.numel() * m.in_features
            self.add(f, x.requires_grad, m.weight.requires_grad)
        else:
            # Called with keywords (query=x), which hooks do not see; the output has x's shape.
            # Under autograd the cores' gradient flows to q, k and v in every training case.
            y = output[0]
            b, n, d = y.shape if y.dim() == 3 else (1, *y.shape)
            core = 2 * 2 * b * n * n * d
            self.forward += core
            self.backward += 2 * core if torch.is_grad_enabled() else 0
            if isinstance(m, nn.MultiheadAttention):  # its projections run functionally, not as modules
                self.add(2 * b * n * d * 3 * d + 2 * b * n * d * d, torch.is_grad_enabled(), m.in_proj_weight.requires_grad)

    def add(self, f, data_grad, weight_grad):
        self.forward += f
        self.backward += (f if data_grad else 0) + (f if weight_grad else 0)

    def remove(self):
        for h in self.handles:
            h.remove()


def forward_flops(model):
    counter = FlopCounter(model)
    with torch.no_grad():
        model(torch.zeros(1, 3, IMAGE, IMAGE))
    counter.remove()
    return counter.forward


def train_flops(model, x):
    """FLOPs per image of one training step: forward plus backward (the optimizer's are left out)."""
    counter = FlopCounter(model)
    model(x[:1])
    counter.remove()
    return counter.forward + counter.backward


# ---- modes ----------------------------------------------------------------------------------------

def prepare(spec):
    cache = spec["cache"]
    os.makedirs(cache, exist_ok=True)
    files = {}
    flops = {}
    for key in spec["models"]:
        p = paths(cache, key)
        files[key] = p
        flops[key] = forward_flops(build(key).eval())
        if all(os.path.exists(v) for v in p.values()):
            continue
        t0 = time.time()
        m = build(key)
        write_safetensors(p["weights"], m.state_dict())
        g = torch.Generator().manual_seed(SEED + 3)
        x = torch.randn(CHECK_BATCH, 3, IMAGE, IMAGE, generator=g)
        with torch.no_grad():
            logits = m(x)
        old = getattr(*head_of(m, key))
        check = {
            "x": x, "logits": logits,
            "y": torch.randint(0, NUM_CLASSES, (CHECK_BATCH,), generator=g, dtype=torch.int32),
            "head.weight": torch.randn(NUM_CLASSES, old.in_features, generator=g) * 0.02,
            "head.bias": torch.zeros(NUM_CLASSES),
        }
        write_safetensors(p["check"], check)
        tmp = p["onnx"] + ".tmp"
        torch.onnx.export(m, x[:1], tmp, input_names=["x"], output_names=["logits"],
                          dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}}, opset_version=17, do_constant_folding=True)
        os.replace(tmp, p["onnx"])
        print(f"torch_models: wrote {key} files in {time.time() - t0:.1f} s", file=sys.stderr, flush=True)
    train = {}
    for case in spec.get("cases", []):
        model, check = prepare_training(cache, case)
        train[case["id"]] = train_flops(model, check["x"])
    return {"torch_version": torch.__version__, "files": files, "flops": flops, "train_flops": train}


def infer(spec):
    policy = spec["policy"]
    model = load(spec["cache"], spec["model"])
    torch.manual_seed(SEED + 4)
    results = []
    for b in spec["batches"]:
        x = torch.randn(b, 3, IMAGE, IMAGE)

        def iteration():
            with torch.inference_mode():
                t0 = time.perf_counter()
                model(x)
                return (time.perf_counter() - t0) * 1e3

        results.append({"batch": b, **measure(iteration, policy)})
    return {"results": results, "max_rss_mb": max_rss_mb()}


def train(spec):
    case = spec["case"]
    model, check = prepare_training(spec["cache"], case)
    x, y = check["x"], check["y"].long()
    flops = train_flops(model, x)
    iteration, losses, trainable = train_step_fn(model, x, y, case["lr"])
    s = measure(iteration, spec["policy"])
    return {**s, "loss0": losses[0], "loss_last": losses[-1], "max_rss_mb": max_rss_mb(), "trainable": trainable, "flops": flops}


def main():
    spec = json.load(sys.stdin)
    threads = spec.get("threads") or spec.get("policy", {}).get("threads") or 2
    torch.set_num_threads(threads)
    blas = blas_info(threads)
    mode = spec["mode"]
    out = {"prepare": prepare, "infer": infer, "train": train}[mode](spec)
    out["threads"] = torch.get_num_threads()
    out["blas"] = blas
    json.dump(out, sys.stdout)
    print()


if __name__ == "__main__":
    main()
