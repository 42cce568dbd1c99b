//! Box, regression and binary kernels on the CPU, and the binary losses' device target check.

use super::*;

// ---------------------------------------------------------------- box losses

/// The launch of `box_loss_fwd_bwd` as `CudaBackend::box_loss_dev` makes it, on host buffers
/// (`pred`, `target`, `grad` 4n floats, `up` n doubles when given): the loss values.
pub(super) fn emu_box(
    lib: &Library,
    cfg: &BoxLoss,
    pred: &[f32],
    target: &[f32],
    upstream: Upstream<'_>,
    grad: *mut f32,
) -> Vec<f64> {
    emu_box_io(lib, cfg, pred, target, upstream, grad, false)
}

/// [`emu_box`]; `in_place`: the kernel reads the predictions from `grad` (which holds them)
/// and writes the gradient over them, as `CudaBackend` launches `Io::InPlace` (`pred` then
/// only gives the length).
pub(super) fn emu_box_io(
    lib: &Library,
    cfg: &BoxLoss,
    pred: &[f32],
    target: &[f32],
    upstream: Upstream<'_>,
    grad: *mut f32,
    in_place: bool,
) -> Vec<f64> {
    assert!(!in_place || !grad.is_null());
    let n = pred.len() / 4;
    let r = cfg.reduction;
    let (up_scalar, up_ptr) = match upstream {
        Upstream::Scalar(s) => (s, NULL_F64),
        Upstream::PerElement(u) => (0.0, u.as_ptr()),
    };
    let scale = if r == Reduction::Mean {
        1.0 / n as f64
    } else {
        1.0
    };
    let blocks = elem_grid(n);
    let mut losses = vec![0.0f64; n];
    let mut partials = vec![0.0f64; blocks as usize];
    let (has_tw, tw_alpha, tw_threshold) = match cfg.threshold_weight {
        Some(tw) => (1, tw.alpha, tw.threshold),
        None => (0, 0.0, 0.0),
    };
    let mut p = BoxLossParams {
        pred: if in_place {
            addr(grad)
        } else {
            addr(pred.as_ptr())
        },
        target: addr(target.as_ptr()),
        n: n as i64,
        eps: cfg.eps,
        tw_alpha,
        tw_threshold,
        up_scalar,
        up: addr(up_ptr),
        scale,
        losses: addr(losses.as_mut_ptr()),
        partials: addr(partials.as_mut_ptr()),
        grad: addr(grad),
        has_tw,
        ..BoxLossParams::default()
    };
    p.set_options(cfg);
    // SAFETY: pred/target/grad 4n (grad may be null; in place it holds pred and is read
    // from), up/losses n, partials `blocks`.
    unsafe { emu_launch(lib, Op::BoxLoss.kernel_stem(), blocks, ELEM_THREADS, 0, &p) };
    if r == Reduction::None {
        losses
    } else {
        vec![reduce_final(lib, &partials, 1.0 / scale, None)]
    }
}

/// `box_iou_pairwise` over `blocks` blocks on host buffers (out n*m floats).
pub(super) fn emu_iou(
    lib: &Library,
    format: BoxFormat,
    b1: &[f32],
    b2: &[f32],
    out: &mut [f32],
    blocks: u32,
) {
    let p = BoxIouParams {
        b1: addr(b1.as_ptr()),
        b2: addr(b2.as_ptr()),
        n: (b1.len() / 4) as i64,
        m: (b2.len() / 4) as i64,
        out: addr(out.as_mut_ptr()),
        format: i32::from(format.code()),
        _pad: 0,
    };
    assert_eq!(out.len(), b1.len() / 4 * (b2.len() / 4));
    // SAFETY: b1 4n, b2 4m, out n*m floats (checked).
    unsafe { emu_launch(lib, Op::BoxIou.kernel_stem(), blocks, ELEM_THREADS, 0, &p) };
}

