//! Cases of the fused linear cross-entropy (`loss = "linear_cross_entropy"`,
//! `spec/cases/linear_ce.json`): decoding, running on any backend, and the comparison of the
//! loss and the three gradients.
//!
//! Params: the cross-entropy's, read by the plain cross-entropy's reader (`label_smoothing`,
//! `ignore_index`, `class_weights` of length V, `reduction`, and `CE-10` .. `CE-13`: `softcap`,
//! `z_loss`, `row_weights` of length N, `denominator`) and optionally `chunk_rows`. Inputs: `hidden` `[N, H]`, `weight` `[V, H]`,
//! optionally `bias` `[V]`, and `targets` (N ints) or `target_probs` `[N, V]`. Expected: `loss`
//! and `grad.hidden`, `grad.weight` and (with a bias) `grad.bias`.

use super::{Case, CaseError, Targets};
use serde_json::Value;
use smoothloss_core::{
    Backend, CeTargets, Element, Linear, LinearCrossEntropy, LossError, Losses, Upstream,
};

/// A decoded linear cross-entropy call, in `f64`.
#[derive(Debug, Clone, PartialEq)]
pub struct LinearCeCall {
    /// Configuration.
    pub cfg: LinearCrossEntropy,
    /// `[N, H]`.
    pub hidden: Vec<f64>,
    /// `[V, H]`.
    pub weight: Vec<f64>,
    /// `[V]`.
    pub bias: Option<Vec<f64>>,
    /// `H`.
    pub hidden_dim: usize,
    /// Targets.
    pub targets: Targets,
}

impl LinearCeCall {
    /// Rows `N`.
    pub fn rows(&self) -> usize {
        self.hidden.len() / self.hidden_dim.max(1)
    }

    /// Vocabulary `V`.
    pub fn vocab(&self) -> usize {
        self.weight.len() / self.hidden_dim.max(1)
    }

    /// Every floating input rounded to `T` and back (`TOL-2`).
    pub fn rounded<T: Element>(&self) -> Self {
        let r = |v: &[f64]| -> Vec<f64> { v.iter().map(|&x| T::from_f64(x).to_f64()).collect() };
        Self {
            cfg: self.cfg.clone(),
            hidden: r(&self.hidden),
            weight: r(&self.weight),
            bias: self.bias.as_deref().map(r),
            hidden_dim: self.hidden_dim,
            targets: match &self.targets {
                Targets::Classes(t) => Targets::Classes(t.clone()),
                Targets::Probs(p) => Targets::Probs(r(p)),
            },
        }
    }
}

/// What a linear cross-entropy returns (or a case expects), widened to `f64`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LinearCeOutput {
    /// Loss values (one for `mean`/`sum`, one per row for `none`).
    pub loss: Vec<f64>,
    /// `d hidden`, `d weight`, `d bias` (empty without a bias), when computed.
    pub grads: Option<[Vec<f64>; 3]>,
}

impl Case {
    fn grad_of(&self, name: &str) -> Result<Vec<f64>, CaseError> {
        match self.expected.get("grad").and_then(|g| g.get(name)) {
            Some(v) => self.numbers(v, name),
            None => Err(self.malformed(format!("missing expected `grad.{name}`"))),
        }
    }

    /// Decodes a `linear_cross_entropy` case.
    pub fn decode_linear_ce(&self) -> Result<(LinearCeCall, LinearCeOutput), CaseError> {
        if self.loss != "linear_cross_entropy" {
            return Err(self.unsupported(format!(
                "loss {:?} is not a linear cross-entropy",
                self.loss
            )));
        }
        self.check_params(&[
            "label_smoothing",
            "ignore_index",
            "class_weights",
            "reduction",
            "softcap",
            "z_loss",
            "row_weights",
            "denominator",
            "chunk_rows",
        ])?;
        let mut cfg = LinearCrossEntropy::new(self.ce_config()?);
        if let Some(c) = self.param("chunk_rows") {
            let c = c
                .as_u64()
                .ok_or_else(|| self.malformed("`chunk_rows` must be a non-negative integer"))?;
            cfg = cfg.with_chunk_rows(c as usize);
        }
        let hidden = self.tensor("hidden")?;
        let weight = self.tensor("weight")?;
        if hidden.shape.len() != 2 || weight.shape.len() != 2 || hidden.shape[1] != weight.shape[1]
        {
            return Err(self.malformed("`hidden` must be [N, H] and `weight` [V, H]"));
        }
        let bias = match self.inputs.get("bias") {
            None | Some(Value::Null) => None,
            Some(_) => Some(self.tensor("bias")?.data),
        };
        let targets = match (self.inputs.get("targets"), self.inputs.get("target_probs")) {
            (Some(t), None) => Targets::Classes(
                t.as_array()
                    .ok_or_else(|| self.malformed("`targets` must be an array"))?
                    .iter()
                    .map(Value::as_i64)
                    .collect::<Option<_>>()
                    .ok_or_else(|| self.malformed("`targets` must hold integers"))?,
            ),
            (None, Some(_)) => Targets::Probs(self.tensor("target_probs")?.data),
            _ => return Err(self.malformed("need exactly one of `targets`, `target_probs`")),
        };
        let loss = self.numbers(
            self.expected
                .get("loss")
                .ok_or_else(|| self.malformed("missing expected `loss`"))?,
            "loss",
        )?;
        let db = match bias {
            Some(_) => self.grad_of("bias")?,
            None => Vec::new(),
        };
        let expected = LinearCeOutput {
            loss,
            grads: Some([self.grad_of("hidden")?, self.grad_of("weight")?, db]),
        };
        let call = LinearCeCall {
            cfg,
            hidden: hidden.data,
            weight: weight.data,
            bias,
            hidden_dim: hidden.shape[1],
            targets,
        };
        Ok((call, expected))
    }
}

/// Runs `call` on `backend` with data of type `T` (inputs rounded to `T`), with the gradients
/// when `with_grad` is set.
pub fn run_linear_ce<T: Element, B: Backend<T> + ?Sized>(
    backend: &B,
    call: &LinearCeCall,
    upstream: Upstream<'_>,
    with_grad: bool,
) -> Result<LinearCeOutput, LossError> {
    let n = |v: &[f64]| -> Vec<T> { v.iter().map(|&x| T::from_f64(x)).collect() };
    let w = |v: &[T]| -> Vec<f64> { v.iter().map(|x| x.to_f64()).collect() };
    let (h, wt) = (n(&call.hidden), n(&call.weight));
    let b = call.bias.as_deref().map(n);
    let zero = T::from_f64(0.0);
    let (mut dh, mut dw) = (vec![zero; h.len()], vec![zero; wt.len()]);
    let mut db = vec![zero; b.as_ref().map_or(0, Vec::len)];
    let mut input = Linear::new(&h, &wt, call.hidden_dim).with_upstream(upstream);
    if let Some(b) = b.as_deref() {
        input = input.with_bias(b);
    }
    if with_grad {
        input = input.with_grads(&mut dh, &mut dw);
        if b.is_some() {
            input = input.with_bias_grad(&mut db);
        }
    }
    let probs;
    let targets = match &call.targets {
        Targets::Classes(c) => CeTargets::Classes(&c[..]),
        Targets::Probs(p) => {
            probs = n(p);
            CeTargets::Probs(&probs[..])
        }
    };
    let loss = backend.linear_cross_entropy(&call.cfg, input, targets)?;
    Ok(LinearCeOutput {
        loss: loss.into_values(),
        grads: with_grad.then(|| [w(&dh), w(&dw), w(&db)]),
    })
}
