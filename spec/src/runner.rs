//! Runs a decoded [`LossCall`] through any backend, at element type `T`.

use crate::cases::{LossCall, Targets};
use smoothloss_core::{Backend, CeTargets, Element, LossError, Upstream};

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
    macro_rules! grad_buf {
        ($len:expr) => {
            if with_grad {
                Some(vec![T::from_f64(0.0); $len])
            } else {
                None
            }
        };
    }
    match call {
        LossCall::CrossEntropy {
            cfg,
            logits,
            rows,
            classes,
            targets,
        } => {
            let z = narrow::<T>(logits);
            let probs;
            let t = match targets {
                Targets::Classes(c) => CeTargets::Classes(c),
                Targets::Probs(p) => {
                    probs = narrow::<T>(p);
                    CeTargets::Probs(&probs[..])
                }
            };
            let mut g = grad_buf!(z.len());
            let loss =
                backend.cross_entropy(cfg, &z, *rows, *classes, t, upstream, g.as_deref_mut())?;
            Ok(Output {
                loss,
                grad: g.map(|g| widen(&g)),
            })
        }
        LossCall::BoxLoss { cfg, pred, target } => {
            let p = narrow::<T>(pred);
            let mut g = grad_buf!(p.len());
            let loss =
                backend.box_loss(cfg, &p, &narrow::<T>(target), upstream, g.as_deref_mut())?;
            Ok(Output {
                loss,
                grad: g.map(|g| widen(&g)),
            })
        }
        LossCall::BoxIou {
            format,
            boxes1,
            boxes2,
        } => {
            let n = boxes1.len() / 4;
            let m = boxes2.len() / 4;
            let mut out = vec![T::from_f64(0.0); n.saturating_mul(m)];
            backend.box_iou(
                *format,
                &narrow::<T>(boxes1),
                &narrow::<T>(boxes2),
                &mut out,
            )?;
            Ok(Output {
                loss: widen(&out),
                grad: None,
            })
        }
        LossCall::SmoothL1 { cfg, pred, target } => {
            let p = narrow::<T>(pred);
            let mut g = grad_buf!(p.len());
            let loss =
                backend.smooth_l1(cfg, &p, &narrow::<T>(target), upstream, g.as_deref_mut())?;
            Ok(Output {
                loss,
                grad: g.map(|g| widen(&g)),
            })
        }
        LossCall::Huber { cfg, pred, target } => {
            let p = narrow::<T>(pred);
            let mut g = grad_buf!(p.len());
            let loss = backend.huber(cfg, &p, &narrow::<T>(target), upstream, g.as_deref_mut())?;
            Ok(Output {
                loss,
                grad: g.map(|g| widen(&g)),
            })
        }
        LossCall::Bce {
            cfg,
            logits,
            targets,
        } => {
            let x = narrow::<T>(logits);
            let mut g = grad_buf!(x.len());
            let loss = backend.bce_with_logits(
                cfg,
                &x,
                &narrow::<T>(targets),
                upstream,
                g.as_deref_mut(),
            )?;
            Ok(Output {
                loss,
                grad: g.map(|g| widen(&g)),
            })
        }
        LossCall::Focal {
            cfg,
            logits,
            targets,
        } => {
            let x = narrow::<T>(logits);
            let mut g = grad_buf!(x.len());
            let loss = backend.sigmoid_focal(
                cfg,
                &x,
                &narrow::<T>(targets),
                upstream,
                g.as_deref_mut(),
            )?;
            Ok(Output {
                loss,
                grad: g.map(|g| widen(&g)),
            })
        }
    }
}

/// Runs `call` with an upstream gradient of one and the gradient requested.
pub fn run_call<T: Element, B: Backend<T> + ?Sized>(
    backend: &B,
    call: &LossCall,
) -> Result<Output, LossError> {
    run_call_with(backend, call, Upstream::ONE, true)
}
