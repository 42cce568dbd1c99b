//! `cargo xtask experiment`: the seed article's classification experiment, rerun honestly.
//!
//! The article (`shared/seed/smoothloss-article.txt`, lines 17-55) trains a 10 -> 10 (ReLU) -> 5
//! MLP with full-batch Adam (lr 0.01, 100 epochs) on `make_classification` data and reports
//! 84.00% test accuracy for its `SmoothLoss` against 76.50% for cross-entropy, from one run each.
//! This task reruns that experiment with many initialisations per arm:
//!
//! 1. plain cross-entropy (`CrossEntropy::new()` through [`smoothloss::DefaultBackend`]);
//! 2. SmoothLoss = standard label smoothing (`SmoothLoss::new(alpha)`, same backend);
//! 3. the article's formula exactly as printed ([`article_formula_loss`]), implemented here with
//!    its own analytic gradient. It is *not* a library loss: it is not label smoothing (see
//!    `FINDINGS.md`), and it is here only to measure what the printed code does.
//!
//! The network, PyTorch's default initialisation, Adam with PyTorch's bias correction and the
//! backward pass are written out below with `nalgebra`; only the loss and its gradient come from
//! smoothloss. Everything is deterministic for a given seed: seed `s` gives the same initial
//! weights to all three arms.

use std::fmt::Write as _;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use nalgebra::{DMatrix, DVector, RealField};
use serde::Serialize;
use smoothloss::prelude::*;

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

const DATA_FILE: &str = "examples/data/seed_classification.csv";

const USAGE: &str = "usage: cargo xtask experiment [--seeds K] [--epochs E] [--alpha A] [--lr LR] \
[--plot FILE.svg] [--json]
  --seeds K     independent initialisations per arm (default 20, seeds 0..K)
  --epochs E    full-batch Adam steps (default 100, as the article)
  --alpha A     smoothing alpha for SmoothLoss and the article's formula, in [0, 1) (default 0.1)
  --lr LR       Adam learning rate (default 0.01, as the article)
  --plot FILE   write an SVG of mean test accuracy per epoch for the three arms
  --json        print machine-readable results on stdout (no progress bar)";

// ----------------------------------------------------------------------------------------------
// Command line
// ----------------------------------------------------------------------------------------------

/// Options of `cargo xtask experiment`.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// Number of seeds (initialisations) per arm.
    pub seeds: u64,
    /// Number of full-batch Adam steps.
    pub epochs: usize,
    /// Smoothing parameter of arms 2 and 3.
    pub alpha: f64,
    /// Adam learning rate.
    pub lr: f64,
    /// Where to write the SVG plot.
    pub plot: Option<PathBuf>,
    /// Print JSON instead of the table.
    pub json: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            seeds: 20,
            epochs: 100,
            alpha: 0.1,
            lr: 0.01,
            plot: None,
            json: false,
        }
    }
}

fn parse_value<T: std::str::FromStr>(flag: &str, value: &str) -> Result<T, String> {
    value
        .parse()
        .map_err(|_| format!("{flag}: cannot parse `{value}`\n{USAGE}"))
}

