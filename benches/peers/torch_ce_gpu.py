#!/usr/bin/env python3
"""Peer timings for the smoothloss CUDA bench, on the same GPU, in the same run.

Times (CUDA events, median of --iters after --warmup untimed runs, forward + backward, mean):
  - PyTorch F.cross_entropy(label_smoothing=0.1) on the FINDINGS.md shapes, f32 and bf16;
  - Liger-Kernel's cross-entropy on the same shapes, if `liger_kernel` imports;
  - torchvision generalized / distance / complete box IoU losses on 4,194,304 pairs;
  - the device-to-device copy bandwidth (torch copy_).
Then reads the Rust bench's JSON lines (--rust FILE, written by `cuda_bench`) and prints one
table with every figure side by side. Usage:
  python3 torch_ce_gpu.py [--rust bench.jsonl] [--quick] [--iters N] [--warmup N]
"""

import argparse
import json
import statistics
import sys


def timed(fn, iters, warmup):
    import torch

    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        a = torch.cuda.Event(enable_timing=True)
        b = torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    return statistics.median(times), min(times)


def pattern(n, lo, hi, device):
    import torch

    i = torch.arange(n, device=device, dtype=torch.int64)
    h = (i * 2654435761) & ((1 << 24) - 1)
    return lo + (hi - lo) * (h.to(torch.float32) / float(1 << 24))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rust", help="JSON lines written by cuda_bench")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    args = ap.parse_args()

    rows_out = []  # (workload, impl, median_ms, floor_ms or None)
    errors = []
    try:
        import torch
        import torch.nn.functional as F
    except Exception as e:  # noqa: BLE001
        print(f"PyTorch not importable: {e}")
        torch = None

    tbs = None
    if torch is not None and torch.cuda.is_available():
        dev = "cuda"
        print(f"device: {torch.cuda.get_device_name(0)}, torch {torch.__version__}")
        # Copy bandwidth.
        n = (1 << 26) if args.quick else (1 << 28)
        src = torch.zeros(n, device=dev)
        dst = torch.empty_like(src)
        med, _ = timed(lambda: dst.copy_(src), args.iters, args.warmup)
        tbs = 2 * n * 4 / (med * 1e-3) / 1e12
        rows_out.append(("copy 2x%d MiB" % (n * 4 >> 20), "torch copy_", med, None))
        print(f"copy bandwidth: {tbs:.3f} TB/s")
        del src, dst

        try:
            # The module itself, not the package: `liger_kernel.transformers` imports the
            # model patches (and `transformers`), which the GPU machine need not have.
            from liger_kernel.transformers.cross_entropy import LigerCrossEntropyLoss  # type: ignore

            liger = LigerCrossEntropyLoss(label_smoothing=0.1)
        except Exception as e:  # noqa: BLE001
            liger = None
            print(f"Liger-Kernel not importable ({type(e).__name__}: {e}); skipped")

        # The quick run keeps the budget's shapes (few iterations), not smaller ones.
        shapes = [(8192, 32000), (4096, 128256), (65536, 1000)]
        for rows, classes in shapes:
            for dt, dname in [(torch.float32, "f32"), (torch.bfloat16, "bf16")]:
                wl = f"CE {rows}x{classes} {dname}"
                try:
                    z = pattern(rows * classes, -8.0, 8.0, dev).view(rows, classes).to(dt)
                    z.requires_grad_(True)
                    t = (torch.arange(rows, device=dev) * 7919) % classes
                    floor = 2 * rows * classes * z.element_size() / (tbs * 1e12) * 1e3

                    def torch_ce():
                        z.grad = None
                        F.cross_entropy(z, t, label_smoothing=0.1).backward()

                    med, _ = timed(torch_ce, args.iters, args.warmup)
                    rows_out.append((wl, "torch F.cross_entropy", med, floor))
                    if liger is not None:
                        def liger_ce():
                            z.grad = None
                            liger(z, t).backward()

                        med, _ = timed(liger_ce, args.iters, args.warmup)
                        rows_out.append((wl, "liger", med, floor))
                    del z
                    torch.cuda.empty_cache()
                except Exception as e:  # noqa: BLE001
                    errors.append(f"{wl}: {type(e).__name__}: {e}")

        try:
            import torchvision.ops as tvo

            n = (1 << 20) if args.quick else 4194304
            r = pattern(8 * n, 0.0, 1.0, dev).view(n, 8)
            x, y = r[:, 0] * 100, r[:, 1] * 100
            w, h = 1 + r[:, 2] * 30, 1 + r[:, 3] * 30
            target = torch.stack([x, y, x + w, y + h], 1).contiguous()
            px, py = x + (r[:, 4] - 0.5) * 10, y + (r[:, 5] - 0.5) * 10
            pred = torch.stack([px, py, px + 1 + r[:, 6] * 30, py + 1 + r[:, 7] * 30], 1)
            pred = pred.contiguous().requires_grad_(True)
            floor = n * 12 * 4 / (tbs * 1e12) * 1e3
            for kind, fn in [("giou", tvo.generalized_box_iou_loss),
                             ("diou", tvo.distance_box_iou_loss),
                             ("ciou", tvo.complete_box_iou_loss)]:
                def box():
                    pred.grad = None
                    fn(pred, target, reduction="mean").backward()

                med, _ = timed(box, args.iters, args.warmup)
                rows_out.append((f"box {kind} {n} pairs", "torchvision", med, floor))
            # Pairwise IoU (cuda_bench's box_iou: the same box pattern, 4096 x 4096 or 2048 x 2048
            # in --quick); floor: writing the n * n outputs.
            nb = 2048 if args.quick else 4096
            rb = pattern(8 * nb, 0.0, 1.0, dev).view(nb, 8)

            def corners(q):
                x, y = q[:, 0] * 100, q[:, 1] * 100
                return torch.stack([x, y, x + 1 + q[:, 2] * 30, y + 1 + q[:, 3] * 30], 1).contiguous()

            b1, b2 = corners(rb[:, 0:4]), corners(rb[:, 4:8])
            floor_iou = (nb * nb * 4 + 2 * nb * 16) / (tbs * 1e12) * 1e3
            med, _ = timed(lambda: tvo.box_iou(b1, b2), args.iters, args.warmup)
            rows_out.append((f"box_iou {nb}x{nb}", "torchvision", med, floor_iou))
        except Exception as e:  # noqa: BLE001
            errors.append(f"torchvision box losses: {type(e).__name__}: {e}")
    else:
        print("no CUDA device visible to PyTorch: peer timings skipped")

    if args.rust:
        try:
            with open(args.rust) as f:
                for line in f:
                    line = line.strip()
                    if not line.startswith("{"):
                        continue
                    j = json.loads(line)
                    b = j.get("bench")
                    impl = "smoothloss-cuda"
                    if b in ("cross_entropy", "cross_entropy_inplace", "cross_entropy_sweep"):
                        wl = f"CE {j['rows']}x{j['classes']} {j['dtype']}"
                        plan = f"{j.get('cluster', '?')} blk/row, {j.get('threads', '?')} thr, {int(j.get('smem_bytes', 0)) // 1024} KiB"
                        if b == "cross_entropy":
                            impl = f"smoothloss-cuda ({plan})"
                        elif b == "cross_entropy_inplace":
                            impl = f"smoothloss-cuda in place ({plan})"
                        else:
                            impl = f"smoothloss-cuda sweep ({plan})"
                    elif b == "box_loss":
                        wl = f"box {j['kind']} {j['pairs']} pairs"
                    elif b == "box_iou":
                        wl = f"box_iou {j['boxes']}x{j['boxes']}"
                    elif b == "smooth_l1":
                        wl = f"smooth_l1 {j['elements']} elements"
                    elif b == "copy":
                        wl = f"copy (cuda_bench) {j['tb_per_s']} TB/s"
                    elif b == "error":
                        errors.append(f"cuda_bench: {j.get('error')}")
                        continue
                    else:
                        continue
                    rows_out.append((wl, impl, float(j["median_ms"]),
                                     float(j["floor_ms"]) if "floor_ms" in j else None))
        except Exception as e:  # noqa: BLE001
            errors.append(f"reading {args.rust}: {type(e).__name__}: {e}")

    print()
    print("| workload | implementation | median ms | floor ms | % of floor |")
    print("|---|---|---|---|---|")
    for wl, impl, med, floor in sorted(rows_out, key=lambda r: (r[0], r[1])):
        pct = f"{100 * floor / med:.0f}%" if floor else ""
        fl = f"{floor:.3f}" if floor else ""
        print(f"| {wl} | {impl} | {med:.3f} | {fl} | {pct} |")
    if tbs:
        print(f"\nfloor = bytes read once + gradient written once at {tbs:.3f} TB/s (torch copy_)")
    for e in errors:
        print(f"ERROR: {e}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
