//! The three arms of the experiment: the library's cross-entropy and SmoothLoss (through
//! [`DefaultBackend`]) and the article's formula as printed; and the accuracy of a prediction.

use smoothloss::prelude::*;

use crate::{ARTICLE_CE_ACC, ARTICLE_SMOOTHLOSS_ACC, CLASSES};

/// The article's printed `SmoothLoss.forward`, exactly as printed (article lines 10-13):
///
/// ```text
/// log_prob = nn.functional.log_softmax(input, dim=-1)
/// weight = input.new_ones(input.shape[-1])
/// weight[target] = 1 - self.alpha
/// return (-weight * log_prob).sum(dim=-1).mean()
/// ```
///
/// `weight` has one entry per *class*, and `weight[target] = ...` with the whole batch of
/// targets sets `1 - alpha` on every class that occurs anywhere in the batch. The loss is
/// `mean_i sum_j -w_j log p_ij`. Its gradient over logit `z_ik` is
/// `(p_ik * sum_j w_j - w_k) / N`. With every class present (any full batch here) it is
/// `(1 - alpha) * sum_j -log p_ij`, minimised by the uniform prediction: this is **not** label
/// smoothing and is not offered by the library. Returns the loss; writes the gradient if asked.
pub fn article_formula_loss(
    logits: &[f64],
    rows: usize,
    classes: usize,
    targets: &[i64],
    alpha: f64,
    mut grad: Option<&mut [f64]>,
) -> f64 {
    assert_eq!(logits.len(), rows * classes, "logits shape");
    assert_eq!(targets.len(), rows, "targets length");
    let mut weight = vec![1.0_f64; classes];
    for &t in targets {
        weight[t as usize] = 1.0 - alpha;
    }
    let wsum: f64 = weight.iter().sum();
    let mut total = 0.0;
    for (i, row) in logits.chunks_exact(classes).enumerate() {
        let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let lse = max + row.iter().map(|&z| (z - max).exp()).sum::<f64>().ln();
        let mut loss_i = 0.0;
        for (j, &z) in row.iter().enumerate() {
            loss_i -= weight[j] * (z - lse);
        }
        total += loss_i;
        if let Some(g) = grad.as_deref_mut() {
            for (j, &z) in row.iter().enumerate() {
                let p = (z - lse).exp();
                g[i * classes + j] = (p * wsum - weight[j]) / rows as f64;
            }
        }
    }
    total / rows as f64
}

/// The three arms of the experiment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arm {
    /// `CrossEntropy::new()` from the library.
    CrossEntropy,
    /// `CrossEntropy::smooth_loss(alpha)` (label smoothing) from the library.
    SmoothLoss,
    /// The article's printed formula, [`article_formula_loss`].
    ArticleFormula,
}

impl Arm {
    /// All arms, in table order.
    pub const ALL: [Arm; 3] = [Arm::CrossEntropy, Arm::SmoothLoss, Arm::ArticleFormula];

    /// Short machine name.
    pub fn key(self) -> &'static str {
        match self {
            Arm::CrossEntropy => "cross_entropy",
            Arm::SmoothLoss => "smoothloss",
            Arm::ArticleFormula => "article_formula",
        }
    }

    /// Human label.
    pub fn label(self, alpha: f64) -> String {
        match self {
            Arm::CrossEntropy => "cross-entropy (library)".into(),
            Arm::SmoothLoss => format!("SmoothLoss a={alpha} (library, label smoothing)"),
            Arm::ArticleFormula => format!("article's formula as printed, a={alpha}"),
        }
    }

    /// What the article claims for this arm, in percent. The article attributes 84.00% to its
    /// `SmoothLoss` class, which is the printed formula; its prose describes label smoothing.
    pub fn article_claim(self) -> f64 {
        match self {
            Arm::CrossEntropy => ARTICLE_CE_ACC,
            Arm::SmoothLoss | Arm::ArticleFormula => ARTICLE_SMOOTHLOSS_ACC,
        }
    }

    /// Mean loss over the batch of `logits` (row-major `[targets.len(), CLASSES]`), writing the
    /// gradient with respect to the logits into `grad`.
    pub fn loss_and_grad(
        self,
        backend: &DefaultBackend,
        alpha: f64,
        logits: &[f32],
        targets: &[i64],
        grad: &mut [f32],
    ) -> Result<f64, String> {
        let rows = targets.len();
        let lib = |cfg: CrossEntropy, grad: &mut [f32]| {
            backend
                .cross_entropy(
                    &cfg,
                    Input::matrix(logits, rows, CLASSES).with_grad(grad),
                    targets,
                )
                .map(|l| l.value())
                .map_err(|e| format!("loss: {e}"))
        };
        match self {
            Arm::CrossEntropy => lib(CrossEntropy::new(), grad),
            Arm::SmoothLoss => lib(CrossEntropy::smooth_loss(alpha), grad),
            Arm::ArticleFormula => {
                let z: Vec<f64> = logits.iter().map(|&v| f64::from(v)).collect();
                let mut g = vec![0.0; z.len()];
                let loss = article_formula_loss(&z, rows, CLASSES, targets, alpha, Some(&mut g));
                for (d, s) in grad.iter_mut().zip(&g) {
                    *d = *s as f32;
                }
                Ok(loss)
            }
        }
    }
}

