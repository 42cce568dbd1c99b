//! `cargo xtask gpu-bundle [--quick] [--debuginfo]`: builds the CUDA backend's release test executables
//! and the `cuda_bench` binary here (x86-64), and copies them with a `run.sh` and the PyTorch
//! peer script into the ignored folder `gpu-bundle/`, so that a GPU machine without a Rust
//! toolchain can run every GPU check with one command:
//!
//! ```text
//! gpu-bundle/run.sh [--quick]
//! ```
//!
//! `run.sh` (1) runs the test executables with `--include-ignored`, (2) runs `cuda_bench`
//! (JSON lines), (3) runs `torch_ce_gpu.py` (`benches/peers/`), which times PyTorch, Liger-Kernel (if importable)
//! and torchvision on the same shapes and prints one table with the Rust figures. Logs go to
//! `$OUT` when set (the device tool's output folder), else `gpu-bundle/out/`.
//!
//! `--quick` (issue 16: the first GPU run, 15 minutes of device time with the machine's start)
//! writes a `run.sh` whose default is the quick run: one call of at most 8 minutes
//! (`QUICK_BUDGET_S`, 450 s of steps), correctness first (the `gpu` and `conformance` test
//! executables, ignored tests included), then compute-sanitizer memcheck on `sanitizer_smoke`,
//! then `cuda_bench --quick --no-sweep` and the trimmed peer table (PyTorch, Liger's
//! `liger_kernel.transformers.cross_entropy`); each step's timeout is cut to what is left of
//! the budget, and `$OUT` receives at most 8 files (`tests.log`, `sanitizer-memcheck.log`,
//! `bench.jsonl`, `bench.stderr`, `table.md`, `summary.txt`).
//!
//! Debug info is left out by default to keep the bundle small (the device tool carries at
//! most 64 MiB); `--debuginfo` keeps the release profile's setting.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::project_root;

const PACKAGE: &str = "smoothloss-cuda";
const PEER_SCRIPT: &str = "benches/peers/torch_ce_gpu.py";
/// The linear cross-entropy's GPU peers (PyTorch's composite, Liger's fused linear CE).
const LCE_PEER_SCRIPT: &str = "benches/peers/torch_linear_ce_gpu.py";

const RUN_SH: &str = r#"#!/usr/bin/env bash
# Runs the smoothloss CUDA checks on a GPU machine; no Rust toolchain needed.
# Built by `cargo xtask gpu-bundle`. Usage: [STEPS="tests bench peers sanitizer lce-peers"] run.sh [--quick]
#   1. the CUDA backend's test executables, ignored (GPU) tests included;
#   2. compute-sanitizer memcheck / racecheck / synccheck on the gpu test `sanitizer_smoke`;
#   3. cuda_bench (JSON lines);
#   4. torch_ce_gpu.py: PyTorch / Liger-Kernel / torchvision peers and one table;
#   5. step `lce-peers`: lce_gpu_bench (smoothloss's device linear cross-entropy, LCE-6), then
#      torch_linear_ce_gpu.py: the linear cross-entropy's peers, PyTorch's
#      composite and Liger's LigerFusedLinearCrossEntropyLoss, 8192x4096x128256 bf16.
# Logs: $OUT if set, else <bundle>/out. Exit status: 0 only if every step passed.
set -u
HERE="$(cd "$(dirname "$0")" && pwd)"
LOGS="${OUT:-$HERE/out}"
mkdir -p "$LOGS"
QUICK=""
QUICK_DEFAULT=0 # 1 in a bundle built with `cargo xtask gpu-bundle --quick`
if [ "${1:-}" = "--quick" ] || { [ "$QUICK_DEFAULT" = 1 ] && [ "${1:-}" != "--full" ]; }; then QUICK="--quick"; fi
# The quick run: one call of at most 8 minutes; every step's timeout is cut to what is left.
QUICK_BUDGET_S="${QUICK_BUDGET_S:-450}"
left() { # seconds left for a step whose own limit is $1 (the limit itself outside --quick)
  if [ -z "$QUICK" ]; then echo "$1"; return; fi
  local l=$((QUICK_BUDGET_S - SECONDS))
  if [ "$l" -lt 5 ]; then l=5; fi
  if [ "$l" -lt "$1" ]; then echo "$l"; else echo "$1"; fi
}
SCRATCH="$(mktemp -d 2>/dev/null || echo /tmp)"
PY="$(command -v python3 || command -v python || true)"

