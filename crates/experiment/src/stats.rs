//! Statistics over seeds, the paired comparison with cross-entropy, and the text table.

use std::fmt::Write as _;
use std::time::Instant;

use serde::Serialize;
use smoothloss::prelude::*;

use crate::cli::Options;
use crate::data::{Dataset, class_counts};
use crate::loss::Arm;
use crate::train::train;
use crate::{CLASSES, DATA_FILE, FEATURES, HIDDEN};

/// Mean, sample standard deviation (n - 1; 0 for one value), minimum and maximum.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Summary {
    /// Mean.
    pub mean: f64,
    /// Sample standard deviation.
    pub std: f64,
    /// Minimum.
    pub min: f64,
    /// Maximum.
    pub max: f64,
}

/// Summarises `xs` (non-empty).
pub fn summarize(xs: &[f64]) -> Summary {
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    let var = if xs.len() > 1 {
        xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    Summary {
        mean,
        std: var.sqrt(),
        min: xs.iter().copied().fold(f64::INFINITY, f64::min),
        max: xs.iter().copied().fold(f64::NEG_INFINITY, f64::max),
    }
}

/// One arm's results over all seeds (accuracies in percent).
#[derive(Debug, Clone, Serialize)]
pub struct ArmReport {
    /// Machine name.
    pub arm: &'static str,
    /// Human label.
    pub label: String,
    /// Final test accuracy per seed, percent.
    pub test_acc: Vec<f64>,
    /// Summary of `test_acc`.
    pub test: Summary,
    /// Summary of the final training accuracy, percent.
    pub train: Summary,
    /// Mean final training loss.
    pub mean_final_loss: f64,
    /// Mean test accuracy over seeds before training (index 0) and after each epoch, percent.
    pub mean_test_acc_per_epoch: Vec<f64>,
    /// The article's claimed figure for this arm, percent.
    pub article_claim: f64,
}

/// A paired comparison of two arms over the same seeds.
#[derive(Debug, Clone, Serialize)]
pub struct Paired {
    /// Arm compared.
    pub arm: &'static str,
    /// Against this arm.
    pub against: &'static str,
    /// Summary of the per-seed difference in test accuracy, percentage points.
    pub diff: Summary,
    /// Seeds where `arm` is better / equal / worse.
    pub wins: usize,
    /// Ties.
    pub ties: usize,
    /// Losses.
    pub losses: usize,
}

/// Everything `--json` prints.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Data file, relative to the repository root.
    pub data: String,
    /// Training rows.
    pub train_rows: usize,
    /// Test rows.
    pub test_rows: usize,
    /// Seeds `0..seeds`.
    pub seeds: u64,
    /// Epochs.
    pub epochs: usize,
    /// Smoothing alpha.
    pub alpha: f64,
    /// Adam learning rate.
    pub lr: f64,
    /// Backend that computed the library losses.
    pub backend: String,
    /// Per-arm results.
    pub arms: Vec<ArmReport>,
    /// SmoothLoss and the article's formula against cross-entropy, seed by seed.
    pub paired: Vec<Paired>,
    /// Wall-clock seconds of training.
    pub seconds: f64,
}

fn paired(a: &ArmReport, b: &ArmReport) -> Paired {
    let d: Vec<f64> = a
        .test_acc
        .iter()
        .zip(&b.test_acc)
        .map(|(x, y)| x - y)
        .collect();
    Paired {
        arm: a.arm,
        against: b.arm,
        diff: summarize(&d),
        wins: d.iter().filter(|&&v| v > 1e-9).count(),
        ties: d.iter().filter(|&&v| v.abs() <= 1e-9).count(),
        losses: d.iter().filter(|&&v| v < -1e-9).count(),
    }
}

