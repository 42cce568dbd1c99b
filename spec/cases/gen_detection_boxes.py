#!/usr/bin/env python3
"""Generates spec/cases/detection_boxes.json: box-loss cases for the detection losses beyond
torchvision's (issue 13), computed in float64 on the CPU with gradients by PyTorch autograd.

    python3 spec/cases/gen_detection_boxes.py > spec/cases/detection_boxes.json

Sources, per case family (the case id starts with the family):

* ``ultralytics-*``: ``ultralytics.utils.metrics.bbox_iou`` itself (installed package, its
  version is recorded in ``generator``), ``xywh=True`` (centre boxes, our ``cxcywh``), loss
  ``1 - bbox_iou``; IoU, GIoU, DIoU and CIoU (torchvision/ultralytics CIoU convention).
* ``torchvision-*``: ``torchvision.ops`` GIoU/DIoU/CIoU losses in the ``xywh`` layout (the
  bundled torch_cases.json holds ``xyxy`` only).
* ``mmdet-*``: mmdetection's ``ciou_loss`` (alpha gated by IoU > 0.5, clamp), ``eiou_loss``
  (Extended-IoU with ``smooth_point``) and ``siou_loss`` (both ``neg_gamma``) from
  ``mmdet/models/losses/iou_loss.py`` (mmdetection 3.x). mmcv cannot be installed here (it
  needs a matching CUDA/torch build), so the three functions are reimplemented below line by
  line from that source; they use only torch.
* Author-only losses, written from the papers' equations in PyTorch float64:
  ``wiou-*`` Wise-IoU v1, arXiv 2301.10051 eq. (4)-(5): ``R = exp(rho^2 / (Wg^2 + Hg^2)*)``,
  ``L = R (1 - IoU)``, the enclosing size detached (``*``) as in the author's code;
  ``mpdiou-*`` MPDIoU, arXiv 2307.07662 eq. (8)-(10); ``shape-*`` Shape-IoU, arXiv
  2312.17663 eq. (7)-(12) (``scale``, theta 4, as the author's code); ``inner-*`` Inner-IoU,
  arXiv 2311.02877 eq. (1)-(9) (``L_Inner-X = L_X + IoU - IoU_inner``); ``focaler-*``
  Focaler-IoU, arXiv 2401.10525 eq. (1)-(5) (``L_Focaler-X = L_X + IoU - IoU_focaler``);
  ``alpha-*`` alpha-IoU, arXiv 2110.13675 eq. (6)-(9) (every term to the power alpha);
  ``focal-eiou-*`` Focal-EIoU, arXiv 2101.08158 eq. (12), ``IoU^gamma`` detached as the common
  YOLO implementations; ``eiou-*`` Efficient-IoU itself, eq. (10).
* ``threshold-*``: the seed article's weighting (``BOX-9``) on top of the newer kinds.
* ``wise_iou_v3`` (a top-level list, not in ``cases``: each entry is a *sequence* of calls with
  the running mean carried from one to the next, ``BOX-24``): Wise-IoU v3, arXiv 2301.10051
  eq. (8)-(10), written after the author's code (Instinct323/wiou ``iou.py``
  ``IouLoss.__call__`` / ``_scaled_loss`` and the YOLO integrations' ``WIoU_Scale``): the mean
  of the detached ``1 - IoU`` updates ``iou_mean`` *before* use, ``beta = (1 - IoU)* / iou_mean``,
  ``r = beta / (delta * alpha ** (beta - delta))`` detached, ``L = r * L_WIoUv1``; here in
  float64 (the author keeps ``iou_mean`` in float32) with eps in the union (``BOX-3``).
"""

import json
import math
import sys

import torch
import torchvision
from torchvision.ops import complete_box_iou_loss, distance_box_iou_loss, generalized_box_iou_loss

try:
    import ultralytics
    from ultralytics.utils.metrics import bbox_iou as ultra_bbox_iou
except ImportError:  # pragma: no cover
    ultralytics = None

torch.set_default_dtype(torch.float64)
G = torch.Generator().manual_seed(20261201)
EPS = 1e-7


