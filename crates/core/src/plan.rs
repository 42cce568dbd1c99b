//! The one front door's first half: a configuration plus the shapes of a call become a
//! validated [`Plan`]. Backends receive the plan and the buffers and never validate again.
//!
//! A plan is built from lengths and kinds only ([`Extent`]), never from buffer contents, so a
//! backend with its own buffer type (CUDA device memory) builds the same plan from its buffers'
//! lengths. Checks of contents (class targets in range, binary targets in `[0, 1]`) are
//! separate functions ([`CrossEntropy::check_targets`](crate::CrossEntropy::check_targets),
//! [`check_binary_targets`](crate::binary::check_binary_targets)): the host front door runs
//! them before the backend; the CUDA backend runs them on the device.

use crate::call::GradDest;
use crate::error::{LossError, Result, check_len};
use crate::op::Op;
use crate::reduction::{Reduction, Upstream};

/// A loss configuration: which loss it configures and its reduction.
pub trait LossConfig {
    /// The loss (its name, family, kernel names: [`Op`]).
    const OP: Op;
    /// The reduction over items.
    fn reduction(&self) -> Reduction;
}

/// A loss on two aligned inputs (the differentiated one and its targets): box losses,
/// smooth L1, Huber, BCE with logits, sigmoid focal. Lets the front door plan them all alike.
pub trait PairLoss: LossConfig + Sized {
    /// Validates parameters and shapes: the first input `ext`, the second `second_len` long.
    fn plan_pair(&self, ext: &Extent, second_len: usize) -> Result<Plan<'_, Self>>;

    /// Checks the second input's values (binary targets in `[0, 1]`); nothing by default.
    fn check_second<T: crate::Element>(&self, _second: &[T]) -> Result<()> {
        Ok(())
    }

    /// Checks that the parameters lie in the `f32` domain of `TOL-4` (run by the front door
    /// for calls on `f32` data, after the plan); nothing by default.
    fn check_f32(&self) -> Result<()> {
        Ok(())
    }
}

/// Whether `T` is `f32`: calls on `f32` data meet the `f32` domain of `TOL-4` (parameters and
/// upstream gradients an `f32` computation can hold), calls on `f64` data do not.
pub(crate) fn is_f32<T: 'static>() -> bool {
    std::any::TypeId::of::<T>() == std::any::TypeId::of::<f32>()
}

/// `TOL-4`'s `f32` domain of a magnitude (a weight, `gamma`, an upstream gradient): at most
/// `f32::MAX` in absolute value, so that it rounds to a finite `f32`.
pub(crate) fn check_f32_magnitude(name: &'static str, value: f64) -> Result<()> {
    if value.abs() <= f64::from(f32::MAX) {
        Ok(())
    } else {
        Err(LossError::InvalidParameter {
            name,
            value,
            reason: "beyond the f32 range (|v| <= 3.4e38) that a call on f32 data computes in",
        })
    }
}

impl crate::CrossEntropy {
    /// Checks that the parameters lie in the `f32` domain of `TOL-4`: every class weight at
    /// most `f32::MAX` (the front door's check for calls on `f32` data, public for backends
    /// whose device entry points compute in `f32`, as CUDA's `cross_entropy_dev`); so are the
    /// z-loss scale and the row weights; the softcap and a given denominator are normal `f32`
    /// values (`1.2e-38 ..= 3.4e38`).
    pub fn check_f32(&self) -> Result<()> {
        for &w in self.class_weights.iter().flatten() {
            check_f32_magnitude("class_weights", w)?;
        }
        check_f32_magnitude("z_loss", self.z_loss)?;
        if let Some(cap) = self.softcap {
            check_f32_scale("softcap", cap, false)?;
        }
        for &w in self.row_weights.iter().flatten() {
            check_f32_magnitude("row_weights", w)?;
        }
        if let Some(d) = self.denominator {
            check_f32_scale("denominator", d, false)?;
        }
        Ok(())
    }
}

/// `TOL-4`'s `f32` domain of a scale (smooth L1's `beta`, Huber's `delta`, the box `eps`):
/// 0 where the loss allows it (`zero_ok`), else a normal `f32` (`1.2e-38 <= v <= 3.4e38`), so
/// that it and its reciprocal round to finite, non-zero `f32` values.
pub(crate) fn check_f32_scale(name: &'static str, value: f64, zero_ok: bool) -> Result<()> {
    if zero_ok && value == 0.0 {
        return Ok(());
    }
    check_f32_magnitude(name, value)?;
    if value.abs() >= f64::from(f32::MIN_POSITIVE) {
        Ok(())
    } else {
        Err(LossError::InvalidParameter {
            name,
            value,
            reason: "below the normal f32 range (|v| >= 1.2e-38) that a call on f32 data computes in",
        })
    }
}

