//! The chunked kernels over pairs: a chunk of `CH` pairs through [`super::pair`], the detached
//! weights of the kernels with options, the block loop with its reduction, and the pairwise
//! IoU row. Split from `mod.rs` so each file stays readable; the math lives there.

use super::*;

/// BOX-23's detached focal weight `max(IoU, 0)^gamma` (`0^0 = 1`) of the kernels with options
/// (`M`), from the pair's IoU.
#[inline(always)]
fn focal_weight(iou: f32, prm: &PairParams) -> f32 {
    let pos = iou > 0.0;
    let e_focal = sel(pos, prm.gamma * ln_f32(iou), 0.0);
    let f_focal = sel(!pos, sel(prm.gamma == 0.0, 1.0, 0.0), 1.0);
    exp_f32(e_focal) * f_focal
}

/// BOX-24's Wise-IoU v3 focusing coefficient `r = (beta / delta) exp((delta - beta) ln alpha)`,
/// `beta = l_iou / mean`, of the pair's IoU loss `l_iou` (the IoU kernel's value, bit for bit;
/// 1 where that is not finite).
#[inline(always)]
fn focus_weight(l_iou: f32, prm: &PairParams) -> f32 {
    let beta = l_iou * prm.inv_mean;
    let finite = l_iou.is_finite();
    let e_focus = sel(finite, (prm.delta - beta) * prm.ln_alpha, 0.0);
    let f_focus = sel(finite, beta * prm.inv_delta, 1.0);
    exp_f32(e_focus) * f_focus
}

/// Multiplies the chunk's losses (and gradients when `G`) by [`focal_weight`]: the weights in
/// one loop over plain arrays (vectorised), then the products.
#[inline(always)]
fn apply_weight<const G: bool>(
    qi: &[f32; CH],
    prm: &PairParams,
    g: &mut [f32; 4 * CH],
    l: &mut [f32; CH],
) {
    let mut w = [0.0f32; CH];
    for j in 0..CH {
        w[j] = focal_weight(qi[j], prm);
    }
    for j in 0..CH {
        l[j] *= w[j];
    }
    if G {
        for (gj, wj) in g.chunks_exact_mut(4).zip(&w) {
            for v in gj {
                *v *= *wj;
            }
        }
    }
}

/// One chunk of `CH` pairs.
#[inline(always)]
fn chunk<
    K: KindMarker,
    F: FormatMarker,
    const G: bool,
    const M: bool,
    const X: bool,
    const A: bool,
    const I: bool,
    const W: bool,
