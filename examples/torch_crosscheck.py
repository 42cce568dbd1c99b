#!/usr/bin/env python3
"""Optional cross-check of `cargo xtask experiment` against PyTorch (needs torch and numpy).

    cargo xtask experiment --json > /tmp/experiment.json
    python3 examples/torch_crosscheck.py /tmp/experiment.json          # same initial weights
    python3 examples/torch_crosscheck.py /tmp/experiment.json --torch-init  # PyTorch's own init

With the same initial weights (the experiment's SplitMix64 draws, re-implemented below), PyTorch
trains the same network with torch.optim.Adam and prints, per arm, how many seeds end with the
same test accuracy as the Rust run. With --torch-init each seed s uses torch.manual_seed(s) and
nn.Linear's own initialisation instead, to show that the result does not hinge on our generator.
"""
import csv
import json
import math
import pathlib
import statistics
import sys

import numpy as np
import torch

torch.set_num_threads(1)
ROOT = pathlib.Path(__file__).resolve().parent.parent
MASK = (1 << 64) - 1


class SplitMix64:
    def __init__(self, seed):
        self.state = seed

    def next_u64(self):
        self.state = (self.state + 0x9E3779B97F4A7C15) & MASK
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        return z ^ (z >> 31)

    def uniform(self, lo, hi):
        return lo + (hi - lo) * ((self.next_u64() >> 11) * (1.0 / (1 << 53)))


def load(split):
    with open(ROOT / "examples/data/seed_classification.csv") as f:
        rows = [r for r in csv.DictReader(f) if r["split"] == split]
    x = torch.tensor([[float(r[f"x{j}"]) for j in range(10)] for r in rows], dtype=torch.float32)
    return x, torch.tensor([int(r["label"]) for r in rows])


def article_formula(alpha):
    """The article's printed SmoothLoss: one weight per class, 1 - alpha on every class that
    occurs in the batch, then the weighted sum of -log p over classes, mean over rows."""

    def loss(logits, target):
        w = torch.ones(logits.shape[1])
        w[target] = 1 - alpha
        return -(torch.log_softmax(logits, dim=1) * w).sum(dim=1).mean()

    return loss


def make_net(seed, torch_init):
    if torch_init:
        torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(10, 10), torch.nn.ReLU(), torch.nn.Linear(10, 5))
    if torch_init:
        return net
    rng = SplitMix64(seed)
    with torch.no_grad():
        for layer in (net[0], net[2]):
            fan_out, fan_in = layer.weight.shape
            bound = 1.0 / math.sqrt(fan_in)
            w = [rng.uniform(-bound, bound) for _ in range(fan_in * fan_out)]
            b = [rng.uniform(-bound, bound) for _ in range(fan_out)]
            layer.weight.copy_(torch.from_numpy(np.array(w, dtype=np.float32).reshape(fan_out, fan_in)))
            layer.bias.copy_(torch.from_numpy(np.array(b, dtype=np.float32)))
    return net


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    rust = json.loads(pathlib.Path(sys.argv[1]).read_text())
    torch_init = "--torch-init" in sys.argv[2:]
    alpha, lr, epochs, seeds = rust["alpha"], rust["lr"], rust["epochs"], rust["seeds"]
    x_train, y_train = load("train")
    x_test, y_test = load("test")
    losses = {
        "cross_entropy": torch.nn.CrossEntropyLoss(),
        "smoothloss": torch.nn.CrossEntropyLoss(label_smoothing=alpha),
        "article_formula": article_formula(alpha),
    }
    for arm in rust["arms"]:
        accs = []
        for seed in range(seeds):
            net = make_net(seed, torch_init)
            opt = torch.optim.Adam(net.parameters(), lr=lr)
            for _ in range(epochs):
                opt.zero_grad()
                losses[arm["arm"]](net(x_train), y_train).backward()
                opt.step()
            with torch.no_grad():
                accs.append(100.0 * (net(x_test).argmax(dim=1) == y_test).sum().item() / len(y_test))
        line = (f"{arm['arm']:16} torch mean {statistics.mean(accs):6.2f}% std {statistics.stdev(accs) if seeds > 1 else 0:.2f}"
                f" min {min(accs):.2f}% max {max(accs):.2f}%   rust mean {arm['test']['mean']:6.2f}%")
        if not torch_init:
            same = sum(abs(a - b) < 0.01 for a, b in zip(accs, arm["test_acc"]))
            worst = max(abs(a - b) for a, b in zip(accs, arm["test_acc"]))
            line += f"   same accuracy on {same}/{seeds} seeds, max |diff| {worst:.2f} pp"
        print(line)


if __name__ == "__main__":
    main()
