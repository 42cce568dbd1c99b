//! `--backend cuda|all`: the CUDA backend's figures from `cuda_bench`
//! (`crates/backend-cuda/src/bin/cuda_bench.rs`, which `cargo xtask gpu-bundle` also builds).

use crate::Opts;
use serde_json::json;
use std::process::Command;

/// The CUDA backend's figures: `cuda_bench` (device buffers, CUDA events, copy bandwidth measured
/// in the same run) built and run when a device is usable. `required` makes a missing device an
/// error (`--backend cuda`); otherwise it is reported and skipped.
pub fn run_cuda(o: &Opts, required: bool) -> Result<(), String> {
    if let Err(e) = smoothloss_cuda::CudaBackend::new(0) {
        let msg = format!("cuda: skipped, no usable device ({e})");
        if required {
            return Err(msg);
        }
        eprintln!("bench: {msg}");
        return Ok(());
    }
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(crate::project_root()).args([
        "run",
        "--quiet",
        "--release",
        "-p",
        "smoothloss-cuda",
        "--bin",
        "cuda_bench",
        "--",
    ]);
    if o.quick {
        cmd.arg("--quick");
    }
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run cuda_bench: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "cuda_bench failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if o.json {
            let mut w = v.clone();
            w["backend"] = json!("cuda");
            if let Some(ms) = v["median_ms"].as_f64() {
                w["median_s"] = json!(ms * 1e-3);
            }
            if let Some(p) = v["pct_of_floor"].as_f64() {
                w["floor_fraction"] = json!(p / 100.0);
            }
            if let (Some(r), Some(c)) = (v["rows"].as_u64(), v["classes"].as_u64()) {
                w["loss"] = v["bench"].clone();
                w["shape"] = json!(format!("{r}x{c}"));
                if let Some(ms) = v["median_ms"].as_f64() {
                    w["elems_per_s"] = json!((r * c) as f64 / (ms * 1e-3));
                }
            }
            println!("{w}");
        } else {
            println!("cuda: {line}");
        }
    }
    Ok(())
}
