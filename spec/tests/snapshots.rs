//! insta snapshots of small, named cases per formula, human-readable, with loss and gradient.
//!
//! Every case also asserts its value worked out by hand from `spec/formulas/*.md`: the comment
//! above it gives the derivation, and the literal is that derivation evaluated in float64
//! (python3, `math` module only, written from the formulas, not from this program's output;
//! `python3 spec/tests/hand_values.py` prints them all).
//! Hand values are held to `TOL-1` ([`HAND`]): like PyTorch's float64 results, they are an
//! independent float64 evaluation of the same formula. The box cases keep torchvision's
//! `eps = 1e-7` in their derivations, since it moves the values by more than `TOL-1` allows.

use smoothloss_core::{
    BceWithLogits, BoxFormat, BoxLoss, BoxLossKind, CrossEntropy, Huber, Reduction,
    ReferenceBackend, SigmoidFocal, SmoothL1,
};
use smoothloss_spec::cases::Targets;
use smoothloss_spec::{LossCall, Output, Tolerance, covers, kit, run_call};

/// Hand values are compared at `TOL-1`.
const HAND: Tolerance = Tolerance::REFERENCE;

fn fmt(v: &[f64]) -> String {
    let parts: Vec<String> = v.iter().map(|x| format!("{x:.6}")).collect();
    format!("[{}]", parts.join(", "))
}

/// Runs `call` on the reference (upstream gradient 1, gradient requested), asserts the hand
/// values and returns the snapshot text.
#[track_caller]
fn checked(call: LossCall, loss: &[f64], grad: &[f64]) -> String {
    let out: Output = run_call::<f64, _>(&ReferenceBackend, &call).unwrap();
    let g = out.grad.clone().unwrap_or_default();
    kit::assert_close(&out.loss, loss, HAND);
    kit::assert_close(&g, grad, HAND);
    format!("loss {}\ngrad {}", fmt(&out.loss), fmt(&g))
}

fn ce(cfg: CrossEntropy, logits: &[f64], rows: usize, targets: Targets) -> LossCall {
    LossCall::CrossEntropy {
        cfg,
        logits: logits.to_vec(),
        rows,
        classes: logits.len() / rows,
        targets,
    }
}

const LN2: f64 = std::f64::consts::LN_2;