def to_xyxy(b, fmt):
    if fmt == "xyxy":
        return b
    x, y, w, h = b.unbind(-1)
    if fmt == "xywh":
        return torch.stack([x, y, x + w, y + h], -1)
    return torch.stack([x - 0.5 * w, y - 0.5 * h, x + 0.5 * w, y + 0.5 * h], -1)


def from_xyxy(b, fmt):
    x1, y1, x2, y2 = b.unbind(-1)
    if fmt == "xyxy":
        return b
    if fmt == "xywh":
        return torch.stack([x1, y1, x2 - x1, y2 - y1], -1)
    return torch.stack([0.5 * (x1 + x2), 0.5 * (y1 + y2), x2 - x1, y2 - y1], -1)


def boxes(n, spread=20.0):
    """n random pairs in xyxy: overlapping jitter, contained, disjoint, by thirds."""
    out_p, out_t = [], []
    for i in range(n):
        r = torch.rand(8, generator=G)
        x, y = float(r[0]) * spread, float(r[1]) * spread
        w, h = 1.0 + float(r[2]) * 10.0, 1.0 + float(r[3]) * 10.0
        t = [x, y, x + w, y + h]
        mode = i % 3
        if mode == 0:  # overlap
            j = [(float(v) - 0.5) * 0.6 for v in r[4:8]]
            p = [x + j[0] * w, y + j[1] * h, x + w + j[2] * w, y + h + j[3] * h]
        elif mode == 1:  # near-identical or contained
            s = 0.1 + 0.3 * float(r[4])
            p = [x + s * w * float(r[5]), y + s * h * float(r[6]), x + w - s * w * float(r[7]), y + h - 0.05 * h]
        else:  # disjoint
            dx = w * (1.2 + float(r[4]))
            dy = h * (float(r[5]) - 0.5)
            pw, ph = w * (0.5 + float(r[6])), h * (0.5 + float(r[7]))
            p = [x + dx, y + dy, x + dx + pw, y + dy + ph]
        out_p.append(p)
        out_t.append(t)
    return torch.tensor(out_p), torch.tensor(out_t)


# ---------------------------------------------------------------- shared pieces (xyxy, [N])

def parts(p, t, eps):
    x1, y1, x2, y2 = p.unbind(-1)
    x1g, y1g, x2g, y2g = t.unbind(-1)
    iw = torch.minimum(x2, x2g) - torch.maximum(x1, x1g)
    ih = torch.minimum(y2, y2g) - torch.maximum(y1, y1g)
    inter = torch.where((iw > 0) & (ih > 0), iw * ih, torch.zeros_like(iw))
    union = (x2 - x1) * (y2 - y1) + (x2g - x1g) * (y2g - y1g) - inter
    iou = inter / (union + eps)
    cw = torch.maximum(x2, x2g) - torch.minimum(x1, x1g)
    ch = torch.maximum(y2, y2g) - torch.minimum(y1, y1g)
    dx = 0.5 * (x1 + x2) - 0.5 * (x1g + x2g)
    dy = 0.5 * (y1 + y2) - 0.5 * (y1g + y2g)
    return dict(iou=iou, union=union, inter=inter, cw=cw, ch=ch, dx=dx, dy=dy,
                w=x2 - x1, h=y2 - y1, wg=x2g - x1g, hg=y2g - y1g)


def spow(x, a):
    return torch.sign(x) * torch.abs(x) ** a


