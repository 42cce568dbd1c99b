#!/usr/bin/env python3
"""Generates spec/cases/linear_ce.json: fused linear cross-entropy cases (LCE-*).

Expected values are PyTorch's composite in float64 on the CPU:
    loss = F.cross_entropy(h @ W.T + b, y, weight=w, ignore_index=..., label_smoothing=...,
                           reduction=...)
and its autograd gradients d(sum of returned losses)/d h, d W, d b.

Run from the repository root: python3 spec/cases/gen_linear_ce.py
"""
import json
import torch
import torch.nn.functional as F

torch.manual_seed(12_2)
CASES = []


def tensor(t):
    return {"shape": list(t.shape), "data": [float(x) for x in t.reshape(-1).tolist()]}


def case(cid, n, h, v, *, bias=True, eps=0.0, ignore=-100, weights=False, reduction="mean",
         probs=False, n_ignored=0, chunk_rows=None, scale=1.0):
    hid = (torch.randn(n, h, dtype=torch.float64) * scale).requires_grad_(True)
    w = (torch.randn(v, h, dtype=torch.float64) / h ** 0.5).requires_grad_(True)
    b = (torch.randn(v, dtype=torch.float64) * 0.5).requires_grad_(True) if bias else None
    cw = torch.rand(v, dtype=torch.float64) * 2 + 0.1 if weights else None
    z = hid @ w.T + (b if b is not None else 0)
    inputs = {"hidden": tensor(hid.detach()), "weight": tensor(w.detach())}
    if b is not None:
        inputs["bias"] = tensor(b.detach())
    if probs:
        q = torch.softmax(torch.randn(n, v, dtype=torch.float64) * 2, dim=1)
        inputs["target_probs"] = tensor(q)
        target = q
        ig = -100
    else:
        y = torch.randint(0, v, (n,))
        if n_ignored:
            idx = torch.randperm(n)[:n_ignored]
            y[idx] = ignore
        inputs["targets"] = [int(t) for t in y.tolist()]
        target = y
        ig = ignore
    loss = F.cross_entropy(z, target, weight=cw, ignore_index=ig, label_smoothing=eps,
                           reduction=reduction)
    loss.sum().backward()
    params = {
        "label_smoothing": eps,
        "ignore_index": ignore,
        "class_weights": None if cw is None else [float(x) for x in cw.tolist()],
        "reduction": reduction,
    }
    if chunk_rows is not None:
        params["chunk_rows"] = chunk_rows
    grad = {"hidden": [float(x) for x in hid.grad.reshape(-1).tolist()],
            "weight": [float(x) for x in w.grad.reshape(-1).tolist()]}
    if b is not None:
        grad["bias"] = [float(x) for x in b.grad.reshape(-1).tolist()]
    CASES.append({
        "id": cid,
        "loss": "linear_cross_entropy",
        "params": params,
        "inputs": inputs,
        "expected": {"loss": [float(x) for x in loss.detach().reshape(-1).tolist()], "grad": grad},
    })


k = 0


def nid(tag):
    global k
    k += 1
    return f"torch-lce-{k:03d}-{tag}"


for red in ["mean", "sum", "none"]:
    case(nid(f"plain-{red}"), 5, 4, 7, reduction=red)
    case(nid(f"nobias-{red}"), 6, 3, 5, bias=False, reduction=red)
    case(nid(f"smooth-{red}"), 7, 5, 9, eps=0.1, reduction=red)
    case(nid(f"weights-{red}"), 6, 4, 6, weights=True, reduction=red)
    case(nid(f"weights-smooth-ignore-{red}"), 9, 4, 8, weights=True, eps=0.2, n_ignored=3,
         reduction=red)
    case(nid(f"probs-{red}"), 4, 3, 6, probs=True, reduction=red)
    case(nid(f"probs-smooth-weights-{red}"), 5, 3, 5, probs=True, eps=0.15, weights=True,
         reduction=red)
    case(nid(f"chunked-{red}"), 13, 6, 11, eps=0.05, n_ignored=2, chunk_rows=4, reduction=red)
case(nid("ignore-index-3"), 8, 4, 6, ignore=3, n_ignored=2)
case(nid("one-class"), 4, 3, 1)
case(nid("one-row"), 1, 5, 4, eps=0.3)
case(nid("one-hidden"), 6, 1, 5)
case(nid("large-logits"), 6, 8, 10, scale=8.0)
case(nid("chunk-1-mean"), 7, 3, 4, chunk_rows=1, weights=True, n_ignored=2)
case(nid("wide-vocab"), 16, 8, 300, eps=0.1, chunk_rows=5)
case(nid("wide-vocab-sum"), 10, 16, 257, reduction="sum", weights=True, chunk_rows=3)

out = {
    "format": "smoothloss-cases/1",
    "generator": f"torch {torch.__version__}, float64, composite F.cross_entropy(h @ W.T + b) + autograd (spec/cases/gen_linear_ce.py)",
    "cases": CASES,
}
with open("spec/cases/linear_ce.json", "w") as f:
    json.dump(out, f, indent=None, separators=(",", ":"))
    f.write("\n")
print(f"{len(CASES)} cases")
