#!/usr/bin/env python3
"""The PyTorch peers of the detection box losses (issue 13) for `box_kinds` (the Rust bench
binary `benches/src/bin/box_kinds.rs`), forward + backward, reduction "mean", float32, on the
CPU with torch.set_num_threads(T).

A persistent process so that the Rust side can alternate one sample of its own with one sample
of the peer: it reads lines `<name>` from stdin and answers each with one JSON line
`{"name": ..., "seconds": ..., "cpu_seconds": ..., "peer": ...}` (one timed forward +
backward after the first call of that name, which warms up; wall clock and this process's CPU
time). `quit` ends it.

Peers, per name (the implementation that defines each loss):
  iou, giou, diou, ciou     ultralytics.utils.metrics.bbox_iou (xywh=False) + autograd
  tv-giou, tv-diou, tv-ciou torchvision.ops generalized/distance/complete_box_iou_loss
  wiou3                     Wise-IoU v3 as the author's code (the generator's wiou3_sequences):
                            running mean of 1 - IoU updated before use, detached focus r, r * v1
  everything else           the PyTorch code of spec/cases/gen_detection_boxes.py (mmdetection's
                            formulas reimplemented from its source, the papers' equations)

Inputs: as `smoothloss_benches::box_pairs` (boxes of size 10..110 in a 1000 x 1000 image, the
target a jittered copy), generated here with torch's generator (same distribution, not the same
numbers).
"""
import argparse
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "spec", "cases"))
import gen_detection_boxes as gen  # noqa: E402  (sets float64 as the default; reset below)

torch.set_default_dtype(torch.float32)

from torchvision.ops import (  # noqa: E402
    complete_box_iou_loss,
    distance_box_iou_loss,
    generalized_box_iou_loss,
)

try:
    from ultralytics.utils.metrics import bbox_iou
except ImportError:  # pragma: no cover
    bbox_iou = None


def pairs(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    u = lambda: torch.rand(n, generator=g, dtype=torch.float32)  # noqa: E731
    x, y = u() * 1000.0, u() * 1000.0
    w, h = 10.0 + u() * 100.0, 10.0 + u() * 100.0
    p = torch.stack([x, y, x + w, y + h], dim=1)
    dx, dy = (u() - 0.5) * 60.0, (u() - 0.5) * 60.0
    dw, dh = (u() - 0.5) * 20.0, (u() - 0.5) * 20.0
    t = torch.stack([x + dx, y + dy, x + dx + w + dw, y + dy + h + dh], dim=1)
    return p.contiguous(), t.contiguous()


# name -> params of gen.full_loss (the generator's code), as the Rust side names its rows.
GEN = {
    "ciou-mmdet": {"kind": "ciou", "ciou_convention": "mmdetection"},
    "eiou": {"kind": "eiou"},
    "focal-eiou": {"kind": "eiou", "focal_gamma": 0.5},
    "extended-iou": {"kind": "extended_iou", "smooth_point": 0.1},
    "siou": {"kind": "siou"},
    "wiou": {"kind": "wiou"},
    "mpdiou": {"kind": "mpdiou", "image_size": [1000.0, 1000.0]},
    "shape-iou": {"kind": "shape_iou", "shape_scale": 0.0},
    "inner-ciou": {"kind": "ciou", "inner_ratio": 0.8},
    "focaler-giou": {"kind": "giou", "focaler": [0.0, 0.95]},
    "alpha-ciou": {"kind": "ciou", "alpha_power": 3.0},
    "alpha2.5-ciou": {"kind": "ciou", "alpha_power": 2.5},
    "inner-focaler-siou": {"kind": "siou", "inner_ratio": 0.8, "focaler": [0.0, 0.95]},
}
ULTRA = {"iou": {}, "giou": {"GIoU": True}, "diou": {"DIoU": True}, "ciou": {"CIoU": True}}


def wiou3(p, t, eps=1e-7, momentum=1 - 0.5 ** (1 / 7000), alpha=1.9, delta=3.0):
    """Wise-IoU v3 from the default state (mean 1), as gen_detection_boxes.wiou3_sequences."""
    q = gen.parts(p, t, eps)
    liou = 1 - q["iou"]
    mean = (1 - momentum) * 1.0 + momentum * liou.detach().mean()
    beta = liou.detach() / mean
    r = beta / (delta * torch.pow(torch.tensor(alpha), beta - delta))
    v1 = torch.exp((q["dx"] ** 2 + q["dy"] ** 2) / (q["cw"] ** 2 + q["ch"] ** 2).detach()) * liou
    return (r * v1).mean()


def loss_fn(name):
    if name == "wiou3":
        return "author's code (Wise-IoU v3)", wiou3
    if name in ULTRA and bbox_iou is not None:
        kw = ULTRA[name]
        return "ultralytics bbox_iou", lambda p, t: (1 - bbox_iou(p, t, xywh=False, **kw)).mean()
    if name == "tv-giou":
        return "torchvision", lambda p, t: generalized_box_iou_loss(p, t, reduction="mean")
    if name == "tv-ciou":
        return "torchvision", lambda p, t: complete_box_iou_loss(p, t, reduction="mean")
    if name == "tv-diou":
        return "torchvision", lambda p, t: distance_box_iou_loss(p, t, reduction="mean")
    params = dict(GEN[name], eps=1e-7)
    if not any(k in params for k in ("inner_ratio", "focaler", "focal_gamma")):
        # No modifier: the kind's function alone (full_loss would add one more IoU).
        kw = {k: params[k] for k in ("smooth_point", "image_size", "shape_scale") if k in params}
        kw["ciou"] = params.get("ciou_convention", "torchvision")
        return "gen_detection_boxes.py", lambda p, t: gen.base_loss(params["kind"], p, t, 1e-7, **kw).mean()
    # With modifiers: full_loss (the kind's function and one more IoU for the modifier).
    return "gen_detection_boxes.py", lambda p, t: gen.full_loss(params, p, t).mean()


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--pairs", type=int, default=1 << 20)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    p0, t = pairs(args.pairs)
    warm = set()
    for line in sys.stdin:
        name = line.strip()
        if name == "quit" or not name:
            break
        peer, fn = loss_fn(name)
        runs = 1 if name in warm else 2
        for _ in range(runs):
            p = p0.clone().requires_grad_(True)
            start, cpu0 = time.perf_counter(), time.process_time()
            loss = fn(p, t)
            loss.backward()
            elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu0
        warm.add(name)
        print(json.dumps({"name": name, "seconds": elapsed, "cpu_seconds": cpu, "peer": peer}), flush=True)


if __name__ == "__main__":
    main()
