//! The 16-byte vector paths of the element-wise and box kernels (v2, issue 16 finding 6)
//! against their scalar paths: the same buffers placed on a 16-byte boundary (vector loads and
//! stores) and 4 bytes past one (one element at a time) give the same bits for every
//! per-element loss and gradient entry, also with one block (several vectors and elements per
//! thread, BCE's positive weights advanced incrementally across iterations); and the
//! reductions agree with the reference (the per-element values are checked against it by
//! `elementwise.rs`, which runs the aligned buffers of ordinary allocations).

use super::elementwise::{
    ElemArgs, emu_bce, emu_box_io, emu_elementwise, emu_focal, emu_iou, emu_reg,
};
use super::*;

/// `xs` copied into a buffer at a 16-byte boundary, or 4 bytes past one.
struct Placed {
    buf: Vec<f32>,
    off: usize,
    len: usize,
}

impl Placed {
    fn new(xs: &[f32], aligned: bool) -> Self {
        let mut buf = vec![0f32; xs.len() + 8];
        let to16 = (16 - buf.as_ptr() as usize % 16) % 16 / 4;
        let off = to16 + usize::from(!aligned);
        buf[off..off + xs.len()].copy_from_slice(xs);
        let p = Self {
            buf,
            off,
            len: xs.len(),
        };
        assert_eq!((p.get().as_ptr() as usize).is_multiple_of(16), aligned);
        p
    }
    fn zeros(len: usize, aligned: bool) -> Self {
        Self::new(&vec![0f32; len], aligned)
    }
    fn get(&self) -> &[f32] {
        &self.buf[self.off..self.off + self.len]
    }
    fn get_mut(&mut self) -> &mut [f32] {
        &mut self.buf[self.off..self.off + self.len]
    }
}

/// One element-wise launch on (input, second input) with the launch's outputs.
type Launch<'a> = dyn Fn(&[f32], &[f32], &ElemArgs) + 'a;

fn bits(xs: &[f32]) -> Vec<u32> {
    xs.iter().map(|x| x.to_bits()).collect()
}
fn bits64(xs: &[f64]) -> Vec<u64> {
    xs.iter().map(|x| x.to_bits()).collect()
}

/// One element-wise kernel (`launch` with the inputs it is given and the launch) on aligned
/// and unaligned copies of `x`, `y` and the gradient, over the full grid and over one block:
/// per-element losses and gradients bit for bit; a sum close to the aligned one.
fn same_on_both_paths(
    what: &str,
    lib: &Library,
    x: &[f32],
    y: &[f32],
    up: &[f64],
    launch: &Launch<'_>,
) {
    let n = x.len();
    let mut first: Option<(Vec<u64>, Vec<u32>)> = None;
    for aligned in [true, false] {
        for one_block in [false, true] {
            let (xp, yp) = (Placed::new(x, aligned), Placed::new(y, aligned));
            let mut g = Placed::zeros(n, aligned);
            let l = emu_elementwise(
                lib,
                n,
                Reduction::None,
                Upstream::PerElement(up),
                g.get_mut(),
                |a| {
                    if one_block {
                        launch(xp.get(), yp.get(), &a.with_blocks(1))
                    } else {
                        launch(xp.get(), yp.get(), a)
                    }
                },
            );
            let got = (bits64(&l), bits(g.get()));
            match &first {
                None => first = Some(got),
                Some(f) => assert!(
                    *f == got,
                    "{what}: aligned {aligned}, one block {one_block} differs from the vector path"
                ),
            }
            let mut g2 = Placed::zeros(n, aligned);
            let s = emu_elementwise(
                lib,
                n,
                Reduction::Sum,
                Upstream::Scalar(0.5),
                g2.get_mut(),
                |a| launch(xp.get(), yp.get(), a),
            );
            let want: f64 = l.iter().sum();
            assert_close(&format!("{what} sum"), &s, &[want], 1e-12, 1e-12);
        }
    }
}

#[test]
fn elementwise_vector_and_scalar_paths_give_the_same_bits_on_the_cpu() {
    let Some(libs) = emu() else { return };
    let reg = &libs[&Family::Regression];
    let bin = &libs[&Family::Binary];
    let mut rng = Rng::new(0x16b);
    // 4095 = 7 * 585: not a whole number of vectors (a scalar tail), a multiple of the 7
    // positive weights; one block of 256 threads takes 4 vector iterations per thread.
    let n = 4095usize;
    let mut x: Vec<f32> = (0..n).map(|_| rng.range_f32(-6.0, 6.0)).collect();
    let t: Vec<f32> = (0..n).map(|_| rng.range_f32(-6.0, 6.0)).collect();
    let y: Vec<f32> = (0..n)
        .map(|i| {
            if i % 3 == 0 {
                rng.range_f32(0.0, 1.0)
            } else {
                (i % 2) as f32
            }
        })
        .collect();
    x[5] = t[5];
    x[17] = f32::NAN;
    x[4093] = f32::INFINITY;
    let up: Vec<f64> = (0..n).map(|_| rng.unit() - 0.5).collect();
    let pw: Vec<f64> = (0..7).map(|_| 0.25 + rng.unit() * 3.0).collect();
    for (op, param) in [(Op::SmoothL1, 0.7), (Op::SmoothL1, 0.0), (Op::Huber, 1.5)] {
        same_on_both_paths(&format!("{op:?} {param}"), reg, &x, &t, &up, &|x, t, a| {
            emu_reg(reg, op, param, x, t, a)
        });
    }
    for w in [None, Some(&pw[..])] {
        same_on_both_paths(&format!("bce {w:?}"), bin, &x, &y, &up, &|x, y, a| {
            emu_bce(bin, x, y, w, a)
        });
    }
    same_on_both_paths("focal", bin, &x, &y, &up, &|x, y, a| {
        emu_focal(bin, x, y, 0.25, 2.0, a)
    });
}