>(
    p: &[f32; 4 * CH],
    t: &[f32; 4 * CH],
    c: &[f32; CH],
    prm: &PairParams,
    g: &mut [f32; 4 * CH],
    l: &mut [f32; CH],
) {
    // CIoU: the angle difference first, in its own loop, so that its long dependency chain
    // (division, polynomial) overlaps across pairs instead of stalling the main loop.
    // Shape-IoU: the target's shape weights (ww, hh) in their own loop too; with the default
    // scale 0 both are 1 (`|x|^0 = 1`, `0^0 = 1`: den = 2), with no power computed.
    // Two plain arrays, not `[[f32; 2]; CH]`: the pairs of the latter made the compiler
    // vectorise Shape-IoU's whole main loop four lanes wide instead of eight.
    let (mut sw_w, mut sw_h) = ([1.0f32; CH], [1.0f32; CH]);
    if matches!(K::KIND, BoxLossKind::ShapeIou) && prm.shape_scale != 0.0 {
        for j in 0..CH {
            let wg = axis::<F>(t[4 * j], t[4 * j + 2], t[4 * j], t[4 * j + 2]).wg;
            let hg = axis::<F>(t[4 * j + 1], t[4 * j + 3], t[4 * j + 1], t[4 * j + 3]).wg;
            let (pwg, phg) = (
                pow_pos(wg.abs(), prm.shape_scale),
                pow_pos(hg.abs(), prm.shape_scale),
            );
            let den = pwg + phg;
            let rden = safe_recip(den);
            sw_w[j] = sel(den > 0.0, 2.0 * pwg * rden, 1.0);
            sw_h[j] = sel(den > 0.0, 2.0 * phg * rden, 1.0);
        }
    }
    let mut qi = [0.0f32; CH];
    let mut dv = [0.0f32; CH];
    if matches!(K::KIND, BoxLossKind::Ciou) {
        let size = |b: &[f32; 4 * CH], j: usize, k: usize| {
            if matches!(F::FORMAT, BoxFormat::Xyxy) {
                b[4 * j + k + 2] - b[4 * j + k]
            } else {
                b[4 * j + k + 2]
            }
        };
        if M && prm.ciou_mmdet {
            // mmdetection's heights + eps (BOX-14); the test is outside the loop.
            let e = prm.eps;
            for (j, d) in dv.iter_mut().enumerate() {
                *d = atan_ratio_diff(
                    size(p, j, 0),
                    size(p, j, 1) + e,
                    size(t, j, 0),
                    size(t, j, 1) + e,
                );
            }
        } else {
            for (j, d) in dv.iter_mut().enumerate() {
                *d = atan_ratio_diff(size(p, j, 0), size(p, j, 1), size(t, j, 0), size(t, j, 1));
            }
        }
    }
    let mut redo = [false; CH];
    for j in 0..CH {
        let pp = [p[4 * j], p[4 * j + 1], p[4 * j + 2], p[4 * j + 3]];
        let tt = [t[4 * j], t[4 * j + 1], t[4 * j + 2], t[4 * j + 3]];
        let (mut loss, mut gr, q, r) =
            pair::<K, F, G, M, X, A, I, false>(pp, tt, c[j], dv[j], [sw_w[j], sw_h[j]], prm);
        if W {
            // Wise-IoU v3 (BOX-24): the detached focusing weight from the pair's own
            // `1 - IoU` (the IoU kernel's value, bit for bit), on the loss and the gradient
            // before they are stored.
            let w = focus_weight(q[1], prm);
            loss *= w;
            gr = gr.map(|v| v * w);
        }
        l[j] = loss;
        redo[j] = r;
        if M {
            qi[j] = q[0];
        }
        if G {
            g[4 * j] = gr[0];
            g[4 * j + 1] = gr[1];
            g[4 * j + 2] = gr[2];
            g[4 * j + 3] = gr[3];
        }
    }
    // SIoU: the pairs whose loss cancelled too far for the f32 distance cost, again with it in
    // f64 (one at a time: rare in training data, where boxes overlap or are near).
    if matches!(K::KIND, BoxLossKind::Siou) && redo.iter().any(|&r| r) {
        for j in (0..CH).filter(|&j| redo[j]) {
            let pp = [p[4 * j], p[4 * j + 1], p[4 * j + 2], p[4 * j + 3]];
            let tt = [t[4 * j], t[4 * j + 1], t[4 * j + 2], t[4 * j + 3]];
            let (loss, gr, q, _) =
                pair::<K, F, G, M, X, A, I, true>(pp, tt, c[j], dv[j], [sw_w[j], sw_h[j]], prm);
            l[j] = loss;
            if M {
                qi[j] = q[0];
            }
            if G {
                g[4 * j..4 * j + 4].copy_from_slice(&gr);
            }
        }
    }
    // The focal weight in a loop of its own, run only by the calls that have one (the `exp`
    // and `ln` are not paid by Focaler, Inner, alpha or mmdetection's CIoU alone).
    if M && prm.focal {
        apply_weight::<G>(&qi, prm, g, l);
    }
}

/// Fills the upstream factors of `r` pairs starting at pair `off` of the block.
#[inline(always)]
fn fill_up(c: &mut [f32; CH], up: Up<'_>, off: usize, r: usize) {
    if let Up::Per(u, s) = up {
        for j in 0..r {
            c[j] = (u[off + j] * s) as f32;
        }
    }
}

/// Runs one block of pairs: returns the (lane-ordered) sum of the weighted losses, writes the
/// gradient when `G` and per-pair losses when `losses` is given. alpha-IoU with an integer
/// power (`A`, `prm.alpha_int`) runs its own copy of the loops, with the powers multiplied out
/// (`I`), and so does Wise-IoU v3's focus (`W`); the tests are once per block, outside the
/// loops.
#[inline(always)]
pub(crate) fn block<
    K: KindMarker,
    F: FormatMarker,
    const G: bool,
    const M: bool,
    const X: bool,
    const A: bool,
>(
    pred: &[f32],
    target: &[f32],
    grad: Option<&mut [f32]>,
    up: Up<'_>,
    prm: &PairParams,
    losses: Option<&mut [f64]>,
) -> f64 {
    if A && prm.alpha_int {
        block_of::<K, F, G, M, X, A, true, false>(pred, target, grad, up, prm, losses)
    } else if matches!(K::KIND, BoxLossKind::Wiou) && prm.focus {
        block_of::<K, F, G, M, X, A, false, true>(pred, target, grad, up, prm, losses)
    } else {
        block_of::<K, F, G, M, X, A, false, false>(pred, target, grad, up, prm, losses)
    }
}

