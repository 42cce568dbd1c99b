//! `smoothloss-experiment [--seeds K] [--epochs E] [--alpha A] [--lr LR] [--plot FILE.svg]
//! [--json]`, run by `cargo xtask experiment`: see the library's documentation and
//! `EXPERIMENT.md`.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match smoothloss_experiment::run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