#[test]
fn snapshot_cross_entropy() {
    covers!(
        "CE-2", "CE-3", "CE-4", "CE-5", "CE-6", "CE-7", "CE-8", "CE-9"
    );
    let mut out = String::new();
    // CE-2 / CE-8: logits [0, 0], target 0: p = [1/2, 1/2], loss -ln(1/2) = ln 2,
    // grad p - onehot(0) = [-0.5, 0.5].
    out += "CE-2 two equal logits, target 0\n";
    out += &checked(
        ce(
            CrossEntropy::new(),
            &[0.0, 0.0],
            1,
            Targets::Classes(vec![0]),
        ),
        &[LN2],
        &[-0.5, 0.5],
    );
    // CE-3 / CE-8: uniform logits over 3 classes, eps 0.3: every -log p_j = ln 3, so the loss is
    // (1 - eps) ln 3 + (eps / 3) 3 ln 3 = ln 3 = 1.0986122886681098 whatever the target;
    // grad p - q = [1/3 - 0.8, 1/3 - 0.1, 1/3 - 0.1] = [-0.46666666666666673, 0.2333333333333333,
    // 0.2333333333333333].
    out += "\n\nCE-3 uniform logits, label smoothing 0.3\n";
    out += &checked(
        ce(
            CrossEntropy::new().with_label_smoothing(0.3),
            &[0.0; 3],
            1,
            Targets::Classes(vec![0]),
        ),
        &[1.0986122886681098],
        &[-0.46666666666666673, 0.2333333333333333, 0.2333333333333333],
    );
    // CE-4 / CE-7 / CE-8: weights [2, 1], rows with targets 0 and 1 and equal logits, mean:
    // row losses 2 ln 2 and 1 ln 2, D = w_0 + w_1 = 3, loss (2 ln 2 + ln 2) / 3 = ln 2; grad
    // (1 / D) w_y (p - onehot(y)): row 0 (2/3) [-0.5, 0.5] = [-1/3, 1/3], row 1
    // (1/3) [0.5, -0.5] = [1/6, -1/6].
    out += "\n\nCE-4 class weights [2, 1], weighted mean\n";
    out += &checked(
        ce(
            CrossEntropy::new().with_class_weights(vec![2.0, 1.0]),
            &[0.0; 4],
            2,
            Targets::Classes(vec![0, 1]),
        ),
        &[LN2],
        &[
            -0.3333333333333333,
            0.3333333333333333,
            0.16666666666666666,
            -0.16666666666666666,
        ],
    );
    // CE-5 / CE-7: row 1 ignored: D = 1, loss = row 0 alone = ln 2; row 1 gradient exactly 0.
    out += "\n\nCE-5 second row ignored, mean\n";
    out += &checked(
        ce(
            CrossEntropy::new(),
            &[0.0, 0.0, 5.0, -5.0],
            2,
            Targets::Classes(vec![0, -100]),
        ),
        &[LN2],
        &[-0.5, 0.5, 0.0, 0.0],
    );
    // CE-6 / CE-9: logits [0, ln 3] give p = [1/4, 3/4]; target the same distribution q:
    // loss -(0.25 ln 0.25 + 0.75 ln 0.75) = 0.5623351446188083 (the entropy of q),
    // grad p (sum_k q_k) - q = 0.
    out += "\n\nCE-6 probability targets equal to the prediction\n";
    out += &checked(
        ce(
            CrossEntropy::new(),
            &[0.0, 3f64.ln()],
            1,
            Targets::Probs(vec![0.25, 0.75]),
        ),
        &[0.5623351446188083],
        &[0.0, 0.0],
    );
    // CE-7: reduction none and sum of two CE-2 rows (targets 0 and 1): [ln 2, ln 2] and
    // 2 ln 2 = 1.3862943611198906; gradient scale 1 for both: [-0.5, 0.5, 0.5, -0.5].
    out += "\n\nCE-7 reduction none\n";
    out += &checked(
        ce(
            CrossEntropy::new().with_reduction(Reduction::None),
            &[0.0; 4],
            2,
            Targets::Classes(vec![0, 1]),
        ),
        &[LN2, LN2],
        &[-0.5, 0.5, 0.5, -0.5],
    );
    out += "\n\nCE-7 reduction sum\n";
    out += &checked(
        ce(
            CrossEntropy::new().with_reduction(Reduction::Sum),
            &[0.0; 4],
            2,
            Targets::Classes(vec![0, 1]),
        ),
        &[1.3862943611198906],
        &[-0.5, 0.5, 0.5, -0.5],
    );
    insta::assert_snapshot!(out);
}

fn box_call(cfg: BoxLoss, pred: &[f64], target: &[f64]) -> LossCall {
    LossCall::BoxLoss {
        cfg,
        pred: pred.to_vec(),
        target: target.to_vec(),
    }
}

