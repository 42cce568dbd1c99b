//! The fuzz campaign's strategy for the cross-entropy's LLM options (`CE-10` .. `CE-13`).

use proptest::prelude::*;

const NAN: f64 = f64::NAN;
const INF: f64 = f64::INFINITY;

/// `(softcap, z_loss, row_weights, denominator)` for a call of `rows` rows: off most of the
/// time, now and then outside their domain or of the wrong length.
#[allow(clippy::type_complexity)]
pub(super) fn llm_options(
    rows: usize,
) -> BoxedStrategy<(Option<f64>, f64, Option<Vec<f64>>, Option<f64>)> {
    let softcap = prop_oneof![
        12 => Just(None),
        6 => (0.5..50.0f64).prop_map(Some),
        1 => prop::sample::select(vec![0.0, -1.0, NAN, INF]).prop_map(Some),
    ];
    let z_loss = prop_oneof![
        12 => Just(0.0),
        6 => 0.0..0.1f64,
        1 => prop::sample::select(vec![-1.0, NAN, INF]),
    ];
    let row_weights = prop_oneof![
        12 => Just(None),
        6 => prop::collection::vec(0.05..2.0f64, rows).prop_map(Some),
        1 => prop::collection::vec(0.0..2.0f64, rows + 1).prop_map(Some),
        1 => Just(Some(vec![-1.0; rows])),
    ];
    let denominator = prop_oneof![
        16 => Just(None),
        3 => (0.5..100.0f64).prop_map(Some),
        1 => prop::sample::select(vec![0.0, -1.0, NAN]).prop_map(Some),
    ];
    (softcap, z_loss, row_weights, denominator).boxed()
}