def base_loss(kind, p, t, eps, alpha=None, ciou="torchvision", smooth_point=0.1, paper_gamma=False,
              image_size=None, shape_scale=0.0):
    q = parts(p, t, eps)
    iou = q["iou"]
    pw = (lambda x: spow(x, alpha)) if alpha is not None else (lambda x: x)
    rho2 = q["dx"] ** 2 + q["dy"] ** 2
    diag2 = q["cw"] ** 2 + q["ch"] ** 2 + eps
    if kind == "iou":
        return 1 - pw(iou)
    if kind == "giou":  # torchvision generalized_box_iou_loss; alpha-IoU eq. (7)
        area_c = q["cw"] * q["ch"]
        return 1 - pw(iou) + pw((area_c - q["union"]) / (area_c + eps))
    if kind == "diou":  # alpha-IoU eq. (8)
        return 1 - pw(iou) + pw(rho2 / diag2)
    if kind == "ciou" and ciou == "torchvision":  # alpha-IoU eq. (9)
        v = (4 / math.pi ** 2) * (torch.atan(q["wg"] / q["hg"]) - torch.atan(q["w"] / q["h"])) ** 2
        with torch.no_grad():
            a = v / (1 - iou + v + eps)
        return 1 - pw(iou) + pw(rho2 / diag2) + pw(a * v)
    if kind == "ciou":  # mmdetection ciou_loss
        return mmdet_ciou(p, t, eps, pw)
    if kind == "eiou":  # Efficient-IoU, arXiv 2101.08158 eq. (10)
        return (1 - iou + rho2 / diag2 + (q["w"] - q["wg"]) ** 2 / (q["cw"] ** 2 + eps)
                + (q["h"] - q["hg"]) ** 2 / (q["ch"] ** 2 + eps))
    if kind == "extended_iou":
        return mmdet_eiou(p, t, smooth_point, eps)
    if kind == "siou":
        return mmdet_siou(p, t, eps, paper_gamma)
    if kind == "wiou":  # Wise-IoU v1, arXiv 2301.10051 eq. (4)-(5)
        r = torch.exp(rho2 / (q["cw"] ** 2 + q["ch"] ** 2).detach())
        return r * (1 - iou)
    if kind == "mpdiou":  # MPDIoU, arXiv 2307.07662 eq. (8)-(10)
        W, H = image_size
        d1 = (p[:, 0] - t[:, 0]) ** 2 + (p[:, 1] - t[:, 1]) ** 2
        d2 = (p[:, 2] - t[:, 2]) ** 2 + (p[:, 3] - t[:, 3]) ** 2
        return 1 - iou + d1 / (W ** 2 + H ** 2) + d2 / (W ** 2 + H ** 2)
    if kind == "shape_iou":  # Shape-IoU, arXiv 2312.17663 eq. (7)-(12), author's code
        wg, hg = q["wg"], q["hg"]
        ww = 2 * wg.abs() ** shape_scale / (wg.abs() ** shape_scale + hg.abs() ** shape_scale)
        hh = 2 * hg.abs() ** shape_scale / (wg.abs() ** shape_scale + hg.abs() ** shape_scale)
        distance = (hh * q["dx"] ** 2 + ww * q["dy"] ** 2) / diag2
        om_w = hh * torch.abs(q["w"] - wg) / torch.maximum(q["w"], wg)
        om_h = ww * torch.abs(q["h"] - hg) / torch.maximum(q["h"], hg)
        shape = (1 - torch.exp(-om_w)) ** 4 + (1 - torch.exp(-om_h)) ** 4
        return 1 - iou + distance + 0.5 * shape
    raise ValueError(kind)


# --------------------------------------- mmdetection 3.x, mmdet/models/losses/iou_loss.py

def mmdet_ciou(pred, target, eps, pw):
    lt = torch.max(pred[:, :2], target[:, :2])
    rb = torch.min(pred[:, 2:], target[:, 2:])
    wh = (rb - lt).clamp(min=0)
    overlap = wh[:, 0] * wh[:, 1]
    ap = (pred[:, 2] - pred[:, 0]) * (pred[:, 3] - pred[:, 1])
    ag = (target[:, 2] - target[:, 0]) * (target[:, 3] - target[:, 1])
    union = ap + ag - overlap + eps
    ious = overlap / union
    enclose_x1y1 = torch.min(pred[:, :2], target[:, :2])
    enclose_x2y2 = torch.max(pred[:, 2:], target[:, 2:])
    enclose_wh = (enclose_x2y2 - enclose_x1y1).clamp(min=0)
    cw, ch = enclose_wh[:, 0], enclose_wh[:, 1]
    c2 = cw ** 2 + ch ** 2 + eps
    b1_x1, b1_y1, b1_x2, b1_y2 = pred.unbind(-1)
    b2_x1, b2_y1, b2_x2, b2_y2 = target.unbind(-1)
    w1, h1 = b1_x2 - b1_x1, b1_y2 - b1_y1 + eps
    w2, h2 = b2_x2 - b2_x1, b2_y2 - b2_y1 + eps
    left = ((b2_x1 + b2_x2) - (b1_x1 + b1_x2)) ** 2 / 4
    right = ((b2_y1 + b2_y2) - (b1_y1 + b1_y2)) ** 2 / 4
    rho2 = left + right
    factor = 4 / math.pi ** 2
    v = factor * torch.pow(torch.atan(w2 / h2) - torch.atan(w1 / h1), 2)
    with torch.no_grad():
        alpha = (ious > 0.5).float() * v / (1 - ious + v)
    cious = pw(ious) - (pw(rho2 / c2) + pw(alpha * v))
    return 1 - cious.clamp(min=-1.0, max=1.0)