#[test]
fn snapshot_box_losses() {
    covers!(
        "BOX-1", "BOX-2", "BOX-3", "BOX-4", "BOX-5", "BOX-6", "BOX-7", "BOX-8", "BOX-9", "BOX-13"
    );
    // pred [0,0,2,2], target [1,1,3,3], eps 1e-7 (BOX-2): inter 1 x 1 = 1, union 4 + 4 - 1 = 7,
    // IoU = 1 / (7 + eps) = 0.14285714081632656. Enclosing box 3 x 3, A_c = 9; centres (1,1)
    // and (2,2): rho2 = 2, diag2 = 9 + 9 + eps; same size, so v = 0 and (w - wg) = (h - hg) = 0.
    // BOX-3 IoU loss 1 - IoU = 0.8571428591836734;
    // BOX-4 GIoU 1 - (IoU - (9 - 7) / (9 + eps)) = 1.07936507893676;
    // BOX-5 DIoU 1 - IoU + 2 / (18 + eps) = 0.9682539696775005;
    // BOX-6 CIoU = DIoU (v = 0, alpha = 0); BOX-7 EIoU = DIoU (the size terms are 0).
    // Gradients (BOX-8, no ties: xk1 = x1g, xk2 = x2, xc1 = x1, xc2 = x2g), per (x1, y1, x2, y2):
    // d inter = [0, 0, 1, 1], d(w h) = [-2, -2, 2, 2], d union = [-2, -2, 1, 1],
    // dIoU = (d inter - IoU d union) / (7 + eps); IoU: -dIoU
    // = [-0.040816325364431506 x2, -0.12244897813411079 x2].
    // GIoU: T = 2 / (9 + eps), dA_c = [-3, -3, 0, 0], dT = (dA_c - d union - T dA_c) / (9 + eps),
    // -dIoU + dT = [-0.07785336281299116 x2, -0.23356008801065403 x2].
    // DIoU: R = 2 / (18 + eps), d rho2 = [-1, -1, -1, -1], d diag2 = [-6, -6, 0, 0],
    // dR = (d rho2 - R d diag2) / (18 + eps), -dIoU + dR = [-0.05933484398583068 x2,
    // -0.17800453338102437 x2]; CIoU and EIoU add terms whose derivative is 0 here (dv has the
    // factor atan(wg/hg) - atan(w/h) = 0; dE_w has (w - wg) and E_w = 0).
    let p = [0.0, 0.0, 2.0, 2.0];
    let t = [1.0, 1.0, 3.0, 3.0];
    let g_iou = [-0.040816325364431506, -0.12244897813411079];
    let g_giou = [-0.07785336281299116, -0.23356008801065403];
    let g_diou = [-0.05933484398583068, -0.17800453338102437];
    let mut out = String::new();
    for kind in BoxLossKind::TORCHVISION {
        let (loss, g) = match kind {
            BoxLossKind::Iou => (0.8571428591836734, g_iou),
            BoxLossKind::Giou => (1.07936507893676, g_giou),
            BoxLossKind::Diou | BoxLossKind::Ciou | BoxLossKind::Eiou => {
                (0.9682539696775005, g_diou)
            }
            other => unreachable!("{other:?} is not a torchvision kind"),
        };
        out += &format!(
            "BOX {} xyxy, pred [0,0,2,2], target [1,1,3,3]\n",
            kind.as_str()
        );
        out += &checked(
            box_call(BoxLoss::new(kind, BoxFormat::Xyxy), &p, &t),
            &[loss],
            &[g[0], g[0], g[1], g[1]],
        );
        out += "\n\n";
    }
    // BOX-1: the same pair in cxcywh, (1,1,2,2) and (2,2,2,2): identical GIoU loss; gradient by
    // the chain rule from the xyxy one G: [G_x1 + G_x2, G_y1 + G_y2, (G_x2 - G_x1) / 2,
    // (G_y2 - G_y1) / 2] = [-0.3114134508236452 x2, -0.07785336259883144 x2].
    out += "BOX-1 giou cxcywh, the same pair\n";
    out += &checked(
        box_call(
            BoxLoss::new(BoxLossKind::Giou, BoxFormat::Cxcywh),
            &[1.0, 1.0, 2.0, 2.0],
            &[2.0, 2.0, 2.0, 2.0],
        ),
        &[1.07936507893676],
        &[
            -0.3114134508236452,
            -0.3114134508236452,
            -0.07785336259883144,
            -0.07785336259883144,
        ],
    );
    // BOX-9: IoU 1 / (7 + eps) < 0.5, so the weight is 1 - 0.3: loss 0.7 (1 - IoU)
    // = 0.6000000014285714, gradient 0.7 times the IoU loss's:
    // [-0.028571427755102054 x2, -0.08571428469387755 x2].
    out += "\n\nBOX-9 seed IouLoss(alpha 0.3, threshold 0.5), xyxy\n";
    let mut seed = BoxLoss::iou_loss(0.3, 0.5);
    seed.format = BoxFormat::Xyxy;
    out += &checked(
        box_call(seed, &p, &t),
        &[0.6000000014285714],
        &[
            -0.028571427755102054,
            -0.028571427755102054,
            -0.08571428469387755,
            -0.08571428469387755,
        ],
    );
    // BOX-13: box_iou (no eps) of [0,0,2,2] with itself (4 / 4 = 1) and with [1,1,3,3] (1 / 7).
    let iou = run_call::<f64, _>(
        &ReferenceBackend,
        &LossCall::BoxIou {
            format: BoxFormat::Xyxy,
            boxes1: p.to_vec(),
            boxes2: vec![0.0, 0.0, 2.0, 2.0, 1.0, 1.0, 3.0, 3.0],
        },
    )
    .unwrap()
    .loss;
    kit::assert_close(&iou, &[1.0, 1.0 / 7.0], HAND);
    out += &format!("\n\nBOX-13 box_iou\niou {}", fmt(&iou));
    insta::assert_snapshot!(out);
}

