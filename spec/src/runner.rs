//! Runs a decoded [`LossCall`] through any backend, at element type `T`.

use crate::cases::{LossCall, Targets};
use smoothloss_core::{Backend, BoxFormat, CeTargets, Element, Input, LossError, Losses, Upstream};

/// What a backend returned for a call.
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    /// Loss values (or the pairwise IoU).
    pub loss: Vec<f64>,
    /// Gradient with respect to the differentiated input, widened to f64.
    pub grad: Option<Vec<f64>>,
}

fn narrow<T: Element>(v: &[f64]) -> Vec<T> {
    v.iter().map(|&x| T::from_f64(x)).collect()
}

fn widen<T: Element>(v: &[T]) -> Vec<f64> {
    v.iter().map(|x| x.to_f64()).collect()
}

/// Rounds every floating input of a call to `T` and back, so that the f64 reference can be
/// evaluated on exactly the inputs an `f32` backend sees (`TOL-2`).
pub fn round_inputs<T: Element>(call: &LossCall) -> LossCall {
    let r = |v: &Vec<f64>| widen::<T>(&narrow::<T>(v));
    match call {
        LossCall::CrossEntropy {
            cfg,
            logits,
            rows,
            classes,
            targets,
        } => LossCall::CrossEntropy {
            cfg: cfg.clone(),
            logits: r(logits),
            rows: *rows,
            classes: *classes,
            targets: match targets {
                Targets::Classes(t) => Targets::Classes(t.clone()),
                Targets::Probs(p) => Targets::Probs(r(p)),
            },
        },
        LossCall::BoxLoss { cfg, pred, target } => LossCall::BoxLoss {
            cfg: *cfg,
            pred: r(pred),
            target: r(target),
        },
        LossCall::BoxIou {
            format,
            boxes1,
            boxes2,
        } => LossCall::BoxIou {
            format: *format,
            boxes1: r(boxes1),
            boxes2: r(boxes2),
        },
        LossCall::SmoothL1 { cfg, pred, target } => LossCall::SmoothL1 {
            cfg: *cfg,
            pred: r(pred),
            target: r(target),
        },
        LossCall::Huber { cfg, pred, target } => LossCall::Huber {
            cfg: *cfg,
            pred: r(pred),
            target: r(target),
        },
        LossCall::Bce {
            cfg,
            logits,
            targets,
        } => LossCall::Bce {
            cfg: cfg.clone(),
            logits: r(logits),
            targets: r(targets),
        },
        LossCall::Focal {
            cfg,
            logits,
            targets,
        } => LossCall::Focal {
            cfg: *cfg,
            logits: r(logits),
            targets: r(targets),
        },
        LossCall::Detection(d) => LossCall::Detection(d.round::<T>()),
    }
}

/// The most bytes the runner allocates for one output (a case file is small data; a
/// pairwise IoU of 60,000 x 60,000 boxes is not, and would abort the process).
pub const MAX_OUTPUT_BYTES: usize = 1 << 32;

/// A zeroed `[n, m]` output, or a refusal naming the size when it will not fit.
fn output_buffer<T: Element>(n: usize, m: usize) -> Result<Vec<T>, LossError> {
    let refuse = |why: String| LossError::Unsupported {
        backend: "case runner".into(),
        what: format!("a pairwise IoU of {n} x {m} boxes: {why}"),
    };
    let bytes = n
        .checked_mul(m)
        .and_then(|e| e.checked_mul(std::mem::size_of::<T>()))
        .ok_or_else(|| refuse("its size overflows usize".into()))?;
    if bytes > MAX_OUTPUT_BYTES {
        return Err(refuse(format!(
            "needs {bytes} bytes, more than the runner's limit of {MAX_OUTPUT_BYTES}"
        )));
    }
    let mut out = Vec::new();
    out.try_reserve_exact(n * m)
        .map_err(|e| refuse(format!("cannot allocate {bytes} bytes: {e}")))?;
    out.resize(n * m, T::from_f64(0.0));
    Ok(out)
}

fn run_box_iou<T: Element, B: Backend<T> + ?Sized>(
    backend: &B,
    format: BoxFormat,
    boxes1: &[f64],
    boxes2: &[f64],
) -> Result<Output, LossError> {
    let n = boxes1.len() / 4;
    let m = boxes2.len() / 4;
    let mut out = output_buffer::<T>(n, m)?;
    backend.box_iou(format, &narrow::<T>(boxes1), &narrow::<T>(boxes2), &mut out)?;
    Ok(Output {
        loss: widen(&out),
        grad: None,
    })
}