/// Fraction of rows of row-major `[N, CLASSES]` logits whose argmax (first maximum, as
/// `torch.argmax`) equals the target.
pub fn accuracy(logits: &[f32], targets: &[i64]) -> f64 {
    let correct = logits
        .chunks_exact(CLASSES)
        .zip(targets)
        .filter(|(row, t)| {
            let mut best = 0;
            for (j, &v) in row.iter().enumerate() {
                if v > row[best] {
                    best = j;
                }
            }
            best as i64 == **t
        })
        .count();
    correct as f64 / targets.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;
    use crate::test_util::rel_close;
    use smoothloss::ReferenceBackend;

    #[test]
    fn article_formula_gradient_matches_finite_differences() {
        let mut rng = Rng::new(11);
        for (rows, targets, alpha) in [
            (4, vec![0_i64, 2, 2, 4], 0.1),
            (3, vec![1, 1, 3], 0.35),
            (6, vec![0, 1, 2, 3, 4, 0], 0.1),
        ] {
            let z: Vec<f64> = (0..rows * CLASSES).map(|_| rng.range(-3.0, 3.0)).collect();
            let mut g = vec![0.0; z.len()];
            article_formula_loss(&z, rows, CLASSES, &targets, alpha, Some(&mut g));
            let h = 1e-6;
            for i in 0..z.len() {
                let (mut zp, mut zm) = (z.clone(), z.clone());
                zp[i] += h;
                zm[i] -= h;
                let fd = (article_formula_loss(&zp, rows, CLASSES, &targets, alpha, None)
                    - article_formula_loss(&zm, rows, CLASSES, &targets, alpha, None))
                    / (2.0 * h);
                assert!(
                    rel_close(g[i], fd, 1e-7),
                    "logit {i}: analytic {}, fd {fd}",
                    g[i]
                );
            }
        }
    }

    #[test]
    fn article_formula_is_what_was_printed() {
        // Zero logits: log p = -ln 5 everywhere. Targets {0, 1} put 1 - alpha on classes 0 and 1
        // for every row: sum_j w_j = 2 * 0.9 + 3 = 4.8.
        let z = vec![0.0; 2 * CLASSES];
        let loss = article_formula_loss(&z, 2, CLASSES, &[0, 1], 0.1, None);
        assert!(rel_close(loss, 4.8 * 5f64.ln(), 1e-12), "{loss}");
        // With every class in the batch it is (1 - alpha) * sum_j -log p_j, minimised by the
        // uniform prediction: its gradient at zero logits vanishes.
        let targets = [0_i64, 1, 2, 3, 4];
        let z = vec![0.0; 5 * CLASSES];
        let mut g = vec![1.0; z.len()];
        let loss = article_formula_loss(&z, 5, CLASSES, &targets, 0.2, Some(&mut g));
        assert!(rel_close(loss, 0.8 * 5.0 * 5f64.ln(), 1e-12));
        assert!(g.iter().all(|v| v.abs() < 1e-15), "{g:?}");
        // Not label smoothing: the library's SmoothLoss differs on the same input.
        let mut rng = Rng::new(5);
        let z: Vec<f64> = (0..5 * CLASSES).map(|_| rng.range(-1.0, 1.0)).collect();
        let ours = article_formula_loss(&z, 5, CLASSES, &targets, 0.1, None);
        let ls = ReferenceBackend
            .cross_entropy(
                &CrossEntropy::smooth_loss(0.1),
                Input::matrix(&z, 5, CLASSES),
                &targets,
            )
            .unwrap()
            .value();
        assert!((ours - ls).abs() > 0.1, "{ours} vs {ls}");
    }
}
