//! The backend traits (one small trait per loss family, the burn pattern) and the front door
//! every call goes through ([`Losses`]).
//!
//! A call is validated once: [`Losses`] turns the configuration and the buffers' shapes into a
//! [`Plan`](crate::plan::Plan), checks the targets' values, and hands the backend a
//! [`Call`] (the plan bound to those buffers). Backend methods (`run_*`)
//! never validate again. Every `run_*` method has a default body that widens the input to
//! `f64`, runs the [`reference`] and rounds the gradient back, so a new backend is correct
//! before it is fast and overrides one method at a time.
//!
//! A backend with its own buffer type (CUDA device memory) builds the same plans from its
//! buffers' lengths ([`Extent`]) and runs them on its buffers ([`Io`] is generic over the
//! storage); see `smoothloss-cuda`'s `*_dev` methods.
//!
//! [`reference`]: crate::reference

use crate::binary::{BceWithLogits, SigmoidFocal};
use crate::box_loss::{BoxFormat, BoxIouPlan, BoxLoss};
use crate::call::{Input, Io, Loss};
use crate::cross_entropy::{CeTargets, CrossEntropy};
use crate::distribution::DistributionFocal;
use crate::element::{Element, to_f64_vec};
use crate::error::Result;
use crate::oriented_box::{ProbIou, ProbIouPairwiseCall, ProbIouPairwisePlan};
use crate::plan::{Call, CeCall, Extent, IouCall, PairCall, PairLoss, Parts};
use crate::quality::{QflTargets, QualityFocal, Varifocal, VarifocalTargets};
use crate::reference;
use crate::regression::{Huber, SmoothL1};

/// Runs `f` on the call widened to `f64` and writes its gradient back in `T`: the default body
/// of every `run_*` method.
fn widened<'a, C, T: Element, X, Y>(
    call: Call<'a, C, T, X>,
    widen: impl FnOnce(&X) -> Y,
    f: impl FnOnce(Call<'_, C, f64, &Y>) -> Loss,
) -> Loss {
    let Parts {
        plan,
        io,
        with,
        upstream,
    } = call.into_parts();
    let x = to_f64_vec(io.input());
    let y = widen(&with);
    let wants = io.grad_dest().wanted();
    let mut g = vec![0.0; if wants { x.len() } else { 0 }];
    let io64 = if wants {
        Io::Separate {
            input: &x[..],
            grad: &mut g[..],
        }
    } else {
        Io::Read(&x[..])
    };
    let loss = f(Call::bind(plan, io64, &y, upstream));
    if wants {
        io.write_grad_f64(&g);
    }
    loss
}

/// Widened class or probability targets.
enum Targets64<'a> {
    Classes(&'a [i64]),
    Probs(Vec<f64>),
}

impl Targets64<'_> {
    fn view(&self) -> CeTargets<'_, f64> {
        match self {
            Targets64::Classes(c) => CeTargets::Classes(c),
            Targets64::Probs(p) => CeTargets::Probs(p),
        }
    }
}

/// Cross-entropy (`CE-*`).
pub trait CrossEntropyOps<T: Element> {
    /// Runs a validated cross-entropy call (logits `[rows, classes]` row-major).
    fn run_cross_entropy(&self, call: CeCall<'_, T>) -> Result<Loss> {
        Ok(widened(
            call,
            |t| match *t {
                CeTargets::Classes(c) => Targets64::Classes(c),
                CeTargets::Probs(p) => Targets64::Probs(to_f64_vec(p)),
            },
            |c| {
                let Parts {
                    plan,
                    io,
                    with,
                    upstream,
                } = c.into_parts();
                reference::cross_entropy(Call::bind(plan, io, with.view(), upstream))
            },
        ))
    }