#[test]
fn box_kernels_match_the_reference_on_the_cpu() {
    let Some(libs) = emu() else { return };
    let lib = &libs[&Family::BoxLoss];
    let mut rng = Rng::new(0xb0);
    let n = 300usize;
    let mut pred = Vec::new();
    let mut target = Vec::new();
    for i in 0..n {
        let (x, y) = (rng.range_f32(0.0, 40.0), rng.range_f32(0.0, 40.0));
        let (w, h) = (rng.range_f32(0.5, 15.0), rng.range_f32(0.5, 15.0));
        target.extend_from_slice(&[x, y, x + w, y + h]);
        match i % 7 {
            0 => pred.extend_from_slice(&[x, y, x + w, y + h]),
            1 => pred.extend_from_slice(&[x, y - 2.0, x + w, y + h + 1.0]),
            2 => pred.extend_from_slice(&[x + 100.0, y, x + 101.0, y + 1.0]),
            3 => pred.extend_from_slice(&[x, y, x, y + 3.0]),
            _ => {
                let (px, py) = (x + rng.range_f32(-4.0, 4.0), y + rng.range_f32(-4.0, 4.0));
                pred.extend_from_slice(&[
                    px,
                    py,
                    px + rng.range_f32(0.5, 15.0),
                    py + rng.range_f32(0.5, 15.0),
                ]);
            }
        }
    }
    pred[4 * 5 + 1] = f32::NAN;
    let up: Vec<f64> = (0..n).map(|_| rng.unit()).collect();
    for kind in BoxLossKind::ALL {
        for (fi, format) in [BoxFormat::Xyxy, BoxFormat::Xywh, BoxFormat::Cxcywh]
            .into_iter()
            .enumerate()
        {
            for (ri, r) in REDUCTIONS.into_iter().enumerate() {
                // Every option and modifier set over the formats and reductions (BOX-14 ..
                // BOX-23).
                let mut cfg = BoxLoss::new(kind, format)
                    .with_options(smoothloss_spec::random::box_options(kind, ri + 3 * fi))
                    .with_reduction(r);
                if r == Reduction::Sum {
                    cfg = cfg.with_threshold_weight(0.4, 0.5);
                }
                let upstream = if r == Reduction::None {
                    Upstream::PerElement(&up)
                } else {
                    Upstream::Scalar(2.0)
                };
                let mut g = vec![0f32; 4 * n];
                let got = emu_box(lib, &cfg, &pred, &target, upstream, g.as_mut_ptr());
                let mut gr = vec![0f32; 4 * n];
                let want = ReferenceBackend
                    .box_loss(
                        &cfg,
                        Input::new(&pred).with_upstream(upstream).with_grad(&mut gr),
                        &target,
                    )
                    .map(Loss::into_values)
                    .unwrap();
                let what = format!("{kind:?} {format:?} {r:?} {:?}", cfg.options);
                assert_close(&format!("{what} loss"), &got, &want, 1e-12, 1e-14);
                assert_grad(&format!("{what} grad"), &g, &gr, 1e-6, 1e-9);
            }
        }
    }
    let (n1, m) = (7usize, 13usize);
    let b1: Vec<f32> = (0..4 * n1).map(|_| rng.range_f32(0.0, 10.0)).collect();
    let b2: Vec<f32> = (0..4 * m).map(|_| rng.range_f32(0.0, 10.0)).collect();
    for format in [BoxFormat::Xywh, BoxFormat::Cxcywh, BoxFormat::Xyxy] {
        let mut got = vec![0f32; n1 * m];
        emu_iou(lib, format, &b1, &b2, &mut got, 1);
        let mut want = vec![0f32; n1 * m];
        ReferenceBackend
            .box_iou(format, &b1, &b2, &mut want)
            .unwrap();
        assert_grad("box_iou", &got, &want, 0.0, 0.0);
    }
}

// ---------------------------------------------------------------- element-wise

/// The output fields of an element-wise launch over n elements (host addresses).
pub(super) struct ElemArgs {
    n: usize,
    blocks: u32,
    up_scalar: f64,
    up: u64,
    scale: f64,
    losses: u64,
    partials: u64,
    grad: u64,
    /// The kernel reads its input from `grad` (in place).
    in_place: bool,
}

impl ElemArgs {
    /// The same launch over `blocks` blocks (fewer than `elem_grid`: several vectors and
    /// elements per thread).
    pub(super) fn with_blocks(&self, blocks: u32) -> Self {
        Self { blocks, ..*self }
    }

