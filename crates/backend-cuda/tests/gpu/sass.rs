//! Reading the SASS of the NVRTC cubins (no GPU): `cuobjdump -sass` found and run, its listing
//! parsed into functions, their innermost loops found, and the H200 figures of the issue-time
//! model (NOTES.md). Shared by the static budgets of the cross-entropy kernels (`budget.rs`)
//! and of the box, element-wise and dense-detector kernels (`budget_elementwise.rs`).

use std::path::{Path, PathBuf};
use std::process::Command;

use super::nvrtc_or_skip;

/// A function's instructions: (address, opcode without predicate, full text).
pub(super) struct Func {
    /// The function's (entry point's) name.
    pub(super) name: String,
    /// Its instructions in address order.
    pub(super) ins: Vec<(u64, String, String)>,
}

/// The functions of a `cuobjdump -sass` listing.
pub(super) fn parse_sass(text: &str) -> Vec<Func> {
    let mut out: Vec<Func> = Vec::new();
    for line in text.lines() {
        if let Some(i) = line.find("Function : ") {
            out.push(Func {
                name: line[i + 11..].trim().to_string(),
                ins: Vec::new(),
            });
            continue;
        }
        let Some(f) = out.last_mut() else { continue };
        // `        /*0a30*/   @!P0 BRA 0x450 ;   /* 0x... */`
        let t = line.trim_start();
        let Some(rest) = t.strip_prefix("/*") else {
            continue;
        };
        let Some(end) = rest.find("*/") else { continue };
        let Ok(addr) = u64::from_str_radix(&rest[..end], 16) else {
            continue;
        };
        let body = rest[end + 2..].split(';').next().unwrap_or("").trim();
        let mut words = body.split_whitespace();
        let mut op = words.next().unwrap_or("");
        if op.starts_with('@') {
            op = words.next().unwrap_or("");
        }
        if !op.is_empty() {
            f.ins.push((addr, op.to_string(), body.to_string()));
        }
    }
    out
}

/// The innermost loops of a function as `(head, backward branch)` address spans: every
/// backward `BRA`, less those that contain another one.
pub(super) fn innermost_spans(f: &Func) -> Vec<(u64, u64)> {
    let mut spans = Vec::new();
    for (addr, op, text) in &f.ins {
        if op == "BRA" {
            let tgt = text
                .split_whitespace()
                .rev()
                .find_map(|w| u64::from_str_radix(w.trim_start_matches("0x"), 16).ok());
            if let Some(t) = tgt.filter(|&t| t <= *addr) {
                spans.push((t, *addr));
            }
        }
    }
    spans
        .iter()
        .copied()
        .filter(|&(lo, hi)| {
            !spans
                .iter()
                .any(|&(l2, h2)| (l2, h2) != (lo, hi) && lo <= l2 && h2 <= hi)
        })
        .collect()
}

/// `cuobjdump` with a working `nvdisasm` beside it or on `PATH`, or why there is none.
fn cuobjdump() -> Result<PathBuf, String> {
    let mut cands: Vec<PathBuf> = Vec::new();
    if let Ok(p) = std::env::var("SMOOTHLOSS_CUOBJDUMP") {
        cands.push(PathBuf::from(p));
    }
    if let Some(path) = std::env::var_os("PATH") {
        cands.extend(std::env::split_paths(&path).map(|d| d.join("cuobjdump")));
    }
    cands.push(PathBuf::from("/usr/local/cuda/bin/cuobjdump"));
    for py in ["python3", "python"] {
        let out = Command::new(py)
            .args([
                "-c",
                "import site;print('\\n'.join(site.getsitepackages()+[site.getusersitepackages()]))",
            ])
            .output();
        if let Ok(out) = out {
            for line in String::from_utf8_lossy(&out.stdout).lines() {
                let sp = PathBuf::from(line.trim());
                cands.push(sp.join("nvidia/cu13/bin/cuobjdump"));
                cands.push(sp.join("nvidia/cuda_cuobjdump/bin/cuobjdump"));
                cands.push(sp.join("triton/backends/nvidia/bin/cuobjdump"));
            }
            break;
        }
    }
    for c in cands.into_iter().filter(|c| c.is_file()) {
        if Command::new(&c)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
        {
            return Ok(c);
        }
    }
    Err(
        "no cuobjdump found (pip wheels nvidia-cuda-cuobjdump and nvidia-cuda-nvdisasm, or \
         SMOOTHLOSS_CUOBJDUMP=/path/to/cuobjdump)"
            .into(),
    )
}

/// `cuobjdump -sass` of an image, with `nvdisasm` looked up beside `cuobjdump` first.
pub(super) fn sass_of(tool: &Path, image: &[u8], tag: &str) -> String {
    let dir = std::env::temp_dir().join(format!("smoothloss-sass-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join(format!("{tag}.cubin"));
    std::fs::write(&file, image).expect("write cubin");
    let mut path = tool
        .parent()
        .map(Path::to_path_buf)
        .into_iter()
        .collect::<Vec<_>>();
    if let Some(p) = std::env::var_os("PATH") {
        path.extend(std::env::split_paths(&p));
    }
    let out = Command::new(tool)
        .arg("-sass")
        .arg(&file)
        .env("PATH", std::env::join_paths(path).expect("PATH"))
        .output()
        .expect("run cuobjdump");
    assert!(
        out.status.success(),
        "cuobjdump -sass failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let _ = std::fs::write(dir.join(format!("{tag}.sass")), &text);
    text
}

/// The SASS tool, or `None` after saying why the test is skipped (a failure with
/// `SMOOTHLOSS_REQUIRE_SASS`).
pub(super) fn sass_tool_or_skip(what: &str) -> Option<PathBuf> {
    nvrtc_or_skip(what)?;
    match cuobjdump() {
        Ok(t) => Some(t),
        Err(why) if std::env::var_os("SMOOTHLOSS_REQUIRE_SASS").is_some() => {
            panic!("{what}: SASS required (SMOOTHLOSS_REQUIRE_SASS) but {why}")
        }
        Err(why) => {
            eprintln!("SKIPPED: {what}: {why}");
            None
        }
    }
}

/// The H200 as the model takes it (NOTES.md): SMs, clock, thread-instructions issued per clock
/// per SM (4 schedulers x 32 lanes), MUFU results per clock per SM, copy bandwidth.
pub(super) const SMS: f64 = 132.0;
pub(super) const CLOCK_HZ: f64 = 1.98e9;
pub(super) const ISSUE_PER_CLK_SM: f64 = 128.0;
pub(super) const MUFU_PER_CLK_SM: f64 = 16.0;
pub(super) const BYTES_PER_S: f64 = 4.22e12;
