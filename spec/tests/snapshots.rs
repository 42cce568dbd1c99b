//! insta snapshots of small, named cases per formula, human-readable, with loss and gradient.
//! Each case's comment gives the value worked out by hand from `spec/formulas/*.md`; the
//! snapshot files were reviewed against those hand values.

use smoothloss_core::{
    BceWithLogits, BoxFormat, BoxLoss, BoxLossKind, CeTargets, CrossEntropy, Huber, Reduction,
    SigmoidFocal, SmoothL1,
};
use smoothloss_core::{Input, Loss, Losses, ReferenceBackend};

fn fmt(v: &[f64]) -> String {
    let parts: Vec<String> = v.iter().map(|x| format!("{x:.6}")).collect();
    format!("[{}]", parts.join(", "))
}

fn ce(cfg: &CrossEntropy, z: &[f64], n: usize, c: usize, t: CeTargets<'_, f64>) -> String {
    let mut g = vec![0.0; z.len()];
    let l = ReferenceBackend
        .cross_entropy(cfg, Input::matrix(z, n, c).with_grad(&mut g), t)
        .map(Loss::into_values)
        .unwrap();
    format!("loss {}\ngrad {}", fmt(&l), fmt(&g))
}

fn boxes(cfg: &BoxLoss, p: &[f64], t: &[f64]) -> String {
    let mut g = vec![0.0; p.len()];
    let l = ReferenceBackend
        .box_loss(cfg, Input::new(p).with_grad(&mut g), t)
        .map(Loss::into_values)
        .unwrap();
    format!("loss {}\ngrad {}", fmt(&l), fmt(&g))
}

#[test]
fn snapshot_cross_entropy() {
    let mut out = String::new();
    // CE-2: logits [0, 0], target 0: loss ln 2 = 0.693147, grad [-0.5, 0.5].
    out += "CE-2 two equal logits, target 0\n";
    out += &ce(
        &CrossEntropy::new(),
        &[0.0, 0.0],
        1,
        2,
        CeTargets::Classes(&[0]),
    );
    // CE-3: uniform logits over 3 classes, eps 0.3: loss ln 3 = 1.098612 whatever the target;
    // grad p - q = [1/3 - 0.8, 1/3 - 0.1, 1/3 - 0.1] = [-0.466667, 0.233333, 0.233333].
    out += "\n\nCE-3 uniform logits, label smoothing 0.3\n";
    out += &ce(
        &CrossEntropy::new().with_label_smoothing(0.3),
        &[0.0; 3],
        1,
        3,
        CeTargets::Classes(&[0]),
    );
    // CE-4 / CE-7: weights [2, 1], rows targets 0 and 1 with equal logits, mean:
    // (2 ln2 + ln2) / (2 + 1) = ln 2; grads [-2/3*0.5... ] = row0 [-1/3, 1/3], row1 [1/6, -1/6].
    out += "\n\nCE-4 class weights [2, 1], weighted mean\n";
    out += &ce(
        &CrossEntropy::new().with_class_weights(vec![2.0, 1.0]),
        &[0.0; 4],
        2,
        2,
        CeTargets::Classes(&[0, 1]),
    );
    // CE-5: row 1 ignored: loss = row 0 alone = ln 2; row 1 gradient exactly 0.
    out += "\n\nCE-5 second row ignored, mean\n";
    out += &ce(
        &CrossEntropy::new(),
        &[0.0, 0.0, 5.0, -5.0],
        2,
        2,
        CeTargets::Classes(&[0, -100]),
    );
    // CE-6 / CE-9: logits [0, ln 3] give p = [0.25, 0.75]; target the same distribution:
    // loss = entropy = 0.562335, grad 0.
    out += "\n\nCE-6 probability targets equal to the prediction\n";
    out += &ce(
        &CrossEntropy::new(),
        &[0.0, 3f64.ln()],
        1,
        2,
        CeTargets::Probs(&[0.25, 0.75]),
    );
    // CE-7: reduction none and sum of the CE-2 row twice: [ln2, ln2] and 2 ln2 = 1.386294.
    out += "\n\nCE-7 reduction none\n";
    out += &ce(
        &CrossEntropy::new().with_reduction(Reduction::None),
        &[0.0; 4],
        2,
        2,
        CeTargets::Classes(&[0, 1]),
    );
    out += "\n\nCE-7 reduction sum\n";
    out += &ce(
        &CrossEntropy::new().with_reduction(Reduction::Sum),
        &[0.0; 4],
        2,
        2,
        CeTargets::Classes(&[0, 1]),
    );
    insta::assert_snapshot!(out);
}