/// The BCE positive weight of element i is pos_weight[i % 7] on both paths and with one block:
/// checked against the reference directly (a weight advanced wrongly shows there).
#[test]
fn bce_positive_weights_follow_the_element_index_with_one_block_on_the_cpu() {
    let Some(libs) = emu() else { return };
    let bin = &libs[&Family::Binary];
    let mut rng = Rng::new(0x7e);
    let n = 4095usize;
    let x: Vec<f32> = (0..n).map(|_| rng.range_f32(-4.0, 4.0)).collect();
    let y: Vec<f32> = (0..n).map(|_| rng.range_f32(0.0, 1.0)).collect();
    let pw: Vec<f64> = (0..7).map(|k| 0.5 + k as f64).collect();
    let cfg = BceWithLogits {
        pos_weight: Some(pw.clone()),
        reduction: Reduction::None,
    };
    let mut gr = vec![0f32; n];
    let want = ReferenceBackend
        .bce_with_logits(&cfg, Input::new(&x).with_grad(&mut gr), &y)
        .map(Loss::into_values)
        .unwrap();
    for aligned in [true, false] {
        let (xp, yp) = (Placed::new(&x, aligned), Placed::new(&y, aligned));
        let mut g = Placed::zeros(n, aligned);
        let got = emu_elementwise(
            bin,
            n,
            Reduction::None,
            Upstream::Scalar(1.0),
            g.get_mut(),
            |a| emu_bce(bin, xp.get(), yp.get(), Some(&pw), &a.with_blocks(1)),
        );
        assert_close(&format!("bce aligned {aligned}"), &got, &want, 1e-12, 1e-12);
        assert_grad(
            &format!("bce grad aligned {aligned}"),
            g.get(),
            &gr,
            1e-6,
            1e-12,
        );
    }
}

/// Box losses (every kind, a per-pair upstream, reduction none) and pairwise IoU on aligned
/// and unaligned boxes: the same bits; the pairwise IoU also with one block (the output's
/// (i, j) advanced across iterations) against the reference.
#[test]
fn box_vector_and_scalar_paths_give_the_same_bits_on_the_cpu() {
    let Some(libs) = emu() else { return };
    let lib = &libs[&Family::BoxLoss];
    let mut rng = Rng::new(0xb16);
    let n = 203usize;
    let (mut pred, mut target) = (Vec::new(), Vec::new());
    for _ in 0..n {
        let (x, y) = (rng.range_f32(0.0, 40.0), rng.range_f32(0.0, 40.0));
        let (w, h) = (rng.range_f32(0.5, 15.0), rng.range_f32(0.5, 15.0));
        target.extend_from_slice(&[x, y, x + w, y + h]);
        let (px, py) = (x + rng.range_f32(-4.0, 4.0), y + rng.range_f32(-4.0, 4.0));
        pred.extend_from_slice(&[
            px,
            py,
            px + rng.range_f32(0.5, 15.0),
            py + rng.range_f32(0.5, 15.0),
        ]);
    }
    pred[4 * 7 + 2] = f32::NAN;
    let up: Vec<f64> = (0..n).map(|_| rng.unit()).collect();
    for kind in BoxLossKind::ALL {
        let cfg = BoxLoss::new(kind, BoxFormat::Cxcywh)
            .with_options(smoothloss_spec::random::box_options(kind, 1))
            .with_reduction(Reduction::None)
            .with_threshold_weight(0.3, 0.5);
        let mut first = None;
        for aligned in [true, false] {
            let (pp, tp) = (Placed::new(&pred, aligned), Placed::new(&target, aligned));
            let mut g = Placed::zeros(4 * n, aligned);
            let l = emu_box_io(
                lib,
                &cfg,
                pp.get(),
                tp.get(),
                Upstream::PerElement(&up),
                g.get_mut().as_mut_ptr(),
                false,
            );
            let got = (bits64(&l), bits(g.get()));
            match &first {
                None => first = Some(got),
                Some(f) => assert!(*f == got, "{kind:?}: unaligned boxes differ"),
            }
        }
    }
    let (m1, m2) = (37usize, 53usize);
    let mut want = vec![0f32; m1 * m2];
    ReferenceBackend
        .box_iou(
            BoxFormat::Xywh,
            &pred[..4 * m1],
            &target[..4 * m2],
            &mut want,
        )
        .unwrap();
    for aligned in [true, false] {
        for blocks in [elem_grid(m1 * m2), 1, 3] {
            let (a, b) = (
                Placed::new(&pred[..4 * m1], aligned),
                Placed::new(&target[..4 * m2], aligned),
            );
            let mut out = vec![0f32; m1 * m2];
            emu_iou(lib, BoxFormat::Xywh, a.get(), b.get(), &mut out, blocks);
            assert_grad(
                &format!("iou aligned {aligned} blocks {blocks}"),
                &out,
                &want,
                1e-6,
                1e-7,
            );
        }
    }
}
