#!/usr/bin/env python3
"""Generates spec/cases/llm_ce.json: cross-entropy cases with the options of CE-10 .. CE-13
(logit softcap, z-loss, row weights, a given mean denominator), computed by PyTorch in float64
as the composite a user would write:

    zc   = cap * tanh(z / cap)                      # CE-10 (Gemma 2), when a softcap is set
    ce   = F.cross_entropy(zc, y, weight=w, ignore_index=ii, label_smoothing=eps, reduction="none")
    lse  = torch.logsumexp(zc, dim=1)
    row  = (ce + scale * lse**2 * kept) * r         # CE-11 (PaLM z-loss), CE-12 (row weights)
    none: row;  sum: row.sum();  mean: row.sum() / D
    D    = the given denominator (CE-13), else sum over kept rows of r_i * w[y_i] (r_i for
           probability targets)

and the gradient of the sum of the returned values with respect to the raw logits (autograd).
Run: python3 spec/cases/gen_llm_ce.py > spec/cases/llm_ce.json
"""
import json
import random

import torch
import torch.nn.functional as F

torch.set_default_dtype(torch.float64)
rng = random.Random(20261201)


def case(idx, n, c, probs):
    cap = rng.choice([None, None, 1.0, 5.0, 30.0])
    scale = rng.choice([0.0, 1e-4, 0.1, 1.0])
    eps = rng.choice([0.0, 0.0, 0.1, 0.3])
    cw = [rng.uniform(0.2, 2.0) for _ in range(c)] if rng.random() < 0.35 else None
    rw = rng.choice([None, "w", "w0"])
    rw = None if rw is None else [0.0 if (rw == "w0" and rng.random() < 0.3) else rng.uniform(0.1, 2.0) for _ in range(n)]
    red = rng.choice(["none", "sum", "mean", "mean", "given"])
    ii = None if probs else rng.choice([None, -100, 0])
    spread = rng.choice([1.0, 4.0, 40.0])
    z = torch.tensor([[rng.gauss(0, spread) for _ in range(c)] for _ in range(n)])
    if probs:
        q = torch.tensor([[rng.random() for _ in range(c)] for _ in range(n)])
        tgt = q / q.sum(1, keepdim=True)
        kept = torch.ones(n, dtype=torch.bool)
    else:
        ys = [rng.randrange(c) for _ in range(n)]
        if ii is not None and n > 1:
            ys[rng.randrange(n)] = ii if ii >= 0 else -100
        if ii == 0 and all(y == 0 for y in ys):
            # At least one kept row (a `mean` over no row is 0/0, CE-7).
            ii = None
        tgt = torch.tensor(ys)
        kept = tgt != (ii if ii is not None else -12345)
        if ii == 0:
            kept = tgt != 0
    z.requires_grad_(True)
    zc = cap * torch.tanh(z / cap) if cap is not None else z
    w = torch.tensor(cw) if cw is not None else None
    kw = dict(weight=w, label_smoothing=eps, reduction="none")
    if ii is not None:
        kw["ignore_index"] = ii
    ce = F.cross_entropy(zc, tgt, **kw)
    lse = torch.logsumexp(zc, dim=1)
    zl = torch.where(kept, scale * lse * lse, torch.zeros(n))
    r = torch.tensor(rw) if rw is not None else torch.ones(n)
    row = (ce + zl) * r
    params = {
        "label_smoothing": eps,
        "ignore_index": ii,
        "class_weights": cw,
        "softcap": cap,
        "z_loss": scale,
        "row_weights": rw,
    }
    if red == "none":
        out = row
    elif red == "sum":
        out = row.sum().reshape(1)
    else:
        if probs:
            d = r.sum()
        else:
            wy = w[tgt.clamp(min=0)] if w is not None else torch.ones(n)
            d = (r * wy * kept).sum()
        if red == "given":
            d = torch.tensor(float(d) * rng.uniform(1.5, 4.0) + rng.uniform(0.5, 2.0))
            params["denominator"] = float(d)
        out = (row.sum() / d).reshape(1)
    params["reduction"] = "none" if red == "none" else ("sum" if red == "sum" else "mean")
    out.sum().backward()
    inputs = {"logits": {"shape": [n, c], "data": z.detach().flatten().tolist()}}
    if probs:
        inputs["target_probs"] = {"shape": [n, c], "data": tgt.flatten().tolist()}
    else:
        inputs["targets"] = tgt.tolist()
    params = {k: v for k, v in params.items() if v is not None or k == "ignore_index"}
    return {
        "id": f"llm-ce-{idx:03d}",
        "loss": "cross_entropy",
        "params": params,
        "inputs": inputs,
        "expected": {"loss": out.detach().tolist(), "grad": {"logits": z.grad.flatten().tolist()}},
    }


cases = []
for k in range(160):
    n = rng.randint(1, 6)
    c = rng.choice([1, 2, 3, 5, 8, 17, 40, 130, 300])
    cases.append(case(k + 1, n, c, probs=rng.random() < 0.25))
print(json.dumps(allow_nan=False, obj={"format": "smoothloss-cases/1", "generator": f"torch {torch.__version__}, float64 (gen_llm_ce.py)", "cases": cases}))
