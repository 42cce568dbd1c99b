//! One YOLO-style training step, repeated: a tiny linear head on a synthetic batch predicts,
//! per anchor point, a distribution over `REG_MAX` bins for each of its box's four side
//! distances (`l, t, r, b`, ultralytics' DFL head) and class logits. The step's loss is
//! ultralytics' sum of three terms, each computed with its gradient by one smoothloss call:
//!
//! * CIoU of the decoded boxes (the distributions' expected distances around the anchor) against
//!   the targets (`BoxLoss`, `xyxy`, per pair, weighted 7.5);
//! * the distribution focal loss of the side distributions (`DistributionFocal::ultralytics()`,
//!   ultralytics' `DFLoss(reg_max=16)`, per box, weighted 1.5);
//! * the varifocal loss of the class logits against the IoU-aware scores
//!   (`Varifocal::ultralytics()`, ultralytics' `VarifocalLoss(gamma=2, alpha=0.75)`, weighted
//!   0.5), the scores the detached IoU of each positive anchor's box.
//!
//! The CIoU gradient reaches the logits through the expectation (`d E[j] / d z_j = p_j (j - E)`),
//! the head's gradient is `features^T dlogits`, and Adam updates it; the loss falls over a few
//! hundred steps.
//!
//! ```text
//! cargo run -p smoothloss-examples --example yolo_step --release
//! ```

use smoothloss::prelude::*;

/// Bins per side distance (ultralytics' `reg_max`).
const REG_MAX: usize = 16;
/// Classes.
const CLASSES: usize = 3;
/// Features per anchor (the last is a constant 1: the bias).
const FEATURES: usize = 6;
/// Anchors in the batch.
const ANCHORS: usize = 96;
/// Outputs of the head per anchor: four distributions, then the class logits.
const OUT: usize = 4 * REG_MAX + CLASSES;

/// A deterministic generator for the synthetic batch.
struct Lcg(u64);

impl Lcg {
    fn unit(&mut self) -> f32 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 40) as f32) / (1u64 << 24) as f32
    }
}

/// The synthetic batch: features, anchor points, target boxes (`xyxy`), target side distances
/// and classes; anchors with `class = None` are background.
struct Batch {
    x: Vec<f32>,
    anchor: Vec<[f32; 2]>,
    target_box: Vec<[f32; 4]>,
    target_ltrb: Vec<[f32; 4]>,
    class: Vec<Option<usize>>,
}

fn batch() -> Batch {
    let mut r = Lcg(7);
    let mut b = Batch {
        x: Vec::new(),
        anchor: Vec::new(),
        target_box: Vec::new(),
        target_ltrb: Vec::new(),
        class: Vec::new(),
    };
    for a in 0..ANCHORS {
        let f: Vec<f32> = (0..FEATURES - 1).map(|_| 2.0 * r.unit() - 1.0).collect();
        // Side distances and class: functions of the features the linear head can learn.
        let ltrb = [
            7.0 + 4.0 * f[0] + 1.5 * f[1],
            7.0 - 3.0 * f[1] + 2.0 * f[2],
            7.0 + 3.5 * f[2] - 1.0 * f[3],
            7.0 - 4.0 * f[3] + 1.0 * f[4],
        ];
        let ltrb = ltrb.map(|d| d.clamp(0.5, REG_MAX as f32 - 1.5));
        let cls = if f[4] > 0.3 {
            None
        } else {
            Some(((f[0] + 1.0) * 1.5) as usize % CLASSES)
        };
        let anchor = [(a % 12) as f32 * 8.0 + 4.0, (a / 12) as f32 * 8.0 + 4.0];
        b.x.extend(&f);
        b.x.push(1.0);
        b.anchor.push(anchor);
        b.target_box.push([
            anchor[0] - ltrb[0],
            anchor[1] - ltrb[1],
            anchor[0] + ltrb[2],
            anchor[1] + ltrb[3],
        ]);
        b.target_ltrb.push(ltrb);
        b.class.push(cls);
    }
    b
}

