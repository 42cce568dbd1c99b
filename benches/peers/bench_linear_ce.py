#!/usr/bin/env python3
"""Side by side, in one run: the CPU fused linear cross-entropy (target/release/lce_bench) and
PyTorch's composite (torch_linear_ce.py), alternating processes (ours, then PyTorch's, per
round and thread count), then the medians, the time ratio and the memory beyond inputs and
gradients of each.

usage (from the repository root, after `cargo build --release -p smoothloss-benches --bin lce_bench`):
  python3 benches/peers/bench_linear_ce.py --shapes 4096x1024x32000,2048x2048x128256 \
      --threads 1,2 --rounds 3 --repeats 1
  --shards S adds the vocab-parallel linear cross-entropy (VP-6) on S in-process ranks
  ("smoothloss-vp"), run between ours and PyTorch's in each round.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def run(cmd):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shapes", default="4096x1024x32000")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--shards", type=int, default=0)
    args = ap.parse_args()
    ours = os.path.join(ROOT, "target", "release", "lce_bench")
    peer = os.path.join(HERE, "torch_linear_ce.py")
    for shape in args.shapes.split(","):
        n, h, v = shape.split("x")
        for t in args.threads.split(","):
            res = {"smoothloss": [], "torch": []}
            if args.shards:
                res["smoothloss-vp"] = []
            for _ in range(args.rounds):
                res["smoothloss"].append(run([ours, n, h, v, t, str(args.repeats)]))
                if args.shards:
                    res["smoothloss-vp"].append(
                        run([ours, n, h, v, t, str(args.repeats), "0", str(args.shards)]))
                res["torch"].append(run([sys.executable, peer, n, h, v, t, str(args.repeats)]))
            summary = {}
            for name, rs in res.items():
                times = [x for r in rs for x in r["times_s"]]
                extra = [(r["peak_rss_kib"] - r["base_rss_kib"]) * 1024
                         - (r["grad_bytes"] if name == "torch" else 0) for r in rs]
                summary[name] = {
                    "median_s": statistics.median(times), "n_times": len(times),
                    "peak_rss_mib": max(r["peak_rss_kib"] for r in rs) / 1024,
                    "extra_mib": statistics.median(extra) / 2**20,
                    "loss": rs[-1]["loss"],
                }
            s, p = summary["smoothloss"], summary["torch"]
            vp = summary.get("smoothloss-vp")
            if vp:
                vp["shards"] = args.shards
                vp["time_ratio_torch_over_vp"] = p["median_s"] / vp["median_s"]
                vp["extra_memory_ratio_vp_over_torch"] = (
                    vp["extra_mib"] / p["extra_mib"] if p["extra_mib"] > 0 else None)
            print(json.dumps({
                "shape": shape, "threads": int(t), "smoothloss": s, "torch": p,
                "smoothloss_vp": vp,
                "time_ratio_torch_over_ours": p["median_s"] / s["median_s"],
                "extra_memory_ratio_ours_over_torch": s["extra_mib"] / p["extra_mib"] if p["extra_mib"] > 0 else None,
            }), flush=True)


if __name__ == "__main__":
    main()
