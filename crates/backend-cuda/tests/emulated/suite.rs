//! The shared conformance suite through the CPU emulation.

use super::cross_entropy::emu_ce;
use super::elementwise::{
    ElemArgs, emu_bce, emu_box_io, emu_elementwise_io, emu_focal, emu_iou, emu_reg,
};
use super::*;

// ---------------------------------------------------------------- the shared suite

/// The kernels behind the host-slice traits, through the CPU emulation, with the same launch
/// sequence as `CudaBackend` on the plan the front door validated: lets the shared
/// conformance suite check the kernels' semantics (non-finite inputs, ties, reductions,
/// errors) without a GPU.
pub(super) struct EmuBackend;

pub(super) fn libs_ok() -> &'static HashMap<Family, Library> {
    libs().as_ref().expect("emulation libraries")
}

/// An element-wise call's input (a copy), its gradient destination and whether it is in place
/// (the destination then holds the input, and the kernel reads it from there and overwrites
/// it, as `CudaBackend` launches `Io::InPlace`).
pub(super) fn split(io: Io<'_, [f32]>) -> (Vec<f32>, Option<&mut [f32]>, bool) {
    let x = io.input().to_vec();
    match io {
        Io::Read(_) => (x, None, false),
        Io::Separate { grad, .. } => (x, Some(grad), false),
        Io::InPlace(z) => (x, Some(z), true),
    }
}

/// Calls `f` with the caller's gradient buffer, or a scratch one when none is asked for.
fn with_grad<R>(grad: Option<&mut [f32]>, n: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    match grad {
        Some(g) => f(g),
        None => f(&mut vec![0.0; n]),
    }
}

impl CrossEntropyOps<f32> for EmuBackend {
    fn run_cross_entropy(&self, call: CeCall<'_, f32>) -> smoothloss_core::Result<Loss> {
        let Parts {
            plan,
            io,
            with: targets,
            upstream,
        } = call.into_parts();
        let lib = &libs_ok()[&Family::CrossEntropy];
        let (cfg, rows, classes) = (plan.cfg, plan.rows(), plan.classes());
        let (v, check) = match io {
            Io::Read(z) => {
                let mut z = z.to_vec();
                emu_ce(
                    lib, cfg, &mut z, rows, classes, targets, upstream, None, false,
                )
            }
            Io::Separate { input, grad } => {
                let mut z = input.to_vec();
                emu_ce(
                    lib,
                    cfg,
                    &mut z,
                    rows,
                    classes,
                    targets,
                    upstream,
                    Some(grad),
                    false,
                )
            }
            Io::InPlace(z) => emu_ce(lib, cfg, z, rows, classes, targets, upstream, None, true),
        };
        assert_eq!(check[0], -1, "host-checked targets flagged on the device");
        Ok(loss_of(plan.reduction(), v))
    }
}

/// The front door's [`Loss`] from the values the launch sequence left.
fn loss_of(r: Reduction, v: Vec<f64>) -> Loss {
    if r == Reduction::None {
        Loss::PerItem(v)
    } else {
        Loss::Reduced(v[0])
    }
}

impl BoxLossOps<f32> for EmuBackend {
    fn run_box_loss(&self, call: PairCall<'_, BoxLoss, f32>) -> smoothloss_core::Result<Loss> {
        let Parts {
            plan,
            io,
            with: target,
            upstream,
        } = call.into_parts();
        let lib = &libs_ok()[&Family::BoxLoss];
        let (pred, grad, in_place) = split(io);
        assert_eq!(pred.len(), 4 * plan.items);
        let g_ptr = grad.map_or(std::ptr::null_mut(), |g| g.as_mut_ptr());
        let v = emu_box_io(lib, plan.cfg, &pred, target, upstream, g_ptr, in_place);
        Ok(loss_of(plan.reduction(), v))
    }

