//! The call shapes of the classification-quality losses (`QUAL-*`) and of Wise-IoU v3
//! (`BOX-24`) on host data, for [`fused`](crate::fused): the second operand travels as the
//! [`Second`](crate::call::Second) of every call, the third (labels, scores) and the
//! Wise-IoU state inside the call.

use std::cell::Cell;

use smoothloss_core::{
    BoxLoss, Element, Input, Loss, LossError, Losses, QualityFocal, Result, Varifocal,
    VarifocalTargets, WiseIouState,
};

use crate::call::{Call, SecondRef, shape_error};

fn floats<T: Element>(v: &[f64]) -> Vec<T> {
    v.iter().map(|&x| T::from_f64(x)).collect()
}

fn integer_refused() -> LossError {
    LossError::InvalidParameter {
        name: "target",
        value: f64::NAN,
        reason: "integer values where float scores are expected",
    }
}

/// The varifocal loss, element-wise: scores as the second operand, ultralytics' labels here.
pub(crate) struct VarifocalCall<'c> {
    pub cfg: &'c Varifocal,
    /// The labels (the logits' shape), for ultralytics' weight.
    pub labels: Option<Vec<f64>>,
}

impl Call for VarifocalCall<'_> {
    fn items_have_width(&self) -> bool {
        false
    }
    fn check_shapes(&self, first: &[usize], second: &[usize], classes: bool) -> Result<()> {
        if classes {
            return Err(integer_refused());
        }
        if first != second {
            return Err(shape_error("scores", first, second));
        }
        Ok(())
    }
    fn run<T: Element, B: Losses<T>>(
        &self,
        backend: &B,
        input: Input<'_, T>,
        _dims: &[usize],
        second: SecondRef<'_, T>,
    ) -> Result<Loss> {
        let SecondRef::Values(scores) = second else {
            return Err(integer_refused());
        };
        let labels = self.labels.as_deref().map(floats::<T>);
        let t = VarifocalTargets {
            scores,
            labels: labels.as_deref(),
        };
        backend.varifocal(self.cfg, input, t)
    }
}

/// The quality focal loss: the labels `[rows]` as the second operand, the scores here.
pub(crate) struct QflCall<'c> {
    pub cfg: &'c QualityFocal,
    /// One score per row.
    pub scores: Vec<f64>,
}

impl Call for QflCall<'_> {
    fn items_have_width(&self) -> bool {
        true
    }
    fn check_shapes(&self, first: &[usize], second: &[usize], classes: bool) -> Result<()> {
        let rows = first.first().copied().unwrap_or(0);
        if first.len() != 2 {
            return Err(shape_error("logits", &[rows, 0], first));
        }
        if !classes || second != [rows] {
            return Err(shape_error("labels", &[rows], second));
        }
        if self.scores.len() != rows {
            return Err(shape_error("scores", &[rows], &[self.scores.len()]));
        }
        Ok(())
    }
    fn run<T: Element, B: Losses<T>>(
        &self,
        backend: &B,
        input: Input<'_, T>,
        dims: &[usize],
        second: SecondRef<'_, T>,
    ) -> Result<Loss> {
        let SecondRef::Classes(labels) = second else {
            return Err(LossError::InvalidParameter {
                name: "labels",
                value: f64::NAN,
                reason: "float labels where class indices are expected",
            });
        };
        let input = match *dims {
            [r, c] => input.shaped(r, c),
            _ => input,
        };
        backend.quality_focal(self.cfg, input, labels, &floats::<T>(&self.scores))
    }
}

/// Wise-IoU v3 over `[N, 4]` pairs; the state is read and, on success, updated here.
pub(crate) struct WiseIouCall<'c> {
    pub cfg: &'c BoxLoss,
    pub state: Cell<WiseIouState>,
}

impl Call for WiseIouCall<'_> {
    fn items_have_width(&self) -> bool {
        true
    }
    fn check_shapes(&self, first: &[usize], second: &[usize], classes: bool) -> Result<()> {
        if classes {
            return Err(integer_refused());
        }
        if first != second {
            return Err(shape_error("target", first, second));
        }
        if first.last() != Some(&4) {
            let rows = first.first().copied().unwrap_or(0);
            return Err(shape_error("pred", &[rows, 4], first));
        }
        Ok(())
    }
    fn run<T: Element, B: Losses<T>>(
        &self,
        backend: &B,
        input: Input<'_, T>,
        _dims: &[usize],
        second: SecondRef<'_, T>,
    ) -> Result<Loss> {
        let SecondRef::Values(target) = second else {
            return Err(integer_refused());
        };
        let mut state = self.state.get();
        let loss = backend.wise_iou_v3(self.cfg, &mut state, input, target)?;
        self.state.set(state);
        Ok(loss)
    }
}
