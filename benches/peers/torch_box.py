#!/usr/bin/env python3
"""Times torchvision's generalized_box_iou_loss and complete_box_iou_loss, forward + backward
(reduction "mean"), over N float32 xyxy pairs on the CPU with torch.set_num_threads(T).

Prints one JSON object per line:
  {"loss": "giou"|"ciou", "shape": "Nx4", "threads": T, "median_s": ..., "repeats": R}

The inputs follow benches/benches/box_loss.rs: boxes of size 10..110 in a 1000 x 1000 image,
the target a jittered copy of the prediction.
"""
import argparse
import json
import statistics
import time

import torch
from torchvision.ops import complete_box_iou_loss, generalized_box_iou_loss


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


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--pairs", type=int, default=1 << 20)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=10)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    p0, t = pairs(args.pairs)
    for name, fn in (("giou", generalized_box_iou_loss), ("ciou", complete_box_iou_loss)):
        times = []
        for i in range(args.repeats + 1):
            p = p0.clone().requires_grad_(True)
            start = time.perf_counter()
            loss = fn(p, t, reduction="mean")
            loss.backward()
            elapsed = time.perf_counter() - start
            if i > 0:  # the first run warms up the allocator and the dispatcher
                times.append(elapsed)
        print(
            json.dumps(
                {
                    "loss": name,
                    "shape": f"{args.pairs}x4",
                    "threads": args.threads,
                    "median_s": statistics.median(times),
                    "repeats": args.repeats,
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