# NVRTC (libnvrtc.so.13): the CUDA toolkit's, else the one in Python's nvidia wheels.
NVDIR=""
for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib; do
  if [ -z "$NVDIR" ] && ls "$d"/libnvrtc.so.13* >/dev/null 2>&1; then NVDIR="$d"; fi
done
if [ -z "$NVDIR" ] && [ -n "$PY" ]; then
  NVDIR="$("$PY" - <<'EOF'
import glob, os, site
paths = site.getsitepackages() + [site.getusersitepackages()]
hits = [h for sp in paths for h in glob.glob(os.path.join(sp, "nvidia", "*", "lib", "libnvrtc.so.13*"))]
print(os.path.dirname(hits[0]) if hits else "")
EOF
)"
fi
if [ -n "$NVDIR" ]; then
  export LD_LIBRARY_PATH="$NVDIR:${LD_LIBRARY_PATH:-}"
  export SMOOTHLOSS_NVRTC="$(ls "$NVDIR"/libnvrtc.so.13 2>/dev/null | head -n1)"
  echo "NVRTC from $NVDIR"
else
  echo "WARNING: no libnvrtc.so.13 found; kernels cannot be compiled"
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || true

status=0
# Steps to run (default all): STEPS="tests bench peers sanitizer"; SANITIZER_TOOLS picks the
# compute-sanitizer tools (default "memcheck racecheck synccheck").
if [ -n "$QUICK" ]; then
  STEPS="${STEPS:-tests sanitizer bench peers}"
  SANITIZER_TOOLS="${SANITIZER_TOOLS:-memcheck}"
  # Per-step caps of the quick run (seconds): 2 x 130 tests, 60 memcheck, 50 bench, the rest
  # (at least 80) for the peers.
  TEST_TIMEOUT="${TEST_TIMEOUT:-130}"
  SANITIZER_TIMEOUT="${SANITIZER_TIMEOUT:-60}"
  BENCH_TIMEOUT="${BENCH_TIMEOUT:-50}"
else
  STEPS="${STEPS:-tests bench peers sanitizer lce-peers}"
fi
want() { case " $STEPS " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

if want tests; then
echo "== 1. tests (--include-ignored)"
# On the GPU machine a missing device is a failure, not a skip (tests/conformance.rs).
export SMOOTHLOSS_REQUIRE_GPU=1
: > "$LOGS/tests.log"
for t in "$HERE"/tests/*; do
  # The quick run: the GPU tests and the GPU conformance suite only (correctness first).
  if [ -n "$QUICK" ]; then case "$(basename "$t")" in gpu|conformance) ;; *) continue ;; esac; fi
  echo "-- $(basename "$t")" | tee -a "$LOGS/tests.log"
  timeout "$(left "${TEST_TIMEOUT:-600}")" "$t" --include-ignored --test-threads=1 > "$SCRATCH/one-test.log" 2>&1
  rc=$?
  cat "$SCRATCH/one-test.log" >> "$LOGS/tests.log"
  grep -E "^test result|FAILED|panicked|SKIPPED" "$SCRATCH/one-test.log" | head -n 40
  if [ $rc -ne 0 ]; then echo "   exit $rc (124: timed out)"; status=1; fi
done
fi

if want sanitizer; then
echo "== 2. compute-sanitizer (${SANITIZER_TOOLS:-memcheck racecheck synccheck}) on the smoke test"
SAN="$(command -v compute-sanitizer || true)"
for d in /usr/local/cuda/bin /usr/local/cuda-*/bin; do
  if [ -z "$SAN" ] && [ -x "$d/compute-sanitizer" ]; then SAN="$d/compute-sanitizer"; fi
done
if [ -z "$SAN" ] && [ -n "$PY" ]; then
  SAN="$("$PY" - <<'EOF'
import glob, os, site
paths = site.getsitepackages() + [site.getusersitepackages()]
hits = [h for sp in paths for h in glob.glob(os.path.join(sp, "nvidia", "*", "bin", "compute-sanitizer"))]
print(hits[0] if hits else "")
EOF
)"
fi
if [ -n "$SAN" ] && [ -x "$HERE/tests/gpu" ]; then
  for tool in ${SANITIZER_TOOLS:-memcheck racecheck synccheck}; do
    echo "-- $tool"
    timeout "$(left "${SANITIZER_TIMEOUT:-150}")" "$SAN" --tool "$tool" --error-exitcode 3 \
      "$HERE/tests/gpu" sanitizer_smoke --exact --include-ignored --test-threads=1 \
      > "$LOGS/sanitizer-$tool.log" 2>&1
    rc=$?
    grep -E "ERROR SUMMARY|RACECHECK SUMMARY|test result|Error|error" "$LOGS/sanitizer-$tool.log" | head -n 12
    if [ $rc -ne 0 ]; then echo "   $tool exit $rc (124: timed out)"; status=1; fi
  done