    fn run_box_iou(&self, call: IouCall<'_, f32>) -> smoothloss_core::Result<()> {
        let (plan, boxes1, boxes2, out) = call.into_parts();
        let (n, m) = (plan.n, plan.m);
        if n * m == 0 {
            return Ok(());
        }
        let lib = &libs_ok()[&Family::BoxLoss];
        let blocks = (n * m).div_ceil(ELEM_THREADS as usize) as u32;
        emu_iou(lib, plan.format, boxes1, boxes2, out, blocks);
        Ok(())
    }
}

/// Runs an element-wise call through `launch` (the kernel on the input, the second input and
/// the launch's arguments) as `CudaBackend` does.
fn run_elementwise<C: smoothloss_core::LossConfig>(
    fam: Family,
    call: PairCall<'_, C, f32>,
    launch: impl FnOnce(&Library, &C, &[f32], &[f32], &ElemArgs),
) -> Loss {
    let Parts {
        plan,
        io,
        with,
        upstream,
    } = call.into_parts();
    let lib = &libs_ok()[&fam];
    let (x, grad, in_place) = split(io);
    let (n, r) = (plan.items, plan.reduction());
    let v = with_grad(grad, n, |g| {
        emu_elementwise_io(lib, n, r, upstream, g, in_place, |a| {
            launch(lib, plan.cfg, &x, with, a)
        })
    });
    loss_of(r, v)
}

impl RegressionOps<f32> for EmuBackend {
    fn run_smooth_l1(&self, call: PairCall<'_, SmoothL1, f32>) -> smoothloss_core::Result<Loss> {
        Ok(run_elementwise(
            Family::Regression,
            call,
            |lib, cfg, x, y, a| emu_reg(lib, Op::SmoothL1, cfg.beta, x, y, a),
        ))
    }

    fn run_huber(&self, call: PairCall<'_, Huber, f32>) -> smoothloss_core::Result<Loss> {
        Ok(run_elementwise(
            Family::Regression,
            call,
            |lib, cfg, x, y, a| emu_reg(lib, Op::Huber, cfg.delta, x, y, a),
        ))
    }
}

impl BinaryOps<f32> for EmuBackend {
    fn run_bce_with_logits(
        &self,
        call: PairCall<'_, BceWithLogits, f32>,
    ) -> smoothloss_core::Result<Loss> {
        Ok(run_elementwise(
            Family::Binary,
            call,
            |lib, cfg, x, y, a| emu_bce(lib, x, y, cfg.pos_weight.as_deref(), a),
        ))
    }

    fn run_sigmoid_focal(
        &self,
        call: PairCall<'_, SigmoidFocal, f32>,
    ) -> smoothloss_core::Result<Loss> {
        Ok(run_elementwise(
            Family::Binary,
            call,
            |lib, cfg, x, y, a| emu_focal(lib, x, y, cfg.alpha, cfg.gamma, a),
        ))
    }
}

// The linear cross-entropy has no kernel of its own yet: the reference (default body).
impl smoothloss_core::LinearCrossEntropyOps<f32> for EmuBackend {}

impl smoothloss_core::Backend<f32> for EmuBackend {
    fn name(&self) -> String {
        "cuda-kernels-on-cpu-emulation".into()
    }
}

/// The shared conformance suite through the CPU emulation (minutes with one OS thread per
/// CUDA thread; seconds since the emulation runs them as fibers, so it runs by default).
#[test]
fn conformance_suite_through_the_cpu_emulation() {
    use smoothloss_spec::conformance::{self, Tolerances};
    if emu().is_none() {
        return;
    }
    let r = conformance::run_all::<f32, _>(&EmuBackend, &Tolerances::F32);
    assert!(r.all_passed(), "{r}");
}

/// The detection box-loss cases (`spec/cases/detection_boxes.json`: ultralytics, torchvision,
/// mmdetection's formulas, the papers' equations) through the emulated `box_loss.cu`.
#[test]
fn detection_box_cases_through_the_cpu_emulation() {
    use smoothloss_spec::conformance::{self, Tolerances};
    if emu().is_none() {
        return;
    }
    let r = conformance::detection_boxes_cases::<f32, _>(&EmuBackend, &Tolerances::F32);
    assert!(r.all_passed(), "{r}");
}