def mmdet_eiou(pred, target, smooth_point=0.1, eps=1e-7):
    px1, py1, px2, py2 = pred[:, 0], pred[:, 1], pred[:, 2], pred[:, 3]
    tx1, ty1, tx2, ty2 = target[:, 0], target[:, 1], target[:, 2], target[:, 3]
    ex1 = torch.min(px1, tx1)
    ey1 = torch.min(py1, ty1)
    ix1 = torch.max(px1, tx1)
    iy1 = torch.max(py1, ty1)
    ix2 = torch.min(px2, tx2)
    iy2 = torch.min(py2, ty2)
    xmin = torch.min(ix1, ix2)
    ymin = torch.min(iy1, iy2)
    xmax = torch.max(ix1, ix2)
    ymax = torch.max(iy1, iy2)
    intersection = (ix2 - ex1) * (iy2 - ey1) + (xmin - ex1) * (ymin - ey1) - (
        ix1 - ex1) * (ymax - ey1) - (xmax - ex1) * (iy1 - ey1)
    union = (px2 - px1) * (py2 - py1) + (tx2 - tx1) * (ty2 - ty1) - intersection + eps
    ious = 1 - (intersection / union)
    smooth_sign = (ious < smooth_point).detach().float()
    return 0.5 * smooth_sign * (ious ** 2) / smooth_point + (1 - smooth_sign) * (ious - 0.5 * smooth_point)


def mmdet_siou(pred, target, eps=1e-7, neg_gamma=False):
    lt = torch.max(pred[:, :2], target[:, :2])
    rb = torch.min(pred[:, 2:], target[:, 2:])
    wh = (rb - lt).clamp(min=0)
    overlap = wh[:, 0] * wh[:, 1]
    ap = (pred[:, 2] - pred[:, 0]) * (pred[:, 3] - pred[:, 1])
    ag = (target[:, 2] - target[:, 0]) * (target[:, 3] - target[:, 1])
    union = ap + ag - overlap + eps
    ious = overlap / union
    enclose_x1y1 = torch.min(pred[:, :2], target[:, :2])
    enclose_x2y2 = torch.max(pred[:, 2:], target[:, 2:])
    enclose_wh = (enclose_x2y2 - enclose_x1y1).clamp(min=eps)
    cw, ch = enclose_wh[:, 0], enclose_wh[:, 1]
    b1_x1, b1_y1, b1_x2, b1_y2 = pred.unbind(-1)
    b2_x1, b2_y1, b2_x2, b2_y2 = target.unbind(-1)
    w1, h1 = b1_x2 - b1_x1, b1_y2 - b1_y1 + eps
    w2, h2 = b2_x2 - b2_x1, b2_y2 - b2_y1 + eps
    s_cw = (b2_x1 + b2_x2 - b1_x1 - b1_x2) * 0.5 + eps
    s_ch = (b2_y1 + b2_y2 - b1_y1 - b1_y2) * 0.5 + eps
    sigma = torch.pow(s_cw ** 2 + s_ch ** 2, 0.5)
    sin_alpha_1 = torch.abs(s_cw) / sigma
    sin_alpha_2 = torch.abs(s_ch) / sigma
    threshold = pow(2, 0.5) / 2
    sin_alpha = torch.where(sin_alpha_1 > threshold, sin_alpha_2, sin_alpha_1)
    angle_cost = torch.cos(torch.asin(sin_alpha) * 2 - math.pi / 2)
    rho_x = (s_cw / cw) ** 2
    rho_y = (s_ch / ch) ** 2
    gamma = angle_cost - 2 if neg_gamma else 2 - angle_cost
    distance_cost = 2 - torch.exp(gamma * rho_x) - torch.exp(gamma * rho_y)
    omiga_w = torch.abs(w1 - w2) / torch.max(w1, w2)
    omiga_h = torch.abs(h1 - h2) / torch.max(h1, h2)
    shape_cost = torch.pow(1 - torch.exp(-1 * omiga_w), 4) + torch.pow(1 - torch.exp(-1 * omiga_h), 4)
    sious = ious - 0.5 * (distance_cost + shape_cost)
    return 1 - sious.clamp(min=-1.0, max=1.0)


