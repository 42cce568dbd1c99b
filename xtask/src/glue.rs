//! Tasks that live in their own crates: `cargo xtask <task> ARGS` runs
//! `cargo run --quiet --release -p PACKAGE --bin BIN -- ARGS` in the current directory (so
//! relative paths such as `--plot FILE` mean the same as before), with the child's output
//! passed through and its exit status returned.

use std::process::{Command, ExitCode};

use crate::project_root;

/// `cargo xtask bench`: the `bench` binary of `smoothloss-benches` (`benches/src/bin/bench/`).
pub const BENCH: (&str, &str) = ("smoothloss-benches", "bench");

/// `cargo xtask experiment`: the `smoothloss-experiment` crate (`crates/experiment`).
pub const EXPERIMENT: (&str, &str) = ("smoothloss-experiment", "smoothloss-experiment");

/// The `cargo run` command for `bin` of `package` with `args`.
pub fn command(package: &str, bin: &str, args: &[String]) -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.arg("run")
        .arg("--quiet")
        .arg("--release")
        .arg("--manifest-path")
        .arg(project_root().join("Cargo.toml"))
        .args(["-p", package, "--bin", bin, "--"])
        .args(args);
    cmd
}

/// Runs `(package, bin)` with `args`; its exit status becomes this process's.
pub fn run((package, bin): (&str, &str), args: &[String]) -> Result<ExitCode, String> {
    let status = command(package, bin, args)
        .status()
        .map_err(|e| format!("cannot run cargo for {package}: {e}"))?;
    Ok(match status.code() {
        Some(0) => ExitCode::SUCCESS,
        Some(c) => ExitCode::from(u8::try_from(c).unwrap_or(1)),
        // Killed by a signal.
        None => ExitCode::FAILURE,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_the_package_binary_with_the_arguments_unchanged() {
        let args = vec!["--seeds".to_string(), "3".into(), "--plot=a b.svg".into()];
        let cmd = command(EXPERIMENT.0, EXPERIMENT.1, &args);
        let got: Vec<String> = cmd
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let manifest = project_root().join("Cargo.toml");
        assert!(manifest.exists(), "{}", manifest.display());
        let want = [
            "run",
            "--quiet",
            "--release",
            "--manifest-path",
            &manifest.to_string_lossy(),
            "-p",
            "smoothloss-experiment",
            "--bin",
            "smoothloss-experiment",
            "--",
            "--seeds",
            "3",
            "--plot=a b.svg",
        ];
        assert_eq!(got, want);
        // The current directory is left alone: relative paths keep their meaning.
        assert!(cmd.get_current_dir().is_none());
    }
}
