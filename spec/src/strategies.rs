//! proptest strategies for loss inputs.

use proptest::prelude::*;
use smoothloss_core::{BoxFormat, BoxLossKind, Reduction};

/// Any reduction.
pub fn reduction() -> impl Strategy<Value = Reduction> {
    prop_oneof![
        Just(Reduction::None),
        Just(Reduction::Mean),
        Just(Reduction::Sum)
    ]
}

/// Any box format.
pub fn box_format() -> impl Strategy<Value = BoxFormat> {
    prop_oneof![
        Just(BoxFormat::Xyxy),
        Just(BoxFormat::Xywh),
        Just(BoxFormat::Cxcywh)
    ]
}

/// Any box loss kind.
pub fn box_kind() -> impl Strategy<Value = BoxLossKind> {
    prop::sample::select(BoxLossKind::ALL.to_vec())
}

/// One of the five torchvision box kinds.
pub fn torchvision_kind() -> impl Strategy<Value = BoxLossKind> {
    prop::sample::select(BoxLossKind::TORCHVISION.to_vec())
}

/// Logits `[n, c]` with `n` in `1..=max_n`, `c` in `1..=max_c`, values in `±spread`.
pub fn logits(
    max_n: usize,
    max_c: usize,
    spread: f64,
) -> impl Strategy<Value = (usize, usize, Vec<f64>)> {
    (1..=max_n, 1..=max_c).prop_flat_map(move |(n, c)| {
        (
            Just(n),
            Just(c),
            prop::collection::vec(-spread..spread, n * c),
        )
    })
}

/// Hard targets for `n` rows of `c` classes.
pub fn class_targets(n: usize, c: usize) -> impl Strategy<Value = Vec<i64>> {
    prop::collection::vec(0..c as i64, n)
}

/// A probability distribution over `c` classes per row (`n` rows), row-major.
pub fn prob_targets(n: usize, c: usize) -> impl Strategy<Value = Vec<f64>> {
    prop::collection::vec(0.01f64..1.0, n * c).prop_map(move |mut v| {
        for row in v.chunks_mut(c) {
            let s: f64 = row.iter().sum();
            row.iter_mut().for_each(|x| *x /= s);
        }
        v
    })
}

/// A corner box `(x1, y1, x2, y2)` with positive size at least `min_size`.
pub fn xyxy_box(min_size: f64) -> impl Strategy<Value = [f64; 4]> {
    (
        -50.0f64..50.0,
        -50.0f64..50.0,
        min_size..40.0,
        min_size..40.0,
    )
        .prop_map(|(x, y, w, h)| [x, y, x + w, y + h])
}
