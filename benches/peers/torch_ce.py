#!/usr/bin/env python3
"""Times PyTorch's F.cross_entropy(x, y, label_smoothing=...) forward + backward (reduction
"mean") on float32 logits [N, C] on the CPU with torch.set_num_threads(T), the peer of
`cargo xtask bench` for the CPU backend's cross-entropy.

Prints one JSON object per line:
  {"loss": "cross_entropy", "shape": "NxC", "threads": T, "median_s": ..., "repeats": R}

With --compile, the same call through torch.compile(dynamic=True) (one compilation for every
shape of the run, which is excluded from the timing: the warm-up calls trigger it), printed
as "loss": "cross_entropy_compile".

Inputs as benches/src/lib.rs: standard normal logits, uniform class targets.
"""
import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--shapes", default="1024x32000,256x128256,16384x1000,128x10")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--label-smoothing", type=float, default=0.1)
    ap.add_argument("--compile", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    ls = args.label_smoothing

    def eager(x, y):
        return F.cross_entropy(x, y, label_smoothing=ls)

    fn = torch.compile(eager, dynamic=True) if args.compile else eager
    name = "cross_entropy_compile" if args.compile else "cross_entropy"
    g = torch.Generator().manual_seed(0)
    for shape in args.shapes.split(","):
        n, c = (int(v) for v in shape.split("x"))
        x0 = torch.randn(n, c, generator=g, dtype=torch.float32)
        y = torch.randint(0, c, (n,), generator=g)
        x = x0.clone().requires_grad_(True)
        # Small problems: time batches of calls so one sample is at least ~2 ms.
        inner = max(1, int(2e5 // (n * c))) if n * c < 2e5 else 1
        times, cpus = [], []
        for i in range(args.repeats + 2):
            start = time.perf_counter()
            cpu0 = time.process_time()
            for _ in range(inner):
                x.grad = None
                loss = fn(x, y)
                loss.backward()
            elapsed = (time.perf_counter() - start) / inner
            cpu = (time.process_time() - cpu0) / inner
            if i >= 2:  # warm-up: allocator, dispatcher, page faults of the gradient
                times.append(elapsed)
                cpus.append(cpu)
        print(
            json.dumps(
                {
                    "loss": name,
                    "shape": shape,
                    "threads": args.threads,
                    "median_s": statistics.median(times),
                    # CPU seconds of all the process's threads per call (median): the cost
                    # of a call on a machine shared with other work.
                    "cpu_s": statistics.median(cpus),
                    "repeats": len(times),
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