/// Runs every arm for every seed; `on_run` is called after each (arm, seed).
pub fn run_experiment(
    data: &Dataset,
    o: &Options,
    mut on_run: impl FnMut(),
) -> Result<Report, String> {
    let backend = DefaultBackend::default();
    let start = Instant::now();
    let mut arms = Vec::new();
    for arm in Arm::ALL {
        let mut runs = Vec::new();
        for seed in 0..o.seeds {
            runs.push(train(data, arm, seed, o.epochs, o.alpha, o.lr, &backend)?);
            on_run();
        }
        let test_acc: Vec<f64> = runs.iter().map(|r| 100.0 * r.test_acc[o.epochs]).collect();
        let train_acc: Vec<f64> = runs.iter().map(|r| 100.0 * r.train_acc).collect();
        let curve = (0..=o.epochs)
            .map(|e| 100.0 * runs.iter().map(|r| r.test_acc[e]).sum::<f64>() / runs.len() as f64)
            .collect();
        arms.push(ArmReport {
            arm: arm.key(),
            label: arm.label(o.alpha),
            test: summarize(&test_acc),
            test_acc,
            train: summarize(&train_acc),
            mean_final_loss: runs.iter().map(|r| r.final_loss).sum::<f64>() / runs.len() as f64,
            mean_test_acc_per_epoch: curve,
            article_claim: arm.article_claim(),
        });
    }
    let paired = vec![paired(&arms[1], &arms[0]), paired(&arms[2], &arms[0])];
    Ok(Report {
        data: DATA_FILE.into(),
        train_rows: data.y_train.len(),
        test_rows: data.y_test.len(),
        seeds: o.seeds,
        epochs: o.epochs,
        alpha: o.alpha,
        lr: o.lr,
        backend: Backend::<f32>::name(&backend),
        arms,
        paired,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// The text table.
pub fn render_table(r: &Report, data: &Dataset) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Seed article experiment: MLP {FEATURES}-{HIDDEN}(ReLU)-{CLASSES}, full-batch Adam lr {}, \
         {} epochs, {} seeds per arm (0..{}), backend `{}`",
        r.lr, r.epochs, r.seeds, r.seeds, r.backend
    );
    let _ = writeln!(
        s,
        "data: {} ({} train / {} test rows from the `split` column = the article's \
         train_test_split(test_size=0.2, random_state=42)); class counts train {:?}, test {:?}",
        r.data,
        r.train_rows,
        r.test_rows,
        class_counts(&data.y_train),
        class_counts(&data.y_test)
    );
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "{:<46} {:>9} {:>6} {:>7} {:>7} {:>10} {:>9} {:>8}",
        "arm", "test mean", "std", "min", "max", "train mean", "loss", "article"
    );
    for a in &r.arms {
        let _ = writeln!(
            s,
            "{:<46} {:>8.2}% {:>6.2} {:>6.2}% {:>6.2}% {:>9.2}% {:>9.4} {:>7.2}%",
            a.label,
            a.test.mean,
            a.test.std,
            a.test.min,
            a.test.max,
            a.train.mean,
            a.mean_final_loss,
            a.article_claim
        );
    }
    let _ = writeln!(s);
    for p in &r.paired {
        let _ = writeln!(
            s,
            "paired by seed, {} - {}: mean {:+.2} pp (std {:.2}), better on {}, equal on {}, worse on {} of {} seeds",
            p.arm, p.against, p.diff.mean, p.diff.std, p.wins, p.ties, p.losses, r.seeds
        );
    }
    let _ = writeln!(
        s,
        "article: 84.00% for its SmoothLoss class (the printed formula) and 76.50% for \
         cross-entropy, one run each; chance is {:.0}%.",
        100.0 / CLASSES as f64
    );
    let _ = write!(s, "trained {} runs in {:.2} s", 3 * r.seeds, r.seconds);
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loss::accuracy;
    use crate::test_util::rel_close;

    #[test]
    fn summary_statistics() {
        let s = summarize(&[1.0, 2.0, 3.0, 6.0]);
        assert_eq!((s.mean, s.min, s.max), (3.0, 1.0, 6.0));
        assert!(rel_close(s.std, (14.0f64 / 3.0).sqrt(), 1e-12));
        assert_eq!(summarize(&[5.0]).std, 0.0);
        // Ties go to the first maximum, as torch.argmax: row 2 predicts 0, not 1.
        assert_eq!(
            accuracy(&[0.0, 1.0, 1.0, 0.0, 0.0, 2.0, 2.0, 0.0, 0.0, 0.0], &[1, 1]),
            0.5
        );
    }
}
