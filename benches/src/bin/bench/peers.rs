//! The PyTorch peers: `benches/peers/*.py`, run when `import torch` works; each prints one JSON
//! object per line.

use std::process::Command;

pub fn torch_available() -> bool {
    Command::new("python3")
        .args(["-c", "import torch"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// Runs a peer script and returns its JSON lines.
pub fn run_peer(script: &str, args: &[String]) -> Vec<serde_json::Value> {
    let path = crate::project_root().join(script);
    if !path.exists() {
        return Vec::new();
    }
    let out = Command::new("python3").arg(&path).args(args).output();
    match out {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect(),
        Ok(o) => {
            eprintln!(
                "bench: {script} failed: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            Vec::new()
        }
        Err(e) => {
            eprintln!("bench: cannot run {script}: {e}");
            Vec::new()
        }
    }
}

pub fn peer_time(
    peers: &[serde_json::Value],
    loss: &str,
    shape: &str,
    threads: usize,
) -> Option<f64> {
    peers
        .iter()
        .find(|v| {
            v["loss"] == loss
                && v["shape"] == shape
                && v["threads"].as_u64() == Some(threads as u64)
        })
        .and_then(|v| v["median_s"].as_f64())
}