/// The pair of `snapshot_box_losses` has `v = 0` and equal sizes, so CIoU and EIoU reduce to
/// DIoU there; this pair tells them apart (loss values only: the pair has ties of min/max, whose
/// gradients `BOX-8` splits, checked by the finite-difference property instead).
#[test]
fn box_losses_differ_when_shapes_differ() {
    covers!("BOX-4", "BOX-5", "BOX-6", "BOX-7");
    // pred [0,0,2,1] (w 2, h 1), target [0,0,1,2] (wg 1, hg 2), eps 1e-7: inter 1, union 3,
    // IoU = 1 / (3 + eps); enclosing 2 x 2: cw = ch = 2, A_c = 4; centres (1, 0.5), (0.5, 1):
    // rho2 = 0.5, diag2 = 8 + eps.
    // GIoU 1 - (IoU - (4 - 3) / (4 + eps)) = 0.9166666715277776;
    // DIoU 1 - IoU + 0.5 / (8 + eps) = 0.7291666769965275;
    // CIoU: v = (4 / pi^2) (atan(1/2) - atan(2))^2 = 0.16782584597716224,
    // alpha = v / (1 - IoU + v + eps) = 0.20111123957213867, DIoU + alpha v = 0.7629183409132374;
    // EIoU: 1 - IoU + 0.5 / (8 + eps) + (2 - 1)^2 / (4 + eps) + (1 - 2)^2 / (4 + eps)
    // = 1.2291666644965278.
    let want = [
        (BoxLossKind::Giou, 0.9166666715277776),
        (BoxLossKind::Diou, 0.7291666769965275),
        (BoxLossKind::Ciou, 0.7629183409132374),
        (BoxLossKind::Eiou, 1.2291666644965278),
    ];
    for (kind, loss) in want {
        let call = box_call(
            BoxLoss::new(kind, BoxFormat::Xyxy),
            &[0.0, 0.0, 2.0, 1.0],
            &[0.0, 0.0, 1.0, 2.0],
        );
        let out = run_call::<f64, _>(&ReferenceBackend, &call).unwrap();
        kit::assert_close(&out.loss, &[loss], HAND);
    }
}

