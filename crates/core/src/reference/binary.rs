//! Reference BCE with logits and sigmoid focal loss (`BIN-1` .. `BIN-5`).

use crate::binary::{BceWithLogits, SigmoidFocal};
use crate::call::Loss;
use crate::plan::{LossConfig, PairCall, Parts};

/// Logistic sigmoid without overflow for large `|x|`.
pub fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// `-log(1 - sigmoid(x)) = max(x, 0) + log1p(exp(-|x|))`, finite for every finite `x`.
pub fn softplus(x: f64) -> f64 {
    x.max(0.0) + (-x.abs()).exp().ln_1p()
}

/// BCE with logits of one element (`BIN-1`) and its derivative (`BIN-2`), positive weight `pw`:
/// `loss = pw y softplus(-x) + (1 - y) softplus(x)` (= `-[pw y log s + (1 - y) log(1 - s)]`,
/// `s = sigmoid(x)`), where a term whose coefficient is 0 is 0 even when its softplus is
/// infinite (so `x = +inf, y = 1` gives 0, not `0 * inf`);
/// `dloss/dx = sigmoid(x) (pw y + 1 - y) - pw y`.
pub fn bce_element(x: f64, y: f64, pw: f64) -> (f64, f64) {
    let term = |coef: f64, sp: f64| if coef == 0.0 { 0.0 } else { coef * sp };
    let loss = term(pw * y, softplus(-x)) + term(1.0 - y, softplus(x));
    let d = sigmoid(x) * (pw * y + 1.0 - y) - pw * y;
    (loss, d)
}

/// Sigmoid focal loss of one element (`BIN-3`) and its derivative (`BIN-4`).
pub fn focal_element(x: f64, y: f64, alpha: f64, gamma: f64) -> (f64, f64) {
    let p = sigmoid(x);
    let (ce, dce) = bce_element(x, y, 1.0);
    let pt = p * y + (1.0 - p) * (1.0 - y);
    let one_m = 1.0 - pt;
    let modulator = one_m.powf(gamma);
    // d(1 - p_t)/dx = -(2y - 1) p (1 - p); d(one_m^gamma) is taken as 0 when gamma = 0 or
    // one_m = 0 (PyTorch's pow backward for exponent 0; the limit for gamma >= 1).
    let dmod = if gamma == 0.0 || one_m == 0.0 {
        0.0
    } else {
        gamma * one_m.powf(gamma - 1.0) * (-(2.0 * y - 1.0) * p * (1.0 - p))
    };
    let mut loss = ce * modulator;
    // A zero `dmod` contributes 0 even when `ce` is infinite (`x = +inf, y = 0` and mirrored):
    // the limit, since `dmod` decays like `exp(-|x|)` while `ce` grows like `|x|` (`BIN-4`).
    let mut d = dce * modulator + if dmod == 0.0 { 0.0 } else { ce * dmod };
    if alpha >= 0.0 {
        let at = alpha * y + (1.0 - alpha) * (1.0 - y);
        loss *= at;
        d *= at;
    }
    (loss, d)
}

/// Shared loop of the binary losses: `f(i, x, y) -> (loss, dloss/dx)`, then the reduction
/// (`BIN-5`).
fn elementwise<C: LossConfig>(
    call: PairCall<'_, C, f64>,
    f: impl Fn(&C, usize, f64, f64) -> (f64, f64),
) -> Loss {
    let Parts {
        plan,
        io,
        with: targets,
        upstream,
    } = call.into_parts();
    let parts: Vec<(f64, f64)> = io
        .input()
        .iter()
        .zip(targets)
        .enumerate()
        .map(|(i, (&x, &y))| f(plan.cfg, i, x, y))
        .collect();
    let n = parts.len();
    let scale = plan.count_scale();
    if io.grad_dest().wanted() {
        let g: Vec<f64> = parts
            .iter()
            .enumerate()
            .map(|(i, (_, d))| plan.item_scale(&upstream, scale, i) * d)
            .collect();
        io.write_grad_f64(&g);
    }
    plan.reduce(parts.into_iter().map(|(l, _)| l).collect(), n as f64)
}

/// Reference `binary_cross_entropy_with_logits`.
pub fn bce_with_logits(call: PairCall<'_, BceWithLogits, f64>) -> Loss {
    elementwise(call, |cfg, i, x, y| {
        let pw = cfg.pos_weight.as_ref().map_or(1.0, |w| w[i % w.len()]);
        bce_element(x, y, pw)
    })
}

/// Reference `torchvision.ops.sigmoid_focal_loss`.
pub fn sigmoid_focal(call: PairCall<'_, SigmoidFocal, f64>) -> Loss {
    elementwise(call, |cfg, _, x, y| {
        focal_element(x, y, cfg.alpha, cfg.gamma)
    })
}