    /// Runs a validated cross-entropy call with per-row outputs (`CE-14`; their lengths
    /// checked by the front door) and returns the z-loss apart (`CE-15`). The default runs the
    /// reference in `f64` and rounds the outputs to `T`.
    fn run_cross_entropy_rows(
        &self,
        call: CeCall<'_, T>,
        rows: crate::CeRowOutputs<'_, T>,
    ) -> Result<crate::CeOutput> {
        let n = call.plan().rows();
        let mut lse64 = vec![0.0f64; if rows.lse.is_some() { n } else { 0 }];
        let hit = rows.hit;
        let mut z_loss = None;
        let loss = widened(
            call,
            |t| match *t {
                CeTargets::Classes(c) => Targets64::Classes(c),
                CeTargets::Probs(p) => Targets64::Probs(to_f64_vec(p)),
            },
            |c| {
                let Parts {
                    plan,
                    io,
                    with,
                    upstream,
                } = c.into_parts();
                let mut r = crate::CeRowOutputs::new();
                if !lse64.is_empty() {
                    r = r.with_lse(&mut lse64);
                }
                if let Some(h) = hit {
                    r = r.with_hits(h);
                }
                let o =
                    reference::cross_entropy_rows(Call::bind(plan, io, with.view(), upstream), r);
                z_loss = Some(o.z_loss);
                o.loss
            },
        );
        if let Some(l) = rows.lse {
            for (d, s) in l.iter_mut().zip(&lse64) {
                *d = T::from_f64(*s);
            }
        }
        Ok(crate::CeOutput {
            loss,
            z_loss: z_loss.unwrap_or(Loss::Reduced(0.0)),
        })
    }
}

/// Runs an element-wise (or pairwise-aligned) call through the reference in `f64`.
fn widened_pair<'a, C, T: Element>(
    call: PairCall<'a, C, T>,
    f: impl FnOnce(PairCall<'_, C, f64>) -> Loss,
) -> Loss {
    widened(
        call,
        |t| to_f64_vec(t),
        |c| {
            let Parts {
                plan,
                io,
                with,
                upstream,
            } = c.into_parts();
            f(Call::bind(plan, io, &with[..], upstream))
        },
    )
}

/// Box losses on aligned pairs and pairwise IoU (`BOX-*`).
pub trait BoxLossOps<T: Element> {
    /// Runs a validated box-loss call (`pred`, `target` `[N, 4]`; gradient w.r.t. `pred`).
    fn run_box_loss(&self, call: PairCall<'_, BoxLoss, T>) -> Result<Loss> {
        Ok(widened_pair(call, reference::box_loss))
    }

    /// Runs Wise-IoU v3 (`BOX-24`) on a validated Wise-IoU v1 call with a checked `state`,
    /// which it updates: by default two composed [`run_box_loss`](Self::run_box_loss) calls; a
    /// backend may fuse them.
    fn run_wise_iou_v3(
        &self,
        call: PairCall<'_, BoxLoss, T>,
        state: &mut crate::box_loss::WiseIouState,
    ) -> Result<Loss> {
        crate::box_loss::wise_iou_composed(self, call, state)
    }

    /// Runs a validated pairwise IoU (`[N, M]` into `out`).
    fn run_box_iou(&self, call: IouCall<'_, T>) -> Result<()> {
        let (plan, b1, b2, out) = call.into_parts();
        let (b1, b2) = (to_f64_vec(b1), to_f64_vec(b2));
        let mut o = vec![0.0; out.len()];
        reference::box_iou(IouCall::bind(plan, &b1, &b2, &mut o));
        for (d, s) in out.iter_mut().zip(&o) {
            *d = T::from_f64(*s);
        }
        Ok(())
    }
}

/// Smooth L1 and Huber (`REG-*`).
pub trait RegressionOps<T: Element> {
    /// Runs a validated smooth L1 call.
    fn run_smooth_l1(&self, call: PairCall<'_, SmoothL1, T>) -> Result<Loss> {
        Ok(widened_pair(call, reference::smooth_l1))
    }

    /// Runs a validated Huber call.
    fn run_huber(&self, call: PairCall<'_, Huber, T>) -> Result<Loss> {
        Ok(widened_pair(call, reference::huber))
    }
}

/// BCE with logits and sigmoid focal loss (`BIN-*`).
pub trait BinaryOps<T: Element> {
    /// Runs a validated BCE-with-logits call (targets already checked to lie in `[0, 1]`).
    fn run_bce_with_logits(&self, call: PairCall<'_, BceWithLogits, T>) -> Result<Loss> {
        Ok(widened_pair(call, reference::bce_with_logits))
    }

