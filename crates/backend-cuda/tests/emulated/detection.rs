//! The dense-detector kernels (`distribution.cu`, `quality.cu`, `oriented_box.cu`) through the
//! CPU emulation: the `EmuBackend` of the shared suite gets their host-slice traits (the same
//! launches as `CudaBackend`), and they are checked against the f64 reference on the
//! ultralytics / mmdetection cases and on random calls of every option, upstream and
//! gradient destination.

use super::suite::{EmuBackend, libs_ok, split};
use super::*;
use smoothloss_core::{
    Call, DflConvention, DistributionFocal, DistributionOps, OrientedBoxOps, ProbIou,
    ProbIouPairwiseCall, QflTargets, QualityFocal, QualityOps, Varifocal, VarifocalTargets,
};
use smoothloss_cuda::params::{
    DflParams, ProbIouPairwiseParams, ProbIouParams, QflParams, VarifocalParams,
};
use smoothloss_spec::cases::LossCall;
use smoothloss_spec::cases::detection::random_calls;

/// The outputs of a grid-stride launch over `items` items as `CudaBackend` allocates them.
struct Out {
    losses: Vec<f64>,
    partials: Vec<f64>,
    blocks: u32,
    up_scalar: f64,
    up: u64,
    scale: f64,
}

fn out(items: usize, up: &Upstream<'_>, scale: f64) -> Out {
    let blocks = elem_grid(items);
    let (up_scalar, up) = match *up {
        Upstream::Scalar(s) => (s, 0),
        Upstream::PerElement(u) => (0.0, addr(u.as_ptr())),
    };
    Out {
        losses: vec![0.0; items],
        partials: vec![0.0; blocks as usize],
        blocks,
        up_scalar,
        up,
        scale,
    }
}

impl Out {
    fn finish(self, lib: &Library, r: Reduction) -> Loss {
        if r == Reduction::None {
            Loss::PerItem(self.losses)
        } else {
            Loss::Reduced(reduce_final(lib, &self.partials, 1.0 / self.scale, None))
        }
    }
}

/// The input address (the gradient buffer in place) and the gradient address (0: none).
fn io_addrs(x: &[f32], grad: &mut Option<&mut [f32]>, in_place: bool) -> (u64, u64) {
    let g = grad.as_deref_mut().map_or(0, |g| addr(g.as_mut_ptr()));
    (if in_place { g } else { addr(x.as_ptr()) }, g)
}

fn mean_scale(r: Reduction, den: f64) -> f64 {
    if r == Reduction::Mean { 1.0 / den } else { 1.0 }
}

impl DistributionOps<f32> for EmuBackend {
    fn run_distribution_focal(
        &self,
        call: PairCall<'_, DistributionFocal, f32>,
    ) -> smoothloss_core::Result<Loss> {
        let Parts {
            plan,
            io,
            with,
            upstream,
        } = call.into_parts();
        let lib = &libs_ok()[&Family::Distribution];
        let (x, mut grad, in_place) = split(io);
        let mut o = out(plan.items, &upstream, plan.count_scale());
        let (input, g) = io_addrs(&x, &mut grad, in_place);
        // The device-side target check runs too (`distribution_focal_dev`): the front door's
        // valid targets flag nothing.
        let mut check = [0u64; 2];
        let p = DflParams {
            logits: input,
            targets: addr(with.as_ptr()),
            items: plan.items as i64,
            bins: plan.cfg.bins(&plan) as i64,
            up_scalar: o.up_scalar,
            up: o.up,
            scale: o.scale,
            losses: addr(o.losses.as_mut_ptr()),
            partials: addr(o.partials.as_mut_ptr()),
            grad: g,
            check: addr(check.as_mut_ptr()),
            convention: i32::from(plan.cfg.convention == DflConvention::Mmdetection),
            _pad: 0,
        };
        // SAFETY: DflParams's contract with host buffers of the plan's sizes.
        unsafe {
            emu_launch(
                lib,
                Op::DistributionFocal.kernel_stem(),
                o.blocks,
                ELEM_THREADS,
                0,
                &p,
            )
        };
        assert!(
            check.iter().all(|&w| w == 0),
            "valid targets flagged: {check:?}"
        );
        Ok(o.finish(lib, plan.reduction()))
    }
}

