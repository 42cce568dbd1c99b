#!/usr/bin/env python3
"""Generates spec/cases/detection_dense.json: float64 cases for the distribution focal loss,
the varifocal and quality focal losses and ProbIoU, with gradients by PyTorch autograd.

Sources:
  * ultralytics (installed package): `ultralytics.utils.loss.DFLoss`,
    `ultralytics.utils.metrics.probiou`, `batch_probiou`, called as they are; `VarifocalLoss`
    casts to float32 inside its forward, so its cases are its forward's lines in float64,
    asserted against the real module to float32 precision.
  * mmdetection: mmcv could not be installed here (it builds C++/CUDA extensions from source),
    so `distribution_focal_loss`, `quality_focal_loss`, `varifocal_loss` and
    `weight_reduce_loss` are reimplemented below from mmdetection 3.x's source
    (mmdet/models/losses/gfocal_loss.py, varifocal_loss.py, utils.py), line by line.

Run: python3 spec/cases/gen_detection_dense.py  (rewrites the JSON next to this script).
"""
import json
import math
import os

import torch
import torch.nn.functional as F
import ultralytics
from ultralytics.utils.loss import DFLoss, VarifocalLoss
from ultralytics.utils.metrics import batch_probiou, probiou

torch.set_default_dtype(torch.float64)
G = torch.Generator().manual_seed(20261201)


def randn(*shape, scale=1.0):
    return torch.randn(*shape, generator=G) * scale


def rand(*shape, lo=0.0, hi=1.0):
    return lo + (hi - lo) * torch.rand(*shape, generator=G)


def t(x):
    return {"shape": list(x.shape), "data": [float(v) for v in x.detach().reshape(-1)]}


# ---- mmdetection, reimplemented from its source (mmdet/models/losses) -----------------------
def mm_reduce_loss(loss, reduction):
    return {"none": loss, "mean": loss.mean(), "sum": loss.sum()}[reduction]


def mm_weight_reduce_loss(loss, weight=None, reduction="mean", avg_factor=None):
    if weight is not None:
        loss = loss * weight
    if avg_factor is None:
        return mm_reduce_loss(loss, reduction)
    if reduction == "mean":
        eps = torch.finfo(torch.float32).eps
        return loss.sum() / (avg_factor + eps)
    if reduction != "none":
        raise ValueError('avg_factor can not be used with reduction="sum"')
    return loss


def mm_distribution_focal_loss(pred, label):
    dis_left = label.long()
    dis_right = dis_left + 1
    weight_left = dis_right.float() - label
    weight_right = label - dis_left.float()
    return (F.cross_entropy(pred, dis_left, reduction="none") * weight_left
            + F.cross_entropy(pred, dis_right, reduction="none") * weight_right)


def mm_quality_focal_loss(pred, target, beta=2.0):
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


def mm_varifocal_loss(pred, target, alpha=0.75, gamma=2.0, iou_weighted=True, reduction="mean", avg_factor=None):
    pred_sigmoid = pred.sigmoid()
    target = target.type_as(pred)
    if iou_weighted:
        focal_weight = target * (target > 0.0).float() + alpha * (pred_sigmoid - target).abs().pow(gamma) * (target <= 0.0).float()
    else:
        focal_weight = (target > 0.0).float() + alpha * (pred_sigmoid - target).abs().pow(gamma) * (target <= 0.0).float()
    loss = F.binary_cross_entropy_with_logits(pred, target, reduction="none") * focal_weight
    return mm_weight_reduce_loss(loss, None, reduction, avg_factor)


MM_EPS = float(torch.finfo(torch.float32).eps)


def expected(out, x, name):
    out = out.reshape(-1)
    (g,) = torch.autograd.grad(out.sum(), x)
    return {"loss": [float(v) for v in out.detach()], "grad": {name: [float(v) for v in g.reshape(-1)]}}


cases = []


def add(cid, loss, params, inputs, exp):
    cases.append({"id": cid, "loss": loss, "params": params, "inputs": inputs, "expected": exp})