/// Parses the arguments after `experiment`; accepts `--flag value` and `--flag=value`.
pub fn parse_args(args: &[String]) -> Result<Options, String> {
    let mut o = Options::default();
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (arg.as_str(), None),
        };
        let takes_value = matches!(flag, "--seeds" | "--epochs" | "--alpha" | "--lr" | "--plot");
        let value = if takes_value {
            match inline {
                Some(v) => Some(v),
                None => {
                    i += 1;
                    Some(
                        args.get(i)
                            .cloned()
                            .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?,
                    )
                }
            }
        } else {
            if inline.is_some() {
                return Err(format!("{flag} takes no value\n{USAGE}"));
            }
            None
        };
        let value = value.unwrap_or_default();
        match flag {
            "--seeds" => o.seeds = parse_value(flag, &value)?,
            "--epochs" => o.epochs = parse_value(flag, &value)?,
            "--alpha" => o.alpha = parse_value(flag, &value)?,
            "--lr" => o.lr = parse_value(flag, &value)?,
            "--plot" => {
                if value.is_empty() {
                    return Err(format!("--plot needs a file name\n{USAGE}"));
                }
                o.plot = Some(PathBuf::from(value));
            }
            "--json" => o.json = true,
            "--help" | "-h" => return Err(USAGE.to_string()),
            other => return Err(format!("unknown option `{other}`\n{USAGE}")),
        }
        i += 1;
    }
    if o.seeds == 0 {
        return Err("--seeds must be at least 1".into());
    }
    if o.epochs == 0 {
        return Err("--epochs must be at least 1".into());
    }
    if !(o.alpha.is_finite() && (0.0..1.0).contains(&o.alpha)) {
        return Err(format!("--alpha must lie in [0, 1), got {}", o.alpha));
    }
    if !(o.lr.is_finite() && o.lr > 0.0) {
        return Err(format!("--lr must be finite and > 0, got {}", o.lr));
    }
    if let Some(p) = &o.plot {
        let ext = p.extension().and_then(|e| e.to_str()).unwrap_or("");
        if !ext.eq_ignore_ascii_case("svg") {
            return Err(format!(
                "--plot writes SVG only; give a file name ending in .svg (got `{}`)",
                p.display()
            ));
        }
    }
    Ok(o)
}

// ----------------------------------------------------------------------------------------------
// Data
// ----------------------------------------------------------------------------------------------

/// The article's data set, split by the CSV's `split` column. Inputs are stored one sample per
/// column (`FEATURES x N`), so that the logits `CLASSES x N` in nalgebra's column-major storage
/// are exactly the row-major `[N, CLASSES]` buffer the loss backends take.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// Training inputs, `FEATURES x n_train`.
    pub x_train: DMatrix<f32>,
    /// Training labels in `0..CLASSES`.
    pub y_train: Vec<i64>,
    /// Test inputs, `FEATURES x n_test`.
    pub x_test: DMatrix<f32>,
    /// Test labels in `0..CLASSES`.
    pub y_test: Vec<i64>,
}

/// Parses the CSV `x0,..,x9,label,split` (header required; `split` is `train` or `test`).
/// Every malformed line is an error naming the line; nothing is skipped silently.
pub fn parse_csv(text: &str) -> Result<Dataset, String> {
    let mut lines = text.lines().enumerate();
    let expected: Vec<String> = (0..FEATURES)
        .map(|j| format!("x{j}"))
        .chain(["label".to_string(), "split".to_string()])
        .collect();
    let (_, header) = lines.next().ok_or("empty CSV: no header line")?;
    let header: Vec<&str> = header
        .trim_end_matches('\r')
        .split(',')
        .map(str::trim)
        .collect();
    if header != expected {
        return Err(format!(
            "bad CSV header `{}`; expected `{}`",
            header.join(","),
            expected.join(",")
        ));
    }
    let (mut train, mut test) = (Vec::new(), Vec::new());
    let (mut y_train, mut y_test) = (Vec::new(), Vec::new());
    for (idx, line) in lines {
        let lineno = idx + 1;
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        if fields.len() != FEATURES + 2 {
            return Err(format!(
                "line {lineno}: {} fields, expected {}",
                fields.len(),
                FEATURES + 2
            ));
        }
        let mut x = [0.0_f32; FEATURES];
        for (j, f) in fields[..FEATURES].iter().enumerate() {
            let v: f64 = f
                .parse()
                .map_err(|_| format!("line {lineno}: x{j} = `{f}` is not a number"))?;
            if !v.is_finite() {
                return Err(format!("line {lineno}: x{j} = `{f}` is not finite"));
            }
            x[j] = v as f32;
        }
        let label_text = fields[FEATURES];
        let label: i64 = label_text
            .parse()
            .map_err(|_| format!("line {lineno}: label `{label_text}` is not an integer"))?;
        if !(0..CLASSES as i64).contains(&label) {
            return Err(format!("line {lineno}: label {label} outside 0..{CLASSES}"));
        }
        match fields[FEATURES + 1] {
            "train" => {
                train.extend_from_slice(&x);
                y_train.push(label);
            }
            "test" => {
                test.extend_from_slice(&x);
                y_test.push(label);
            }
            other => {
                return Err(format!(
                    "line {lineno}: split `{other}` is neither `train` nor `test`"
                ));
            }
        }
    }
    if y_train.is_empty() || y_test.is_empty() {
        return Err(format!(
            "need both splits: {} train rows, {} test rows",
            y_train.len(),
            y_test.len()
        ));
    }
    Ok(Dataset {
        x_train: DMatrix::from_column_slice(FEATURES, y_train.len(), &train),
        y_train,
        x_test: DMatrix::from_column_slice(FEATURES, y_test.len(), &test),
        y_test,
    })
}