/// The upstream gradient as the planner sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum UpstreamShape {
    /// One value for every loss value.
    Scalar(f64),
    /// One value per loss value, this many.
    PerItem(usize),
}

impl Upstream<'_> {
    /// The upstream gradient's shape (its length, not its values).
    pub fn shape(&self) -> UpstreamShape {
        match *self {
            Upstream::Scalar(s) => UpstreamShape::Scalar(s),
            Upstream::PerElement(u) => UpstreamShape::PerItem(u.len()),
        }
    }

    /// Checks the values of a per-element upstream gradient on the host, as
    /// [`UpstreamShape::validate`] checks a scalar: each must be finite (`TOL-4`); for `f32`
    /// data (`f32_data`) also at most `f32::MAX` in magnitude, and so must a scalar. The first
    /// offending value is reported (`InvalidParameter { name: "upstream" }`).
    pub fn check_values(&self, f32_data: bool) -> Result<()> {
        match *self {
            Upstream::Scalar(s) if f32_data => check_f32_magnitude("upstream", s),
            Upstream::Scalar(_) => Ok(()),
            Upstream::PerElement(u) => {
                // One pass: the first value outside [-limit, limit] (NaN included).
                let limit = if f32_data {
                    f64::from(f32::MAX)
                } else {
                    f64::MAX
                };
                match u.iter().find(|v| v.is_nan() || v.abs() > limit) {
                    None => Ok(()),
                    Some(&bad) if bad.is_finite() => check_f32_magnitude("upstream", bad),
                    Some(&bad) => Err(LossError::InvalidParameter {
                        name: "upstream",
                        value: bad,
                        reason: "per-element upstream values must be finite",
                    }),
                }
            }
        }
    }
}

impl UpstreamShape {
    /// Checks that the upstream gradient fits `count` loss values under `reduction`.
    pub fn validate(self, reduction: Reduction, count: usize) -> Result<()> {
        match self {
            UpstreamShape::Scalar(s) if !s.is_finite() => Err(LossError::InvalidParameter {
                name: "upstream",
                value: s,
                reason: "must be finite",
            }),
            UpstreamShape::Scalar(_) => Ok(()),
            UpstreamShape::PerItem(len) => {
                if reduction != Reduction::None {
                    return Err(LossError::InvalidParameter {
                        name: "upstream",
                        value: len as f64,
                        reason: "a per-element upstream gradient needs reduction `none`",
                    });
                }
                check_len("upstream", count, len)
            }
        }
    }
}

/// The shapes of a call's first input, as the planner sees them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Extent {
    /// Elements in the input buffer.
    pub len: usize,
    /// The declared `[rows, cols]`, if any.
    pub shape: Option<[usize; 2]>,
    /// Where the gradient goes.
    pub grad: GradDest,
    /// The upstream gradient's shape.
    pub upstream: UpstreamShape,
}

/// A validated call: shapes, reduction, gradient destination and upstream shape agree with
/// each other and with the configuration. Only the front door ([`Plan`]'s family constructors
/// such as [`CrossEntropy::plan`](crate::CrossEntropy::plan)) builds one.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Plan<'c, C> {
    /// The validated configuration.
    pub cfg: &'c C,
    /// Loss values before the reduction (rows, elements or pairs).
    pub items: usize,
    /// Input elements per item (classes, 4 box coordinates, or 1).
    pub width: usize,
    /// Where the gradient goes.
    pub grad: GradDest,
    /// The upstream gradient's shape.
    pub upstream: UpstreamShape,
}

impl<'c, C: LossConfig> Plan<'c, C> {
    /// Finishes a plan of `items x width` elements: the gradient buffer's length, then the
    /// upstream gradient (the last checks of every family, in this order).
    pub(crate) fn finish(cfg: &'c C, items: usize, width: usize, ext: &Extent) -> Result<Self> {
        if let GradDest::Separate(g) = ext.grad {
            check_len("grad", items * width, g)?;
        }
        ext.upstream.validate(cfg.reduction(), items)?;
        Ok(Self {
            cfg,
            items,
            width,
            grad: ext.grad,
            upstream: ext.upstream,
        })
    }

    /// The reduction.
    pub fn reduction(&self) -> Reduction {
        self.cfg.reduction()
    }

