//! `cargo xtask fuzz [--minutes N] [--cases K]`: the fuzz campaign of `smoothloss_spec::fuzz`
//! on every backend available here: the reference at f32 (`spec/tests/fuzz.rs`), the CPU
//! backend at 1/2/3 threads, portable and AVX2 (`crates/backend-cpu/tests/fuzz.rs`), and the
//! CUDA kernels through the g++ CPU emulation (`crates/backend-cuda/tests/emulated/fuzz.rs`).
//! Without `--minutes` it is the short run of CI (`K` calls per target, default 20,000, a
//! target's share of them for the emulation, which runs every CUDA thread as a fiber; seed
//! `SHORT_RUN_SEED` unless `SMOOTHLOSS_FUZZ_SEED` is set); with `--minutes N` each target
//! repeats runs with fresh seeds for its share of `N` minutes. A failure is minimised and
//! printed (and its seed kept by proptest in the test's `*.proptest-regressions` file, to
//! commit).

use std::process::Command;

/// One test target name of the campaign, built and run with `--workspace`: the features are
/// those of `cargo test --workspace`, so CI's test build is reused, not rebuilt with the
/// features of one package alone.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Target {
    /// The packages that have a test target of this name (for messages).
    pub packages: &'static str,
    /// How many test binaries that is (each gets its share of `--minutes`).
    pub binaries: u32,
    /// The test target's name.
    pub test: &'static str,
    /// The test's name filter (`None`: every test of the target).
    pub filter: Option<&'static str>,
    /// The short run's calls are `K / divisor` (at least one).
    pub divisor: u32,
}

/// The test targets of the campaign.
pub const TARGETS: [Target; 2] = [
    Target {
        packages: "smoothloss-spec and smoothloss-cpu",
        binaries: 2,
        test: "fuzz",
        filter: None,
        divisor: 1,
    },
    // The emulation is the slowest per call (its kernels compile first, ~15 s): a fiftieth.
    Target {
        packages: "smoothloss-cuda",
        binaries: 1,
        test: "emulated",
        filter: Some("fuzz::"),
        divisor: 50,
    },
];

/// The seed of the short run (CI).
pub const SHORT_RUN_SEED: u64 = 14;

/// The options: minutes in all (None: one run per target) and calls per run.
#[derive(Debug, PartialEq)]
pub struct Opts {
    pub minutes: Option<f64>,
    pub cases: u32,
}

pub fn parse(args: &[String]) -> Result<Opts, String> {
    let mut o = Opts {
        minutes: None,
        cases: 20_000,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |flag: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match a.as_str() {
            "--minutes" => {
                let v = value("--minutes")?;
                let m: f64 = v
                    .parse()
                    .ok()
                    .filter(|m: &f64| m.is_finite() && *m > 0.0)
                    .ok_or_else(|| format!("--minutes must be a positive number, got `{v}`"))?;
                o.minutes = Some(m);
            }
            "--cases" => {
                let v = value("--cases")?;
                o.cases = v
                    .parse()
                    .ok()
                    .filter(|&c| c > 0)
                    .ok_or_else(|| format!("--cases must be a positive integer, got `{v}`"))?;
            }
            other => return Err(format!("fuzz: unknown argument `{other}`")),
        }
    }
    Ok(o)
}

/// The `cargo test` command of one target.
pub fn command(o: &Opts, t: Target) -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.arg("test")
        .arg("--manifest-path")
        .arg(crate::project_root().join("Cargo.toml"))
        .args(["--workspace", "--test", t.test, "--"])
        .args(t.filter)
        .arg("--nocapture")
        .env("PROPTEST_CASES", (o.cases / t.divisor).max(1).to_string());
    match o.minutes {
        Some(m) => {
            let binaries: u32 = TARGETS.iter().map(|t| t.binaries).sum();
            let secs = (m * 60.0 / f64::from(binaries)).ceil().max(1.0) as u64;
            cmd.env("SMOOTHLOSS_FUZZ_SECONDS", secs.to_string());
        }
        // The short run is reproducible (a fixed seed, unless one is set): CI does not fail
        // at random on a call no one has seen; `--minutes` explores with fresh seeds.
        None if std::env::var_os("SMOOTHLOSS_FUZZ_SEED").is_none() => {
            cmd.env("SMOOTHLOSS_FUZZ_SEED", SHORT_RUN_SEED.to_string());
        }
        None => {}
    }
    cmd
}

pub fn run(args: &[String]) -> Result<(), String> {
    let o = parse(args)?;
    for target in TARGETS {
        let status = command(&o, target)
            .status()
            .map_err(|e| format!("cannot run cargo test for {}: {e}", target.packages))?;
        if !status.success() {
            return Err(format!(
                "fuzz: {} --test {} failed (the minimised call is printed above)",
                target.packages, target.test
            ));
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
    fn options_and_the_test_command() {
        assert_eq!(
            parse(&[]),
            Ok(Opts {
                minutes: None,
                cases: 20_000
            })
        );
        let o = parse(&args("--minutes 3 --cases 500")).unwrap();
        assert_eq!((o.minutes, o.cases), (Some(3.0), 500));
        for bad in [
            "--minutes 0",
            "--minutes x",
            "--cases 0",
            "--minutes",
            "--seeds 2",
        ] {
            assert!(parse(&args(bad)).is_err(), "{bad}");
        }
        let cmd = command(&o, TARGETS[0]);
        let env: Vec<(String, String)> = cmd
            .get_envs()
            .map(|(k, v)| {
                let v = v
                    .map(|v| v.to_string_lossy().into_owned())
                    .unwrap_or_default();
                (k.to_string_lossy().into_owned(), v)
            })
            .collect();
        assert!(
            env.contains(&("SMOOTHLOSS_FUZZ_SECONDS".into(), "60".into())),
            "{env:?}"
        );
        assert!(
            env.contains(&("PROPTEST_CASES".into(), "500".into())),
            "{env:?}"
        );
        let a: Vec<String> = cmd
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert!(
            a.windows(2).any(|w| w == ["--workspace", "--test"]),
            "{a:?}"
        );
        assert!(a.windows(2).any(|w| w == ["--test", "fuzz"]), "{a:?}");
        // The emulation: its fuzz tests only, a fiftieth of the calls in the short run.
        let short = parse(&[]).unwrap();
        let cmd = command(&short, TARGETS[1]);
        let a: Vec<String> = cmd
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert!(a.windows(2).any(|w| w == ["--test", "emulated"]), "{a:?}");
        assert!(a.windows(2).any(|w| w == ["--", "fuzz::"]), "{a:?}");
        let cases = cmd
            .get_envs()
            .find(|(k, _)| *k == "PROPTEST_CASES")
            .and_then(|(_, v)| v.map(|v| v.to_string_lossy().into_owned()));
        assert_eq!(cases.as_deref(), Some("400"));
    }
}
