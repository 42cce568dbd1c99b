//! How to check a new backend against the spec.
//!
//! A backend implements one small trait per loss family. Every method has a default body that
//! calls the `f64` reference, so a new backend is correct before it is fast, and it overrides
//! one method at a time. Here `MyBackend` overrides smooth L1 with its own `f32` loop and
//! inherits everything else; `smoothloss_spec::conformance::run_all` then runs the PyTorch
//! cases, random cases against the reference and the error cases against it.
//!
//! The same backend with a classic bug (the `mean` reduction's `1/N` forgotten in the
//! gradient) is run too, to show that the suite catches it.
//!
//! In a backend crate, the same checks become `#[test]`s with one macro:
//! `smoothloss_spec::conformance_tests!(MyBackend::default(), f32, Tolerances::F32);`
//!
//! ```text
//! cargo run -p smoothloss-examples --example new_backend_conformance --release
//! ```

use smoothloss::backend::{BinaryOps, BoxLossOps, CrossEntropyOps, RegressionOps};
use smoothloss::{Backend, Loss, LossError, PairCall, Parts, Reduction, SmoothL1};
use smoothloss_spec::conformance::{Tolerances, run_all};

/// A new backend: own smooth L1, reference fallback for everything else.
#[derive(Debug, Default)]
struct MyBackend {
    /// Inject a bug: forget the `1/N` of the mean reduction in the gradient.
    buggy: bool,
}

/// PyTorch's sign (NaN stays NaN).
fn sign(d: f64) -> f64 {
    if d > 0.0 {
        1.0
    } else if d < 0.0 {
        -1.0
    } else {
        d * 0.0
    }
}

impl RegressionOps<f32> for MyBackend {
    // The plan is already validated (shapes, beta, upstream): a backend only computes.
    fn run_smooth_l1(&self, call: PairCall<'_, SmoothL1, f32>) -> Result<Loss, LossError> {
        let Parts {
            plan,
            io,
            with: target,
            upstream,
        } = call.into_parts();
        let (cfg, n) = (plan.cfg, plan.items);
        let beta = cfg.beta;
        let scale = if cfg.reduction == Reduction::Mean && !self.buggy {
            1.0 / n as f64
        } else {
            1.0
        };
        let pred = io.input();
        let mut losses = Vec::with_capacity(n);
        let mut grads = Vec::with_capacity(n);
        for i in 0..n {
            let d = f64::from(pred[i]) - f64::from(target[i]);
            let (loss, dl) = if d.abs() < beta {
                (0.5 * d * d / beta, d / beta)
            } else {
                (d.abs() - 0.5 * beta, sign(d))
            };
            losses.push(loss);
            let u = match cfg.reduction {
                Reduction::None => upstream.at(i),
                _ => upstream.at(0),
            };
            grads.push(u * scale * dl);
        }
        // Separate buffer or over the input, as the call says.
        io.write_grad_f64(&grads);
        Ok(plan.reduce(losses, n as f64))
    }
}

// Everything else: the reference, through the traits' default methods.
impl CrossEntropyOps<f32> for MyBackend {}
impl BoxLossOps<f32> for MyBackend {}
impl BinaryOps<f32> for MyBackend {}
impl smoothloss::LinearCrossEntropyOps<f32> for MyBackend {}

impl Backend<f32> for MyBackend {
    fn name(&self) -> String {
        if self.buggy {
            "my-backend-buggy"
        } else {
            "my-backend"
        }
        .into()
    }
}

fn main() -> std::process::ExitCode {
    let good = run_all::<f32, _>(&MyBackend::default(), &Tolerances::F32);
    println!("== {} ==", MyBackend::default().name());
    println!("{}", good.summary());
    for line in good
        .to_string()
        .lines()
        .filter(|l| l.contains("FAIL"))
        .take(10)
    {
        println!("  {line}");
    }

    let buggy_backend = MyBackend { buggy: true };
    let buggy = run_all::<f32, _>(&buggy_backend, &Tolerances::F32);
    println!(
        "\n== {} (a deliberately broken gradient) ==",
        buggy_backend.name()
    );
    println!("{}", buggy.summary());
    for line in buggy
        .to_string()
        .lines()
        .filter(|l| l.contains("FAIL"))
        .take(5)
    {
        println!("  {line}");
    }

    if good.failed() == 0 && buggy.failed() > 0 {
        println!("\nthe correct backend conforms; the broken one is caught");
        std::process::ExitCode::SUCCESS
    } else {
        println!(
            "\nunexpected: correct backend failed {}, broken backend failed {}",
            good.failed(),
            buggy.failed()
        );
        std::process::ExitCode::FAILURE
    }
}
