//! `cargo xtask conformance --cases FILE [--backend reference|cpu|cuda|all]`: runs a case file
//! against backends, prints one line per failing case (id, worst element, got, want) and the
//! summary `N passed, M failed, K unsupported`; fails on any failure or unsupported case.

use smoothloss_core::ReferenceBackend;
use smoothloss_spec::CaseFile;
use smoothloss_spec::conformance::{Report, Tolerances, case_file};

const BACKENDS: [&str; 3] = ["reference", "cpu", "cuda"];

pub fn run(args: &[String]) -> Result<(), String> {
    let mut cases: Option<String> = None;
    let mut backend = "all".to_string();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--cases" => cases = Some(it.next().ok_or("--cases needs a file")?.clone()),
            "--backend" => backend = it.next().ok_or("--backend needs a name")?.clone(),
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    let path = cases.ok_or("missing --cases FILE (e.g. spec/cases/torch_cases.json)")?;
    let mut p = std::path::PathBuf::from(&path);
    if !p.exists() {
        // Relative paths may be given from the workspace root while cargo runs elsewhere.
        p = crate::project_root().join(&path);
    }
    let file = CaseFile::load(&p).map_err(|e| e.to_string())?;
    // `all` runs every backend available on this machine and says which it skipped; a backend
    // named explicitly must be available.
    let explicit = backend != "all";
    let names: Vec<&str> = match backend.as_str() {
        "all" => BACKENDS.to_vec(),
        b if BACKENDS.contains(&b) => vec![b],
        other => {
            return Err(format!(
                "unknown backend `{other}` (reference|cpu|cuda|all)"
            ));
        }
    };
    println!(
        "{} cases from {} (generator: {})",
        file.cases.len(),
        p.display(),
        file.generator
    );
    let mut total = Report::default();
    for name in names {
        let report = match name {
            "reference" => case_file::<f64, _>(&ReferenceBackend, &file, &Tolerances::F64),
            "cpu" => {
                case_file::<f32, _>(&smoothloss_cpu::CpuBackend::new(), &file, &Tolerances::F32)
            }
            _ => match cuda_report(&file) {
                Ok(r) => r,
                Err(e) if !explicit => {
                    println!("{name:<10} skipped: {e}");
                    continue;
                }
                Err(e) => return Err(e),
            },
        };
        for line in report.to_string().lines() {
            if line.starts_with("FAIL") || line.starts_with("UNSUPPORTED") {
                println!("{line}");
            }
        }
        println!("{:<10} {}", report.backend, report.summary());
        total.extend(report);
    }
    println!("{}", total.summary());
    if total.entries.is_empty() {
        return Err(format!(
            "nothing checked: {} holds no case (after the SMOOTHLOSS_CASES filter, if set)",
            p.display()
        ));
    }
    if total.failed() > 0 || total.unsupported() > 0 {
        return Err(format!("conformance failed: {}", total.summary()));
    }
    Ok(())
}

/// The CUDA backend needs a driver and a device; without them this is an error (reported, or
/// fatal when `--backend cuda` was asked for), never a silent pass.
fn cuda_report(file: &CaseFile) -> Result<Report, String> {
    let backend =
        smoothloss_cuda::CudaBackend::new(0).map_err(|e| format!("no usable CUDA device: {e}"))?;
    Ok(case_file::<f32, _>(&backend, file, &Tolerances::F32))
}

#[cfg(test)]
mod tests {
    use super::run;

    fn write_temp(name: &str, text: &str) -> String {
        let p =
            std::env::temp_dir().join(format!("smoothloss-xtask-{}-{name}", std::process::id()));
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    }

    fn args(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn passing_failing_unsupported_and_malformed_files() {
        let ok = r#"{"format":"smoothloss-cases/1","cases":[{"id":"h","loss":"huber",
            "params":{"delta":1.0,"reduction":"sum"},"inputs":{"pred":[2.0,0.5],"target":[0.0,0.0]},
            "expected":{"loss":[1.625],"grad":{"pred":[1.0,0.5]}}}]}"#;
        let f = write_temp("ok.json", ok);
        assert_eq!(
            run(&args(&["--cases", &f, "--backend", "reference"])),
            Ok(())
        );
        assert_eq!(run(&args(&["--cases", &f, "--backend", "cpu"])), Ok(()));
        let bad = write_temp("bad.json", &ok.replace("1.625", "1.6"));
        assert!(run(&args(&["--cases", &bad, "--backend", "reference"])).is_err());
        let unsup = write_temp("unsup.json", &ok.replace("\"huber\"", "\"triplet\""));
        assert!(run(&args(&["--cases", &unsup, "--backend", "reference"])).is_err());
        let fmt = write_temp("fmt.json", &ok.replace("smoothloss-cases/1", "other/9"));
        assert!(run(&args(&["--cases", &fmt, "--backend", "reference"])).is_err());
        assert!(run(&args(&["--cases", &f, "--backend", "tpu"])).is_err());
        assert!(run(&args(&["--backend", "cpu"])).is_err());
        assert!(run(&args(&["--cases", &f, "--backend", "cuda"])).is_err());
    }

    #[test]
    fn a_file_without_cases_fails_nothing_was_checked() {
        let empty = write_temp(
            "empty.json",
            r#"{"format":"smoothloss-cases/1","cases":[]}"#,
        );
        let err = run(&args(&["--cases", &empty, "--backend", "reference"])).unwrap_err();
        assert!(err.contains("nothing checked"), "{err}");
    }

    #[test]
    fn an_iou_that_will_not_fit_is_a_failure_with_a_message_not_an_abort() {
        let boxes = vec!["0,0,1,1"; 60_000].join(",");
        let text = format!(
            r#"{{"format":"smoothloss-cases/1","cases":[{{"id":"huge","loss":"box_iou",
            "params":{{}},"inputs":{{"boxes1":{{"shape":[60000,4],"data":[{boxes}]}},
            "boxes2":{{"shape":[60000,4],"data":[{boxes}]}}}},"expected":{{"iou":[]}}}}]}}"#
        );
        let f = write_temp("huge.json", &text);
        assert!(run(&args(&["--cases", &f, "--backend", "reference"])).is_err());
        assert!(run(&args(&["--cases", &f, "--backend", "cpu"])).is_err());
    }
}