# ---- distribution focal loss ----------------------------------------------------------------
k = 0
for reg_max, n, reduction in [(16, 1, "none"), (16, 3, "none"), (16, 8, "sum"), (16, 5, "mean"),
                              (8, 4, "none"), (2, 2, "none"), (17, 6, "mean")]:
    for spread in (1.0, 4.0):
        k += 1
        z = randn(4 * n, reg_max, scale=spread).requires_grad_(True)
        tgt = rand(n, 4, lo=-0.5, hi=reg_max + 0.5)  # beyond both ends: ultralytics clamps
        tgt[0, 0] = 3.0 if reg_max > 4 else 0.0      # an integer target: wr = 0
        out = DFLoss(reg_max)(z, tgt.clone())
        red = {"none": out, "sum": out.sum(), "mean": out.mean()}[reduction]
        add(f"ultra-dfl-{k:03}", "distribution_focal",
            {"convention": "ultralytics", "reduction": reduction},
            {"logits": t(z), "targets": t(tgt.reshape(-1))}, expected(red, z, "logits"))
k = 0
for bins, rows, reduction in [(17, 1, "none"), (17, 9, "mean"), (8, 7, "sum"), (2, 3, "none"), (5, 12, "mean")]:
    k += 1
    z = randn(rows, bins, scale=2.0).requires_grad_(True)
    lab = rand(rows, lo=0.0, hi=bins - 1 - 1e-9)
    lab[0] = 0.0
    out = mm_weight_reduce_loss(mm_distribution_focal_loss(z, lab), None, reduction)
    add(f"mmdet-dfl-{k:03}", "distribution_focal",
        {"convention": "mmdetection", "reduction": reduction},
        {"logits": t(z), "targets": t(lab)}, expected(out, z, "logits"))

# ---- varifocal ------------------------------------------------------------------------------
k = 0
for b, q, c, alpha, gamma in [(1, 6, 3, 0.75, 2.0), (2, 5, 4, 0.75, 2.0), (1, 8, 2, 0.5, 1.5), (3, 4, 5, 0.25, 0.0)]:
    k += 1
    z = randn(b, q, c, scale=3.0).requires_grad_(True)
    label = torch.zeros(b, q, c)
    cls = torch.randint(0, c, (b, q), generator=G)
    pos = torch.rand(b, q, generator=G) < 0.5
    label[pos, cls[pos]] = 1.0
    score = label * rand(b, q, c)
    score[0, 0, 0] = 0.0
    label[0, 0, 0] = 1.0  # a labelled element with score 0
    # ultralytics' forward casts to float32 inside (`pred_score.float()`), so its own output has
    # float32 precision: the case is its forward line by line in float64, checked here against
    # the real module to float32 precision (value and autograd gradient).
    weight = alpha * z.sigmoid().pow(gamma) * (1 - label) + score * label
    out = (F.binary_cross_entropy_with_logits(z, score, reduction="none") * weight).mean(1).sum()
    real = VarifocalLoss(gamma=gamma, alpha=alpha)(z, score, label)
    (g64,) = torch.autograd.grad(out, z, retain_graph=True)
    (g32,) = torch.autograd.grad(real, z)
    assert abs(float(real) - float(out)) <= 1e-6 * abs(float(out)) + 1e-6, (float(real), float(out))
    assert float((g64 - g32).abs().max()) <= 1e-6, float((g64 - g32).abs().max())
    add(f"ultra-vfl-{k:03}", "varifocal",
        {"weight": "ultralytics", "alpha": alpha, "gamma": gamma, "reduction": "mean", "avg_factor": float(q)},
        {"logits": t(z.reshape(-1)), "scores": t(score.reshape(-1)), "labels": t(label.reshape(-1))},
        expected(out, z, "logits"))
k = 0
for n, c, iou_w, reduction, avg in [(6, 3, True, "mean", None), (5, 4, False, "sum", None), (4, 5, True, "none", None),
                                    (7, 2, True, "mean", 3.5), (3, 6, False, "mean", None)]:
    k += 1
    z = randn(n, c, scale=3.0).requires_grad_(True)
    score = torch.zeros(n, c)
    cls = torch.randint(0, c, (n,), generator=G)
    pos = torch.rand(n, generator=G) < 0.6
    score[pos, cls[pos]] = rand(int(pos.sum()), lo=0.05, hi=1.0)
    out = mm_varifocal_loss(z, score, 0.75, 2.0, iou_w, reduction, avg)
    params = {"weight": "mmdet_iou_weighted" if iou_w else "mmdet", "alpha": 0.75, "gamma": 2.0, "reduction": reduction}
    if avg is not None:
        params["avg_factor"] = avg + MM_EPS  # mmdetection divides by avg_factor + float32 eps
    add(f"mmdet-vfl-{k:03}", "varifocal", params,
        {"logits": t(z), "scores": t(score)}, expected(out, z, "logits"))