/// The input of a call: `x`, the gradient into `g` when given, scaled by `upstream`.
fn input<'a, T>(x: &'a [T], g: Option<&'a mut [T]>, upstream: Upstream<'a>) -> Input<'a, T> {
    let i = Input::new(x).with_upstream(upstream);
    match g {
        Some(g) => i.with_grad(g),
        None => i,
    }
}

/// Runs `call` on `backend` with data of type `T` (inputs rounded to `T`), computing the
/// gradient when `with_grad` is set, with the given upstream gradient.
pub fn run_call_with<T: Element, B: Backend<T> + ?Sized>(
    backend: &B,
    call: &LossCall,
    upstream: Upstream<'_>,
    with_grad: bool,
) -> Result<Output, LossError> {
    // The differentiated input and its second input, rounded to `T`.
    let (x, second) = match call {
        LossCall::Detection(d) => return d.run(backend, upstream, with_grad),
        LossCall::CrossEntropy { logits, .. } => (logits, None),
        LossCall::BoxLoss { pred, target, .. }
        | LossCall::SmoothL1 { pred, target, .. }
        | LossCall::Huber { pred, target, .. } => (pred, Some(target)),
        LossCall::Bce {
            logits, targets, ..
        }
        | LossCall::Focal {
            logits, targets, ..
        } => (logits, Some(targets)),
        LossCall::BoxIou {
            format,
            boxes1,
            boxes2,
        } => return run_box_iou(backend, *format, boxes1, boxes2),
    };
    let x = narrow::<T>(x);
    let y = second.map(|v| narrow::<T>(v)).unwrap_or_default();
    let mut g = with_grad.then(|| vec![T::from_f64(0.0); x.len()]);
    let inp = input(&x, g.as_deref_mut(), upstream);
    let loss = match call {
        LossCall::CrossEntropy {
            cfg,
            rows,
            classes,
            targets,
            ..
        } => {
            let inp = inp.shaped(*rows, *classes);
            match targets {
                Targets::Classes(c) => backend.cross_entropy(cfg, inp, &c[..])?,
                Targets::Probs(p) => {
                    let probs = narrow::<T>(p);
                    backend.cross_entropy(cfg, inp, CeTargets::Probs(&probs[..]))?
                }
            }
        }
        LossCall::BoxLoss { cfg, .. } => backend.box_loss(cfg, inp, &y)?,
        LossCall::SmoothL1 { cfg, .. } => backend.smooth_l1(cfg, inp, &y)?,
        LossCall::Huber { cfg, .. } => backend.huber(cfg, inp, &y)?,
        LossCall::Bce { cfg, .. } => backend.bce_with_logits(cfg, inp, &y)?,
        LossCall::Focal { cfg, .. } => backend.sigmoid_focal(cfg, inp, &y)?,
        LossCall::BoxIou {
            format,
            boxes1,
            boxes2,
        } => return run_box_iou(backend, *format, boxes1, boxes2),
        LossCall::Detection(_) => unreachable!("returned above"),
    };
    Ok(Output {
        loss: loss.into_values(),
        grad: g.map(|g| widen(&g)),
    })
}

/// Runs `call` with an upstream gradient of one and the gradient requested.
pub fn run_call<T: Element, B: Backend<T> + ?Sized>(
    backend: &B,
    call: &LossCall,
) -> Result<Output, LossError> {
    run_call_with(backend, call, Upstream::ONE, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use smoothloss_core::ReferenceBackend;

    #[test]
    fn a_pairwise_iou_that_will_not_fit_is_refused_with_a_message() {
        // 60,000 x 60,000 boxes: 28.8 GB of f64 output; the runner refuses before allocating.
        let boxes: Vec<f64> = (0..60_000).flat_map(|_| [0.0, 0.0, 1.0, 1.0]).collect();
        let call = LossCall::BoxIou {
            format: BoxFormat::Xyxy,
            boxes1: boxes.clone(),
            boxes2: boxes,
        };
        let err = run_call::<f64, _>(&ReferenceBackend, &call).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, LossError::Unsupported { .. }), "{msg}");
        assert!(
            msg.contains("60000 x 60000") && msg.contains("28800000000"),
            "{msg}"
        );
        assert!(output_buffer::<f32>(usize::MAX, 2).is_err());
        assert_eq!(output_buffer::<f32>(2, 3).map(|v| v.len()), Ok(6));
    }
}