# ---------------------------------------------------------------- modifiers

def inner_iou(p, t, ratio, eps):
    """Inner-IoU, arXiv 2311.02877 eq. (1)-(6): both boxes scaled by ratio about their centres."""
    def scale(b):
        cx, cy = 0.5 * (b[:, 0] + b[:, 2]), 0.5 * (b[:, 1] + b[:, 3])
        hw, hh = 0.5 * ratio * (b[:, 2] - b[:, 0]), 0.5 * ratio * (b[:, 3] - b[:, 1])
        return torch.stack([cx - hw, cy - hh, cx + hw, cy + hh], -1)
    return parts(scale(p), scale(t), eps)["iou"]


def full_loss(params, p, t):
    eps = params.get("eps", EPS)
    kind = params["kind"]
    loss = base_loss(kind, p, t, eps, alpha=params.get("alpha_power"),
                     ciou=params.get("ciou_convention", "torchvision"),
                     smooth_point=params.get("smooth_point", 0.1),
                     paper_gamma=params.get("siou_paper_gamma", False),
                     image_size=params.get("image_size"), shape_scale=params.get("shape_scale", 0.0))
    iou = parts(p, t, eps)["iou"]
    if "inner_ratio" in params or "focaler" in params:
        term = inner_iou(p, t, params["inner_ratio"], eps) if "inner_ratio" in params else iou
        if "focaler" in params:  # Focaler-IoU, arXiv 2401.10525 eq. (1)
            d, u = params["focaler"]
            term = ((term - d) / (u - d)).clamp(0.0, 1.0)
        loss = loss + iou - term
    if "focal_gamma" in params:  # Focal-EIoU, arXiv 2101.08158 eq. (12)
        loss = iou.detach().clamp(min=0.0) ** params["focal_gamma"] * loss
    if "threshold" in params:  # BOX-9
        w = torch.where(iou.detach() < params["threshold"], 1.0 - params["threshold_alpha"], 1.0)
        loss = w * loss
    return loss


def reduce(loss, reduction):
    return loss.mean() if reduction == "mean" else loss.sum() if reduction == "sum" else loss


def emit(cases, cid, params, p_xyxy, t_xyxy, fn=None):
    fmt = params["format"]
    pred = from_xyxy(p_xyxy, fmt).detach().clone().requires_grad_(True)
    target = from_xyxy(t_xyxy, fmt).detach().clone()
    pc, tc = to_xyxy(pred, fmt), to_xyxy(target, fmt)
    per = fn(pred, target) if fn is not None else full_loss(params, pc, tc)
    out = reduce(per, params["reduction"])
    out.sum().backward()
    loss = out.detach().reshape(-1).tolist()
    cases.append({
        "id": cid,
        "loss": "box_iou_loss",
        "params": params,
        "inputs": {
            "pred": {"shape": [pred.shape[0], 4], "data": pred.detach().reshape(-1).tolist()},
            "target": {"shape": [target.shape[0], 4], "data": target.reshape(-1).tolist()},
        },
        "expected": {"loss": loss, "grad": {"pred": pred.grad.reshape(-1).tolist()}},
    })


FORMATS = ["xyxy", "xywh", "cxcywh"]
REDUCTIONS = ["mean", "sum", "none"]