/// Softmax of one distribution and its expected bin.
fn expectation(z: &[f32]) -> (Vec<f32>, f32) {
    let m = z.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    let e: Vec<f32> = z.iter().map(|v| (v - m).exp()).collect();
    let s: f32 = e.iter().sum();
    let p: Vec<f32> = e.iter().map(|v| v / s).collect();
    let d = p.iter().enumerate().map(|(j, pj)| j as f32 * pj).sum();
    (p, d)
}

/// The three loss terms of one step and the gradient of their weighted sum w.r.t. the logits.
fn step_loss(b: &Batch, logits: &[f32], grad: &mut [f32]) -> Result<[f64; 3], LossError> {
    let backend = DefaultBackend::default();
    grad.fill(0.0);
    let pos: Vec<usize> = (0..ANCHORS).filter(|&a| b.class[a].is_some()).collect();
    let np = pos.len();
    // Gather the positives' distributions and decode their boxes.
    let mut dist = Vec::with_capacity(np * 4 * REG_MAX);
    let mut probs = Vec::with_capacity(np * 4);
    let mut pred_box = Vec::with_capacity(np * 4);
    let (mut tbox, mut tltrb) = (Vec::new(), Vec::new());
    for &a in &pos {
        let row = &logits[a * OUT..a * OUT + 4 * REG_MAX];
        dist.extend_from_slice(row);
        let mut d = [0.0f32; 4];
        for s in 0..4 {
            let (p, e) = expectation(&row[s * REG_MAX..(s + 1) * REG_MAX]);
            probs.push(p);
            d[s] = e;
        }
        let [ax, ay] = b.anchor[a];
        pred_box.extend([ax - d[0], ay - d[1], ax + d[2], ay + d[3]]);
        tbox.extend(b.target_box[a]);
        tltrb.extend(b.target_ltrb[a]);
    }
    let per_pos = vec![1.0 / np as f64; np];
    // Per-item losses (`none`): `value()` is their plain sum, the upstream scales the gradient.
    // CIoU, per pair, with its gradient w.r.t. the decoded corners (weight 7.5).
    let box_up: Vec<f64> = per_pos.iter().map(|u| 7.5 * u).collect();
    let ciou = BoxLoss::new(BoxLossKind::Ciou, BoxFormat::Xyxy).with_reduction(Reduction::None);
    let mut gbox = vec![0.0f32; pred_box.len()];
    let l_box = backend
        .box_loss(
            &ciou,
            Input::new(&pred_box)
                .with_grad(&mut gbox)
                .with_upstream(Upstream::PerElement(&box_up)),
            &tbox,
        )?
        .value()
        / np as f64;
    // DFL, per box (ultralytics' DFLoss returns one value per box), weight 1.5.
    let dfl_up: Vec<f64> = per_pos.iter().map(|u| 1.5 * u).collect();
    let mut gdist = vec![0.0f32; dist.len()];
    let dfl_in = Input::matrix(&dist, 4 * np, REG_MAX)
        .with_grad(&mut gdist)
        .with_upstream(Upstream::PerElement(&dfl_up));
    let l_dfl = backend
        .distribution_focal(&DistributionFocal::ultralytics(), dfl_in, &tltrb)?
        .value()
        / np as f64;
    // The IoU-aware class scores: the detached IoU of each positive's box with its target.
    let iou_cfg = BoxLoss::new(BoxLossKind::Iou, BoxFormat::Xyxy).with_reduction(Reduction::None);
    let one_minus_iou = backend.box_loss(&iou_cfg, &pred_box, &tbox)?;
    let mut scores = vec![0.0f32; ANCHORS * CLASSES];
    let mut labels = vec![0.0f32; ANCHORS * CLASSES];
    for (k, &a) in pos.iter().enumerate() {
        let c = b.class[a].unwrap_or(0);
        labels[a * CLASSES + c] = 1.0;
        scores[a * CLASSES + c] = (1.0 - one_minus_iou.values()[k]).clamp(0.0, 1.0) as f32;
    }
    let cls: Vec<f32> = (0..ANCHORS)
        .flat_map(|a| logits[a * OUT + 4 * REG_MAX..(a + 1) * OUT].to_vec())
        .collect();
    let mut gcls = vec![0.0f32; cls.len()];
    let vfl_in = Input::new(&cls)
        .with_grad(&mut gcls)
        .with_upstream(Upstream::Scalar(0.5 / np as f64));
    let l_cls = backend
        .varifocal(&Varifocal::ultralytics(), vfl_in, (&scores, &labels))?
        .value()
        / np as f64;
    // Scatter: DFL and CIoU (through the expectation) into the distributions, VFL into classes.
    for (k, &a) in pos.iter().enumerate() {
        let g_side = [
            -gbox[4 * k],
            -gbox[4 * k + 1],
            gbox[4 * k + 2],
            gbox[4 * k + 3],
        ];
        for s in 0..4 {
            let p = &probs[4 * k + s];
            let e: f32 = p.iter().enumerate().map(|(j, pj)| j as f32 * pj).sum();
            for j in 0..REG_MAX {
                let o = a * OUT + s * REG_MAX + j;
                grad[o] = gdist[(4 * k + s) * REG_MAX + j] + g_side[s] * p[j] * (j as f32 - e);
            }
        }
    }
    for a in 0..ANCHORS {
        for c in 0..CLASSES {
            grad[a * OUT + 4 * REG_MAX + c] = gcls[a * CLASSES + c];
        }
    }
    Ok([l_box, l_dfl, l_cls])
}