else
  echo "compute-sanitizer not found: skipped (status not changed)"
fi
fi
if want bench; then
echo "== 3. cuda_bench $QUICK"
timeout "$(left "${BENCH_TIMEOUT:-600}")" "$HERE/cuda_bench" $QUICK ${QUICK:+--no-sweep --iters 10} > "$LOGS/bench.jsonl" 2> "$LOGS/bench.stderr"
rc=$?
cat "$LOGS/bench.jsonl"
if [ $rc -ne 0 ]; then echo "   cuda_bench exit $rc"; tail -n 20 "$LOGS/bench.stderr"; status=1; fi
fi

if want peers; then
echo "== 4. peers (PyTorch, Liger-Kernel if importable, torchvision) and the table"
# Liger-Kernel (and `packaging`, which it imports) from the bundled wheels when they are not
# installed (a wheel is a zip archive).
if [ -n "$PY" ]; then
  for pkg in packaging liger_kernel; do
    if ! "$PY" -c "import $pkg" >/dev/null 2>&1; then
      for w in "$HERE"/wheels/"$pkg"-*.whl; do
        if [ -f "$w" ] && "$PY" -c "import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])" "$w" "$HERE/pylib"; then
          export PYTHONPATH="$HERE/pylib${PYTHONPATH:+:$PYTHONPATH}"
          echo "$pkg from $(basename "$w")"
        fi
      done
    fi
  done
fi
if [ -n "$PY" ]; then
  PYTHONUNBUFFERED=1 timeout "$(left 600)" "$PY" "$HERE/torch_ce_gpu.py" --rust "$LOGS/bench.jsonl" $QUICK ${QUICK:+--iters 10} 2>&1 | tee "$LOGS/table.md"
  if [ "${PIPESTATUS[0]}" -ne 0 ]; then status=1; fi
else
  echo "no python3: peers skipped"; status=1
fi
fi

if want lce-peers; then
echo "== lce-peers: linear cross-entropy peers (PyTorch composite, Liger fused), bf16"
# Ours first: lce_gpu_bench (LCE-6, device buffers, bf16), one JSON line.
if [ -x "$HERE/lce_gpu_bench" ]; then
  "$HERE/lce_gpu_bench" $QUICK 2>&1 | tee "$LOGS/lce_ours.jsonl"
  if [ "${PIPESTATUS[0]}" -ne 0 ]; then status=1; fi
fi
if [ -n "$PY" ]; then
  PYTHONUNBUFFERED=1 "$PY" "$HERE/torch_linear_ce_gpu.py" $QUICK 2>&1 | tee "$LOGS/lce_peers.md"
  if [ "${PIPESTATUS[0]}" -ne 0 ]; then status=1; fi
else
  echo "no python3: linear CE peers skipped"; status=1
fi
fi

echo "== done: status $status after ${SECONDS} s (logs in $LOGS)" | tee "$LOGS/summary.txt"
exit $status
"#;

/// The Liger-Kernel release the issue compares against (a pure-Python wheel; it also needs
/// `packaging`, bundled beside it).
const LIGER_WHEEL: &str = "liger-kernel==0.8.5";