#[test]
fn snapshot_box_losses() {
    // pred [0,0,2,2], target [1,1,3,3]: inter 1, union 7, IoU 1/7 = 0.142857; enclosing box
    // 3 x 3 = 9; centres (1,1), (2,2): rho^2 = 2, diagonal^2 = 18; same aspect ratio: v = 0.
    // BOX-3 IoU loss 6/7 = 0.857143; BOX-4 GIoU 1 - 1/7 + 2/9 = 1.079365; BOX-5 DIoU
    // 1 - 1/7 + 1/9 = 0.968254; BOX-6 CIoU = DIoU (v = 0); BOX-7 EIoU = DIoU (equal sizes).
    let p = [0.0, 0.0, 2.0, 2.0];
    let t = [1.0, 1.0, 3.0, 3.0];
    let mut out = String::new();
    for kind in BoxLossKind::ALL {
        out += &format!(
            "BOX {} xyxy, pred [0,0,2,2], target [1,1,3,3]\n",
            kind.as_str()
        );
        out += &boxes(&BoxLoss::new(kind, BoxFormat::Xyxy), &p, &t);
        out += "\n\n";
    }
    // BOX-1: the same pair in cxcywh, (1,1,2,2) and (2,2,2,2): identical GIoU loss.
    out += "BOX-1 giou cxcywh, the same pair\n";
    out += &boxes(
        &BoxLoss::new(BoxLossKind::Giou, BoxFormat::Cxcywh),
        &[1.0, 1.0, 2.0, 2.0],
        &[2.0, 2.0, 2.0, 2.0],
    );
    // BOX-9: IoU 1/7 < 0.5, so the weight is 1 - 0.3: IoU loss 0.7 * 6/7 = 0.6.
    out += "\n\nBOX-9 seed IouLoss(alpha 0.3, threshold 0.5), xyxy\n";
    let mut seed = smoothloss_core::BoxLoss::iou_loss(0.3, 0.5);
    seed.format = BoxFormat::Xyxy;
    out += &boxes(&seed, &p, &t);
    // BOX-13: box_iou of [0,0,2,2] with itself (1) and with [1,1,3,3] (1/7).
    let mut iou = [0.0; 2];
    ReferenceBackend
        .box_iou(
            BoxFormat::Xyxy,
            &p,
            &[0.0, 0.0, 2.0, 2.0, 1.0, 1.0, 3.0, 3.0],
            &mut iou,
        )
        .unwrap();
    out += &format!("\n\nBOX-13 box_iou\niou {}", fmt(&iou));
    insta::assert_snapshot!(out);
}

#[test]
fn snapshot_elementwise() {
    // d = pred - target = [-2, -0.5, 0, 0.5, 2]; beta = delta = 1:
    // REG-1 [1.5, 0.125, 0, 0.125, 1.5], REG-2 [-1, -0.5, 0, 0.5, 1]; Huber identical for
    // delta = 1 (REG-3, REG-4).
    let pred = [-2.0, -0.5, 0.0, 0.5, 2.0];
    let target = [0.0; 5];
    let none = Reduction::None;
    let mut g = [0.0; 5];
    let mut out = String::new();
    let l = ReferenceBackend
        .smooth_l1(
            &SmoothL1 {
                beta: 1.0,
                reduction: none,
            },
            Input::new(&pred).with_grad(&mut g),
            &target,
        )
        .map(Loss::into_values)
        .unwrap();
    out += &format!(
        "REG-1 smooth L1 beta 1\nloss {}\ngrad {}\n\n",
        fmt(&l),
        fmt(&g)
    );
    let l = ReferenceBackend
        .huber(
            &Huber {
                delta: 1.0,
                reduction: none,
            },
            Input::new(&pred).with_grad(&mut g),
            &target,
        )
        .map(Loss::into_values)
        .unwrap();
    out += &format!(
        "REG-3 Huber delta 1\nloss {}\ngrad {}\n\n",
        fmt(&l),
        fmt(&g)
    );
    // REG-5: mean of smooth L1 = 3.25 / 5 = 0.65, grads divided by 5.
    let l = ReferenceBackend
        .smooth_l1(
            &SmoothL1::default(),
            Input::new(&pred).with_grad(&mut g),
            &target,
        )
        .map(Loss::into_values)
        .unwrap();
    out += &format!(
        "REG-5 smooth L1 mean\nloss {}\ngrad {}\n\n",
        fmt(&l),
        fmt(&g)
    );
    // BIN-1 / BIN-2: x = 0: loss ln 2 for y = 0 and 1; grad sigmoid(0) - y = [0.5, -0.5];
    // pos_weight 3 on y = 1: loss 3 ln 2 = 2.079442, grad 0.5 * 3 - 3 = -1.5.
    let x = [0.0, 0.0];
    let y = [0.0, 1.0];
    let mut g2 = [0.0; 2];
    let l = ReferenceBackend
        .bce_with_logits(
            &BceWithLogits {
                pos_weight: None,
                reduction: none,
            },
            Input::new(&x).with_grad(&mut g2),
            &y,
        )
        .map(Loss::into_values)
        .unwrap();
    out += &format!(
        "BIN-1 BCE with logits\nloss {}\ngrad {}\n\n",
        fmt(&l),
        fmt(&g2)
    );
    let l = ReferenceBackend
        .bce_with_logits(
            &BceWithLogits {
                pos_weight: Some(vec![3.0]),
                reduction: none,
            },
            Input::new(&x).with_grad(&mut g2),
            &y,
        )
        .map(Loss::into_values)
        .unwrap();
    out += &format!(
        "BIN-2 BCE with pos_weight 3\nloss {}\ngrad {}\n\n",
        fmt(&l),
        fmt(&g2)
    );
    // BIN-3 / BIN-4: x = 0, p = 0.5, p_t = 0.5: loss = alpha_t * ln2 * 0.25 with alpha_t 0.75
    // (y = 0) and 0.25 (y = 1): [0.129965, 0.043322].
    let l = ReferenceBackend
        .sigmoid_focal(
            &SigmoidFocal {
                alpha: 0.25,
                gamma: 2.0,
                reduction: none,
            },
            Input::new(&x).with_grad(&mut g2),
            &y,
        )
        .map(Loss::into_values)
        .unwrap();
    out += &format!(
        "BIN-3 sigmoid focal alpha 0.25 gamma 2\nloss {}\ngrad {}",
        fmt(&l),
        fmt(&g2)
    );
    insta::assert_snapshot!(out);
}
