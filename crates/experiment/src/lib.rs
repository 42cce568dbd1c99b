//! `cargo xtask experiment` (this crate's binary): the seed article's classification experiment, rerun honestly.
//!
//! The article (`shared/seed/smoothloss-article.txt`, lines 17-55) trains a 10 -> 10 (ReLU) -> 5
//! MLP with full-batch Adam (lr 0.01, 100 epochs) on `make_classification` data and reports
//! 84.00% test accuracy for its `SmoothLoss` against 76.50% for cross-entropy, from one run each.
//! This task reruns that experiment with many initialisations per arm:
//!
//! 1. plain cross-entropy (`CrossEntropy::new()` through [`smoothloss::DefaultBackend`]);
//! 2. SmoothLoss = standard label smoothing (`CrossEntropy::smooth_loss(alpha)`, same backend);
//! 3. the article's formula exactly as printed ([`article_formula_loss`]), implemented here with
//!    its own analytic gradient. It is *not* a library loss: it is not label smoothing (see
//!    the seed article's findings), and it is here only to measure what the printed code does.
//!
//! The network, PyTorch's default initialisation, Adam with PyTorch's bias correction and the
//! backward pass are written out in this crate with `nalgebra`; only the loss and its gradient come from
//! smoothloss. Everything is deterministic for a given seed: seed `s` gives the same initial
//! weights to all three arms.
//!
//! Modules: [`cli`] (options, entry point), [`data`] (the CSV), [`mlp`] (network, backward
//! pass), [`adam`], [`loss`] (the three arms and the article's formula), [`train`](mod@train), [`stats`]
//! (summaries, paired comparison, the table) and [`plot`](mod@plot) (SVG).
#![warn(missing_docs)]

pub mod adam;
pub mod cli;
pub mod data;
pub mod loss;
pub mod mlp;
pub mod plot;
pub mod rng;
pub mod stats;
pub mod train;

pub use adam::Adam;
pub use cli::{Options, parse_args, run};
pub use data::{Dataset, check_article_split, load_article_data, parse_csv};
pub use loss::{Arm, accuracy, article_formula_loss};
pub use mlp::{Forward, Mlp};
pub use plot::plot;
pub use stats::{ArmReport, Paired, Report, Summary, render_table, run_experiment, summarize};
pub use train::{RunResult, train};

use std::path::PathBuf;

/// Input features of the article's data (`n_features=10`).
pub const FEATURES: usize = 10;
/// Hidden units (`nn.Linear(10, 10)`).
pub const HIDDEN: usize = 10;
/// Classes (`n_classes=5`).
pub const CLASSES: usize = 5;
/// The article's test fraction (`train_test_split(test_size=0.2)`).
pub const TEST_FRACTION: f64 = 0.2;
/// The article's claimed test accuracy for its SmoothLoss, in percent (article line 55).
pub const ARTICLE_SMOOTHLOSS_ACC: f64 = 84.00;
/// The article's claimed test accuracy for cross-entropy, in percent (article line 55).
pub const ARTICLE_CE_ACC: f64 = 76.50;

/// The article's data, relative to the repository root.
pub(crate) const DATA_FILE: &str = "examples/data/seed_classification.csv";

/// The workspace root (two levels above this crate's manifest directory), where `DATA_FILE`
/// is looked up whatever the current directory.
pub fn project_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
}

#[cfg(test)]
pub(crate) mod test_util {
    /// `|a - b| <= tol * (1 + max(|a|, |b|))`.
    pub fn rel_close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol * (1.0 + a.abs().max(b.abs()))
    }
}