    /// The kernel's input address: `x`, or the gradient buffer in place.
    fn input(&self, x: &[f32]) -> u64 {
        if self.in_place {
            self.grad
        } else {
            addr(x.as_ptr())
        }
    }
}

/// Runs one element-wise launch through `call` (with `grad`, `n` floats, and the upstream's
/// n values when per element) and reduces as the backend does.
pub(super) fn emu_elementwise(
    lib: &Library,
    n: usize,
    r: Reduction,
    upstream: Upstream<'_>,
    grad: &mut [f32],
    call: impl FnOnce(&ElemArgs),
) -> Vec<f64> {
    emu_elementwise_io(lib, n, r, upstream, grad, false, call)
}

/// [`emu_elementwise`]; `in_place`: `grad` holds the input and the kernel reads it from there
/// and writes the gradient over it, as `CudaBackend` launches `Io::InPlace`.
pub(super) fn emu_elementwise_io(
    lib: &Library,
    n: usize,
    r: Reduction,
    upstream: Upstream<'_>,
    grad: &mut [f32],
    in_place: bool,
    call: impl FnOnce(&ElemArgs),
) -> Vec<f64> {
    assert_eq!(grad.len(), n);
    let (up_scalar, up_ptr) = match upstream {
        Upstream::Scalar(s) => (s, NULL_F64),
        Upstream::PerElement(u) => {
            assert_eq!(u.len(), n);
            (0.0, u.as_ptr())
        }
    };
    let scale = if r == Reduction::Mean {
        1.0 / n as f64
    } else {
        1.0
    };
    let blocks = elem_grid(n);
    let mut losses = vec![0.0f64; n];
    let mut partials = vec![0.0f64; blocks as usize];
    call(&ElemArgs {
        n,
        blocks,
        up_scalar,
        up: addr(up_ptr),
        scale,
        losses: addr(losses.as_mut_ptr()),
        partials: addr(partials.as_mut_ptr()),
        grad: addr(grad.as_mut_ptr()),
        in_place,
    });
    if r == Reduction::None {
        losses
    } else {
        vec![reduce_final(lib, &partials, 1.0 / scale, None)]
    }
}

/// `reg_smooth_l1` / `reg_huber` (`op`) with beta / delta `param`.
pub(super) fn emu_reg(
    lib: &Library,
    op: Op,
    param: f64,
    pred: &[f32],
    target: &[f32],
    a: &ElemArgs,
) {
    assert!(pred.len() == a.n && target.len() == a.n);
    let p = RegParams {
        pred: a.input(pred),
        target: addr(target.as_ptr()),
        n: a.n as i64,
        param,
        up_scalar: a.up_scalar,
        up: a.up,
        scale: a.scale,
        losses: a.losses,
        partials: a.partials,
        grad: a.grad,
    };
    // SAFETY: pred and target have n floats (checked; in place the input is grad's n floats);
    // up, losses, partials and grad as emu_elementwise allocated them for n elements.
    unsafe { emu_launch(lib, op.kernel_stem(), a.blocks, ELEM_THREADS, 0, &p) };
}

/// `bin_bce_with_logits` without the target check.
pub(super) fn emu_bce(
    lib: &Library,
    x: &[f32],
    y: &[f32],
    pos_weight: Option<&[f64]>,
    a: &ElemArgs,
) {
    assert!(x.len() == a.n && y.len() == a.n);
    let p = BceParams {
        logits: a.input(x),
        targets: addr(y.as_ptr()),
        n: a.n as i64,
        pos_weight: addr(pos_weight.map_or(NULL_F64, |w| w.as_ptr())),
        p_len: pos_weight.map_or(1, |w| w.len() as i64),
        up_scalar: a.up_scalar,
        up: a.up,
        scale: a.scale,
        losses: a.losses,
        partials: a.partials,
        grad: a.grad,
        check: 0,
    };
    // SAFETY: as emu_reg; pos_weight has p_len >= 1 doubles.
    unsafe {
        emu_launch(
            lib,
            Op::BceWithLogits.kernel_stem(),
            a.blocks,
            ELEM_THREADS,
            0,
            &p,
        )
    };
}

