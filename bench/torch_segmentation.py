"""PyTorch side of graft's segmentation benchmark (bench/segmentation.ts runs it with /usr/bin/python3).

stdin: JSON {"method": "full" | "linear-probe", "batch", "image", "classes", "channels", "policy"};
stdout: one JSON object {"ms", "runs", "loss0", "trainable", "total", "max_rss_mb", "threads", "blas"}.

The model is torchvision's swin_t (random init, as graft's side) with its four stages' outputs
(features.1, .3, .5, .7; the last through the final norm) as NCHW maps under the light UPerNet of
fixtures/segmentation/make_seg_fixtures.py (the head graft's decode head is tested against),
logits upsampled bilinearly to the image. A step is forward, per-pixel cross-entropy with ignore
index 255, backward and AdamW, in training mode; "linear-probe" freezes the backbone (its
BatchNorm-free blocks then need no gradient), "full" trains everything.
"""
import json
import os
import resource
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "fixtures", "segmentation"))
from torch_ops import blas_info, measure  # noqa: E402
from make_seg_fixtures import UperLite  # noqa: E402


class SwinUper(nn.Module):
    def __init__(self, classes, channels):
        super().__init__()
        self.backbone = torchvision.models.swin_t(weights=None)
        self.decode_head = UperLite([96, 192, 384, 768], channels, classes, False)

    def forward(self, x):
        maps = []
        h = x
        for i, layer in enumerate(self.backbone.features):
            h = layer(h)
            if i % 2 == 1:
                maps.append((self.backbone.norm(h) if i == 7 else h).permute(0, 3, 1, 2))
        return F.interpolate(self.decode_head(maps), size=x.shape[2:], mode="bilinear", align_corners=False)


def main():
    spec = json.load(sys.stdin)
    threads = spec["policy"]["threads"]
    torch.set_num_threads(threads)
    blas = blas_info(threads)
    torch.manual_seed(0)
    model = SwinUper(spec["classes"], spec["channels"])
    if spec["method"] == "linear-probe":
        model.backbone.requires_grad_(False)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.01)
    g = torch.Generator().manual_seed(3)
    b, s = spec["batch"], spec["image"]
    x = torch.randn(b, 3, s, s, generator=g)
    y = torch.randint(0, spec["classes"], (b, s, s), generator=g)
    y[:, :2, :] = 255
    losses = []

    def iteration():
        t0 = time.perf_counter()
        loss = F.cross_entropy(model(x), y, ignore_index=255)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(float(loss))
        return (time.perf_counter() - t0) * 1e3

    out = measure(iteration, spec["policy"])
    out.update({
        "loss0": losses[0], "trainable": sum(p.numel() for p in params), "total": sum(p.numel() for p in model.parameters()),
        "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "threads": torch.get_num_threads(), "blas": blas,
        "torch_version": torch.__version__,
    })
    json.dump(out, sys.stdout)
    print()


if __name__ == "__main__":
    main()