    /// Runs a validated sigmoid focal call (targets already checked to lie in `[0, 1]`).
    fn run_sigmoid_focal(&self, call: PairCall<'_, SigmoidFocal, T>) -> Result<Loss> {
        Ok(widened_pair(call, reference::sigmoid_focal))
    }
}

/// Distribution focal loss (`DFL-*`).
pub trait DistributionOps<T: Element> {
    /// Runs a validated distribution focal call (logits `[rows, bins]`, one target per row).
    fn run_distribution_focal(&self, call: PairCall<'_, DistributionFocal, T>) -> Result<Loss> {
        Ok(widened_pair(call, reference::distribution_focal))
    }
}

/// Varifocal and quality focal losses (`QUAL-*`).
pub trait QualityOps<T: Element> {
    /// Runs a validated varifocal call (targets already checked to lie in `[0, 1]`).
    fn run_varifocal(&self, call: Call<'_, Varifocal, T, VarifocalTargets<'_, T>>) -> Result<Loss> {
        Ok(widened(
            call,
            |t| (to_f64_vec(t.scores), t.labels.map(to_f64_vec)),
            |c| {
                let Parts {
                    plan,
                    io,
                    with,
                    upstream,
                } = c.into_parts();
                let t = VarifocalTargets {
                    scores: &with.0[..],
                    labels: with.1.as_deref(),
                };
                reference::varifocal(Call::bind(plan, io, t, upstream))
            },
        ))
    }

    /// Runs a validated quality focal call (labels in `[0, C]`, scores in `[0, 1]`).
    fn run_quality_focal(
        &self,
        call: Call<'_, QualityFocal, T, QflTargets<'_, T>>,
    ) -> Result<Loss> {
        Ok(widened(
            call,
            |t| (t.labels, to_f64_vec(t.scores)),
            |c| {
                let Parts {
                    plan,
                    io,
                    with,
                    upstream,
                } = c.into_parts();
                let t = QflTargets {
                    labels: with.0,
                    scores: &with.1[..],
                };
                reference::quality_focal(Call::bind(plan, io, t, upstream))
            },
        ))
    }
}

/// Oriented boxes: `1 - ProbIoU` and the pairwise ProbIoU (`OBB-*`).
pub trait OrientedBoxOps<T: Element> {
    /// Runs a validated ProbIoU loss call (`pred`, `target` `[N, 5]`; gradient w.r.t. `pred`).
    fn run_probiou_loss(&self, call: PairCall<'_, ProbIou, T>) -> Result<Loss> {
        Ok(widened_pair(call, reference::probiou_loss))
    }

    /// Runs a validated pairwise ProbIoU (`[N, M]` into `out`).
    fn run_batch_probiou(&self, call: ProbIouPairwiseCall<'_, T>) -> Result<()> {
        let (plan, b1, b2, out) = call.into_parts();
        let (b1, b2) = (to_f64_vec(b1), to_f64_vec(b2));
        let mut o = vec![0.0; out.len()];
        reference::batch_probiou(ProbIouPairwiseCall::bind(plan, &b1, &b2, &mut o));
        for (d, s) in out.iter_mut().zip(&o) {
            *d = T::from_f64(*s);
        }
        Ok(())
    }
}

/// A complete backend for element type `T`: every loss family plus a name.
pub trait Backend<T: Element>:
    CrossEntropyOps<T>
    + BoxLossOps<T>
    + RegressionOps<T>
    + BinaryOps<T>
    + crate::LinearCrossEntropyOps<T>
    + DistributionOps<T>
    + QualityOps<T>
    + OrientedBoxOps<T>
    + Sync
{
    /// Name used in reports ("reference", "cpu", "cuda").
    fn name(&self) -> String;
}

pub(crate) fn extent<T>(input: &Input<'_, T>) -> Extent {
    Extent {
        len: input.io.input().len(),
        shape: input.shape,
        grad: input.io.grad_dest(),
        upstream: input.upstream.shape(),
    }
}