/// `bin_sigmoid_focal` without the target check.
pub(super) fn emu_focal(lib: &Library, x: &[f32], y: &[f32], alpha: f64, gamma: f64, a: &ElemArgs) {
    assert!(x.len() == a.n && y.len() == a.n);
    let p = FocalParams {
        logits: a.input(x),
        targets: addr(y.as_ptr()),
        n: a.n as i64,
        alpha,
        gamma,
        up_scalar: a.up_scalar,
        up: a.up,
        scale: a.scale,
        losses: a.losses,
        partials: a.partials,
        grad: a.grad,
        check: 0,
    };
    // SAFETY: as emu_reg.
    unsafe {
        emu_launch(
            lib,
            Op::SigmoidFocal.kernel_stem(),
            a.blocks,
            ELEM_THREADS,
            0,
            &p,
        )
    };
}

#[test]
fn elementwise_kernels_match_the_reference_on_the_cpu() {
    let Some(libs) = emu() else { return };
    let reg = &libs[&Family::Regression];
    let bin = &libs[&Family::Binary];
    let mut rng = Rng::new(0xe1);
    let n = 1001usize; // 7 * 11 * 13
    let mut x: Vec<f32> = (0..n).map(|_| rng.range_f32(-5.0, 5.0)).collect();
    let t: Vec<f32> = (0..n).map(|_| rng.range_f32(-5.0, 5.0)).collect();
    let y: Vec<f32> = (0..n)
        .map(|i| {
            if i % 3 == 0 {
                rng.range_f32(0.0, 1.0)
            } else {
                (i % 2) as f32
            }
        })
        .collect();
    x[3] = t[3]; // d = 0
    x[10] = f32::NAN;
    let up: Vec<f64> = (0..n).map(|_| rng.unit() - 0.5).collect();
    let pw: Vec<f64> = (0..7).map(|_| rng.unit() * 3.0).collect();
    let close = |what: &str, got: &[f64], want: &[f64], g: &[f32], gr: &[f32]| {
        assert_close(what, got, want, 1e-12, 1e-12);
        assert_grad(what, g, gr, 1e-6, 1e-12);
    };
    for r in REDUCTIONS {
        let u = if r == Reduction::None {
            Upstream::PerElement(&up)
        } else {
            Upstream::Scalar(0.5)
        };
        for beta in [0.0, 1.0] {
            let cfg = SmoothL1 { beta, reduction: r };
            let mut g = vec![0f32; n];
            let got = emu_elementwise(reg, n, r, u, &mut g, |a| {
                emu_reg(reg, Op::SmoothL1, beta, &x, &t, a)
            });
            let mut gr = vec![0f32; n];
            let want = ReferenceBackend
                .smooth_l1(&cfg, Input::new(&x).with_upstream(u).with_grad(&mut gr), &t)
                .map(Loss::into_values)
                .unwrap();
            close(&format!("smooth_l1 {r:?} {beta}"), &got, &want, &g, &gr);
        }
        let cfg = Huber {
            delta: 1.5,
            reduction: r,
        };
        let mut g = vec![0f32; n];
        let got = emu_elementwise(reg, n, r, u, &mut g, |a| {
            emu_reg(reg, Op::Huber, 1.5, &x, &t, a)
        });
        let mut gr = vec![0f32; n];
        let want = ReferenceBackend
            .huber(&cfg, Input::new(&x).with_upstream(u).with_grad(&mut gr), &t)
            .map(Loss::into_values)
            .unwrap();
        close(&format!("huber {r:?}"), &got, &want, &g, &gr);

        for pos_weight in [None, Some(pw.clone())] {
            let xf: Vec<f32> = x
                .iter()
                .map(|v| if v.is_nan() { 0.5 } else { *v })
                .collect();
            let mut g = vec![0f32; n];
            let got = emu_elementwise(bin, n, r, u, &mut g, |a| {
                emu_bce(bin, &xf, &y, pos_weight.as_deref(), a)
            });
            let cfg = BceWithLogits {
                pos_weight,
                reduction: r,
            };
            let mut gr = vec![0f32; n];
            let want = ReferenceBackend
                .bce_with_logits(
                    &cfg,
                    Input::new(&xf).with_upstream(u).with_grad(&mut gr),
                    &y,
                )
                .map(Loss::into_values)
                .unwrap();
            close(&format!("bce {r:?}"), &got, &want, &g, &gr);
        }
        for (alpha, gamma) in [(0.25, 2.0), (-1.0, 0.0), (0.5, 1.5)] {
            let mut g = vec![0f32; n];
            let got = emu_elementwise(bin, n, r, u, &mut g, |a| {
                emu_focal(bin, &x, &y, alpha, gamma, a)
            });
            let cfg = SigmoidFocal {
                alpha,
                gamma,
                reduction: r,
            };
            let mut gr = vec![0f32; n];
            let want = ReferenceBackend
                .sigmoid_focal(&cfg, Input::new(&x).with_upstream(u).with_grad(&mut gr), &y)
                .map(Loss::into_values)
                .unwrap();
            close(
                &format!("focal {r:?} {alpha} {gamma}"),
                &got,
                &want,
                &g,
                &gr,
            );
        }
    }
}