impl QualityOps<f32> for EmuBackend {
    fn run_varifocal(
        &self,
        call: Call<'_, Varifocal, f32, VarifocalTargets<'_, f32>>,
    ) -> smoothloss_core::Result<Loss> {
        let Parts {
            plan,
            io,
            with,
            upstream,
        } = call.into_parts();
        let lib = &libs_ok()[&Family::Quality];
        let (x, mut grad, in_place) = split(io);
        let scale = mean_scale(plan.reduction(), plan.cfg.mean_denominator(plan.items));
        let mut o = out(plan.items, &upstream, scale);
        let (input, g) = io_addrs(&x, &mut grad, in_place);
        let mut check = [0u64; 4];
        let p = VarifocalParams {
            logits: input,
            scores: addr(with.scores.as_ptr()),
            labels: with.labels.map_or(0, |l| addr(l.as_ptr())),
            n: plan.items as i64,
            alpha: plan.cfg.alpha,
            gamma: plan.cfg.gamma,
            up_scalar: o.up_scalar,
            up: o.up,
            scale: o.scale,
            losses: addr(o.losses.as_mut_ptr()),
            partials: addr(o.partials.as_mut_ptr()),
            grad: g,
            check: addr(check.as_mut_ptr()),
            weight: i32::from(plan.cfg.weight.code()),
            _pad: 0,
        };
        // SAFETY: VarifocalParams's contract with host buffers of the plan's sizes.
        unsafe {
            emu_launch(
                lib,
                Op::Varifocal.kernel_stem(),
                o.blocks,
                ELEM_THREADS,
                0,
                &p,
            )
        };
        assert!(
            check.iter().all(|&w| w == 0),
            "valid targets flagged: {check:?}"
        );
        Ok(o.finish(lib, plan.reduction()))
    }

    fn run_quality_focal(
        &self,
        call: Call<'_, QualityFocal, f32, QflTargets<'_, f32>>,
    ) -> smoothloss_core::Result<Loss> {
        let Parts {
            plan,
            io,
            with,
            upstream,
        } = call.into_parts();
        let lib = &libs_ok()[&Family::Quality];
        let (x, mut grad, in_place) = split(io);
        let scale = mean_scale(plan.reduction(), plan.cfg.mean_denominator(plan.items));
        let mut o = out(plan.items, &upstream, scale);
        let (input, g) = io_addrs(&x, &mut grad, in_place);
        let mut check = [0u64; 4];
        let p = QflParams {
            logits: input,
            labels: addr(with.labels.as_ptr()),
            scores: addr(with.scores.as_ptr()),
            rows: plan.items as i64,
            classes: plan.width as i64,
            beta: plan.cfg.beta,
            up_scalar: o.up_scalar,
            up: o.up,
            scale: o.scale,
            losses: addr(o.losses.as_mut_ptr()),
            partials: addr(o.partials.as_mut_ptr()),
            grad: g,
            check: addr(check.as_mut_ptr()),
        };
        // SAFETY: QflParams's contract with host buffers of the plan's sizes.
        unsafe {
            emu_launch(
                lib,
                Op::QualityFocal.kernel_stem(),
                o.blocks,
                ELEM_THREADS,
                0,
                &p,
            )
        };
        assert!(
            check.iter().all(|&w| w == 0),
            "valid targets flagged: {check:?}"
        );
        Ok(o.finish(lib, plan.reduction()))
    }
}

impl OrientedBoxOps<f32> for EmuBackend {
    fn run_probiou_loss(&self, call: PairCall<'_, ProbIou, f32>) -> smoothloss_core::Result<Loss> {
        let Parts {
            plan,
            io,
            with,
            upstream,
        } = call.into_parts();
        let lib = &libs_ok()[&Family::OrientedBox];
        let (x, mut grad, in_place) = split(io);
        let mut o = out(plan.items, &upstream, plan.count_scale());
        let (input, g) = io_addrs(&x, &mut grad, in_place);
        let p = ProbIouParams {
            pred: input,
            target: addr(with.as_ptr()),
            n: plan.items as i64,
            eps: plan.cfg.eps,
            floor: plan.cfg.floor,
            up_scalar: o.up_scalar,
            up: o.up,
            scale: o.scale,
            losses: addr(o.losses.as_mut_ptr()),
            partials: addr(o.partials.as_mut_ptr()),
            grad: g,
            ciou: i32::from(plan.cfg.ciou),
            _pad: 0,
        };
        // SAFETY: ProbIouParams's contract with host buffers of the plan's sizes.
        unsafe {
            emu_launch(
                lib,
                Op::ProbIou.kernel_stem(),
                o.blocks,
                ELEM_THREADS,
                0,
                &p,
            )
        };
        Ok(o.finish(lib, plan.reduction()))
    }

    fn run_batch_probiou(&self, call: ProbIouPairwiseCall<'_, f32>) -> smoothloss_core::Result<()> {
        let (plan, b1, b2, out) = call.into_parts();
        if out.is_empty() {
            return Ok(());
        }
        let lib = &libs_ok()[&Family::OrientedBox];
        let p = ProbIouPairwiseParams {
            b1: addr(b1.as_ptr()),
            b2: addr(b2.as_ptr()),
            n: plan.n as i64,
            m: plan.m as i64,
            eps: plan.eps,
            out: addr(out.as_mut_ptr()),
        };
        let blocks = out.len().div_ceil(ELEM_THREADS as usize) as u32;
        // SAFETY: ProbIouPairwiseParams's contract: b1 5n, b2 5m, out n*m floats (the plan).
        unsafe {
            emu_launch(
                lib,
                Op::ProbIouPairwise.kernel_stem(),
                blocks,
                ELEM_THREADS,
                0,
                &p,
            )
        };
        Ok(())
    }
}