/// Checks that the split is the article's `train_test_split(test_size=0.2)`: scikit-learn puts
/// `ceil(0.2 * n)` rows in the test set.
pub fn check_article_split(d: &Dataset) -> Result<(), String> {
    let n = d.y_train.len() + d.y_test.len();
    let want_test = (TEST_FRACTION * n as f64).ceil() as usize;
    if d.y_test.len() != want_test {
        return Err(format!(
            "the split column gives {} test rows of {n}; the article's test_size=0.2 gives {want_test}",
            d.y_test.len()
        ));
    }
    Ok(())
}

fn class_counts(y: &[i64]) -> [usize; CLASSES] {
    let mut c = [0; CLASSES];
    for &v in y {
        c[v as usize] += 1;
    }
    c
}

// ----------------------------------------------------------------------------------------------
// Deterministic PRNG
// ----------------------------------------------------------------------------------------------

/// SplitMix64 (Steele, Lea, Flood 2014): small, fast, and good enough to draw initial weights.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)` with 53 random bits.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in `[lo, hi)`.
    pub fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.next_f64()
    }
}

// ----------------------------------------------------------------------------------------------
// The network
// ----------------------------------------------------------------------------------------------

/// `Linear(FEATURES, HIDDEN) -> ReLU -> Linear(HIDDEN, CLASSES)`, weights stored as PyTorch
/// does (`out x in`). Also used to hold gradients and Adam moments.
#[derive(Debug, Clone, PartialEq)]
pub struct Mlp<T: RealField + Copy> {
    /// `fc1.weight`, `HIDDEN x FEATURES`.
    pub w1: DMatrix<T>,
    /// `fc1.bias`.
    pub b1: DVector<T>,
    /// `fc2.weight`, `CLASSES x HIDDEN`.
    pub w2: DMatrix<T>,
    /// `fc2.bias`.
    pub b2: DVector<T>,
}

/// Activations kept by the forward pass for the backward pass.
#[derive(Debug, Clone)]
pub struct Forward<T: RealField + Copy> {
    /// Pre-activations of the hidden layer, `HIDDEN x N`.
    pub a1: DMatrix<T>,
    /// `relu(a1)`.
    pub h: DMatrix<T>,
    /// Logits, `CLASSES x N` (= row-major `[N, CLASSES]`).
    pub z: DMatrix<T>,
}

fn add_bias<T: RealField + Copy>(m: &mut DMatrix<T>, b: &DVector<T>) {
    for mut col in m.column_iter_mut() {
        col += b;
    }
}