/// Binary targets outside [0, 1] (NaN included) are flagged on the device: the smallest such
/// index (whichever thread or block sees it first) and its value; none for valid targets.
#[test]
fn binary_targets_outside_0_1_are_flagged_on_the_cpu() {
    let Some(libs) = emu() else { return };
    let lib = &libs[&Family::Binary];
    let n = 3000usize;
    let x = vec![0.25f32; n];
    let blocks = elem_grid(n);
    for (bad, want) in [
        (vec![], None),
        (
            vec![(2900usize, 1.5f32), (1700, -0.25), (2999, f32::NAN)],
            Some((1700u64, -0.25f64)),
        ),
        (vec![(2999, f32::NAN)], Some((2999, f64::NAN))),
        (vec![(0, 1.0000001)], Some((0, f64::from(1.0000001f32)))),
    ] {
        let mut y = vec![0.5f32; n];
        y[10] = 0.0;
        y[11] = 1.0; // the bounds themselves are valid
        for &(i, v) in &bad {
            y[i] = v;
        }
        for focal in [false, true] {
            let mut partials = vec![0.0f64; blocks as usize];
            let mut check = [0u64; 2];
            let (xa, ya) = (addr(x.as_ptr()), addr(y.as_ptr()));
            let (pa, ca) = (addr(partials.as_mut_ptr()), addr(check.as_mut_ptr()));
            // SAFETY: x, y have n elements, partials one per block, check two words; losses
            // and grad are null (sum reduction, no gradient).
            unsafe {
                if focal {
                    let p = FocalParams {
                        logits: xa,
                        targets: ya,
                        n: n as i64,
                        alpha: 0.25,
                        gamma: 2.0,
                        up_scalar: 1.0,
                        up: 0,
                        scale: 1.0,
                        losses: 0,
                        partials: pa,
                        grad: 0,
                        check: ca,
                    };
                    emu_launch(
                        lib,
                        Op::SigmoidFocal.kernel_stem(),
                        blocks,
                        ELEM_THREADS,
                        0,
                        &p,
                    );
                } else {
                    let p = BceParams {
                        logits: xa,
                        targets: ya,
                        n: n as i64,
                        pos_weight: 0,
                        p_len: 1,
                        up_scalar: 1.0,
                        up: 0,
                        scale: 1.0,
                        losses: 0,
                        partials: pa,
                        grad: 0,
                        check: ca,
                    };
                    emu_launch(
                        lib,
                        Op::BceWithLogits.kernel_stem(),
                        blocks,
                        ELEM_THREADS,
                        0,
                        &p,
                    );
                }
                let p = BinTargetCheckParams {
                    targets: ya,
                    check: ca,
                };
                emu_launch(lib, BIN_TARGET_CHECK, 1, 32, 0, &p);
            }
            match want {
                None => assert_eq!(check, [0, 0], "valid targets flagged"),
                Some((i, v)) => {
                    assert_eq!(!check[0], i, "{bad:?}: first bad index");
                    let got = f64::from_bits(check[1]);
                    assert!(got == v || (got.is_nan() && v.is_nan()), "{got} vs {v}");
                }
            }
        }
    }
}

