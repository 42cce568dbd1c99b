#!/usr/bin/env python3
"""GPU peers of the fused linear cross-entropy (LCE-*): PyTorch's composite
F.cross_entropy(h @ W.T, y, label_smoothing=0.1) + backward, and Liger-Kernel's
LigerFusedLinearCrossEntropyLoss (if `liger_kernel` imports), in bf16 on one CUDA device:
median time of fwd+bwd and torch.cuda.max_memory_allocated beyond the inputs and gradients.

Shipped in the GPU bundle (`cargo xtask gpu-bundle`, step `lce-peers` of run.sh). smoothloss's
own CUDA linear cross-entropy (crates/backend-cuda/src/linear_cross_entropy.rs: f32 host
slices, cuBLAS chunk GEMMs) is not in this table: it has no bf16 path and no timing in
cuda_bench yet, so only the peers' figures come out, ready to compare with it.

usage: torch_linear_ce_gpu.py [--shape 8192x4096x128256] [--iters 10] [--warmup 3] [--quick]
Prints one JSON line per implementation and a Markdown table.
"""
import argparse
import json
import statistics
import sys

import torch
import torch.nn.functional as F


def measure(fn, params, iters, warmup):
    for _ in range(warmup):
        for p in params:
            p.grad = None
        fn()
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    grads = sum(p.numel() * p.element_size() for p in params)
    torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(iters):
        for p in params:
            p.grad = None
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    peak = torch.cuda.max_memory_allocated()
    # base holds the inputs (gradients were freed before each iteration's backward).
    return statistics.median(times), peak, (peak - base - grads)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--shape", default="8192x4096x128256")
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA device: skipped", file=sys.stderr)
        return 1
    if args.quick:
        args.iters, args.warmup = 3, 1
    n, h, v = (int(x) for x in args.shape.split("x"))
    dev, dt = "cuda", torch.bfloat16
    g = torch.Generator(device=dev).manual_seed(0)
    hid = (torch.randn(n, h, device=dev, generator=g) * 0.5).to(dt).requires_grad_(True)
    w = (torch.randn(v, h, device=dev, generator=g) / h ** 0.5).to(dt).requires_grad_(True)
    y = torch.randint(0, v, (n,), device=dev, generator=g)
    rows = []

    def composite():
        F.cross_entropy((hid @ w.T).float(), y, label_smoothing=0.1).backward()

    rows.append(("torch composite (bf16 GEMM, f32 CE)",) + measure(composite, [hid, w], args.iters, args.warmup))
    try:
        from liger_kernel.transformers import LigerFusedLinearCrossEntropyLoss  # type: ignore

        liger = LigerFusedLinearCrossEntropyLoss(label_smoothing=0.1)

        def fused():
            liger(w, hid, y).backward()

        rows.append(("Liger LigerFusedLinearCrossEntropyLoss",) + measure(fused, [hid, w], args.iters, args.warmup))
    except Exception as e:  # noqa: BLE001 - report and go on
        print(f"Liger-Kernel not usable ({type(e).__name__}: {e}); skipped", file=sys.stderr)
    dev_name = torch.cuda.get_device_name()
    for name, t, peak, extra in rows:
        print(json.dumps({"impl": name, "shape": args.shape, "dtype": "bf16", "device": dev_name,
                          "median_s": t, "max_memory_allocated": peak, "extra_bytes": extra,
                          "torch": torch.__version__}))
    print(f"\n| {args.shape} bf16 on {dev_name} | median fwd+bwd | max_memory_allocated | beyond inputs+grads |")
    print("|---|---|---|---|")
    for name, t, peak, extra in rows:
        print(f"| {name} | {t * 1e3:.2f} ms | {peak / 2**30:.2f} GiB | {extra / 2**30:.2f} GiB |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