#[test]
fn detection_kernels_pass_the_ultralytics_and_mmdetection_cases() {
    use smoothloss_spec::conformance::{self, Tolerances};
    if emu().is_none() {
        return;
    }
    let r = conformance::detection_cases::<f32, _>(&EmuBackend, &Tolerances::F32);
    assert!(r.all_passed(), "{r}");
    assert_eq!(r.entries.len(), 44, "{r}");
}

#[test]
fn detection_kernels_match_the_reference_on_random_calls() {
    if emu().is_none() {
        return;
    }
    let mut checked = 0;
    for (id, call) in random_calls(0xe3_0b) {
        let LossCall::Detection(d) = &call else {
            unreachable!()
        };
        let rounded = d.round::<f32>();
        let per: Vec<f64> = (0..d.items()).map(|i| 0.25 + (i % 3) as f64).collect();
        let mut ups = vec![Upstream::ONE, Upstream::Scalar(-2.5)];
        if d.reduction() == Some(Reduction::None) {
            ups.push(Upstream::PerElement(&per));
        }
        for up in ups {
            for with_grad in [true, false] {
                let want = rounded
                    .run::<f64, _>(&ReferenceBackend, up, with_grad)
                    .unwrap();
                let got = d.run::<f32, _>(&EmuBackend, up, with_grad).unwrap();
                assert_close(&format!("{id} loss"), &got.loss, &want.loss, 2e-5, 2e-6);
                if let (Some(g), Some(w)) = (&got.grad, &want.grad) {
                    assert_close(&format!("{id} grad"), g, w, 2e-5, 2e-6);
                }
                checked += 1;
            }
        }
    }
    assert!(checked > 100, "{checked}");
}

#[test]
fn detection_kernels_write_the_gradient_in_place_and_follow_tol_4() {
    if emu().is_none() {
        return;
    }
    // In place: the same gradient as a separate buffer (the DFL kernel reads a row before it
    // writes it).
    let (rows, bins) = (8, 16);
    let z: Vec<f32> = (0..rows * bins)
        .map(|i| ((i * 37) % 23) as f32 * 0.3 - 3.0)
        .collect();
    let t: Vec<f32> = (0..rows).map(|i| i as f32 * 1.9).collect();
    let cfg = DistributionFocal::ultralytics().with_reduction(Reduction::Sum);
    let mut g = vec![0.0f32; z.len()];
    let a = EmuBackend
        .distribution_focal(&cfg, Input::matrix(&z, rows, bins).with_grad(&mut g), &t)
        .unwrap();
    let mut zi = z.clone();
    let b = EmuBackend
        .distribution_focal(&cfg, Input::in_place(&mut zi).shaped(rows, bins), &t)
        .unwrap();
    assert_eq!(a, b);
    assert_eq!(g, zi);
    // TOL-4: a NaN logit makes its row's gradient and its item's loss NaN, the others finite.
    let mut zn = z.clone();
    zn[3] = f32::NAN;
    let mut gn = vec![0.0f32; z.len()];
    let l = EmuBackend
        .distribution_focal(
            &cfg.with_reduction(Reduction::None),
            Input::matrix(&zn, rows, bins).with_grad(&mut gn),
            &t,
        )
        .unwrap();
    let v = l.per_item().unwrap();
    assert!(v[0].is_nan() && v[1].is_finite());
    assert!(gn[..bins].iter().all(|x| x.is_nan()));
    assert!(gn[bins..].iter().all(|x| x.is_finite()));
    // ProbIoU: a NaN coordinate makes the pair NaN; the other pair is unaffected.
    let pred = [10.0f32, 10.0, 4.0, 6.0, 0.3, 1.0, 2.0, f32::NAN, 3.0, 0.0];
    let target = [11.0f32, 9.0, 5.0, 5.0, 0.1, 1.0, 2.0, 3.0, 3.0, 0.0];
    let mut gp = [0.0f32; 10];
    let l = EmuBackend
        .probiou_loss(
            &ProbIou::new().with_reduction(Reduction::None),
            Input::new(&pred).with_grad(&mut gp),
            &target,
        )
        .unwrap();
    let v = l.per_item().unwrap();
    assert!(v[0].is_finite() && v[1].is_nan(), "{v:?}");
    assert!(gp[..5].iter().all(|x| x.is_finite()) && gp[5..].iter().all(|x| x.is_nan()));
}