/// One executable reported by cargo's JSON messages.
struct Artifact {
    name: String,
    path: PathBuf,
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

/// Runs a cargo build with `--message-format=json` and returns the executables it reports
/// for `PACKAGE` (test executables when `tests`, else binaries).
fn build(
    root: &Path,
    args: &[&str],
    tests: bool,
    debuginfo: bool,
) -> Result<Vec<Artifact>, String> {
    let mut cmd = Command::new(cargo());
    cmd.current_dir(root)
        .args(args)
        .arg("--message-format=json");
    if !debuginfo {
        cmd.env("CARGO_PROFILE_RELEASE_DEBUG", "0")
            .env("CARGO_PROFILE_RELEASE_STRIP", "debuginfo");
    }
    eprintln!("running: cargo {}", args.join(" "));
    let out = cmd
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| format!("could not run cargo: {e}"))?;
    if !out.status.success() {
        return Err(format!("cargo {} failed ({})", args.join(" "), out.status));
    }
    let mut found = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if msg["reason"] != "compiler-artifact" {
            continue;
        }
        let Some(exe) = msg["executable"].as_str() else {
            continue;
        };
        let pkg = msg["package_id"].as_str().unwrap_or("");
        if !(pkg.contains("backend-cuda") || pkg.contains(PACKAGE)) {
            continue;
        }
        if msg["profile"]["test"].as_bool() != Some(tests) {
            continue;
        }
        let name = msg["target"]["name"]
            .as_str()
            .unwrap_or("unnamed")
            .to_string();
        let kinds = msg["target"]["kind"].to_string();
        // The bench binary's own (empty) unit-test harness is not worth carrying, nor the CPU
        // emulation tests (they need no GPU, and their ignored conformance run takes minutes).
        if tests && (kinds.contains("bin") || name == "emulated") {
            continue;
        }
        // Test executables: `lib` unit tests get the target's kind appended to stay unique.
        let name = if tests && kinds.contains("lib") {
            format!("{name}-lib")
        } else {
            name
        };
        found.push(Artifact {
            name,
            path: PathBuf::from(exe),
        });
    }
    Ok(found)
}

fn copy_exe(src: &Path, dst: &Path) -> Result<u64, String> {
    fs::copy(src, dst).map_err(|e| format!("copy {} -> {}: {e}", src.display(), dst.display()))?;
    set_executable(dst, 0o755)?;
    Ok(fs::metadata(dst).map(|m| m.len()).unwrap_or(0))
}

#[cfg(unix)]
fn set_executable(p: &Path, mode: u32) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(p, fs::Permissions::from_mode(mode))
        .map_err(|e| format!("chmod {}: {e}", p.display()))
}

#[cfg(not(unix))]
fn set_executable(_p: &Path, _mode: u32) -> Result<(), String> {
    Ok(())
}

/// `run.sh` as the bundle gets it: with `quick`, the quick run is its default (`--full` for
/// the whole run).
fn run_script(quick: bool) -> String {
    if quick {
        RUN_SH.replacen("QUICK_DEFAULT=0", "QUICK_DEFAULT=1", 1)
    } else {
        RUN_SH.to_string()
    }
}

