#!/usr/bin/env python3
"""PyTorch's composite linear cross-entropy, the peer of the fused one (LCE-*):
F.cross_entropy(h @ W.T + b, y, label_smoothing=0.1) forward + backward on float32 CPU tensors
with torch.set_num_threads(T). One process, one configuration; prints one JSON line:
  {"impl": "torch", "shape": "NxHxV", "threads": T, "times_s": [...], "base_rss_kib": ..,
   "peak_rss_kib": .., "grad_bytes": ..}
base = resident size once the inputs exist (touched); peak = VmHWM. The gradients (h.grad,
W.grad, b.grad) are allocated by autograd: grad_bytes is their size, so that
peak - base - grad_bytes is the memory beyond inputs and gradients.
Inputs as benches/src/bin/lce_bench.rs (uniform, same scales; not the same values).

usage: torch_linear_ce.py N H V THREADS REPEATS
"""
import json
import sys
import time

import torch
import torch.nn.functional as F


def status_kib(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1])
    return 0


def main():
    n, h, v, threads, repeats = (int(a) for a in sys.argv[1:6])
    torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(0)
    hid = (torch.rand(n, h, generator=g) * 2 - 1).requires_grad_(True)
    w = ((torch.rand(v, h, generator=g) * 2 - 1) / h ** 0.5).requires_grad_(True)
    b = ((torch.rand(v, generator=g) * 2 - 1) * 0.1).requires_grad_(True)
    y = torch.randint(0, v, (n,), generator=g)
    base = status_kib("VmRSS:")
    times = []
    loss = None
    for r in range(repeats + 1):
        for p in (hid, w, b):
            p.grad = None
        t = time.perf_counter()
        loss = F.cross_entropy(hid @ w.T + b, y, label_smoothing=0.1)
        loss.backward()
        if r > 0:
            times.append(time.perf_counter() - t)
    print(json.dumps({
        "impl": "torch", "shape": f"{n}x{h}x{v}", "threads": threads, "times_s": times,
        "loss": float(loss.detach()), "base_rss_kib": base, "peak_rss_kib": status_kib("VmHWM:"),
        "grad_bytes": (n * h + v * h + v) * 4, "torch": torch.__version__,
    }))


if __name__ == "__main__":
    main()