impl<T: RealField + Copy> Mlp<T> {
    /// PyTorch's default `nn.Linear` initialisation: weights and biases uniform in
    /// `+-1/sqrt(fan_in)` (kaiming_uniform with a = sqrt(5) gives that bound for the weights).
    /// Draw order: fc1.weight (row-major), fc1.bias, fc2.weight, fc2.bias.
    pub fn init(seed: u64, n_in: usize, n_hidden: usize, n_out: usize) -> Self {
        let mut rng = SplitMix64::new(seed);
        let mut linear = |fan_in: usize, fan_out: usize| {
            let bound = 1.0 / (fan_in as f64).sqrt();
            let w: Vec<T> = (0..fan_in * fan_out)
                .map(|_| nalgebra::convert(rng.uniform(-bound, bound)))
                .collect();
            let b: Vec<T> = (0..fan_out)
                .map(|_| nalgebra::convert(rng.uniform(-bound, bound)))
                .collect();
            (
                DMatrix::from_row_slice(fan_out, fan_in, &w),
                DVector::from_vec(b),
            )
        };
        let (w1, b1) = linear(n_in, n_hidden);
        let (w2, b2) = linear(n_hidden, n_out);
        Self { w1, b1, w2, b2 }
    }

    /// Zeros of the same shapes.
    pub fn zeros_like(&self) -> Self {
        Self {
            w1: DMatrix::zeros(self.w1.nrows(), self.w1.ncols()),
            b1: DVector::zeros(self.b1.len()),
            w2: DMatrix::zeros(self.w2.nrows(), self.w2.ncols()),
            b2: DVector::zeros(self.b2.len()),
        }
    }

    /// Forward pass over `x` (`n_in x N`, one sample per column).
    pub fn forward(&self, x: &DMatrix<T>) -> Forward<T> {
        let mut a1 = &self.w1 * x;
        add_bias(&mut a1, &self.b1);
        let h = a1.map(|v| if v > T::zero() { v } else { T::zero() });
        let mut z = &self.w2 * &h;
        add_bias(&mut z, &self.b2);
        Forward { a1, h, z }
    }

    /// Backward pass: gradients of the loss with respect to every parameter, given `dz`, the
    /// gradient with respect to the logits (`CLASSES x N`). ReLU's derivative at 0 is 0, as in
    /// PyTorch.
    pub fn backward(&self, x: &DMatrix<T>, fwd: &Forward<T>, dz: &DMatrix<T>) -> Self {
        let w2 = dz * fwd.h.transpose();
        let b2 = dz.column_sum();
        let dh = self.w2.transpose() * dz;
        let da1 = dh.zip_map(&fwd.a1, |g, a| if a > T::zero() { g } else { T::zero() });
        let w1 = &da1 * x.transpose();
        let b1 = da1.column_sum();
        Self { w1, b1, w2, b2 }
    }

    /// The parameters as flat slices, in PyTorch's `parameters()` order.
    pub fn slices_mut(&mut self) -> [&mut [T]; 4] {
        [
            self.w1.as_mut_slice(),
            self.b1.as_mut_slice(),
            self.w2.as_mut_slice(),
            self.b2.as_mut_slice(),
        ]
    }

    /// The parameters as flat slices, in PyTorch's `parameters()` order.
    pub fn slices(&self) -> [&[T]; 4] {
        [
            self.w1.as_slice(),
            self.b1.as_slice(),
            self.w2.as_slice(),
            self.b2.as_slice(),
        ]
    }
}

/// Adam as `torch.optim.Adam` (single-tensor path, no weight decay, no amsgrad):
/// `m = lerp(m, g, 1 - b1)`, `v = b2 v + (1 - b2) g^2`,
/// `p -= (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)`.
#[derive(Debug, Clone)]
pub struct Adam {
    lr: f64,
    beta1: f64,
    beta2: f64,
    eps: f64,
    step: i32,
    m: Mlp<f32>,
    v: Mlp<f32>,
}

impl Adam {
    /// Adam with PyTorch's defaults (betas 0.9 / 0.999, eps 1e-8) and learning rate `lr`.
    pub fn new(params: &Mlp<f32>, lr: f64) -> Self {
        Self {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            step: 0,
            m: params.zeros_like(),
            v: params.zeros_like(),
        }
    }

