//! Moves predicted boxes onto their targets by gradient descent on the box coordinates, once
//! with the CIoU loss (corners, `xyxy`) and once with the seed article's `IouLoss` (IoU loss
//! over `cxcywh` boxes, pairs below the IoU threshold down-weighted by `1 - alpha`). The
//! gradient comes from the loss call itself; the loss falls (with a fixed step it jitters a
//! little once the boxes nearly match).
//!
//! ```text
//! cargo run -p smoothloss-examples --example box_regression --release
//! ```

use smoothloss::prelude::*;

/// Target boxes as corners `(x1, y1, x2, y2)`.
const TARGETS: [[f32; 4]; 4] = [
    [10.0, 10.0, 50.0, 40.0],
    [60.0, 20.0, 90.0, 80.0],
    [5.0, 60.0, 30.0, 95.0],
    [40.0, 45.0, 70.0, 70.0],
];

/// Starting predictions: shifted, scaled and squashed versions of the targets. They overlap
/// their targets, so that even the plain IoU loss has a gradient from the start.
const START: [[f32; 4]; 4] = [
    [18.0, 4.0, 62.0, 30.0],
    [52.0, 35.0, 80.0, 70.0],
    [10.0, 50.0, 28.0, 75.0],
    [45.0, 38.0, 85.0, 60.0],
];

fn to_cxcywh(b: [f32; 4]) -> [f32; 4] {
    [
        0.5 * (b[0] + b[2]),
        0.5 * (b[1] + b[3]),
        b[2] - b[0],
        b[3] - b[1],
    ]
}

/// Plain gradient descent on the predicted coordinates; returns the loss per step.
fn descend(
    backend: &DefaultBackend,
    name: &str,
    cfg: &BoxLoss,
    mut pred: Vec<f32>,
    target: &[f32],
    lr: f32,
    steps: usize,
) -> Result<Vec<f64>, LossError> {
    println!(
        "\n{name} ({:?} boxes, {} pairs, lr {lr}):",
        cfg.format,
        target.len() / 4
    );
    let mut grad = vec![0.0_f32; pred.len()];
    let mut losses = Vec::with_capacity(steps);
    for step in 0..steps {
        // Mean loss over the pairs and its gradient with respect to `pred`, in one call.
        let loss = backend
            .box_loss(cfg, Input::new(&pred).with_grad(&mut grad), target)?
            .value();
        losses.push(loss);
        if step % 30 == 0 || step + 1 == steps {
            println!("  step {step:3}: loss {loss:.5}");
        }
        for (p, g) in pred.iter_mut().zip(&grad) {
            *p -= lr * g;
        }
    }
    let mut ious = vec![0.0_f32; pred.len() / 4];
    // Final IoU of each pair with its own target: the diagonal of the pairwise IoU.
    let n = ious.len();
    let mut all = vec![0.0_f32; n * n];
    backend.box_iou(cfg.format, &pred, target, &mut all)?;
    for (i, v) in ious.iter_mut().enumerate() {
        *v = all[i * n + i];
    }
    println!("  final IoU per pair: {ious:.3?}");
    Ok(losses)
}

fn main() -> Result<(), LossError> {
    let backend = DefaultBackend::default();
    let steps = 300;

    // CIoU on corner boxes.
    let ciou = BoxLoss::new(BoxLossKind::Ciou, BoxFormat::Xyxy);
    let target: Vec<f32> = TARGETS.iter().flatten().copied().collect();
    let start: Vec<f32> = START.iter().flatten().copied().collect();
    let ciou_losses = descend(&backend, "CIoU loss", &ciou, start, &target, 20.0, steps)?;

    // The seed's IouLoss(alpha = 0.1, threshold = 0.5) on centre-size boxes.
    let seed = BoxLoss::iou_loss(0.1, 0.5);
    let target: Vec<f32> = TARGETS.iter().flat_map(|b| to_cxcywh(*b)).collect();
    let start: Vec<f32> = START.iter().flat_map(|b| to_cxcywh(*b)).collect();
    let iou_losses = descend(
        &backend,
        "seed IouLoss(alpha 0.1, threshold 0.5)",
        &seed,
        start,
        &target,
        20.0,
        steps,
    )?;

    for (name, l) in [("CIoU", &ciou_losses), ("IouLoss", &iou_losses)] {
        let (first, last) = (l[0], l[l.len() - 1]);
        println!("{name}: loss {first:.5} -> {last:.5}");
        assert!(
            last < 0.25 * first,
            "{name}: the loss should fall well below its start"
        );
    }
    Ok(())
}
