#!/usr/bin/env python3
"""Times ultralytics' own DFLoss, VarifocalLoss and probiou, forward + backward by autograd, in
float32 on the CPU with torch.set_num_threads(T):

  dfl       DFLoss(reg_max=16)(pred_dist [N, 16], target [N / 4, 4]).sum().backward()   N rows
  varifocal VarifocalLoss(gamma=2, alpha=0.75)(pred [1, N / 64, 64], gt_score, label).backward()
  probiou   (1 - probiou(pred [N, 5], target [N, 5])).mean().backward()                  N pairs
  qfl       mmdetection's quality_focal_loss(pred [N / 64, 64], (label, score)).mean().backward()
            N logits (mmcv cannot be installed here: the function is mmdetection's source, as
            in spec/cases/gen_detection_dense.py)

Prints one JSON object per line:
  {"loss": ..., "items": N, "threads": T, "median_s": ..., "repeats": R}
The inputs follow benches/src/bin/bench_detection.rs (same distributions, its own generator).
"""
import argparse
import json
import math
import statistics
import time

import torch
import torch.nn.functional as F
from ultralytics.utils.loss import DFLoss, VarifocalLoss
from ultralytics.utils.metrics import probiou


def mm_quality_focal_loss(pred, target, beta=2.0):
    """mmdetection 3.x mmdet/models/losses/gfocal_loss.py quality_focal_loss, verbatim."""
    label, score = target
    pred_sigmoid = pred.sigmoid()
    scale_factor = pred_sigmoid
    zerolabel = scale_factor.new_zeros(pred.shape)
    loss = F.binary_cross_entropy_with_logits(pred, zerolabel, reduction="none") * scale_factor.pow(beta)
    bg_class_ind = pred.size(1)
    pos = ((label >= 0) & (label < bg_class_ind)).nonzero().squeeze(1)
    pos_label = label[pos].long()
    scale_factor = score[pos] - pred_sigmoid[pos, pos_label]
    loss[pos, pos_label] = F.binary_cross_entropy_with_logits(
        pred[pos, pos_label], score[pos], reduction="none") * scale_factor.abs().pow(beta)
    return loss.sum(dim=1, keepdim=False)


def inputs(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    u = lambda *s: torch.rand(*s, generator=g, dtype=torch.float32)  # noqa: E731
    dist = (u(n, 16) - 0.5) * 16.0
    dfl_t = u(n // 4, 4) * 14.9
    vfl_z = (u(1, n // 64, 64) - 0.5) * 20.0
    label = (u(1, n // 64, 64) < 1.0 / 64).float()
    score = label * u(1, n // 64, 64)
    t = torch.cat([u(n, 2) * 1000.0, 5.0 + u(n, 2) * 60.0, (u(n, 1) - 0.5) * 2 * math.pi], 1)
    p = t + torch.cat([(u(n, 2) - 0.5) * 8.0, (u(n, 2) - 0.5) * 6.0, (u(n, 1) - 0.5) * 0.6], 1)
    qz = (u(n // 64, 64) - 0.5) * 16.0
    ql = (u(n // 64) * 64 * 8).long().clamp(max=64)  # one in eight rows a foreground class
    ql = torch.where(ql < 64, ql, torch.full_like(ql, 64))
    qs = u(n // 64) * (ql < 64)
    return dist, dfl_t, vfl_z, score, label, p.contiguous(), t.contiguous(), qz, ql, qs


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--items", type=int, default=1 << 20)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--only", default="dfl,varifocal,probiou,qfl")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    dist, dfl_t, vfl_z, score, label, p0, t, qz, ql, qs = inputs(args.items)
    dfl, vfl = DFLoss(16), VarifocalLoss(gamma=2.0, alpha=0.75)

    def run_dfl():
        z = dist.clone().requires_grad_(True)
        dfl(z, dfl_t.clone()).sum().backward()

    def run_vfl():
        z = vfl_z.clone().requires_grad_(True)
        vfl(z, score, label).backward()

    def run_probiou():
        p = p0.clone().requires_grad_(True)
        (1.0 - probiou(p, t)).mean().backward()

    def run_qfl():
        z = qz.clone().requires_grad_(True)
        mm_quality_focal_loss(z, (ql, qs)).mean().backward()

    runs = (("dfl", run_dfl), ("varifocal", run_vfl), ("probiou", run_probiou), ("qfl", run_qfl))
    for name, fn in runs:
        if name not in args.only.split(","):
            continue
        times = []
        for i in range(args.repeats + 1):
            start = time.perf_counter()
            fn()
            elapsed = time.perf_counter() - start
            if i > 0:  # the first run warms up the allocator and the dispatcher
                times.append(elapsed)
        print(json.dumps({"loss": name, "items": args.items, "threads": args.threads,
                          "median_s": statistics.median(times), "repeats": args.repeats}), flush=True)


if __name__ == "__main__":
    main()