# ---- quality focal (mmdetection) ------------------------------------------------------------
k = 0
for n, c, beta, reduction, avg in [(5, 3, 2.0, "mean", None), (6, 4, 2.0, "sum", None), (4, 2, 1.0, "none", None),
                                   (8, 5, 2.0, "mean", 3.0), (3, 3, 0.5, "none", None)]:
    k += 1
    z = randn(n, c, scale=3.0).requires_grad_(True)
    labels = torch.randint(0, c + 1, (n,), generator=G)  # c: background
    labels[0] = c
    labels[1] = 0
    scores = rand(n) * (labels < c)
    out = mm_weight_reduce_loss(mm_quality_focal_loss(z, (labels, scores), beta), None, reduction, avg)
    params = {"beta": beta, "reduction": reduction}
    if avg is not None:
        params["avg_factor"] = avg + MM_EPS
    add(f"mmdet-qfl-{k:03}", "quality_focal", params,
        {"logits": t(z), "labels": [int(v) for v in labels], "scores": t(scores)}, expected(out, z, "logits"))

# ---- ProbIoU (ultralytics) ------------------------------------------------------------------
def obbs(n, near=None, jitter=1.0):
    if near is None:
        xy = rand(n, 2, lo=0.0, hi=50.0)
        wh = rand(n, 2, lo=1.0, hi=30.0)
        r = rand(n, 1, lo=-math.pi, hi=math.pi)
        return torch.cat([xy, wh, r], 1)
    d = torch.cat([randn(n, 2, scale=2.0 * jitter), randn(n, 2, scale=jitter), randn(n, 1, scale=0.3 * jitter)], 1)
    out = near + d
    out[:, 2:4] = out[:, 2:4].abs() + 0.5
    return out


k = 0
for n, ciou, floor, reduction, jitter in [(1, False, 0.0, "none", 1.0), (6, False, 0.0, "none", 1.0),
                                          (6, False, 0.0, "mean", 3.0), (5, False, 0.0, "sum", 0.3),
                                          (6, True, 0.0, "none", 1.0), (4, True, 0.0, "mean", 2.0),
                                          (5, False, 0.25, "none", 1.0), (3, False, 0.0, "none", 20.0)]:
    k += 1
    tgt = obbs(n)
    pred = obbs(n, near=tgt, jitter=jitter).requires_grad_(True)
    if k == 8:
        with torch.no_grad():
            pred[0, :2] += 400.0  # far apart: the distance clamps at 100, zero gradient
    iou = probiou(pred, tgt, CIoU=ciou, eps=1e-7, floor=floor).reshape(-1)
    loss = 1.0 - iou
    red = {"none": loss, "sum": loss.sum(), "mean": loss.mean()}[reduction]
    add(f"ultra-probiou-{k:03}", "probiou_loss",
        {"eps": 1e-7, "floor": floor, "ciou": ciou, "reduction": reduction},
        {"pred": t(pred), "target": t(tgt)}, expected(red, pred, "pred"))
k = 0
for n, m in [(1, 1), (3, 4), (5, 2)]:
    k += 1
    b1 = obbs(n)
    b2 = torch.cat([obbs(m - 1, near=b1[:1].expand(m - 1, 5).clone()), b1[:1]], 0) if m > 1 else b1.clone()
    iou = batch_probiou(b1, b2, eps=1e-7)
    add(f"ultra-batch-probiou-{k:03}", "batch_probiou", {"eps": 1e-7},
        {"boxes1": t(b1), "boxes2": t(b2)}, {"iou": [float(v) for v in iou.reshape(-1)]})

doc = {"format": "smoothloss-cases/1",
       "generator": f"torch {torch.__version__}, ultralytics {ultralytics.__version__}, float64; "
                    "mmdetection's losses reimplemented from its source (gen_detection_dense.py)",
       "cases": cases}
path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "detection_dense.json")
with open(path, "w") as f:
    json.dump(doc, f, separators=(",", ":"))
    f.write("\n")
print(f"{len(cases)} cases -> {path}")