    /// One update of `params` with gradients `grads`.
    pub fn step(&mut self, params: &mut Mlp<f32>, grads: &Mlp<f32>) {
        self.step += 1;
        let bc1 = 1.0 - self.beta1.powi(self.step);
        let bc2_sqrt = (1.0 - self.beta2.powi(self.step)).sqrt();
        let step_size = (self.lr / bc1) as f32;
        let (b1, b2) = (self.beta1 as f32, self.beta2 as f32);
        let (bc2_sqrt, eps) = (bc2_sqrt as f32, self.eps as f32);
        let ps = params.slices_mut();
        let gs = grads.slices();
        let ms = self.m.slices_mut();
        let vs = self.v.slices_mut();
        for (((p, g), m), v) in ps.into_iter().zip(gs).zip(ms).zip(vs) {
            for i in 0..p.len() {
                m[i] += (g[i] - m[i]) * (1.0 - b1);
                v[i] = v[i] * b2 + (1.0 - b2) * g[i] * g[i];
                let denom = v[i].sqrt() / bc2_sqrt + eps;
                p[i] -= step_size * m[i] / denom;
            }
        }
    }
}

// ----------------------------------------------------------------------------------------------
// Losses
// ----------------------------------------------------------------------------------------------

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
    /// `SmoothLoss::new(alpha)` (label smoothing) from the library.
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
                    logits,
                    rows,
                    CLASSES,
                    CeTargets::Classes(targets),
                    Upstream::ONE,
                    Some(grad),
                )
                .map(|v| v[0])
                .map_err(|e| format!("loss: {e}"))
        };
        match self {
            Arm::CrossEntropy => lib(CrossEntropy::new(), grad),
            Arm::SmoothLoss => lib(SmoothLoss::new(alpha), grad),
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

// ----------------------------------------------------------------------------------------------
// Training
// ----------------------------------------------------------------------------------------------

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
    for _ in 0..epochs {
        let fwd = model.forward(&data.x_train);
        final_loss = arm.loss_and_grad(
            backend,
            alpha,
            fwd.z.as_slice(),
            &data.y_train,
            grad.as_mut_slice(),
        )?;
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

// ----------------------------------------------------------------------------------------------
// Statistics and report
// ----------------------------------------------------------------------------------------------

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

/// Writes the SVG of mean test accuracy per epoch.
pub fn plot(r: &Report, path: &Path) -> Result<(), String> {
    use plotters::prelude::*;
    let err = |e: &dyn std::fmt::Display| format!("plot {}: {e}", path.display());
    let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "Seed article experiment: mean test accuracy over {} seeds (alpha {}, lr {})",
                r.seeds, r.alpha, r.lr
            ),
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(0f64..r.epochs as f64, 0f64..100f64)
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc("epoch (full-batch Adam step)")
        .y_desc("mean test accuracy (%)")
        .draw()
        .map_err(|e| err(&e))?;
    let colors = [
        RGBColor(31, 119, 180),
        RGBColor(214, 39, 40),
        RGBColor(44, 160, 44),
    ];
    for (a, &color) in r.arms.iter().zip(&colors) {
        let pts = a
            .mean_test_acc_per_epoch
            .iter()
            .enumerate()
            .map(|(e, &v)| (e as f64, v));
        chart
            .draw_series(LineSeries::new(pts, color.stroke_width(2)))
            .map_err(|e| err(&e))?
            .label(format!("{} (final {:.2}%)", a.label, a.test.mean))
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    for (claim, name, color) in [
        (ARTICLE_CE_ACC, "article's claim, cross-entropy", colors[0]),
        (
            ARTICLE_SMOOTHLOSS_ACC,
            "article's claim, SmoothLoss",
            colors[1],
        ),
    ] {
        let style = color.mix(0.45).stroke_width(1);
        chart
            .draw_series(LineSeries::new(
                [(0.0, claim), (r.epochs as f64, claim)],
                style,
            ))
            .map_err(|e| err(&e))?
            .label(format!("{name}: {claim:.2}%"))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
    }
    chart
        .configure_series_labels()
        // Between the trained curves (about 60%) and the article formula's (about 20%).
        .position(SeriesLabelPosition::Coordinate(418, 255))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

/// Loads the article's data from the repository and checks its split.
pub fn load_article_data() -> Result<Dataset, String> {
    let path = crate::project_root().join(DATA_FILE);
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let data = parse_csv(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    check_article_split(&data)?;
    Ok(data)
}

/// Entry point of `cargo xtask experiment`.
pub fn run(args: &[String]) -> Result<(), String> {
    let o = parse_args(args)?;
    let data = load_article_data()?;
    let total = 3 * o.seeds;
    let target = if o.json || !std::io::stderr().is_terminal() {
        ProgressDrawTarget::hidden()
    } else {
        ProgressDrawTarget::stderr()
    };
    let bar = ProgressBar::with_draw_target(Some(total), target);
    bar.set_style(
        ProgressStyle::with_template("training {bar:40} {pos}/{len} runs ({elapsed})")
            .map_err(|e| e.to_string())?,
    );
    let report = run_experiment(&data, &o, || bar.inc(1));
    bar.finish_and_clear();
    let report = report?;
    if let Some(path) = &o.plot {
        plot(&report, path)?;
    }
    if o.json {
        let text = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
        println!("{text}");
    } else {
        println!("{}", render_table(&report, &data));
        if let Some(path) = &o.plot {
            println!("plot written to {}", path.display());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use smoothloss_core::ReferenceBackend;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    fn rel_close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol * (1.0 + a.abs().max(b.abs()))
    }

    /// Random inputs `FEATURES x n` and labels, in f64.
    fn random_batch(seed: u64, n: usize) -> (DMatrix<f64>, Vec<i64>) {
        let mut rng = SplitMix64::new(seed);
        let x = DMatrix::from_fn(FEATURES, n, |_, _| rng.uniform(-2.0, 2.0));
        let y = (0..n)
            .map(|_| (rng.next_u64() % CLASSES as u64) as i64)
            .collect();
        (x, y)
    }

    /// Label-smoothed CE through the f64 reference backend.
    fn ce_loss(z: &DMatrix<f64>, y: &[i64], grad: Option<&mut [f64]>) -> f64 {
        ReferenceBackend
            .cross_entropy(
                &SmoothLoss::new(0.1),
                z.as_slice(),
                y.len(),
                CLASSES,
                CeTargets::Classes(y),
                Upstream::ONE,
                grad,
            )
            .unwrap()[0]
    }

    #[test]
    fn mlp_backprop_matches_finite_differences() {
        let (x, y) = random_batch(7, 9);
        let model = Mlp::<f64>::init(3, FEATURES, HIDDEN, CLASSES);
        let fwd = model.forward(&x);
        let mut dz = DMatrix::<f64>::zeros(CLASSES, y.len());
        ce_loss(&fwd.z, &y, Some(dz.as_mut_slice()));
        let grads = model.backward(&x, &fwd, &dz);
        // No pre-activation sits on the ReLU kink, where finite differences are meaningless.
        assert!(fwd.a1.iter().all(|a| a.abs() > 1e-4));
        let h = 1e-6;
        let mut checked = 0;
        for k in 0..4 {
            let n = model.slices()[k].len();
            for i in 0..n {
                let mut plus = model.clone();
                plus.slices_mut()[k][i] += h;
                let mut minus = model.clone();
                minus.slices_mut()[k][i] -= h;
                let fd = (ce_loss(&plus.forward(&x).z, &y, None)
                    - ce_loss(&minus.forward(&x).z, &y, None))
                    / (2.0 * h);
                let an = grads.slices()[k][i];
                assert!(
                    rel_close(an, fd, 1e-6),
                    "param {k}[{i}]: analytic {an}, fd {fd}"
                );
                checked += 1;
            }
        }
        assert_eq!(
            checked,
            HIDDEN * FEATURES + HIDDEN + CLASSES * HIDDEN + CLASSES
        );
        // The gradient is not trivially zero.
        assert!(grads.w1.iter().any(|g| g.abs() > 1e-4));
    }

    #[test]
    fn article_formula_gradient_matches_finite_differences() {
        let mut rng = SplitMix64::new(11);
        for (rows, targets, alpha) in [
            (4, vec![0_i64, 2, 2, 4], 0.1),
            (3, vec![1, 1, 3], 0.35),
            (6, vec![0, 1, 2, 3, 4, 0], 0.1),
        ] {
            let z: Vec<f64> = (0..rows * CLASSES)
                .map(|_| rng.uniform(-3.0, 3.0))
                .collect();
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
        let mut rng = SplitMix64::new(5);
        let z: Vec<f64> = (0..5 * CLASSES).map(|_| rng.uniform(-1.0, 1.0)).collect();
        let ours = article_formula_loss(&z, 5, CLASSES, &targets, 0.1, None);
        let ls = ReferenceBackend
            .cross_entropy(
                &SmoothLoss::new(0.1),
                &z,
                5,
                CLASSES,
                CeTargets::Classes(&targets),
                Upstream::ONE,
                None,
            )
            .unwrap()[0];
        assert!((ours - ls).abs() > 0.1, "{ours} vs {ls}");
    }

    #[test]
    fn init_is_pytorch_default_and_deterministic() {
        let a = Mlp::<f32>::init(42, FEATURES, HIDDEN, CLASSES);
        let b = Mlp::<f32>::init(42, FEATURES, HIDDEN, CLASSES);
        let c = Mlp::<f32>::init(43, FEATURES, HIDDEN, CLASSES);
        assert_eq!(a, b);
        assert_ne!(a, c);
        let bound1 = 1.0 / (FEATURES as f32).sqrt();
        let bound2 = 1.0 / (HIDDEN as f32).sqrt();
        assert!(a.w1.iter().chain(a.b1.iter()).all(|v| v.abs() <= bound1));
        assert!(a.w2.iter().chain(a.b2.iter()).all(|v| v.abs() <= bound2));
        // Spread over the whole interval, not a constant.
        let max = a.w1.iter().fold(0f32, |m, v| m.max(v.abs()));
        assert!(max > 0.8 * bound1, "{max}");
    }

    #[test]
    fn adam_first_step_is_lr_times_sign() {
        // With bias correction, PyTorch's first Adam step is lr * g / (|g| + eps).
        let mut p = Mlp::<f32>::init(1, FEATURES, HIDDEN, CLASSES);
        let before = p.clone();
        let mut g = p.zeros_like();
        let mut rng = SplitMix64::new(2);
        for s in g.slices_mut() {
            for v in s.iter_mut() {
                *v = rng.uniform(-1.0, 1.0) as f32;
            }
        }
        let mut adam = Adam::new(&p, 0.01);
        adam.step(&mut p, &g);
        for k in 0..4 {
            for ((a, b), gi) in p.slices()[k]
                .iter()
                .zip(before.slices()[k])
                .zip(g.slices()[k])
            {
                let want = b - 0.01 * gi.signum();
                assert!((a - want).abs() < 1e-6, "{a} vs {want}");
            }
        }
        // Second step with the same gradient: still lr (m and v both stationary).
        let mid = p.clone();
        adam.step(&mut p, &g);
        let moved = (p.w1[(0, 0)] - mid.w1[(0, 0)]).abs();
        assert!((moved - 0.01).abs() < 1e-5, "{moved}");
    }

    fn csv_of(rows: &[&str]) -> String {
        let mut s = String::from("x0,x1,x2,x3,x4,x5,x6,x7,x8,x9,label,split\n");
        for r in rows {
            s.push_str(r);
            s.push('\n');
        }
        s
    }

    #[test]
    fn csv_loader_reads_good_input() {
        let d = parse_csv(&csv_of(&[
            "1,2,3,4,5,6,7,8,9,10,4,train",
            "0,0,0,0,0,0,0,0,0,-1.5e-1,0,test",
            "",
        ]))
        .unwrap();
        assert_eq!(d.y_train, vec![4]);
        assert_eq!(d.y_test, vec![0]);
        assert_eq!(d.x_train.column(0).as_slice()[9], 10.0);
        assert_eq!(d.x_test[(9, 0)], -0.15);
    }

    #[test]
    fn csv_loader_rejects_malformed_input() {
        let good = "1,2,3,4,5,6,7,8,9,10,1,train";
        let test = "1,2,3,4,5,6,7,8,9,10,1,test";
        let cases: Vec<(String, &str)> = vec![
            (String::new(), "empty"),
            ("a,b\n".to_string() + good, "header"),
            (csv_of(&[good, test, "1,2,3,4,5,6,7,8,9,1,train"]), "fields"),
            (
                csv_of(&[good, test, "1,2,3,4,5,6,7,8,9,10,1,train,x"]),
                "fields",
            ),
            (
                csv_of(&[good, test, "1,2,3,4,five,6,7,8,9,10,1,train"]),
                "not a number",
            ),
            (
                csv_of(&[good, test, "1,2,3,4,NaN,6,7,8,9,10,1,train"]),
                "not finite",
            ),
            (
                csv_of(&[good, test, "1,2,3,4,5,6,7,8,9,10,5,train"]),
                "outside",
            ),
            (
                csv_of(&[good, test, "1,2,3,4,5,6,7,8,9,10,-1,train"]),
                "outside",
            ),
            (
                csv_of(&[good, test, "1,2,3,4,5,6,7,8,9,10,1.5,train"]),
                "not an integer",
            ),
            (
                csv_of(&[good, test, "1,2,3,4,5,6,7,8,9,10,1,valid"]),
                "split",
            ),
            (csv_of(&[good]), "both splits"),
        ];
        for (text, want) in cases {
            let e = parse_csv(&text).unwrap_err();
            assert!(e.contains(want), "expected `{want}` in error `{e}`");
        }
    }

    #[test]
    fn reads_the_articles_split() {
        let d = load_article_data().unwrap();
        assert_eq!((d.y_train.len(), d.y_test.len()), (800, 200));
        assert_eq!(d.x_train.nrows(), FEATURES);
        // Every class appears in both splits (so the article's formula weights all classes).
        assert!(class_counts(&d.y_train).iter().all(|&c| c > 0));
        assert!(class_counts(&d.y_test).iter().all(|&c| c > 0));
        let mut bad = d.clone();
        bad.y_test.pop();
        assert!(check_article_split(&bad).is_err());
    }

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

    #[test]
    fn args_are_validated() {
        assert_eq!(parse_args(&[]).unwrap(), Options::default());
        let o = parse_args(&args(
            "--seeds 3 --epochs=7 --alpha 0.2 --lr 0.05 --json --plot a.svg",
        ))
        .unwrap();
        assert_eq!(
            (o.seeds, o.epochs, o.alpha, o.lr, o.json),
            (3, 7, 0.2, 0.05, true)
        );
        assert_eq!(o.plot, Some(PathBuf::from("a.svg")));
        for (bad, want) in [
            ("--seeds 0", "--seeds"),
            ("--seeds -2", "--seeds"),
            ("--seeds", "needs a value"),
            ("--epochs 0", "--epochs"),
            ("--alpha 1", "--alpha"),
            ("--alpha nan", "--alpha"),
            ("--lr 0", "--lr"),
            ("--lr x", "--lr"),
            ("--plot out.png", "SVG"),
            ("--json=1", "takes no value"),
            ("--frobnicate", "unknown option"),
        ] {
            let e = parse_args(&args(bad)).unwrap_err();
            assert!(e.contains(want), "`{bad}`: {e}");
        }
    }

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