pub fn run(args: &[String]) -> Result<(), String> {
    let mut debuginfo = false;
    let mut quick = false;
    for a in args {
        match a.as_str() {
            "--debuginfo" => debuginfo = true,
            "--quick" => quick = true,
            other => return Err(format!("gpu-bundle: unknown argument `{other}`")),
        }
    }
    if std::env::consts::ARCH != "x86_64" {
        return Err(format!(
            "gpu-bundle builds for the GPU machine's x86-64; this machine is {}",
            std::env::consts::ARCH
        ));
    }
    let root = project_root();
    let tests = build(
        &root,
        &["test", "--release", "-p", PACKAGE, "--no-run"],
        true,
        debuginfo,
    )?;
    if tests.is_empty() {
        return Err("cargo reported no test executables for smoothloss-cuda".into());
    }
    let bins = build(
        &root,
        &["build", "--release", "-p", PACKAGE, "--bin", "cuda_bench"],
        false,
        debuginfo,
    )?;
    let bench = bins
        .iter()
        .find(|a| a.name == "cuda_bench")
        .ok_or("cargo reported no cuda_bench executable")?;

    let lce_bins = build(
        &root,
        &[
            "build",
            "--release",
            "-p",
            PACKAGE,
            "--bin",
            "lce_gpu_bench",
        ],
        false,
        debuginfo,
    )?;
    let lce_bench = lce_bins
        .iter()
        .find(|a| a.name == "lce_gpu_bench")
        .ok_or("cargo reported no lce_gpu_bench executable")?;

    let dir = root.join("gpu-bundle");
    if dir.exists() {
        fs::remove_dir_all(&dir).map_err(|e| format!("remove {}: {e}", dir.display()))?;
    }
    fs::create_dir_all(dir.join("tests")).map_err(|e| format!("create {}: {e}", dir.display()))?;
    let mut total = 0u64;
    for t in &tests {
        let size = copy_exe(&t.path, &dir.join("tests").join(&t.name))?;
        eprintln!("  tests/{} ({:.1} MiB)", t.name, size as f64 / 1048576.0);
        total += size;
    }
    total += copy_exe(&bench.path, &dir.join("cuda_bench"))?;
    total += copy_exe(&lce_bench.path, &dir.join("lce_gpu_bench"))?;
    let peer = root.join(PEER_SCRIPT);
    fs::copy(&peer, dir.join("torch_ce_gpu.py"))
        .map_err(|e| format!("copy {}: {e}", peer.display()))?;
    let lce_peer = root.join(LCE_PEER_SCRIPT);
    fs::copy(&lce_peer, dir.join("torch_linear_ce_gpu.py"))
        .map_err(|e| format!("copy {}: {e}", lce_peer.display()))?;
    // Liger-Kernel, the pure-Python peer: the GPU machine has no network, so its wheel
    // travels in the bundle (best effort: without pip or a registry the peer is skipped there
    // unless already installed).
    let wheels = dir.join("wheels");
    let _ = fs::create_dir_all(&wheels);
    let pip = Command::new("python3")
        .args(["-m", "pip", "download", "--no-deps", "--quiet", "-d"])
        .arg(&wheels)
        .args([LIGER_WHEEL, "packaging"])
        .status();
    match pip {
        Ok(st) if st.success() => {
            for e in fs::read_dir(&wheels).into_iter().flatten().flatten() {
                total += e.metadata().map(|m| m.len()).unwrap_or(0);
                eprintln!("  wheels/{}", e.file_name().to_string_lossy());
            }
        }
        _ => eprintln!(
            "  (no {LIGER_WHEEL} wheel: pip download failed; Liger is skipped on the GPU machine unless installed there)"
        ),
    }
    let run_sh = dir.join("run.sh");
    let script = run_script(quick);
    fs::write(&run_sh, &script).map_err(|e| format!("write {}: {e}", run_sh.display()))?;
    set_executable(&run_sh, 0o755)?;
    total += script.len() as u64 + fs::metadata(&peer).map(|m| m.len()).unwrap_or(0);
    println!(
        "gpu-bundle: {} test executables + cuda_bench + run.sh + torch_ce_gpu.py, {:.1} MiB in {}",
        tests.len(),
        total as f64 / 1048576.0,
        dir.display()
    );
    if quick {
        println!(
            "on a GPU machine, from the repository root: gpu-bundle/run.sh (the quick run, at most 8 minutes; --full for everything)"
        );
    } else {
        println!("on a GPU machine, from the repository root: gpu-bundle/run.sh [--quick]");
    }
    if total > 60 * 1048576 {
        println!("WARNING: over 60 MiB; the device tool carries at most 64 MiB in all");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::run_script;

    /// `--quick` makes the quick run the script's default, and the quick run checks
    /// correctness and memory safety before it times anything.
    #[test]
    fn quick_script_defaults_to_the_quick_run_correctness_first() {
        let quick = run_script(true);
        let full = run_script(false);
        assert!(quick.contains("QUICK_DEFAULT=1") && !quick.contains("QUICK_DEFAULT=0"));
        assert!(full.contains("QUICK_DEFAULT=0") && !full.contains("QUICK_DEFAULT=1"));
        assert!(quick.contains(r#"STEPS="${STEPS:-tests sanitizer bench peers}""#));
        let at = |s: &str| {
            quick
                .find(s)
                .unwrap_or_else(|| panic!("no `{s}` in run.sh"))
        };
        assert!(at("if want tests; then") < at("if want sanitizer; then"));
        assert!(at("if want sanitizer; then") < at("if want bench; then"));
        assert!(at("if want bench; then") < at("if want peers; then"));
        // Nothing but the logs listed in NOTES.md goes to $OUT.
        let outs: Vec<&str> = quick
            .match_indices("\"$LOGS/")
            .map(|(i, _)| {
                let rest = &quick[i + 7..];
                &rest[..rest.find('"').unwrap_or(rest.len())]
            })
            .collect();
        for o in &outs {
            assert!(
                [
                    "tests.log",
                    "bench.jsonl",
                    "bench.stderr",
                    "table.md",
                    "lce_peers.md",
                    "lce_ours.jsonl",
                    "summary.txt",
                    "sanitizer-$tool.log",
                ]
                .contains(o),
                "unexpected output file {o}"
            );
        }
    }
}
