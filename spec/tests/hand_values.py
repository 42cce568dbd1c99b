#!/usr/bin/env python3
"""The hand-worked values asserted by spec/tests/snapshots.rs, evaluated in float64 from the
formulas of spec/formulas/*.md (python3, `math` only; nothing here calls smoothloss).

Run `python3 spec/tests/hand_values.py`; every printed literal appears in snapshots.rs with its
derivation in the comment above it."""
from math import atan, log, pi

r = lambda x: repr(float(x))
ln2, ln3 = log(2), log(3)
eps = 1e-7  # torchvision's box eps (BoxLoss::default())

print("CE-3 loss ln 3:", r(ln3), " grad p - q:", r(1 / 3 - 0.8), r(1 / 3 - 0.1))
print("CE-4 grad (1/D) w_y (p - onehot):", r(-1 / 3), r(1 / 6))
print("CE-6 entropy of [1/4, 3/4]:", r(-(0.25 * log(0.25) + 0.75 * log(0.75))))
print("CE-7 sum 2 ln 2:", r(2 * ln2))

# Box pair pred [0,0,2,2], target [1,1,3,3] (xyxy): inter 1, union 7, A_c 9, rho2 2, diag2 18.
iou = 1 / (7 + eps)
print("BOX-3 IoU loss:", r(1 - iou))
print("BOX-4 GIoU loss:", r(1 - (iou - (9 - 7) / (9 + eps))))
print("BOX-5 DIoU loss:", r(1 - iou + 2 / (18 + eps)))
print("BOX-9 0.7 (1 - IoU):", r(0.7 * (1 - iou)))
# Gradients per (x1, y1, x2, y2) of the prediction (BOX-2 .. BOX-5, BOX-8).
d_inter = [0, 0, 1, 1]
d_union = [a - b for a, b in zip([-2, -2, 2, 2], d_inter)]  # d(w h) - d inter
d_iou = [(a - iou * b) / (7 + eps) for a, b in zip(d_inter, d_union)]
T, dA_c = (9 - 7) / (9 + eps), [-3, -3, 0, 0]
d_T = [(a - b - T * a) / (9 + eps) for a, b in zip(dA_c, d_union)]
R, d_rho2, d_diag2 = 2 / (18 + eps), [-1] * 4, [-6, -6, 0, 0]
d_R = [(a - R * b) / (18 + eps) for a, b in zip(d_rho2, d_diag2)]
g_iou = [-a for a in d_iou]
g_giou = [-a + b for a, b in zip(d_iou, d_T)]
g_diou = [-a + b for a, b in zip(d_iou, d_R)]
print("BOX-3 grad:", [r(x) for x in g_iou])
print("BOX-4 grad:", [r(x) for x in g_giou])
print("BOX-5 grad:", [r(x) for x in g_diou])
G = g_giou
print("BOX-1 cxcywh grad:", [r(G[0] + G[2]), r(G[1] + G[3]), r(0.5 * (G[2] - G[0])), r(0.5 * (G[3] - G[1]))])
print("BOX-9 grad:", [r(0.7 * x) for x in g_iou])

# Pair pred [0,0,2,1], target [0,0,1,2]: inter 1, union 3, A_c 4, rho2 0.5, cw = ch = 2.
iou2 = 1 / (3 + eps)
diou2 = 1 - iou2 + 0.5 / (8 + eps)
v = 4 / pi**2 * (atan(1 / 2) - atan(2 / 1)) ** 2
alpha = v / (1 - iou2 + v + eps)
print("pair 2 GIoU:", r(1 - (iou2 - (4 - 3) / (4 + eps))), " DIoU:", r(diou2))
print("pair 2 v:", r(v), " alpha:", r(alpha), " CIoU:", r(diou2 + alpha * v))
print("pair 2 EIoU:", r(1 - iou2 + 0.5 / (8 + eps) + 1 / (4 + eps) + 1 / (4 + eps)))

print("BIN-2 3 ln 2:", r(3 * ln2))
for y, alpha_t in ((0, 0.75), (1, 0.25)):  # BIN-3 / BIN-4 at x = 0, gamma 2
    p, ce = 0.5, ln2
    m = 1 - (p * y + (1 - p) * (1 - y))
    dm = -(2 * y - 1) * p * (1 - p)
    print(f"BIN-3 y={y} loss:", r(alpha_t * ce * m**2),
          " BIN-4 grad:", r(alpha_t * ((p - y) * m**2 + ce * 2 * m * dm)))