/// In place (the kernel reads each input element from the gradient buffer and overwrites it
/// with its gradient, as `CudaBackend` launches `Io::InPlace`): the same values and gradient,
/// bit for bit, as with a separate gradient buffer, for every element-wise and box kernel.
#[test]
fn in_place_matches_a_separate_gradient_on_the_cpu() {
    let Some(libs) = emu() else { return };
    let reg = &libs[&Family::Regression];
    let bin = &libs[&Family::Binary];
    let bx = &libs[&Family::BoxLoss];
    let mut rng = Rng::new(0x1a9);
    let n = 1001usize;
    let x: Vec<f32> = (0..n).map(|_| rng.range_f32(-5.0, 5.0)).collect();
    let t: Vec<f32> = (0..n).map(|_| rng.range_f32(0.0, 1.0)).collect();
    let pw = [0.5f64, 2.0, 1.0, 3.0, 0.25, 1.5, 0.75];
    let poison = vec![f32::NAN; n];
    type Launch<'a> = Box<dyn Fn(&[f32], &ElemArgs) + 'a>;
    let kernels: Vec<(&str, &Library, Launch<'_>)> = vec![
        (
            "smooth_l1",
            reg,
            Box::new(|x, a| emu_reg(reg, Op::SmoothL1, 0.5, x, &t, a)),
        ),
        (
            "huber",
            reg,
            Box::new(|x, a| emu_reg(reg, Op::Huber, 1.5, x, &t, a)),
        ),
        (
            "bce",
            bin,
            Box::new(|x, a| emu_bce(bin, x, &t, Some(&pw), a)),
        ),
        (
            "focal",
            bin,
            Box::new(|x, a| emu_focal(bin, x, &t, 0.25, 2.0, a)),
        ),
    ];
    for r in REDUCTIONS {
        let u = Upstream::Scalar(0.75);
        for (what, lib, launch) in &kernels {
            let mut g = vec![0f32; n];
            let sep = emu_elementwise(lib, n, r, u, &mut g, |a| launch(&x, a));
            let mut z = x.clone();
            // The input slice only gives the length in place: NaN would show if it were read.
            let ip = emu_elementwise_io(lib, n, r, u, &mut z, true, |a| launch(&poison, a));
            if let Err(e) = kit::same_bits_f64(&sep, &ip) {
                panic!("{what} {r:?} values: {e}");
            }
            if let Err(e) = kit::same_bits_f32(&g, &z) {
                panic!("{what} {r:?} gradient: {e}");
            }
        }
        let pairs = n / 4;
        let mut pred = Vec::with_capacity(4 * pairs);
        let mut target = Vec::with_capacity(4 * pairs);
        for _ in 0..pairs {
            let (a, b) = (rng.range_f32(0.0, 20.0), rng.range_f32(0.0, 20.0));
            target.extend_from_slice(&[a, b, a + rng.range_f32(0.5, 9.0), b + 3.0]);
            pred.extend_from_slice(&[a + 1.0, b - 1.0, a + rng.range_f32(1.0, 9.0), b + 4.0]);
        }
        for kind in BoxLossKind::ALL {
            let cfg = BoxLoss::new(kind, BoxFormat::Xyxy)
                .with_options(smoothloss_spec::random::box_options(kind, 1))
                .with_reduction(r);
            let mut g = vec![0f32; 4 * pairs];
            let sep = emu_box(bx, &cfg, &pred, &target, u, g.as_mut_ptr());
            let mut z = pred.clone();
            let poison = vec![f32::NAN; pred.len()];
            let ip = emu_box_io(bx, &cfg, &poison, &target, u, z.as_mut_ptr(), true);
            if let Err(e) = kit::same_bits_f64(&sep, &ip) {
                panic!("{kind:?} {r:?} values: {e}");
            }
            if let Err(e) = kit::same_bits_f32(&g, &z) {
                panic!("{kind:?} {r:?} gradient: {e}");
            }
        }
    }
}