def wiou3_sequences():
    """Sequences of Wise-IoU v3 calls with the running mean carried (BOX-24); drawn after every
    other case so that the earlier cases' random boxes are unchanged."""
    seqs = []
    settings = [
        ("xyxy", "mean", 1 - 0.5 ** (1 / 7000), 1.9, 3.0, 1.0),
        ("cxcywh", "sum", 0.05, 1.9, 3.0, 1.0),
        ("xywh", "none", 0.3, 1.7, 2.7, 0.6),
        ("cxcywh", "mean", 0.01, 2.5, 4.0, 0.2),
    ]
    for si, (fmt, r, momentum, alpha, delta, mean0) in enumerate(settings):
        mean = torch.tensor(mean0)
        steps = []
        for step in range(4):
            p_xyxy, t_xyxy = boxes(6 + step)
            pred = from_xyxy(p_xyxy, fmt).detach().clone().requires_grad_(True)
            target = from_xyxy(t_xyxy, fmt).detach().clone()
            q = parts(to_xyxy(pred, fmt), to_xyxy(target, fmt), EPS)
            liou = 1 - q["iou"]
            # The author's order: update the running mean from this batch, then use it.
            mean = (1 - momentum) * mean + momentum * liou.detach().mean()
            beta = liou.detach() / mean
            rr = beta / (delta * torch.pow(torch.tensor(alpha), beta - delta))
            v1 = torch.exp((q["dx"] ** 2 + q["dy"] ** 2) / (q["cw"] ** 2 + q["ch"] ** 2).detach()) * liou
            out = reduce(rr * v1, r)
            out.sum().backward()
            steps.append({
                "pred": pred.detach().reshape(-1).tolist(),
                "target": target.reshape(-1).tolist(),
                "loss": out.detach().reshape(-1).tolist(),
                "grad": pred.grad.reshape(-1).tolist(),
                "mean_after": mean.item(),
            })
        seqs.append({"id": f"wiou3-seq-{si + 1:02d}", "format": fmt, "reduction": r, "eps": EPS,
                     "momentum": momentum, "alpha": alpha, "delta": delta, "mean": mean0,
                     "steps": steps})
    return seqs