/// [`block`] with the integer powers (`I`) or without, with Wise-IoU v3's focusing weight
/// (`W`) or without.
#[inline(always)]
fn block_of<
    K: KindMarker,
    F: FormatMarker,
    const G: bool,
    const M: bool,
    const X: bool,
    const A: bool,
    const I: bool,
    const W: bool,
>(
    pred: &[f32],
    target: &[f32],
    mut grad: Option<&mut [f32]>,
    up: Up<'_>,
    prm: &PairParams,
    mut losses: Option<&mut [f64]>,
) -> f64 {
    let n = pred.len() / 4;
    let mut acc = [0.0f64; 8];
    let mut c = [match up {
        Up::Scalar(s) => s,
        Up::Per(..) => 0.0,
    }; CH];
    let mut l = [0.0f32; CH];
    let mut gl = [0.0f32; 4 * CH];
    let full = n / CH;
    for ci in 0..full {
        let off = ci * CH;
        let p: &[f32; 4 * CH] = pred[4 * off..4 * off + 4 * CH].try_into().unwrap();
        let t: &[f32; 4 * CH] = target[4 * off..4 * off + 4 * CH].try_into().unwrap();
        fill_up(&mut c, up, off, CH);
        match grad.as_deref_mut() {
            Some(g) if G => {
                let g: &mut [f32; 4 * CH] = (&mut g[4 * off..4 * off + 4 * CH]).try_into().unwrap();
                chunk::<K, F, G, M, X, A, I, W>(p, t, &c, prm, g, &mut l);
            }
            _ => chunk::<K, F, G, M, X, A, I, W>(p, t, &c, prm, &mut gl, &mut l),
        }
        accumulate(&mut acc, &l, CH);
        if let Some(out) = losses.as_deref_mut() {
            for (o, v) in out[off..off + CH].iter_mut().zip(&l) {
                *o = f64::from(*v);
            }
        }
    }
    let off = full * CH;
    let r = n - off;
    if r > 0 {
        let mut p = [0.0f32; 4 * CH];
        let mut t = [0.0f32; 4 * CH];
        p[..4 * r].copy_from_slice(&pred[4 * off..]);
        t[..4 * r].copy_from_slice(&target[4 * off..]);
        fill_up(&mut c, up, off, r);
        chunk::<K, F, G, M, X, A, I, W>(&p, &t, &c, prm, &mut gl, &mut l);
        if G && let Some(g) = grad {
            g[4 * off..].copy_from_slice(&gl[..4 * r]);
        }
        accumulate(&mut acc, &l, r);
        if let Some(out) = losses {
            for (o, v) in out[off..].iter_mut().zip(&l[..r]) {
                *o = f64::from(*v);
            }
        }
    }
    lanes_sum(&acc)
}

/// Pairwise IoU of one box `a` (format `F`, primitives) against `m` boxes given as
/// structure-of-arrays columns; writes one row of `out`.
#[inline(always)]
pub(crate) fn iou_row<F: FormatMarker>(a: [f32; 4], cols: &[Vec<f32>; 4], out: &mut [f32]) {
    let [b0, b1, b2, b3] = cols;
    let m = out.len();
    let (b0, b1, b2, b3) = (&b0[..m], &b1[..m], &b2[..m], &b3[..m]);
    // In the size formats the widths are read directly, so the one NaN the reference's corner
    // conversion adds must be added here: a non-finite position (x, y, cx or cy) makes
    // `x2 - x1` NaN there (`inf - inf`). An infinite width or height is an infinite area, as
    // in `xyxy` (NaN sizes propagate through the areas by themselves).
    let abad = zn(a[0]) + zn(a[1]);
    for j in 0..m {
        let ax = axis::<F>(a[0], a[2], b0[j], b2[j]);
        let ay = axis::<F>(a[1], a[3], b1[j], b3[j]);
        let (iw, _) = extents::<F>(&ax, a[0], a[2], b0[j], b2[j]);
        let (ih, _) = extents::<F>(&ay, a[1], a[3], b1[j], b3[j]);
        let iw = sel(iw > 0.0, iw, 0.0);
        let ih = sel(ih > 0.0, ih, 0.0);
        let inter = iw * ih;
        let mut union = ax.w * ay.w + ax.wg * ay.wg - inter;
        if !matches!(F::FORMAT, BoxFormat::Xyxy) {
            union += abad + (zn(b0[j]) + zn(b1[j]));
        }
        out[j] = sel(
            union > 0.0,
            inter / union,
            sel(union.is_nan(), f32::NAN, 0.0),
        );
    }
}
