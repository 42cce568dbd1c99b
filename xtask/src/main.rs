//! `cargo xtask <task>`: project tasks in one binary (the cargo-xtask pattern).
//!
//! - `conformance --cases FILE [--backend reference|cpu|cuda|all]`
//! - `bench [--backend cpu|cuda|all] [--json] [--threads N] [--quick] [--no-peers] [--plot FILE]`
//!   (runs the `bench` binary of `smoothloss-benches`, `benches/src/bin/bench/`)
//! - `experiment [--seeds K] [--epochs E] [--alpha A] [--lr LR] [--plot FILE] [--json]`
//!   (runs the `smoothloss-experiment` crate, `crates/experiment`)
//! - `fuzz [--minutes N] [--cases K]` (the fuzz campaign of `smoothloss_spec::fuzz`)
//! - `gpu-bundle`

mod conformance;
mod fuzz;
mod glue;
mod gpu_bundle;

use std::path::PathBuf;
use std::process::ExitCode;

/// The workspace root (the parent of this crate's manifest directory).
pub fn project_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
}

const USAGE: &str = "usage: cargo xtask <conformance|bench|experiment|fuzz|gpu-bundle> [options]
  conformance --cases FILE [--backend reference|cpu|cuda|all]
  bench [--backend cpu|cuda|all] [--json] [--threads N] [--quick] [--no-peers] [--plot FILE.svg]
  experiment [--seeds K] [--epochs E] [--alpha A] [--lr LR] [--plot FILE] [--json]
  fuzz [--minutes N] [--cases K]
  gpu-bundle";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(task) = args.first() else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let rest = &args[1..];
    // Tasks in their own crates print their own errors and set the exit status.
    let spawned = match task.as_str() {
        "bench" => Some(glue::BENCH),
        "experiment" => Some(glue::EXPERIMENT),
        _ => None,
    };
    if let Some(target) = spawned {
        return glue::run(target, rest).unwrap_or_else(|e| {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        });
    }
    let result = match task.as_str() {
        "conformance" => conformance::run(rest),
        "fuzz" => fuzz::run(rest),
        "gpu-bundle" => gpu_bundle::run(rest),
        "help" | "--help" | "-h" => {
            println!("{USAGE}");
            Ok(())
        }
        other => Err(format!("unknown task `{other}`\n{USAGE}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
