//! Training one arm from one seed: full-batch Adam steps, test accuracy after each.

use nalgebra::DMatrix;
use serde::Serialize;
use smoothloss::prelude::*;

use crate::adam::Adam;
use crate::data::Dataset;
use crate::loss::{Arm, accuracy};
use crate::mlp::Mlp;
use crate::{CLASSES, FEATURES, HIDDEN};

/// The result of training one arm from one seed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunResult {
    /// Test accuracy (fraction) before training and after each epoch: `epochs + 1` values.
    pub test_acc: Vec<f64>,
    /// Training accuracy after the last epoch.
    pub train_acc: f64,
    /// Training loss at the last step (before its update).
    pub final_loss: f64,
}

/// Trains `arm` from the initialisation of `seed` for `epochs` full-batch Adam steps.
pub fn train(
    data: &Dataset,
    arm: Arm,
    seed: u64,
    epochs: usize,
    alpha: f64,
    lr: f64,
    backend: &DefaultBackend,
) -> Result<RunResult, String> {
    let mut model = Mlp::<f32>::init(seed, FEATURES, HIDDEN, CLASSES);
    let mut adam = Adam::new(&model, lr);
    let mut grad = DMatrix::<f32>::zeros(CLASSES, data.y_train.len());
    let test_acc_now = |m: &Mlp<f32>| accuracy(m.forward(&data.x_test).z.as_slice(), &data.y_test);
    let mut test_acc = Vec::with_capacity(epochs + 1);
    test_acc.push(test_acc_now(&model));
    let mut final_loss = f64::NAN;
    for epoch in 0..epochs {
        let fwd = model.forward(&data.x_train);
        final_loss = arm.loss_and_grad(
            backend,
            alpha,
            fwd.z.as_slice(),
            &data.y_train,
            grad.as_mut_slice(),
        )?;
        // A diverged run is an error, not a result (`--lr 1e300` gave a NaN loss and exit 0).
        if !final_loss.is_finite() {
            return Err(format!(
                "training diverged: {arm:?} from seed {seed} has loss {final_loss} at epoch {} \
                 (learning rate {lr:e}; try a smaller --lr)",
                epoch + 1
            ));
        }
        let grads = model.backward(&data.x_train, &fwd, &grad);
        adam.step(&mut model, &grads);
        test_acc.push(test_acc_now(&model));
    }
    let train_acc = accuracy(model.forward(&data.x_train).z.as_slice(), &data.y_train);
    Ok(RunResult {
        test_acc,
        train_acc,
        final_loss,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::load_article_data;

    #[test]
    fn training_is_deterministic_per_seed() {
        let d = load_article_data().unwrap();
        let b = DefaultBackend::default();
        for arm in Arm::ALL {
            let r1 = train(&d, arm, 4, 15, 0.1, 0.01, &b).unwrap();
            let r2 = train(&d, arm, 4, 15, 0.1, 0.01, &b).unwrap();
            assert_eq!(r1, r2, "{arm:?}");
            assert_eq!(r1.test_acc.len(), 16);
            let r3 = train(&d, arm, 5, 15, 0.1, 0.01, &b).unwrap();
            assert_ne!(r1.final_loss, r3.final_loss, "{arm:?}");
        }
    }

    #[test]
    fn a_diverging_run_is_an_error_not_a_nan_result() {
        let d = load_article_data().unwrap();
        let b = DefaultBackend::default();
        for arm in Arm::ALL {
            let err = train(&d, arm, 0, 5, 0.1, 1e300, &b).unwrap_err();
            assert!(
                err.contains("diverged") && err.contains("1e300"),
                "{arm:?}: {err}"
            );
        }
    }

    #[test]
    fn cross_entropy_learns_and_article_formula_does_not() {
        let d = load_article_data().unwrap();
        let b = DefaultBackend::default();
        let ce = train(&d, Arm::CrossEntropy, 0, 100, 0.1, 0.01, &b).unwrap();
        assert!(ce.test_acc[100] > 0.5, "{:?}", ce.test_acc[100]);
        assert!(ce.final_loss < 1.2, "{}", ce.final_loss);
        // The printed formula is minimised by the uniform prediction: its loss approaches
        // (1 - alpha) * C * ln C from above.
        let art = train(&d, Arm::ArticleFormula, 0, 100, 0.1, 0.01, &b).unwrap();
        let floor = 0.9 * 5.0 * 5f64.ln();
        assert!(
            art.final_loss >= floor - 1e-6 && art.final_loss < floor + 0.05,
            "{}",
            art.final_loss
        );
    }
}