/// The value checks every front-door call makes after its plan (`TOL-4`): the upstream
/// gradient's values, and for `f32` data the parameters' `f32` domain (`f32_params`).
fn check_values<T: Element>(
    upstream: &crate::Upstream<'_>,
    f32_params: impl FnOnce() -> Result<()>,
) -> Result<()> {
    let f32_data = crate::plan::is_f32::<T>();
    if f32_data {
        f32_params()?;
    }
    upstream.check_values(f32_data)
}

/// Plans a call of a loss on two aligned inputs, checks the second input's values and binds
/// the plan to the buffers: the front door of every such loss. Out of line: inlined into each
/// front-door method, its value checks changed how the CPU kernels after it were compiled
/// (BCE 6% slower on 1M elements, measured with identical kernels).
#[inline(never)]
pub(crate) fn bind_pair<'a, C: PairLoss, T: Element>(
    cfg: &'a C,
    input: Input<'a, T>,
    second: &'a [T],
) -> Result<PairCall<'a, C, T>> {
    let plan = cfg.plan_pair(&extent(&input), second.len())?;
    check_values::<T>(&input.upstream, || cfg.check_f32())?;
    cfg.check_second(second)?;
    Ok(Call::bind(plan, input.io, second, input.upstream))
}

/// The front door: every loss on every backend, validated once, in one line.
///
/// The first argument after the configuration is the differentiated input as an [`Input`]
/// (or anything that converts into one: `&[f32]`, `&Vec<f32>`, `&[f32; N]`); it carries the
/// shape, where the gradient goes (none, a separate buffer, or over the input) and the upstream
/// gradient. The result is a [`Loss`]: one value for `mean` / `sum`, one per item for `none`.
///
/// ```
/// use smoothloss_core::{CrossEntropy, Input, Losses, ReferenceBackend};
/// let b = ReferenceBackend;
/// let (z, t) = ([2.0_f64, 0.5, -1.0, 0.1, 0.2, 0.3], [0_i64, 2]);
/// let loss = b.cross_entropy(&CrossEntropy::smooth_loss(0.1), Input::matrix(&z, 2, 3), &t)?;
/// let mut g = [0.0; 6];
/// let same = b.cross_entropy(&CrossEntropy::smooth_loss(0.1), Input::matrix(&z, 2, 3).with_grad(&mut g), &t)?;
/// assert_eq!(loss, same);
/// # Ok::<(), smoothloss_core::LossError>(())
/// ```
pub trait Losses<T: Element>: Backend<T> {
    /// Cross-entropy over logits `[rows, classes]` (`CE-*`): class indices (`&[i64]`, the
    /// rows follow from their count when the input has no shape) or
    /// [`CeTargets::Probs`] `[rows, classes]`.
    fn cross_entropy<'a>(
        &self,
        cfg: &CrossEntropy,
        logits: impl Into<Input<'a, T>>,
        targets: impl Into<CeTargets<'a, T>>,
    ) -> Result<Loss> {
        let input = logits.into();
        let targets = targets.into();
        let plan = cfg.plan(&extent(&input), targets.shape())?;
        check_values::<T>(&input.upstream, || cfg.check_f32())?;
        if let CeTargets::Classes(t) = targets {
            cfg.check_targets(t, plan.classes())?;
        }
        self.run_cross_entropy(Call::bind(plan, input.io, targets, input.upstream))
    }

    /// Fused linear cross-entropy (`LCE-*`): the cross-entropy `cfg.ce` of the logits
    /// `hidden @ weight^T + bias` without the `[N, V]` logits in memory at once, with the
    /// gradients with respect to `hidden`, `weight` and `bias` where `input` says
    /// ([`Linear::with_grads`](crate::Linear::with_grads)); targets as for
    /// [`Losses::cross_entropy`].
    fn linear_cross_entropy<'a>(
        &self,
        cfg: &crate::LinearCrossEntropy,
        input: crate::Linear<'a, T>,
        targets: impl Into<CeTargets<'a, T>>,
    ) -> Result<Loss> {
        let targets = targets.into();
        let plan = cfg.plan(&input.shape(), targets.shape())?;
        check_values::<T>(&input.upstream, || cfg.ce.check_f32())?;
        if let CeTargets::Classes(t) = targets {
            cfg.ce.check_targets(t, plan.vocab())?;
        }
        self.run_linear_cross_entropy(crate::LceCall::bind(plan, input, targets))
    }

    /// Fused linear cross-entropy with the per-row outputs of `CE-14` (each row's log-sum-exp
    /// of `h W^T + b`, softcapped, and its argmax hit) and the z-loss apart (`CE-15`), from the
    /// chunks' own passes: as [`Losses::linear_cross_entropy`] otherwise.
    fn linear_cross_entropy_rows<'a>(
        &self,
        cfg: &crate::LinearCrossEntropy,
        input: crate::Linear<'a, T>,
        targets: impl Into<CeTargets<'a, T>>,
        rows: crate::CeRowOutputs<'_, T>,
    ) -> Result<crate::CeOutput> {
        let targets = targets.into();
        let plan = cfg.plan(&input.shape(), targets.shape())?;
        plan.ce.check_row_outputs(
            rows.lse.as_ref().map(|l| l.len()),
            rows.hit.as_ref().map(|h| h.len()),
            targets.shape(),
        )?;
        check_values::<T>(&input.upstream, || cfg.ce.check_f32())?;
        if let CeTargets::Classes(t) = targets {
            cfg.ce.check_targets(t, plan.vocab())?;
        }
        self.run_linear_cross_entropy_rows(crate::LceCall::bind(plan, input, targets), rows)
    }

    /// Cross-entropy with per-row outputs (`CE-14`: each row's log-sum-exp, its argmax hit)
    /// written in the same pass, and the z-loss returned apart from the loss (`CE-15`, Liger's
    /// `return_z_loss`): as [`Losses::cross_entropy`] otherwise.
    ///
    /// ```
    /// use smoothloss_core::{CeRowOutputs, CrossEntropy, Input, Losses, ReferenceBackend};
    /// let (z, t) = ([2.0_f64, 0.5, -1.0, 0.1, 0.2, 0.3], [0_i64, 2]);
    /// let (mut lse, mut hit) = ([0.0; 2], [false; 2]);
    /// let ce = CrossEntropy::new().with_z_loss(1e-4);
    /// let out = ReferenceBackend.cross_entropy_rows(&ce, Input::matrix(&z, 2, 3), &t,
    ///     CeRowOutputs::new().with_lse(&mut lse).with_hits(&mut hit))?;
    /// assert_eq!(hit, [true, true]);
    /// assert!((out.z_loss.value() - 1e-4 * (lse[0] * lse[0] + lse[1] * lse[1]) / 2.0).abs() < 1e-15);
    /// # Ok::<(), smoothloss_core::LossError>(())
    /// ```
    fn cross_entropy_rows<'a>(
        &self,
        cfg: &CrossEntropy,
        logits: impl Into<Input<'a, T>>,
        targets: impl Into<CeTargets<'a, T>>,
        rows: crate::CeRowOutputs<'_, T>,
    ) -> Result<crate::CeOutput> {
        let input = logits.into();
        let targets = targets.into();
        let plan = cfg.plan(&extent(&input), targets.shape())?;
        plan.check_row_outputs(
            rows.lse.as_ref().map(|l| l.len()),
            rows.hit.as_ref().map(|h| h.len()),
            targets.shape(),
        )?;
        check_values::<T>(&input.upstream, || cfg.check_f32())?;
        if let CeTargets::Classes(t) = targets {
            cfg.check_targets(t, plan.classes())?;
        }
        self.run_cross_entropy_rows(Call::bind(plan, input.io, targets, input.upstream), rows)
    }

    /// Box loss over aligned pairs `pred`, `target` `[N, 4]` in `cfg.format` (`BOX-*`); the
    /// gradient is with respect to `pred`, in the same layout.
    fn box_loss<'a>(
        &self,
        cfg: &BoxLoss,
        pred: impl Into<Input<'a, T>>,
        target: &'a [T],
    ) -> Result<Loss> {
        self.run_box_loss(bind_pair(cfg, pred.into(), target)?)
    }

    /// Wise-IoU v3 over aligned pairs (`BOX-24`, `cfg.kind` must be `wiou`): Wise-IoU v1 times
    /// the detached focusing coefficient of each pair; `state`'s running mean of the IoU loss
    /// is updated from this batch before use, as the author's code, and written back.
    fn wise_iou_v3<'a>(
        &self,
        cfg: &BoxLoss,
        state: &mut crate::box_loss::WiseIouState,
        pred: impl Into<Input<'a, T>>,
        target: &'a [T],
    ) -> Result<Loss> {
        crate::box_loss::run_wise_iou_v3(self, cfg, state, pred.into(), target)
    }

    /// Pairwise IoU of `boxes1` `[N, 4]` and `boxes2` `[M, 4]` into `out` `[N, M]`
    /// (`BOX-13`, `torchvision.ops.box_iou`; the seed's `bbox_iou`).
    #[doc(alias = "bbox_iou")]
    fn box_iou(&self, format: BoxFormat, boxes1: &[T], boxes2: &[T], out: &mut [T]) -> Result<()> {
        let plan = BoxIouPlan::new(format, boxes1.len(), boxes2.len(), out.len())?;
        self.run_box_iou(IouCall::bind(plan, boxes1, boxes2, out))
    }

    /// Smooth L1 loss, element-wise (`REG-1`, `REG-2`).
    fn smooth_l1<'a>(
        &self,
        cfg: &SmoothL1,
        pred: impl Into<Input<'a, T>>,
        target: &'a [T],
    ) -> Result<Loss> {
        self.run_smooth_l1(bind_pair(cfg, pred.into(), target)?)
    }

    /// Huber loss, element-wise (`REG-3`, `REG-4`).
    fn huber<'a>(
        &self,
        cfg: &Huber,
        pred: impl Into<Input<'a, T>>,
        target: &'a [T],
    ) -> Result<Loss> {
        self.run_huber(bind_pair(cfg, pred.into(), target)?)
    }

    /// Binary cross-entropy with logits, element-wise (`BIN-1`, `BIN-2`); targets in `[0, 1]`.
    fn bce_with_logits<'a>(
        &self,
        cfg: &BceWithLogits,
        logits: impl Into<Input<'a, T>>,
        targets: &'a [T],
    ) -> Result<Loss> {
        self.run_bce_with_logits(bind_pair(cfg, logits.into(), targets)?)
    }

    /// Sigmoid focal loss, element-wise (`BIN-3`, `BIN-4`); targets in `[0, 1]`.
    fn sigmoid_focal<'a>(
        &self,
        cfg: &SigmoidFocal,
        logits: impl Into<Input<'a, T>>,
        targets: &'a [T],
    ) -> Result<Loss> {
        self.run_sigmoid_focal(bind_pair(cfg, logits.into(), targets)?)
    }

    /// Distribution focal loss over logits `[rows, bins]` and one target per row (`DFL-*`);
    /// ultralytics' `DFLoss(reg_max)(pred_dist, target)` is
    /// `b.distribution_focal(&DistributionFocal::ultralytics(), Input::matrix(&z, 4 * n, reg_max), &t)`.
    #[doc(alias = "DFLoss")]
    fn distribution_focal<'a>(
        &self,
        cfg: &DistributionFocal,
        logits: impl Into<Input<'a, T>>,
        targets: &'a [T],
    ) -> Result<Loss> {
        let input = logits.into();
        let plan = cfg.plan(&extent(&input), targets.len())?;
        check_values::<T>(&input.upstream, || Ok(()))?;
        cfg.check_targets(targets, cfg.bins(&plan))?;
        self.run_distribution_focal(Call::bind(plan, input.io, targets, input.upstream))
    }

    /// Varifocal loss, element-wise (`QUAL-1` .. `QUAL-4`): `targets` is the scores
    /// (mmdetection) or `(scores, labels)` (ultralytics), each the logits' shape, in `[0, 1]`.
    #[doc(alias = "VarifocalLoss")]
    fn varifocal<'a>(
        &self,
        cfg: &Varifocal,
        logits: impl Into<Input<'a, T>>,
        targets: impl Into<VarifocalTargets<'a, T>>,
    ) -> Result<Loss> {
        let input = logits.into();
        let t = targets.into();
        let labels_len = t.labels.map_or(0, <[T]>::len);
        let plan = cfg.plan(&extent(&input), t.scores.len(), labels_len)?;
        check_values::<T>(&input.upstream, || cfg.check_f32())?;
        cfg.check_targets(&t)?;
        // Backends see labels only with the weight that reads them (the plan checked that the
        // others got none: an empty slice is dropped here).
        let t = VarifocalTargets {
            labels: t
                .labels
                .filter(|_| cfg.weight == crate::quality::VarifocalWeight::Ultralytics),
            ..t
        };
        self.run_varifocal(Call::bind(plan, input.io, t, input.upstream))
    }

    /// Quality focal loss over logits `[rows, classes]` (`QUAL-5` .. `QUAL-7`): per row a
    /// label in `[0, classes]` (`classes` is the background) and a score in `[0, 1]`.
    #[doc(alias = "QualityFocalLoss")]
    fn quality_focal<'a>(
        &self,
        cfg: &QualityFocal,
        logits: impl Into<Input<'a, T>>,
        labels: &'a [i64],
        scores: &'a [T],
    ) -> Result<Loss> {
        let input = logits.into();
        let plan = cfg.plan(&extent(&input), labels.len(), scores.len())?;
        check_values::<T>(&input.upstream, || cfg.check_f32())?;
        cfg.check_targets(labels, scores, plan.width)?;
        let t = QflTargets { labels, scores };
        self.run_quality_focal(Call::bind(plan, input.io, t, input.upstream))
    }

    /// `1 - ProbIoU` over aligned oriented-box pairs `pred`, `target` `[N, 5]` in
    /// `(cx, cy, w, h, angle)` (`OBB-5`); the gradient is with respect to `pred`.
    #[doc(alias = "probiou")]
    fn probiou_loss<'a>(
        &self,
        cfg: &ProbIou,
        pred: impl Into<Input<'a, T>>,
        target: &'a [T],
    ) -> Result<Loss> {
        self.run_probiou_loss(bind_pair(cfg, pred.into(), target)?)
    }

    /// Pairwise ProbIoU of `boxes1` `[N, 5]` and `boxes2` `[M, 5]` into `out` `[N, M]`
    /// (`OBB-6`, ultralytics `batch_probiou`, its `eps`).
    fn batch_probiou(&self, eps: f64, boxes1: &[T], boxes2: &[T], out: &mut [T]) -> Result<()> {
        let plan = ProbIouPairwisePlan::new(eps, boxes1.len(), boxes2.len(), out.len())?;
        if crate::plan::is_f32::<T>() {
            ProbIou::new().with_eps(eps).check_f32()?;
        }
        self.run_batch_probiou(ProbIouPairwiseCall::bind(plan, boxes1, boxes2, out))
    }
}

impl<T: Element, B: Backend<T> + ?Sized> Losses<T> for B {}

/// The reference implementation as a backend (every method is the default): the `f64` spec,
/// also usable with `f32` data (computed in `f64`, rounded once).
#[derive(Debug, Clone, Copy, Default)]
pub struct ReferenceBackend;

macro_rules! reference_backend {
    ($($t:ty),*) => {$(
        impl CrossEntropyOps<$t> for ReferenceBackend {}
        impl BoxLossOps<$t> for ReferenceBackend {}
        impl RegressionOps<$t> for ReferenceBackend {}
        impl BinaryOps<$t> for ReferenceBackend {}
        impl crate::LinearCrossEntropyOps<$t> for ReferenceBackend {}
        impl DistributionOps<$t> for ReferenceBackend {}
        impl QualityOps<$t> for ReferenceBackend {}
        impl OrientedBoxOps<$t> for ReferenceBackend {}
        impl Backend<$t> for ReferenceBackend {
            fn name(&self) -> String {
                "reference".into()
            }
        }
    )*};
}
reference_backend!(f32, f64);
