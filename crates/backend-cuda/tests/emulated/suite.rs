//! The shared conformance suite through the CPU emulation.

use super::cross_entropy::emu_ce;
use super::elementwise::{emu_bce, emu_box, emu_elementwise, emu_focal, emu_iou, emu_reg};
use super::*;

// ---------------------------------------------------------------- the shared suite

/// The kernels behind the host-slice traits, through the CPU emulation, with the same
/// validation and launch sequence as `CudaBackend`: lets the shared conformance suite check
/// the kernels' semantics (non-finite inputs, ties, reductions, errors) without a GPU.
struct EmuBackend;

fn libs_ok() -> &'static HashMap<Family, Library> {
    libs().as_ref().expect("emulation libraries")
}

impl CrossEntropyOps<f32> for EmuBackend {
    fn cross_entropy(
        &self,
        cfg: &CrossEntropy,
        logits: &[f32],
        rows: usize,
        classes: usize,
        targets: CeTargets<'_, f32>,
        upstream: Upstream<'_>,
        grad: Option<&mut [f32]>,
    ) -> smoothloss_core::Result<Vec<f64>> {
        cfg.validate(
            logits.len(),
            rows,
            classes,
            &targets,
            &upstream,
            grad.as_ref().map(|g| g.len()),
        )?;
        let lib = &libs_ok()[&Family::CrossEntropy];
        let mut z = logits.to_vec();
        let (v, check) = emu_ce(
            lib, cfg, &mut z, rows, classes, targets, upstream, grad, false,
        );
        assert_eq!(check[0], -1, "host-validated targets flagged on the device");
        Ok(v)
    }

    fn cross_entropy_in_place(
        &self,
        cfg: &CrossEntropy,
        logits: &mut [f32],
        rows: usize,
        classes: usize,
        targets: CeTargets<'_, f32>,
        upstream: Upstream<'_>,
    ) -> smoothloss_core::Result<Vec<f64>> {
        cfg.validate(logits.len(), rows, classes, &targets, &upstream, None)?;
        let lib = &libs_ok()[&Family::CrossEntropy];
        let (v, _) = emu_ce(
            lib, cfg, logits, rows, classes, targets, upstream, None, true,
        );
        Ok(v)
    }
}

impl BoxLossOps<f32> for EmuBackend {
    fn box_loss(
        &self,
        cfg: &BoxLoss,
        pred: &[f32],
        target: &[f32],
        upstream: Upstream<'_>,
        grad: Option<&mut [f32]>,
    ) -> smoothloss_core::Result<Vec<f64>> {
        let n = cfg.validate(pred, target, &upstream, grad.as_ref().map(|g| g.len()))?;
        let lib = &libs_ok()[&Family::BoxLoss];
        assert_eq!(pred.len(), 4 * n);
        let g_ptr = grad.map_or(std::ptr::null_mut(), |g| g.as_mut_ptr());
        Ok(emu_box(lib, cfg, pred, target, upstream, g_ptr))
    }

    fn box_iou(
        &self,
        format: BoxFormat,
        boxes1: &[f32],
        boxes2: &[f32],
        out: &mut [f32],
    ) -> smoothloss_core::Result<()> {
        let (n, m) = smoothloss_core::box_loss::validate_box_iou(boxes1, boxes2, out.len())?;
        if n * m == 0 {
            return Ok(());
        }
        let lib = &libs_ok()[&Family::BoxLoss];
        let blocks = (n * m).div_ceil(ELEM_THREADS as usize) as u32;
        emu_iou(lib, format, boxes1, boxes2, out, blocks);
        Ok(())
    }
}

/// Calls `f` with the caller's gradient buffer, or a scratch one when none is asked for.
fn with_grad<R>(grad: Option<&mut [f32]>, n: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    match grad {
        Some(g) => f(g),
        None => f(&mut vec![0.0; n]),
    }
}

impl RegressionOps<f32> for EmuBackend {
    fn smooth_l1(
        &self,
        cfg: &SmoothL1,
        pred: &[f32],
        target: &[f32],
        upstream: Upstream<'_>,
        grad: Option<&mut [f32]>,
    ) -> smoothloss_core::Result<Vec<f64>> {
        let n = cfg.validate(pred, target, &upstream, grad.as_ref().map(|g| g.len()))?;
        let lib = &libs_ok()[&Family::Regression];
        Ok(with_grad(grad, n, |g| {
            emu_elementwise(lib, n, cfg.reduction, upstream, g, |a| {
                emu_reg(lib, Op::SmoothL1, cfg.beta, pred, target, a)
            })
        }))
    }

    fn huber(
        &self,
        cfg: &Huber,
        pred: &[f32],
        target: &[f32],
        upstream: Upstream<'_>,
        grad: Option<&mut [f32]>,
    ) -> smoothloss_core::Result<Vec<f64>> {
        let n = cfg.validate(pred, target, &upstream, grad.as_ref().map(|g| g.len()))?;
        let lib = &libs_ok()[&Family::Regression];
        Ok(with_grad(grad, n, |g| {
            emu_elementwise(lib, n, cfg.reduction, upstream, g, |a| {
                emu_reg(lib, Op::Huber, cfg.delta, pred, target, a)
            })
        }))
    }
}

impl BinaryOps<f32> for EmuBackend {
    fn bce_with_logits(
        &self,
        cfg: &BceWithLogits,
        logits: &[f32],
        targets: &[f32],
        upstream: Upstream<'_>,
        grad: Option<&mut [f32]>,
    ) -> smoothloss_core::Result<Vec<f64>> {
        let n = cfg.validate(logits, targets, &upstream, grad.as_ref().map(|g| g.len()))?;
        let lib = &libs_ok()[&Family::Binary];
        Ok(with_grad(grad, n, |g| {
            emu_elementwise(lib, n, cfg.reduction, upstream, g, |a| {
                emu_bce(lib, logits, targets, cfg.pos_weight.as_deref(), a)
            })
        }))
    }

    fn sigmoid_focal(
        &self,
        cfg: &SigmoidFocal,
        logits: &[f32],
        targets: &[f32],
        upstream: Upstream<'_>,
        grad: Option<&mut [f32]>,
    ) -> smoothloss_core::Result<Vec<f64>> {
        let n = cfg.validate(logits, targets, &upstream, grad.as_ref().map(|g| g.len()))?;
        let lib = &libs_ok()[&Family::Binary];
        Ok(with_grad(grad, n, |g| {
            emu_elementwise(lib, n, cfg.reduction, upstream, g, |a| {
                emu_focal(lib, logits, targets, cfg.alpha, cfg.gamma, a)
            })
        }))
    }
}

impl smoothloss_core::Backend<f32> for EmuBackend {
    fn name(&self) -> String {
        "cuda-kernels-on-cpu-emulation".into()
    }
}

#[test]
#[ignore = "slow (minutes): the shared conformance suite through the CPU emulation"]
fn conformance_suite_through_the_cpu_emulation() {
    use smoothloss_spec::conformance::{self, Tolerances};
    if emu().is_none() {
        return;
    }
    let r = conformance::run_all::<f32, _>(&EmuBackend, &Tolerances::F32);
    assert!(r.all_passed(), "{r}");
}
