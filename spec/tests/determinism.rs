//! TOL-3 on the reference backend with `f32` data: every random case gives bit-identical loss
//! values and gradients from one call to the next and when the same calls run on several
//! threads at once (`kit::same_bits_*`, no tolerance).

use smoothloss_core::ReferenceBackend;
use smoothloss_spec::random::random_calls;
use smoothloss_spec::{LossCall, Output, covers, kit, run_call};

fn run_all(calls: &[(String, LossCall)]) -> Vec<Output> {
    calls
        .iter()
        .map(|(id, call)| {
            run_call::<f32, _>(&ReferenceBackend, call).unwrap_or_else(|e| panic!("{id}: {e}"))
        })
        .collect()
}

/// The gradient as the `f32` values the backend wrote (widening to f64 and back is exact).
fn grad32(o: &Output) -> Vec<f32> {
    o.grad.iter().flatten().map(|&g| g as f32).collect()
}

#[test]
fn reference_results_are_bit_identical_across_calls_and_threads() {
    covers!("TOL-3");
    let calls = random_calls(7);
    assert!(calls.len() > 100, "{} calls", calls.len());
    let first = run_all(&calls);
    let again = run_all(&calls);
    let threaded: Vec<Vec<Output>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4).map(|_| s.spawn(|| run_all(&calls))).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for other in std::iter::once(&again).chain(&threaded) {
        for (((id, _), a), b) in calls.iter().zip(&first).zip(other) {
            kit::same_bits_f64(&a.loss, &b.loss).unwrap_or_else(|e| panic!("{id} loss: {e}"));
            kit::same_bits_f32(&grad32(a), &grad32(b)).unwrap_or_else(|e| panic!("{id} grad: {e}"));
            assert_eq!(a.grad.is_some(), b.grad.is_some(), "{id}");
        }
    }
}