/// Trains the head for `steps` Adam steps; returns the weighted total loss of every step.
pub fn train(steps: usize) -> Result<Vec<f64>, LossError> {
    let b = batch();
    let mut w = vec![0.0f32; FEATURES * OUT];
    let (mut m, mut v) = (vec![0.0f32; w.len()], vec![0.0f32; w.len()]);
    let (lr, b1, b2) = (0.05f32, 0.9f32, 0.999f32);
    let mut logits = vec![0.0f32; ANCHORS * OUT];
    let mut dlogits = vec![0.0f32; ANCHORS * OUT];
    let mut history = Vec::with_capacity(steps);
    for t in 1..=steps {
        // Forward: logits = x W.
        for a in 0..ANCHORS {
            for o in 0..OUT {
                logits[a * OUT + o] = (0..FEATURES)
                    .map(|f| b.x[a * FEATURES + f] * w[f * OUT + o])
                    .sum();
            }
        }
        let [l_box, l_dfl, l_cls] = step_loss(&b, &logits, &mut dlogits)?;
        let total = 7.5 * l_box + 1.5 * l_dfl + 0.5 * l_cls;
        if t == 1 || t % 50 == 0 {
            println!(
                "step {t:4}: loss {total:8.4}  (ciou {l_box:.4}, dfl {l_dfl:.4}, varifocal {l_cls:.4})"
            );
        }
        history.push(total);
        // Backward through the head and an Adam step.
        for f in 0..FEATURES {
            for o in 0..OUT {
                let g: f32 = (0..ANCHORS)
                    .map(|a| b.x[a * FEATURES + f] * dlogits[a * OUT + o])
                    .sum();
                let k = f * OUT + o;
                m[k] = b1 * m[k] + (1.0 - b1) * g;
                v[k] = b2 * v[k] + (1.0 - b2) * g * g;
                let mh = m[k] / (1.0 - b1.powi(t as i32));
                let vh = v[k] / (1.0 - b2.powi(t as i32));
                w[k] -= lr * mh / (vh.sqrt() + 1e-8);
            }
        }
    }
    Ok(history)
}

fn main() -> Result<(), LossError> {
    let h = train(300)?;
    println!(
        "loss: {:.4} at the first step, {:.4} at the last",
        h[0],
        h[h.len() - 1]
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    /// The example runs in `cargo test` (the example target has `test = true`): 300 steps, the
    /// loss falls to well under half of its start, every step finite.
    #[test]
    fn yolo_step_loss_goes_down() {
        let h = super::train(300).unwrap();
        assert!(h.iter().all(|v| v.is_finite()));
        let (first, last) = (h[0], h[h.len() - 1]);
        assert!(last < 0.5 * first, "loss {first} -> {last}");
    }
}