    /// Input elements (`items * width`).
    pub fn len(&self) -> usize {
        self.items * self.width
    }

    /// Always false: a plan has at least one item.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The gradient factor of a count-based mean: `1 / items` for `mean`, else 1 (the mean of
    /// cross-entropy with class targets divides by target weights instead:
    /// [`CrossEntropy::mean_denominator`](crate::CrossEntropy::mean_denominator)).
    pub fn count_scale(&self) -> f64 {
        if self.reduction() == Reduction::Mean {
            1.0 / self.items as f64
        } else {
            1.0
        }
    }

    /// The gradient factor of item `i`: its upstream gradient (`none`; the one scalar
    /// otherwise) times `scale` (the mean's `1 / denominator`, or 1). Every backend multiplies
    /// `d(loss_i)/d(input)` by this, in this order.
    #[inline]
    pub fn item_scale(&self, upstream: &Upstream<'_>, scale: f64, i: usize) -> f64 {
        let u = match self.reduction() {
            Reduction::None => upstream.at(i),
            _ => upstream.at(0),
        };
        u * scale
    }

    /// Reduces per-item losses in item order (`sum`, `mean` over `denominator`, or `none`).
    pub fn reduce(&self, losses: Vec<f64>, denominator: f64) -> crate::call::Loss {
        use crate::call::Loss;
        match self.reduction() {
            Reduction::None => Loss::PerItem(losses),
            Reduction::Sum => Loss::Reduced(losses.iter().sum()),
            Reduction::Mean => Loss::Reduced(losses.iter().sum::<f64>() / denominator),
        }
    }
}

/// A validated call on host slices: the plan and the very buffers it was made from, so a
/// backend cannot be handed buffers that disagree with its plan. Only the front door
/// ([`Losses`](crate::Losses)) makes one; a backend takes it apart with [`Call::into_parts`].
#[derive(Debug)]
pub struct Call<'a, C, T, X> {
    parts: Parts<'a, C, T, X>,
}

/// The pieces of a [`Call`].
#[derive(Debug)]
pub struct Parts<'a, C, T, X> {
    /// The plan.
    pub plan: Plan<'a, C>,
    /// The first input and where its gradient goes.
    pub io: crate::call::Io<'a, [T]>,
    /// The second input (targets).
    pub with: X,
    /// The upstream gradient (its shape is `plan.upstream`).
    pub upstream: Upstream<'a>,
}

impl<'a, C, T, X> Call<'a, C, T, X> {
    /// Binds a plan to the buffers it was validated against (crate-internal: the front door
    /// and the widening default bodies are the only callers).
    pub(crate) fn bind(
        plan: Plan<'a, C>,
        io: crate::call::Io<'a, [T]>,
        with: X,
        upstream: Upstream<'a>,
    ) -> Self {
        Self {
            parts: Parts {
                plan,
                io,
                with,
                upstream,
            },
        }
    }

    /// The plan.
    pub fn plan(&self) -> &Plan<'a, C> {
        &self.parts.plan
    }

    /// The plan and the buffers.
    pub fn into_parts(self) -> Parts<'a, C, T, X> {
        self.parts
    }
}

/// A validated pairwise IoU on host slices (see [`Call`]).
#[derive(Debug)]
pub struct IouCall<'a, T> {
    /// The plan.
    pub plan: crate::box_loss::BoxIouPlan,
    boxes1: &'a [T],
    boxes2: &'a [T],
    out: &'a mut [T],
}

impl<'a, T> IouCall<'a, T> {
    pub(crate) fn bind(
        plan: crate::box_loss::BoxIouPlan,
        boxes1: &'a [T],
        boxes2: &'a [T],
        out: &'a mut [T],
    ) -> Self {
        Self {
            plan,
            boxes1,
            boxes2,
            out,
        }
    }

    /// `(plan, boxes1, boxes2, out)`.
    pub fn into_parts(self) -> (crate::box_loss::BoxIouPlan, &'a [T], &'a [T], &'a mut [T]) {
        (self.plan, self.boxes1, self.boxes2, self.out)
    }
}

/// A validated cross-entropy call.
pub type CeCall<'a, T> = Call<'a, crate::CrossEntropy, T, crate::cross_entropy::CeTargets<'a, T>>;
/// A validated call of a loss on two aligned inputs (`pred`/`target`, `logits`/`targets`):
/// box losses, smooth L1, Huber, BCE with logits, sigmoid focal.
pub type PairCall<'a, C, T> = Call<'a, C, T, &'a [T]>;