def main():
    cases = []
    k = 0

    def nxt():
        nonlocal k
        k += 1
        return k

    # ultralytics bbox_iou itself, centre boxes (xywh=True is our cxcywh).
    if ultralytics is not None:
        for flag in ["IoU", "GIoU", "DIoU", "CIoU"]:
            for r in REDUCTIONS:
                p, t = boxes(7)
                # GIoU: ultralytics adds eps to the union inside (C - U) / C; with eps 1e-12 the
                # difference to our (C - U) / (C + eps) is far below the comparison tolerance.
                eps = 1e-12 if flag == "GIoU" else EPS
                kw = {} if flag == "IoU" else {flag: True}
                params = {"kind": flag.lower(), "format": "cxcywh", "eps": eps, "reduction": r}

                def fn(pred, target, kw=kw, eps=eps):
                    return 1 - ultra_bbox_iou(pred, target, xywh=True, eps=eps, **kw).squeeze(-1)
                emit(cases, f"ultralytics-{flag.lower()}-{nxt():03d}", params, p, t, fn)
    # torchvision in the xywh layout.
    for name, f in [("giou", generalized_box_iou_loss), ("diou", distance_box_iou_loss),
                    ("ciou", complete_box_iou_loss)]:
        for r in REDUCTIONS:
            p, t = boxes(6)
            params = {"kind": name, "format": "xywh", "eps": EPS, "reduction": r}

            def fn(pred, target, f=f):
                return f(to_xyxy(pred, "xywh"), to_xyxy(target, "xywh"), reduction="none", eps=EPS)
            emit(cases, f"torchvision-{name}-xywh-{nxt():03d}", params, p, t, fn)
    # mmdetection's conventions and kinds.
    for fi, fmt in enumerate(FORMATS):
        for r in REDUCTIONS:
            p, t = boxes(9)
            emit(cases, f"mmdet-ciou-{nxt():03d}",
                 {"kind": "ciou", "format": fmt, "eps": EPS, "reduction": r,
                  "ciou_convention": "mmdetection"}, p, t)
            for sp in [0.1, 0.3]:
                p, t = boxes(9)
                emit(cases, f"mmdet-extended-iou-{nxt():03d}",
                     {"kind": "extended_iou", "format": fmt, "eps": EPS, "reduction": r,
                      "smooth_point": sp}, p, t)
            for neg in [False, True]:
                p, t = boxes(9)
                emit(cases, f"mmdet-siou-{nxt():03d}",
                     {"kind": "siou", "format": fmt, "eps": EPS, "reduction": r,
                      "siou_paper_gamma": neg}, p, t)
    # Author-only kinds.
    for fmt in FORMATS:
        for r in REDUCTIONS:
            for kind, extra in [("eiou", {}), ("wiou", {}), ("mpdiou", {"image_size": [64.0, 48.0]}),
                                ("shape_iou", {"shape_scale": 0.0}), ("shape_iou", {"shape_scale": 0.5})]:
                p, t = boxes(9)
                emit(cases, f"{kind.replace('_', '-')}-{nxt():03d}",
                     {"kind": kind, "format": fmt, "eps": EPS, "reduction": r, **extra}, p, t)
    # Modifiers on the kinds the papers define them for.
    for fi, fmt in enumerate(FORMATS):
        r = REDUCTIONS[fi]
        for kind in ["iou", "giou", "diou", "ciou", "siou"]:
            for ratio in [0.7, 1.3]:
                p, t = boxes(9)
                emit(cases, f"inner-{kind}-{nxt():03d}",
                     {"kind": kind, "format": fmt, "eps": EPS, "reduction": r, "inner_ratio": ratio}, p, t)
        for kind in ["iou", "giou", "diou", "ciou", "eiou", "siou"]:
            p, t = boxes(9)
            emit(cases, f"focaler-{kind}-{nxt():03d}",
                 {"kind": kind, "format": fmt, "eps": EPS, "reduction": r, "focaler": [0.1, 0.8]}, p, t)
        for kind in ["iou", "giou", "diou", "ciou"]:
            p, t = boxes(9)
            emit(cases, f"alpha-{kind}-{nxt():03d}",
                 {"kind": kind, "format": fmt, "eps": EPS, "reduction": r, "alpha_power": 3.0}, p, t)
        p, t = boxes(9)
        emit(cases, f"focal-eiou-{nxt():03d}",
             {"kind": "eiou", "format": fmt, "eps": EPS, "reduction": r, "focal_gamma": 0.5}, p, t)
        # Combinations in one call.
        p, t = boxes(9)
        emit(cases, f"inner-focaler-ciou-{nxt():03d}",
             {"kind": "ciou", "format": fmt, "eps": EPS, "reduction": r, "inner_ratio": 0.8,
              "focaler": [0.0, 0.9]}, p, t)
        p, t = boxes(9)
        emit(cases, f"inner-siou-mmdet-{nxt():03d}",
             {"kind": "siou", "format": fmt, "eps": EPS, "reduction": r, "inner_ratio": 1.2,
              "siou_paper_gamma": True}, p, t)
        p, t = boxes(9)
        emit(cases, f"alpha-ciou-mmdet-{nxt():03d}",
             {"kind": "ciou", "format": fmt, "eps": EPS, "reduction": r, "alpha_power": 2.0,
              "ciou_convention": "mmdetection"}, p, t)
        for kind in ["siou", "wiou", "mpdiou", "shape_iou"]:
            p, t = boxes(9)
            extra = {"image_size": [64.0, 48.0]} if kind == "mpdiou" else {}
            emit(cases, f"threshold-{kind.replace('_', '-')}-{nxt():03d}",
                 {"kind": kind, "format": fmt, "eps": EPS, "reduction": r, "threshold_alpha": 0.3,
                  "threshold": 0.5, "focal_gamma": 1.0, **extra}, p, t)
    gen = (f"torch {torch.__version__}, torchvision {torchvision.__version__}"
           + (f", ultralytics {ultralytics.__version__}" if ultralytics is not None else "")
           + ", float64, spec/cases/gen_detection_boxes.py")
    seqs = wiou3_sequences()
    json.dump({"format": "smoothloss-cases/1", "generator": gen, "cases": cases,
               "wise_iou_v3": seqs}, sys.stdout, indent=None)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
