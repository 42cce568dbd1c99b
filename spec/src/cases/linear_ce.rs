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
use crate::random::Rng;
use serde_json::Value;
use smoothloss_core::{
    Backend, CeTargets, CrossEntropy, Element, Linear, LinearCrossEntropy, LossError, Losses,
    Upstream,
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
    /// A random call of `n` rows, `h` hidden units and `v` classes from `seed` (the test
    /// binaries' shared input): hidden in `[-1, 1)`, weights up to `6 / sqrt(h)` (logits up to
    /// about +-6, which a softcap of 2.5 bends), a bias in `[-1, 1)` when asked for, and class
    /// targets with every fifth row (from the third) set to the config's `ignore_index` (or
    /// -100).
    pub fn random(seed: u64, n: usize, h: usize, v: usize, cfg: CrossEntropy, bias: bool) -> Self {
        let mut rng = Rng::new(seed);
        let ig = cfg.ignore_index.unwrap_or(-100);
        let targets = (0..n)
            .map(|i| {
                if i % 5 == 2 {
                    ig
                } else {
                    ((i * 31 + 7) % v) as i64
                }
            })
            .collect();
        LinearCeCall {
            cfg: LinearCrossEntropy::new(cfg),
            hidden: rng.vec(n * h, -1.0, 1.0),
            weight: rng.vec(v * h, -6.0 / (h as f64).sqrt(), 6.0 / (h as f64).sqrt()),
            bias: bias.then(|| rng.vec(v, -1.0, 1.0)),
            hidden_dim: h,
            targets: Targets::Classes(targets),
        }
    }

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

/// What every rank of a vocab-parallel linear cross-entropy (`VP-6`) returned, and the
/// gradients gathered into the unsharded layout.
#[derive(Debug, Clone, PartialEq)]
pub struct ShardedLinearCeOutput {
    /// Rank 0's loss, its `d hidden`, the gathered `d weight` and `d bias` (the unsharded
    /// layout, comparable with [`run_linear_ce`]'s output).
    pub whole: LinearCeOutput,
    /// Every rank's loss values, rank order.
    pub losses: Vec<Vec<f64>>,
    /// Every rank's `d hidden`, rank order.
    pub hidden_grads: Vec<Vec<f64>>,
    /// Every rank's z-loss part (`CE-15`), rank order.
    pub z_losses: Vec<Vec<f64>>,
    /// Every rank's per-row log-sum-exp (`CE-14`), rank order.
    pub lse: Vec<Vec<f64>>,
    /// Every rank's per-row hits (`CE-14`; all false for probability targets), rank order.
    pub hits: Vec<Vec<bool>>,
}

/// The shards' first classes for `widths`, rank order.
pub fn shard_offsets(widths: &[usize]) -> Vec<usize> {
    widths
        .iter()
        .scan(0, |o, &w| {
            let s = *o;
            *o += w;
            Some(s)
        })
        .collect()
}

/// Runs `call` as a vocab-parallel linear cross-entropy on `widths.len()` in-process ranks
/// (rank `r` holding `widths[r]` classifier rows), with data of type `T` on `backend`, with
/// the gradients and the per-row outputs (hits only for class targets).
pub fn run_linear_ce_sharded<T, B>(
    backend: &B,
    call: &LinearCeCall,
    upstream: Upstream<'_>,
    widths: &[usize],
) -> Result<ShardedLinearCeOutput, LossError>
where
    T: Element + Send,
    B: smoothloss_core::ChunkGemm<T> + Sync + ?Sized,
{
    use smoothloss_core::CeRowOutputs;
    use smoothloss_core::vocab_parallel::{InProcessGroup, LinearShard, linear_cross_entropy_rows};
    if widths.is_empty() {
        return Err(LossError::InvalidParameter {
            name: "widths",
            value: 0.0,
            reason: "at least one rank",
        });
    }
    let (n, v, h) = (call.rows(), call.vocab(), call.hidden_dim);
    let cast = |v: &[f64]| -> Vec<T> { v.iter().map(|&x| T::from_f64(x)).collect() };
    let wide = |v: &[T]| -> Vec<f64> { v.iter().map(|x| x.to_f64()).collect() };
    let offsets = shard_offsets(widths);
    let hidden = cast(&call.hidden);
    let zero = T::from_f64(0.0);
    let runs = InProcessGroup::run(widths.len(), |comm| {
        let (o, w) = (offsets[comm.rank], widths[comm.rank]);
        let weight = cast(call.weight.get(o * h..(o + w) * h).unwrap_or(&[]));
        let bias = call
            .bias
            .as_ref()
            .map(|b| cast(b.get(o..o + w).unwrap_or(&[])));
        let (mut dh, mut dw) = (vec![zero; hidden.len()], vec![zero; weight.len()]);
        let mut db = vec![zero; w];
        let (mut lse, mut hits) = (vec![zero; n], vec![false; n]);
        let mut linear = Linear::new(&hidden, &weight, h)
            .with_upstream(upstream)
            .with_grads(&mut dh, &mut dw);
        if let Some(b) = bias.as_deref() {
            linear = linear.with_bias(b).with_bias_grad(&mut db);
        }
        let probs;
        let mut outs = CeRowOutputs::new().with_lse(&mut lse);
        let targets = match &call.targets {
            Targets::Classes(c) => {
                outs = outs.with_hits(&mut hits);
                CeTargets::Classes(&c[..])
            }
            Targets::Probs(p) => {
                probs = (0..n)
                    .flat_map(|i| cast(&p[i * v + o..i * v + o + w]))
                    .collect::<Vec<T>>();
                CeTargets::Probs(&probs[..])
            }
        };
        let shard = LinearShard::new(linear, v, o);
        let out = linear_cross_entropy_rows(backend, comm, &call.cfg, shard, targets, outs)?;
        Ok::<_, LossError>((
            out.loss.into_values(),
            out.z_loss.into_values(),
            wide(&dh),
            wide(&dw),
            wide(&db),
            wide(&lse),
            hits,
        ))
    });
    let runs = runs.into_iter().collect::<Result<Vec<_>, _>>()?;
    let mut dw = Vec::with_capacity(v * h);
    let mut db = Vec::with_capacity(v);
    for r in &runs {
        dw.extend_from_slice(&r.3);
        db.extend_from_slice(&r.4);
    }
    if call.bias.is_none() {
        db.clear();
    }
    Ok(ShardedLinearCeOutput {
        whole: LinearCeOutput {
            loss: runs[0].0.clone(),
            grads: Some([runs[0].2.clone(), dw, db]),
        },
        losses: runs.iter().map(|r| r.0.clone()).collect(),
        hidden_grads: runs.iter().map(|r| r.2.clone()).collect(),
        z_losses: runs.iter().map(|r| r.1.clone()).collect(),
        lse: runs.iter().map(|r| r.5.clone()).collect(),
        hits: runs.iter().map(|r| r.6.clone()).collect(),
    })
}
