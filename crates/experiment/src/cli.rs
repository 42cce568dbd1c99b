//! Command line of `cargo xtask experiment` (the `smoothloss-experiment` binary): options,
//! their validation, and the entry point [`run`].

use std::io::IsTerminal;
use std::path::PathBuf;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::data::load_article_data;
use crate::plot::plot;
use crate::stats::{render_table, run_experiment};

const USAGE: &str = "usage: cargo xtask experiment [--seeds K] [--epochs E] [--alpha A] [--lr LR] \
[--plot FILE.svg] [--json]
  --seeds K     independent initialisations per arm (default 20, seeds 0..K)
  --epochs E    full-batch Adam steps (default 100, as the article)
  --alpha A     smoothing alpha for SmoothLoss and the article's formula, in [0, 1) (default 0.1)
  --lr LR       Adam learning rate (default 0.01, as the article)
  --plot FILE   write an SVG of mean test accuracy per epoch for the three arms
  --json        print machine-readable results on stdout (no progress bar)";

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

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
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
}
