//! The fused linear cross-entropy (`LCE-*`) for burn: the cross-entropy of `hidden W^T`
//! without the `[N, V]` logits, the gradients with respect to `hidden` and `weight`.
//!
//! One fused call on the host computes the value and both gradients; they are recorded with
//! burn's own ops as `v + sum(h g_h - h* g_h) + sum(w g_w - w* g_w)` (`*`: detached), whose value
//! is exactly `v` (each difference is an exact 0 before the sums) and whose gradients are the
//! fused ones times the upstream, on any autodiff backend. Under `none` the weight's gradient
//! `sum_i u_i (p_i - y_i) h_i^T` depends on the per-row upstream `u`, which a kept gradient
//! cannot carry: `none` is served when `weight` is not tracked (a frozen head), and refused
//! with a typed error otherwise.

use burn_tensor::{DType, Int, Tensor, TensorData};
use smoothloss_core::{
    CeTargets, Element, Linear, LinearCrossEntropy, LossError, Losses, Reduction, ReferenceBackend,
    Result,
};

use crate::data_err;

/// `(values, d hidden, d weight)` of one host call.
type Out<T> = (Vec<T>, Option<(Vec<T>, Vec<T>)>);

fn call<T: Element, B: Losses<T>>(
    b: &B,
    cfg: &LinearCrossEntropy,
    h: &[T],
    w: &[T],
    hd: usize,
    targets: &[i64],
    grads: bool,
) -> Result<Out<T>> {
    let zero = T::from_f64(0.0);
    let (mut dh, mut dw) = if grads {
        (vec![zero; h.len()], vec![zero; w.len()])
    } else {
        (Vec::new(), Vec::new())
    };
    let input = Linear::new(h, w, hd);
    let input = if grads {
        input.with_grads(&mut dh, &mut dw)
    } else {
        input
    };
    let loss = b.linear_cross_entropy(cfg, input, CeTargets::Classes(targets))?;
    let values = loss.values().iter().map(|&v| T::from_f64(v)).collect();
    Ok((values, grads.then_some((dh, dw))))
}

/// The fused linear cross-entropy of `hidden [N, H]`, `weight [V, H]` and class indices
/// `[N]` (see the [module docs](self)).
pub(crate) fn linear_cross_entropy(
    hidden: Tensor<2>,
    weight: Tensor<2>,
    targets: Tensor<1, Int>,
    cfg: &LinearCrossEntropy,
) -> Result<Tensor<1>> {
    let [n, hd] = hidden.dims();
    let [v, hw] = weight.dims();
    if hw != hd {
        return Err(LossError::WrongShape {
            what: "weight",
            expected: vec![v, hd],
            got: vec![v, hw],
        });
    }
    if targets.dims() != [n] {
        return Err(LossError::WrongShape {
            what: "targets",
            expected: vec![n],
            got: targets.dims().to_vec(),
        });
    }
    let per_row = cfg.ce.reduction == Reduction::None;
    let (track_h, track_w) = (hidden.is_tracked(), weight.is_tracked());
    if per_row && track_w {
        return Err(LossError::InvalidParameter {
            name: "reduction",
            value: f64::NAN,
            reason: "burn's linear_cross_entropy with reduction `none` and a tracked weight: the weight's gradient depends on the per-row upstream, which a kept gradient cannot carry (use mean or sum, or detach the weight)",
        });
    }
    let grads = track_h || track_w;
    let (device, dtype) = (hidden.device(), hidden.dtype());
    let t = targets.try_into_data().map_err(data_err)?.convert::<i64>();
    let t = t.as_slice::<i64>().map_err(data_err)?;
    let hdata = hidden.clone().try_into_data().map_err(data_err)?;
    let wdata = weight.clone().try_into_data().map_err(data_err)?;
    let (values, g) = if dtype == DType::F64 && wdata.dtype() == DType::F64 {
        let h = hdata.as_slice::<f64>().map_err(data_err)?;
        let w = wdata.as_slice::<f64>().map_err(data_err)?;
        let (vals, g) = call(&ReferenceBackend, cfg, h, w, hd, t, grads)?;
        let data = |x: Vec<f64>, s: Vec<usize>| TensorData::new(x, s);
        let len = vals.len();
        (
            data(vals, vec![len]),
            g.map(|(a, b)| (data(a, vec![n, hd]), data(b, vec![v, hd]))),
        )
    } else {
        let (hdata, wdata) = (hdata.convert::<f32>(), wdata.convert::<f32>());
        let h = hdata.as_slice::<f32>().map_err(data_err)?;
        let w = wdata.as_slice::<f32>().map_err(data_err)?;
        let (vals, g) = call(crate::call::cpu(), cfg, h, w, hd, t, grads)?;
        let data = |x: Vec<f32>, s: Vec<usize>| TensorData::new(x, s);
        let len = vals.len();
        (
            data(vals, vec![len]),
            g.map(|(a, b)| (data(a, vec![n, hd]), data(b, vec![v, hd]))),
        )
    };
    let values = Tensor::<1>::from_data(values, (&device, dtype));
    let Some((gh, gw)) = g else {
        return Ok(values);
    };
    let zero = |x: Tensor<2>, g: TensorData| -> Tensor<2> {
        let g = Tensor::<2>::from_data(g, (&device, dtype));
        x.clone().mul(g.clone()).sub(x.detach().mul(g))
    };
    let lin = if per_row {
        // Only `hidden` is tracked: its gradient is per row.
        zero(hidden, gh).sum_dim(1).reshape([n])
    } else {
        let mut lin: Option<Tensor<1>> = None;
        for (x, g, on) in [(hidden, gh, track_h), (weight, gw, track_w)] {
            if on {
                let s = zero(x, g).sum();
                lin = Some(match lin {
                    Some(l) => l.add(s),
                    None => s,
                });
            }
        }
        match lin {
            Some(l) => l,
            None => return Ok(values),
        }
    };
    Ok(values.add(lin))
}