#[test]
fn snapshot_elementwise() {
    covers!(
        "REG-1", "REG-2", "REG-3", "REG-4", "REG-5", "BIN-1", "BIN-2", "BIN-3", "BIN-4"
    );
    // d = pred - target = [-2, -0.5, 0, 0.5, 2]; beta = delta = 1:
    // REG-1 |d| - 0.5 outside, 0.5 d^2 inside: [1.5, 0.125, 0, 0.125, 1.5];
    // REG-2 sign(d) outside, d inside: [-1, -0.5, 0, 0.5, 1]; Huber identical for delta = 1
    // (REG-3, REG-4).
    let pred = [-2.0, -0.5, 0.0, 0.5, 2.0];
    let target = [0.0; 5];
    let l_reg = [1.5, 0.125, 0.0, 0.125, 1.5];
    let g_reg = [-1.0, -0.5, 0.0, 0.5, 1.0];
    let none = Reduction::None;
    let mut out = String::new();
    let (p, t) = (pred.to_vec(), target.to_vec());
    out += "REG-1 smooth L1 beta 1\n";
    out += &checked(
        LossCall::SmoothL1 {
            cfg: SmoothL1 {
                beta: 1.0,
                reduction: none,
            },
            pred: p.clone(),
            target: t.clone(),
        },
        &l_reg,
        &g_reg,
    );
    out += "\n\nREG-3 Huber delta 1\n";
    out += &checked(
        LossCall::Huber {
            cfg: Huber {
                delta: 1.0,
                reduction: none,
            },
            pred: p.clone(),
            target: t.clone(),
        },
        &l_reg,
        &g_reg,
    );
    // REG-5: mean of smooth L1 = 3.25 / 5 = 0.65, grads divided by 5.
    out += "\n\nREG-5 smooth L1 mean\n";
    out += &checked(
        LossCall::SmoothL1 {
            cfg: SmoothL1::default(),
            pred: p,
            target: t,
        },
        &[0.65],
        &[-0.2, -0.1, 0.0, 0.1, 0.2],
    );
    // BIN-1 / BIN-2: x = 0: loss softplus(0) = ln 2 for y = 0 and 1; grad sigmoid(0) - y =
    // [0.5, -0.5]; pos_weight 3 on y = 1: loss 3 ln 2 = 2.0794415416798357, grad
    // 0.5 (3 + 0) - 3 = -1.5.
    let x = vec![0.0, 0.0];
    let y = vec![0.0, 1.0];
    out += "\n\nBIN-1 BCE with logits\n";
    out += &checked(
        LossCall::Bce {
            cfg: BceWithLogits {
                pos_weight: None,
                reduction: none,
            },
            logits: x.clone(),
            targets: y.clone(),
        },
        &[LN2, LN2],
        &[0.5, -0.5],
    );
    out += "\n\nBIN-2 BCE with pos_weight 3\n";
    out += &checked(
        LossCall::Bce {
            cfg: BceWithLogits {
                pos_weight: Some(vec![3.0]),
                reduction: none,
            },
            logits: x.clone(),
            targets: y.clone(),
        },
        &[LN2, 2.0794415416798357],
        &[0.5, -1.5],
    );
    // BIN-3 / BIN-4: x = 0, p = 0.5, ce = ln 2, p_t = 0.5, m = 1 - p_t = 0.5, gamma 2, alpha 0.25:
    // loss alpha_t ce m^2 with alpha_t = 0.75 (y = 0) and 0.25 (y = 1):
    // [0.75 ln 2 / 4, 0.25 ln 2 / 4] = [0.12996509635498973, 0.04332169878499658].
    // Gradient alpha_t (dce m^2 + ce gamma m dm/dx), dce = p - y, dm/dx = -(2y - 1) p (1 - p):
    // y = 0: 0.75 (0.5 / 4 + ln 2 * 2 * 0.5 * 0.25) = 0.22371509635498976;
    // y = 1: 0.25 (-0.5 / 4 - ln 2 * 2 * 0.5 * 0.25) = -0.07457169878499659.
    out += "\n\nBIN-3 sigmoid focal alpha 0.25 gamma 2\n";
    out += &checked(
        LossCall::Focal {
            cfg: SigmoidFocal {
                alpha: 0.25,
                gamma: 2.0,
                reduction: none,
            },
            logits: x,
            targets: y,
        },
        &[0.12996509635498973, 0.04332169878499658],
        &[0.22371509635498976, -0.07457169878499659],
    );
    insta::assert_snapshot!(out);
}
