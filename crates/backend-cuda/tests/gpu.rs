//! Tests of the CUDA backend.
//!
//! Not ignored (run everywhere): `CudaBackend::new` returns `LossError::Device` instead of
//! panicking where there is no driver; the kernel sources hold every entry point the Rust side
//! launches; every kernel file compiles with a real NVRTC when one can be found (this machine's
//! PyTorch wheels ship `libnvrtc.so.13`).
//!
//! Ignored (`needs a CUDA device`): every loss on random inputs against
//! `smoothloss_core::reference`, the bf16/f16 and in-place cross-entropy, device-side target
//! checks, determinism, and launching on a caller's stream. Run them with
//! `cargo test -p smoothloss-cuda -- --include-ignored` (or `gpu-bundle/run.sh`).

use std::path::PathBuf;
use std::sync::Arc;

use smoothloss_core::{
    BceWithLogits, BinaryOps, BoxFormat, BoxLoss, BoxLossKind, BoxLossOps, CeTargets, CrossEntropy,
    CrossEntropyOps, Huber, LossError, Reduction, ReferenceBackend, RegressionOps, SigmoidFocal,
    SmoothL1, Upstream,
};
use smoothloss_cuda::{
    CudaBackend, DeviceCeTargets, DeviceUpstream, Family, compile_ptx, driver_library_present,
    kernels, nvrtc_library_present,
};
use smoothloss_spec::random::Rng;

// ------------------------------------------------------------------ runs without a GPU

#[test]
fn new_without_a_driver_is_a_device_error_not_a_panic() {
    let got = std::panic::catch_unwind(|| CudaBackend::new(0)).expect("CudaBackend::new panicked");
    if driver_library_present() {
        // A GPU machine: either a working backend or a typed device error (no device 0).
        if let Err(e) = &got {
            assert!(matches!(e, LossError::Device(_)), "{e:?}");
        }
    } else {
        match got {
            Err(LossError::Device(msg)) => assert!(msg.contains("libcuda"), "{msg}"),
            other => panic!("expected a device error without libcuda, got {other:?}"),
        }
    }
}

#[test]
fn a_missing_device_ordinal_is_a_device_error() {
    let got =
        std::panic::catch_unwind(|| CudaBackend::new(4096)).expect("CudaBackend::new panicked");
    assert!(matches!(got, Err(LossError::Device(_))), "{got:?}");
}

/// `extern "C" __global__ void NAME(` and `SL_CE_ENTRY(NAME,` definitions in a source.
fn defined_entry_points(src: &str) -> Vec<String> {
    let mut out = Vec::new();
    for marker in [
        "extern \"C\" __global__ void ",
        "SL_CE_ENTRY(",
        "SL_CE_CLUSTER_ENTRY(",
    ] {
        for (i, _) in src.match_indices(marker) {
            let rest = &src[i + marker.len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            // Attributes (`__launch_bounds__`) inside the macros are not names.
            if !name.is_empty() && name != "NAME" && !name.starts_with("__") {
                out.push(name);
            }
        }
    }
    out
}

#[test]
fn kernel_sources_define_every_entry_point_the_rust_side_launches() {
    for fam in Family::ALL {
        let defined = defined_entry_points(&fam.full_source());
        for name in fam.entry_points() {
            assert!(
                defined.iter().any(|d| d == name),
                "{} does not define `{name}` (defined: {defined:?})",
                fam.file_name()
            );
        }
        // And every kernel the file defines is listed (so it is compiled and loaded in tests).
        for d in &defined {
            assert!(
                fam.entry_points().contains(&d.as_str()),
                "{} defines `{d}`, missing from Family::entry_points",
                fam.file_name()
            );
        }
    }
}

#[test]
fn rust_side_launches_only_listed_entry_points() {
    // Every source file of the crate that launches kernels by name.
    let lib = [
        include_str!("../src/lib.rs"),
        include_str!("../src/cross_entropy.rs"),
        include_str!("../src/box_loss.rs"),
        include_str!("../src/elementwise.rs"),
    ]
    .concat();
    let all: Vec<&str> = Family::ALL
        .iter()
        .flat_map(|f| f.entry_points().iter().copied())
        .collect();
    let mut seen = 0;
    for prefix in ["\"sl_", "\"ce_", "\"box_", "\"reg_", "\"bin_"] {
        for (i, _) in lib.match_indices(prefix) {
            let name: String = lib[i + 1..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            assert!(
                all.contains(&name.as_str()),
                "src/ names kernel `{name}`, which no kernel file lists"
            );
            seen += 1;
        }
    }
    assert!(
        seen >= 11,
        "expected the kernel names in src/lib.rs, found {seen}"
    );
    assert!(kernels::COMMON.contains("sl_reduce_final"));
}

/// Where a `libnvrtc.so.13` may be: `SMOOTHLOSS_NVRTC`, CUDA's usual folders, and the
/// `nvidia/cu13/lib` (or `nvidia/cuda_nvrtc/lib`) folder of Python's site-packages.
fn nvrtc_candidates() -> Vec<PathBuf> {
    let mut c = Vec::new();
    if let Ok(p) = std::env::var("SMOOTHLOSS_NVRTC") {
        c.push(PathBuf::from(p));
    }
    for dir in [
        "/usr/local/cuda/lib64",
        "/usr/local/cuda/targets/x86_64-linux/lib",
    ] {
        c.push(PathBuf::from(dir).join("libnvrtc.so.13"));
    }
    for py in ["python3", "python"] {
        let out = std::process::Command::new(py)
            .args([
                "-c",
                "import site,sys;print('\\n'.join(site.getsitepackages()+[site.getusersitepackages()]))",
            ])
            .output();
        if let Ok(out) = out {
            for line in String::from_utf8_lossy(&out.stdout).lines() {
                let sp = PathBuf::from(line.trim());
                c.push(sp.join("nvidia/cu13/lib/libnvrtc.so.13"));
                c.push(sp.join("nvidia/cuda_nvrtc/lib/libnvrtc.so.13"));
            }
            break;
        }
    }
    c
}

/// Makes NVRTC loadable by cudarc: if `libnvrtc.so.13` is not on the loader's path, opens it
/// by absolute path first, so cudarc's `dlopen("libnvrtc.so.13")` finds the loaded library by
/// its soname. Returns a description of what was used, or why nothing was.
fn ensure_nvrtc() -> Result<String, String> {
    if nvrtc_library_present() {
        return Ok("on the loader's path".into());
    }
    for cand in nvrtc_candidates() {
        if cand.is_file() {
            // SAFETY: loading NVRTC runs its initialisers only; the handle is leaked so the
            // library stays loaded for the rest of the process.
            match unsafe { libloading::Library::new(&cand) } {
                Ok(lib) => {
                    std::mem::forget(lib);
                    if nvrtc_library_present() {
                        return Ok(format!("preloaded {}", cand.display()));
                    }
                }
                Err(e) => eprintln!("could not load {}: {e}", cand.display()),
            }
        }
    }
    Err("no libnvrtc.so.13 found (set SMOOTHLOSS_NVRTC=/path/to/libnvrtc.so.13)".into())
}

/// NVRTC for a compile check, or `None` after printing why it is skipped. With
/// `SMOOTHLOSS_REQUIRE_NVRTC` set (as `.ci/run` does, after installing the NVRTC wheel) a
/// missing NVRTC fails the test instead of skipping it.
fn nvrtc_or_skip(what: &str) -> Option<String> {
    match ensure_nvrtc() {
        Ok(how) => Some(how),
        Err(why) if std::env::var_os("SMOOTHLOSS_REQUIRE_NVRTC").is_some() => {
            panic!("{what}: NVRTC required (SMOOTHLOSS_REQUIRE_NVRTC) but {why}")
        }
        Err(why) => {
            eprintln!("SKIPPED: {what}: {why}");
            None
        }
    }
}

#[test]
fn every_kernel_file_compiles_with_nvrtc_when_available() {
    let Some(how) = nvrtc_or_skip("NVRTC compile check") else {
        return;
    };
    eprintln!("NVRTC: {how}");
    for (arch, major) in [("sm_90", 9), ("sm_80", 8)] {
        for fam in Family::ALL {
            let ptx = compile_ptx(fam, arch).unwrap_or_else(|e| panic!("{arch}: {e}"));
            let text = ptx.to_src();
            for name in fam.entry_points_for(major) {
                assert!(
                    text.contains(&format!(".entry {name}(")),
                    "{arch} {}: no `.entry {name}` in the PTX",
                    fam.file_name()
                );
            }
            eprintln!(
                "compiled {} for {arch}: {} bytes of PTX",
                fam.file_name(),
                text.len()
            );
        }
    }
}

/// `ptxas info    : Function properties for NAME` / `... N bytes spill stores, M bytes spill
/// loads` / `Used R registers` triples of an NVRTC `-Xptxas=-v` log: (name, spill bytes, regs).
fn ptxas_report(log: &str) -> Vec<(String, u64, u64)> {
    let mut out = Vec::new();
    let mut name = None;
    let mut spill = 0u64;
    for line in log.lines() {
        if let Some(i) = line.find("Function properties for ") {
            name = Some(line[i + 24..].trim().to_string());
        } else if line.contains("spill stores") {
            spill = line
                .split(',')
                .filter(|p| p.contains("spill"))
                .filter_map(|p| p.split_whitespace().next()?.parse::<u64>().ok())
                .sum();
        } else if let Some(i) = line.find("Used ") {
            let regs = line[i + 5..]
                .split_whitespace()
                .next()
                .and_then(|r| r.parse().ok())
                .unwrap_or(0);
            if let Some(n) = name.take() {
                out.push((n, spill, regs));
            }
        }
    }
    out
}

/// Every kernel compiles to machine code (the form `CudaBackend` loads first) for sm_90 and
/// sm_80 without register spills, and the cross-entropy kernels stay within their launch bound
/// of 512 threads (at most 128 registers).
#[test]
fn every_kernel_compiles_to_a_cubin_without_spills_when_nvrtc_is_available() {
    if nvrtc_or_skip("cubin check").is_none() {
        return;
    }
    for (arch, major) in [("sm_90", 9), ("sm_80", 8)] {
        for fam in Family::ALL {
            let c = smoothloss_cuda::compile_cubin(fam, arch, &["-Xptxas=-v"])
                .unwrap_or_else(|e| panic!("{arch}: {e}"));
            assert_eq!(
                &c.image[..4],
                b"\x7fELF",
                "{arch} {}: not an ELF image",
                fam.file_name()
            );
            let report = ptxas_report(&c.log);
            for name in fam.entry_points_for(major) {
                let (_, spill, regs) = report
                    .iter()
                    .find(|(n, _, _)| n == name)
                    .unwrap_or_else(|| panic!("{arch}: no ptxas report for {name}:\n{}", c.log));
                assert_eq!(*spill, 0, "{arch} {name}: {spill} bytes of spills");
                if name.starts_with("ce_fwd_bwd") {
                    assert!(*regs <= 128, "{arch} {name}: {regs} registers");
                }
                eprintln!("{arch} {name}: {regs} registers, {spill} bytes of spills");
            }
        }
    }
}

#[test]
fn a_syntax_error_is_reported_as_a_device_error_with_the_log() {
    // The compile path's error conversion, with a deliberately broken source.
    if nvrtc_or_skip("compile error check").is_none() {
        return;
    }
    let opts = cudarc::nvrtc::CompileOptions {
        arch: Some("sm_90"),
        ..Default::default()
    };
    let err = cudarc::nvrtc::compile_ptx_with_opts(
        "extern \"C\" __global__ void broken(float* x) { x[0] = undefined_name; }",
        opts,
    )
    .expect_err("a broken kernel compiled");
    let e: LossError = smoothloss_cuda::CudaError::Compile {
        family: Family::Regression,
        err,
    }
    .into();
    match e {
        LossError::Device(msg) => assert!(msg.contains("undefined_name"), "{msg}"),
        other => panic!("{other:?}"),
    }
}

// ------------------------------------------------------------------ needs a GPU

/// `f32` draws from the shared deterministic generator (`smoothloss_spec::random::Rng`).
trait RangeF32 {
    fn range_f32(&mut self, lo: f64, hi: f64) -> f32;
}

impl RangeF32 for Rng {
    fn range_f32(&mut self, lo: f64, hi: f64) -> f32 {
        self.range(lo, hi) as f32
    }
}

/// Random target distributions: `rows` rows of `classes` probabilities summing to 1.
fn random_probs(rng: &mut Rng, rows: usize, classes: usize) -> Vec<f32> {
    let mut probs: Vec<f32> = (0..rows * classes)
        .map(|_| rng.range_f32(0.0, 1.0))
        .collect();
    for row in probs.chunks_mut(classes) {
        let s: f32 = row.iter().sum();
        row.iter_mut().for_each(|p| *p /= s);
    }
    probs
}

fn backend() -> CudaBackend {
    CudaBackend::new(0).expect("a CUDA device")
}

fn assert_close(what: &str, got: &[f64], want: &[f64], rel: f64, abs: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let ok = g == w || (g.is_nan() && w.is_nan()) || (g - w).abs() <= abs + rel * w.abs();
        assert!(ok, "{what}[{i}]: got {g}, want {w}");
    }
}

/// Gradient check: `rel` relative to each entry plus `frac` of the largest reference entry.
fn assert_grad(what: &str, got: &[f32], want: &[f32], rel: f64, frac: f64) {
    let scale = want.iter().fold(0.0f64, |m, &w| m.max(f64::from(w).abs()));
    assert_close(what, &widen(got), &widen(want), rel, frac * scale);
}

fn widen(xs: &[f32]) -> Vec<f64> {
    xs.iter().map(|&x| f64::from(x)).collect()
}

const REDUCTIONS: [Reduction; 3] = [Reduction::None, Reduction::Mean, Reduction::Sum];

fn ce_configs(classes: usize, rng: &mut Rng) -> Vec<CrossEntropy> {
    let weights: Vec<f64> = (0..classes).map(|_| rng.unit() * 2.0).collect();
    let mut v = Vec::new();
    for r in REDUCTIONS {
        v.push(CrossEntropy::new().with_reduction(r));
        v.push(
            CrossEntropy::new()
                .with_label_smoothing(0.1)
                .with_reduction(r),
        );
        v.push(
            CrossEntropy::new()
                .with_label_smoothing(0.2)
                .with_class_weights(weights.clone())
                .with_reduction(r),
        );
    }
    v
}

/// One cross-entropy case on the device against the reference (loss and gradient), and the
/// in-place call against the separate one, bit for bit.
#[allow(clippy::too_many_arguments)]
fn check_ce(
    b: &CudaBackend,
    what: &str,
    cfg: &CrossEntropy,
    logits: &[f32],
    rows: usize,
    classes: usize,
    tgt: CeTargets<'_, f32>,
    up: Upstream<'_>,
) {
    let mut g = vec![0f32; rows * classes];
    let mut gr = vec![0f32; rows * classes];
    let got = b
        .cross_entropy(cfg, logits, rows, classes, tgt, up, Some(&mut g))
        .unwrap();
    let want = ReferenceBackend
        .cross_entropy(cfg, logits, rows, classes, tgt, up, Some(&mut gr))
        .unwrap();
    assert_close(&format!("{what} loss"), &got, &want, 1e-4, 1e-5);
    assert_grad(&format!("{what} grad"), &g, &gr, 1e-3, 1e-5);
    let mut z = logits.to_vec();
    let got_ip = b
        .cross_entropy_in_place(cfg, &mut z, rows, classes, tgt, up)
        .unwrap();
    assert_close(&format!("{what} in-place loss"), &got_ip, &got, 0.0, 0.0);
    assert_close(
        &format!("{what} in-place grad"),
        &widen(&z),
        &widen(&g),
        0.0,
        0.0,
    );
}

#[test]
#[ignore = "needs a CUDA device"]
fn all_kernels_load() {
    backend().load_all().unwrap();
}

#[test]
#[ignore = "needs a CUDA device"]
fn cross_entropy_matches_the_reference() {
    let b = backend();
    let mut rng = Rng::new(0x5eed);
    // Short rows, rows that fit shared memory, and rows that do not (online pass).
    for &(rows, classes) in &[
        (7usize, 1usize),
        (33, 5),
        (64, 1000),
        (9, 10_240),
        (5, 32_000),
        (2, 128_256),
    ] {
        let logits: Vec<f32> = (0..rows * classes)
            .map(|_| rng.range_f32(-8.0, 8.0))
            .collect();
        let mut targets: Vec<i64> = (0..rows).map(|_| rng.below(classes) as i64).collect();
        targets[rows / 2] = -100; // one ignored row
        let probs = random_probs(&mut rng, rows, classes);
        let up_rows: Vec<f64> = (0..rows).map(|_| rng.unit() - 0.5).collect();
        for cfg in ce_configs(classes, &mut rng) {
            let ups: Vec<Upstream<'_>> = if cfg.reduction == Reduction::None {
                vec![Upstream::Scalar(0.7), Upstream::PerElement(&up_rows)]
            } else {
                vec![Upstream::ONE]
            };
            for up in ups {
                for tgt in [CeTargets::Classes(&targets), CeTargets::Probs(&probs)] {
                    let what = format!("CE {rows}x{classes} {cfg:?} {up:?}");
                    check_ce(&b, &what, &cfg, &logits, rows, classes, tgt, up);
                }
            }
        }
    }
}

/// Every launch plan on the device against the reference: shared-memory budgets that force
/// clusters of 1, 2, 4 and 8 blocks per row and the re-reading path, rows that are and are not
/// a whole number of 16-byte vectors, in place too.
#[test]
#[ignore = "needs a CUDA device"]
fn cross_entropy_every_launch_plan() {
    let b = backend();
    let mut rng = Rng::new(0x91a);
    let rows = 6usize;
    for classes in [37usize, 1000, 1001, 4096] {
        let vec_rows = classes % 4 == 0;
        let unit = if vec_rows { 4 } else { 1 };
        let exact = |k: usize| 1024 + classes.div_ceil(k).div_ceil(unit) * unit * 4;
        let mut cases: Vec<(u32, usize, usize)> = [1usize, 2, 4, 8]
            .iter()
            .map(|&k| (k as u32, exact(k), exact(k)))
            .collect();
        cases.push((0, 1030, 1030));
        let logits: Vec<f32> = (0..rows * classes)
            .map(|_| rng.range_f32(-8.0, 8.0))
            .collect();
        let mut targets: Vec<i64> = (0..rows).map(|_| rng.below(classes) as i64).collect();
        targets[1] = -100;
        let probs = random_probs(&mut rng, rows, classes);
        for (want_k, target, max) in cases {
            let bk = b.with_ce_shared_memory(target, max);
            let plan = bk.ce_plan(classes, 4, true);
            if want_k == 0 {
                assert_eq!(
                    (plan.cluster, plan.flags & 1),
                    (1, 0),
                    "{classes}: {plan:?}"
                );
            } else {
                assert_eq!(
                    (plan.cluster, plan.flags & 1),
                    (want_k, 1),
                    "{classes}: {plan:?}"
                );
            }
            assert_eq!(plan.flags & 2 != 0, vec_rows, "{classes}: {plan:?}");
            for cfg in ce_configs(classes, &mut rng) {
                for tgt in [CeTargets::Classes(&targets), CeTargets::Probs(&probs)] {
                    let what = format!("CE {rows}x{classes} {plan:?} {cfg:?}");
                    check_ce(&bk, &what, &cfg, &logits, rows, classes, tgt, Upstream::ONE);
                }
            }
        }
    }
}

#[test]
#[ignore = "needs a CUDA device"]
fn cross_entropy_half_precision_logits() {
    use smoothloss_cuda::half::{bf16, f16};
    let b = backend();
    let mut rng = Rng::new(77);
    let (rows, classes) = (16usize, 3000usize);
    let logits: Vec<f32> = (0..rows * classes)
        .map(|_| rng.range_f32(-6.0, 6.0))
        .collect();
    let targets: Vec<i64> = (0..rows).map(|_| rng.below(classes) as i64).collect();
    let cfg = CrossEntropy::new().with_label_smoothing(0.1);
    let st = b.stream().clone();
    let t_dev = st.clone_htod(&targets).unwrap();

    // Reference on the logits as rounded to bf16 / f16.
    let check = |rounded: Vec<f32>, got: f64, grad: Vec<f32>| {
        let mut gr = vec![0f32; rows * classes];
        let want = ReferenceBackend
            .cross_entropy(
                &cfg,
                &rounded,
                rows,
                classes,
                CeTargets::Classes(&targets),
                Upstream::ONE,
                Some(&mut gr),
            )
            .unwrap();
        assert_close("half loss", &[got], &want, 1e-3, 1e-4);
        assert_grad("half grad", &grad, &gr, 1e-2, 1e-3);
    };

    let zb: Vec<bf16> = logits.iter().map(|&x| bf16::from_f32(x)).collect();
    let zb_dev = st.clone_htod(&zb).unwrap();
    let mut gb = st.alloc_zeros::<bf16>(rows * classes).unwrap();
    let out = b
        .cross_entropy_dev(
            &cfg,
            &zb_dev,
            rows,
            classes,
            DeviceCeTargets::Classes(&t_dev),
            DeviceUpstream::Scalar(1.0),
            Some(&mut gb),
        )
        .unwrap();
    let v = out.to_host().unwrap();
    let g: Vec<f32> = st
        .clone_dtoh(&gb)
        .unwrap()
        .iter()
        .map(|x| x.to_f32())
        .collect();
    check(zb.iter().map(|x| x.to_f32()).collect(), v[0], g);

    let zh: Vec<f16> = logits.iter().map(|&x| f16::from_f32(x)).collect();
    let mut zh_dev = st.clone_htod(&zh).unwrap();
    let out = b
        .cross_entropy_in_place_dev(
            &cfg,
            &mut zh_dev,
            rows,
            classes,
            DeviceCeTargets::Classes(&t_dev),
            DeviceUpstream::Scalar(1.0),
        )
        .unwrap();
    let v = out.to_host().unwrap();
    let g: Vec<f32> = st
        .clone_dtoh(&zh_dev)
        .unwrap()
        .iter()
        .map(|x| x.to_f32())
        .collect();
    check(zh.iter().map(|x| x.to_f32()).collect(), v[0], g);
}

#[test]
#[ignore = "needs a CUDA device"]
fn out_of_range_targets_are_found_on_the_device() {
    let b = backend();
    let st = b.stream().clone();
    let (rows, classes) = (6usize, 4usize);
    let z = st.clone_htod(&vec![0.5f32; rows * classes]).unwrap();
    let t = st.clone_htod(&[0i64, 1, -100, 7, 2, -3]).unwrap();
    let out = b
        .cross_entropy_dev(
            &CrossEntropy::new(),
            &z,
            rows,
            classes,
            DeviceCeTargets::Classes(&t),
            DeviceUpstream::Scalar(1.0),
            None,
        )
        .unwrap();
    assert_eq!(
        out.to_host(),
        Err(LossError::TargetOutOfRange {
            row: 3,
            target: 7,
            classes
        })
    );
    // The host path validates first, with the reference's error.
    let host_t = [0i64, 1, -100, 7, 2, -3];
    let zh = vec![0.5f32; rows * classes];
    let e = b.cross_entropy(
        &CrossEntropy::new(),
        &zh,
        rows,
        classes,
        CeTargets::Classes(&host_t),
        Upstream::ONE,
        None,
    );
    let w = ReferenceBackend.cross_entropy(
        &CrossEntropy::new(),
        &zh,
        rows,
        classes,
        CeTargets::Classes(&host_t),
        Upstream::ONE,
        None,
    );
    assert_eq!(e, w);
    assert!(e.is_err());
}

#[test]
#[ignore = "needs a CUDA device"]
fn reductions_are_deterministic() {
    let b = backend();
    let mut rng = Rng::new(99);
    let (rows, classes) = (300usize, 777usize);
    let logits: Vec<f32> = (0..rows * classes)
        .map(|_| rng.range_f32(-5.0, 5.0))
        .collect();
    let targets: Vec<i64> = (0..rows).map(|_| rng.below(classes) as i64).collect();
    let cfg = CrossEntropy::new().with_label_smoothing(0.1);
    let run = || {
        let mut g = vec![0f32; rows * classes];
        let v = b
            .cross_entropy(
                &cfg,
                &logits,
                rows,
                classes,
                CeTargets::Classes(&targets),
                Upstream::ONE,
                Some(&mut g),
            )
            .unwrap();
        (
            v[0].to_bits(),
            g.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
        )
    };
    let first = run();
    for _ in 0..3 {
        assert_eq!(run(), first);
    }
    let n = 1_000_003usize;
    let p: Vec<f32> = (0..n).map(|_| rng.range_f32(-3.0, 3.0)).collect();
    let t: Vec<f32> = (0..n).map(|_| rng.range_f32(-3.0, 3.0)).collect();
    let sl = |bk: &CudaBackend| {
        bk.smooth_l1(&SmoothL1::default(), &p, &t, Upstream::ONE, None)
            .unwrap()[0]
            .to_bits()
    };
    let a = sl(&b);
    assert_eq!(sl(&b), a);
}

#[test]
#[ignore = "needs a CUDA device"]
fn box_losses_match_the_reference() {
    let b = backend();
    let mut rng = Rng::new(1234);
    let n = 2000usize;
    let mut pred = Vec::with_capacity(4 * n);
    let mut target = Vec::with_capacity(4 * n);
    for i in 0..n {
        let (x, y) = (rng.range_f32(0.0, 50.0), rng.range_f32(0.0, 50.0));
        let (w, h) = (rng.range_f32(0.5, 20.0), rng.range_f32(0.5, 20.0));
        target.extend_from_slice(&[x, y, x + w, y + h]);
        if i % 10 == 0 {
            // Exact ties: identical boxes, and a shared edge.
            pred.extend_from_slice(&[x, y, x + w, y + h]);
        } else if i % 10 == 1 {
            pred.extend_from_slice(&[x, rng.range_f32(0.0, 50.0), x + w, y + h + 3.0]);
        } else {
            let (px, py) = (x + rng.range_f32(-5.0, 5.0), y + rng.range_f32(-5.0, 5.0));
            pred.extend_from_slice(&[
                px,
                py,
                px + rng.range_f32(0.5, 20.0),
                py + rng.range_f32(0.5, 20.0),
            ]);
        }
    }
    let up: Vec<f64> = (0..n).map(|_| rng.unit()).collect();
    for kind in BoxLossKind::ALL {
        for format in [BoxFormat::Xyxy, BoxFormat::Xywh, BoxFormat::Cxcywh] {
            for r in REDUCTIONS {
                for tw in [None, Some((0.3, 0.5))] {
                    let mut cfg = BoxLoss::new(kind, format).with_reduction(r);
                    if let Some((a, t)) = tw {
                        cfg = cfg.with_threshold_weight(a, t);
                    }
                    let u = if r == Reduction::None {
                        Upstream::PerElement(&up)
                    } else {
                        Upstream::Scalar(1.5)
                    };
                    let mut g = vec![0f32; 4 * n];
                    let mut gr = vec![0f32; 4 * n];
                    let got = b.box_loss(&cfg, &pred, &target, u, Some(&mut g)).unwrap();
                    let want = ReferenceBackend
                        .box_loss(&cfg, &pred, &target, u, Some(&mut gr))
                        .unwrap();
                    let what = format!("{cfg:?}");
                    assert_close(&format!("{what} loss"), &got, &want, 1e-9, 1e-12);
                    assert_grad(&format!("{what} grad"), &g, &gr, 1e-6, 1e-9);
                }
            }
        }
    }
    // Non-finite coordinates give NaN.
    let mut bad = pred[..8].to_vec();
    bad[2] = f32::NAN;
    let cfg = BoxLoss::default().with_reduction(Reduction::None);
    let got = b
        .box_loss(&cfg, &bad, &target[..8], Upstream::ONE, None)
        .unwrap();
    assert!(got[0].is_nan() && got[1].is_finite(), "{got:?}");
}

#[test]
#[ignore = "needs a CUDA device"]
fn box_iou_matches_the_reference() {
    let b = backend();
    let mut rng = Rng::new(4321);
    let (n, m) = (37usize, 53usize);
    let mk = |rng: &mut Rng, k: usize| -> Vec<f32> {
        (0..k)
            .flat_map(|_| {
                let (x, y) = (rng.range_f32(0.0, 30.0), rng.range_f32(0.0, 30.0));
                [x, y, rng.range_f32(0.0, 10.0), rng.range_f32(0.0, 10.0)]
            })
            .collect()
    };
    let b1 = mk(&mut rng, n);
    let b2 = mk(&mut rng, m);
    for format in [BoxFormat::Xywh, BoxFormat::Cxcywh] {
        let mut got = vec![0f32; n * m];
        let mut want = vec![0f32; n * m];
        b.box_iou(format, &b1, &b2, &mut got).unwrap();
        ReferenceBackend
            .box_iou(format, &b1, &b2, &mut want)
            .unwrap();
        assert_close("box_iou", &widen(&got), &widen(&want), 0.0, 0.0);
    }
}

#[test]
#[ignore = "needs a CUDA device"]
fn elementwise_losses_match_the_reference() {
    let b = backend();
    let mut rng = Rng::new(2024);
    let n = 100_001usize;
    let x: Vec<f32> = (0..n).map(|_| rng.range_f32(-6.0, 6.0)).collect();
    let t: Vec<f32> = (0..n).map(|_| rng.range_f32(-6.0, 6.0)).collect();
    let y: Vec<f32> = (0..n)
        .map(|i| {
            if i % 3 == 0 {
                rng.range_f32(0.0, 1.0)
            } else {
                (i % 2) as f32
            }
        })
        .collect();
    let up: Vec<f64> = (0..n).map(|_| rng.unit() - 0.5).collect();
    let pw: Vec<f64> = (0..7).map(|_| rng.unit() * 3.0).collect();
    let n7 = n - n % 7;
    for r in REDUCTIONS {
        let u = if r == Reduction::None {
            Upstream::PerElement(&up)
        } else {
            Upstream::Scalar(0.5)
        };
        for beta in [0.0, 1.0, 2.5] {
            let cfg = SmoothL1 { beta, reduction: r };
            let (mut g, mut gr) = (vec![0f32; n], vec![0f32; n]);
            let got = b.smooth_l1(&cfg, &x, &t, u, Some(&mut g)).unwrap();
            let want = ReferenceBackend
                .smooth_l1(&cfg, &x, &t, u, Some(&mut gr))
                .unwrap();
            assert_close("smooth_l1", &got, &want, 1e-10, 1e-12);
            assert_close("smooth_l1 grad", &widen(&g), &widen(&gr), 0.0, 0.0);
        }
        let cfg = Huber {
            delta: 1.5,
            reduction: r,
        };
        let (mut g, mut gr) = (vec![0f32; n], vec![0f32; n]);
        let got = b.huber(&cfg, &x, &t, u, Some(&mut g)).unwrap();
        let want = ReferenceBackend
            .huber(&cfg, &x, &t, u, Some(&mut gr))
            .unwrap();
        assert_close("huber", &got, &want, 1e-10, 1e-12);
        assert_close("huber grad", &widen(&g), &widen(&gr), 0.0, 0.0);

        for pos_weight in [None, Some(pw.clone())] {
            let cfg = BceWithLogits {
                pos_weight,
                reduction: r,
            };
            let u7 = if r == Reduction::None {
                Upstream::PerElement(&up[..n7])
            } else {
                u
            };
            let (mut g, mut gr) = (vec![0f32; n7], vec![0f32; n7]);
            let got = b
                .bce_with_logits(&cfg, &x[..n7], &y[..n7], u7, Some(&mut g))
                .unwrap();
            let want = ReferenceBackend
                .bce_with_logits(&cfg, &x[..n7], &y[..n7], u7, Some(&mut gr))
                .unwrap();
            assert_close("bce", &got, &want, 1e-10, 1e-12);
            assert_close("bce grad", &widen(&g), &widen(&gr), 1e-6, 1e-9);
        }
        for (alpha, gamma) in [(0.25, 2.0), (-1.0, 0.0), (0.5, 1.5)] {
            let cfg = SigmoidFocal {
                alpha,
                gamma,
                reduction: r,
            };
            let (mut g, mut gr) = (vec![0f32; n], vec![0f32; n]);
            let got = b.sigmoid_focal(&cfg, &x, &y, u, Some(&mut g)).unwrap();
            let want = ReferenceBackend
                .sigmoid_focal(&cfg, &x, &y, u, Some(&mut gr))
                .unwrap();
            assert_close("focal", &got, &want, 1e-10, 1e-12);
            assert_close("focal grad", &widen(&g), &widen(&gr), 1e-6, 1e-9);
        }
    }
}

#[test]
#[ignore = "needs a CUDA device"]
fn launches_on_a_callers_stream() {
    let b = backend();
    let st: Arc<_> = b.context().new_stream().unwrap();
    let b2 = b.with_stream(st.clone()).unwrap();
    let p = st.clone_htod(&[0.0f32, 1.0, 2.0, 3.0]).unwrap();
    let t = st.clone_htod(&[0.5f32, 1.0, 0.0, 10.0]).unwrap();
    let out = b2
        .smooth_l1_dev(
            &SmoothL1::default(),
            &p,
            &t,
            DeviceUpstream::Scalar(1.0),
            None,
        )
        .unwrap();
    let want = ReferenceBackend
        .smooth_l1(
            &SmoothL1::default(),
            &[0.0f32, 1.0, 2.0, 3.0],
            &[0.5f32, 1.0, 0.0, 10.0],
            Upstream::ONE,
            None,
        )
        .unwrap();
    assert_close("stream", &out.to_host().unwrap(), &want, 1e-12, 0.0);
}

/// One launch of every kernel and cross-entropy plan on small, awkward inputs (ignored and
/// out-of-range targets, rows that are not a whole number of vectors, cluster ranks with no
/// class, in place, 16-bit logits, sizes that are not multiples of a block), for
/// `compute-sanitizer` (`gpu-bundle/run.sh` runs this test under memcheck, racecheck and
/// synccheck). It also checks each value against the reference, loosely.
#[test]
#[ignore = "needs a CUDA device"]
fn sanitizer_smoke() {
    use smoothloss_cuda::half::{bf16, f16};
    let b = backend();
    let st = b.stream().clone();
    let mut rng = Rng::new(0x5a71);
    // Cross-entropy: forced plans (target, max) for 1, 2, 4, 8 blocks per row and re-reading.
    for classes in [9usize, 1000, 1001] {
        let rows = 5usize;
        let logits: Vec<f32> = (0..rows * classes)
            .map(|_| rng.range_f32(-6.0, 6.0))
            .collect();
        let mut targets: Vec<i64> = (0..rows).map(|_| rng.below(classes) as i64).collect();
        targets[1] = -100;
        let probs: Vec<f32> = vec![1.0 / classes as f32; rows * classes];
        let unit = if classes % 4 == 0 { 4 } else { 1 };
        let budgets: Vec<(u32, usize, usize)> = [1usize, 2, 4, 8]
            .iter()
            .map(|&k| {
                let t = 1024 + classes.div_ceil(k).div_ceil(unit) * unit * 4;
                (k as u32, t, t)
            })
            .chain([(1, 1030, 1030)])
            .collect();
        for (k, target, max) in budgets {
            let bk = b.with_ce_shared_memory(target, max);
            assert_eq!(bk.ce_plan(classes, 4, true).cluster, k);
            let cfg = CrossEntropy::new().with_label_smoothing(0.1);
            for tgt in [CeTargets::Classes(&targets), CeTargets::Probs(&probs)] {
                check_ce(
                    &bk,
                    "smoke CE",
                    &cfg,
                    &logits,
                    rows,
                    classes,
                    tgt,
                    Upstream::ONE,
                );
            }
            // 16-bit logits, separate gradient and in place.
            let t_dev = st.clone_htod(&targets).unwrap();
            let zb: Vec<bf16> = logits.iter().map(|&x| bf16::from_f32(x)).collect();
            let zb_dev = st.clone_htod(&zb).unwrap();
            let mut gb = st.alloc_zeros::<bf16>(rows * classes).unwrap();
            let v = bk
                .cross_entropy_dev(
                    &cfg,
                    &zb_dev,
                    rows,
                    classes,
                    DeviceCeTargets::Classes(&t_dev),
                    DeviceUpstream::Scalar(1.0),
                    Some(&mut gb),
                )
                .unwrap()
                .to_host()
                .unwrap();
            assert!(v[0].is_finite(), "{v:?}");
            let zh: Vec<f16> = logits.iter().map(|&x| f16::from_f32(x)).collect();
            let mut zh_dev = st.clone_htod(&zh).unwrap();
            bk.cross_entropy_in_place_dev(
                &cfg,
                &mut zh_dev,
                rows,
                classes,
                DeviceCeTargets::Classes(&t_dev),
                DeviceUpstream::Scalar(1.0),
            )
            .unwrap()
            .to_host()
            .unwrap();
        }
        // An out-of-range target: found on the device, no access out of bounds.
        let mut bad = targets.clone();
        bad[3] = classes as i64;
        let err = b
            .cross_entropy(
                &CrossEntropy::new(),
                &logits,
                rows,
                classes,
                CeTargets::Classes(&bad),
                Upstream::ONE,
                None,
            )
            .expect_err("out-of-range target accepted");
        assert!(matches!(err, LossError::TargetOutOfRange { .. }), "{err:?}");
    }
    // Box losses (every kind and format) and pairwise IoU, sizes off the block size.
    let n = 1001usize;
    let mut pred = Vec::with_capacity(4 * n);
    let mut target = Vec::with_capacity(4 * n);
    for _ in 0..n {
        let (x, y) = (rng.range_f32(0.0, 50.0), rng.range_f32(0.0, 50.0));
        target.extend_from_slice(&[
            x,
            y,
            x + rng.range_f32(0.5, 9.0),
            y + rng.range_f32(0.5, 9.0),
        ]);
        let (px, py) = (x + rng.range_f32(-3.0, 3.0), y + rng.range_f32(-3.0, 3.0));
        pred.extend_from_slice(&[
            px,
            py,
            px + rng.range_f32(0.5, 9.0),
            py + rng.range_f32(0.5, 9.0),
        ]);
    }
    for kind in BoxLossKind::ALL {
        for format in [BoxFormat::Xyxy, BoxFormat::Xywh, BoxFormat::Cxcywh] {
            let cfg = BoxLoss::new(kind, format).with_threshold_weight(0.3, 0.5);
            let mut g = vec![0f32; 4 * n];
            let got = b
                .box_loss(&cfg, &pred, &target, Upstream::ONE, Some(&mut g))
                .unwrap();
            let want = ReferenceBackend
                .box_loss(&cfg, &pred, &target, Upstream::ONE, None)
                .unwrap();
            assert_close("smoke box", &got, &want, 1e-4, 1e-6);
        }
    }
    let mut iou = vec![0f32; 37 * 53];
    b.box_iou(
        BoxFormat::Xyxy,
        &pred[..4 * 37],
        &target[..4 * 53],
        &mut iou,
    )
    .unwrap();
    // Element-wise losses.
    let x: Vec<f32> = (0..n).map(|_| rng.range_f32(-4.0, 4.0)).collect();
    let y: Vec<f32> = (0..n).map(|_| rng.range_f32(0.0, 1.0)).collect();
    let mut g = vec![0f32; n];
    b.smooth_l1(&SmoothL1::default(), &x, &y, Upstream::ONE, Some(&mut g))
        .unwrap();
    b.huber(
        &Huber {
            delta: 0.5,
            reduction: Reduction::Mean,
        },
        &x,
        &y,
        Upstream::ONE,
        Some(&mut g),
    )
    .unwrap();
    b.bce_with_logits(
        &BceWithLogits {
            pos_weight: None,
            reduction: Reduction::Sum,
        },
        &x,
        &y,
        Upstream::ONE,
        Some(&mut g),
    )
    .unwrap();
    b.sigmoid_focal(
        &SigmoidFocal {
            alpha: 0.25,
            gamma: 2.0,
            reduction: Reduction::Mean,
        },
        &x,
        &y,
        Upstream::ONE,
        Some(&mut g),
    )
    .unwrap();
}

/// `geometry::ce_plan`'s contract, over many row lengths, element sizes and budgets: the
/// blocks of a row cover it; the smallest fitting cluster is chosen; shared memory stays
/// within the budget (target, else the maximum with the largest cluster, else the re-read
/// path); vectors only for aligned rows of whole vectors; threads a power of two in 32..=512.
#[test]
fn ce_plan_contract() {
    use smoothloss_cuda::geometry::{
        CE_HEADER_BYTES, CE_MAX_THREADS, CE_SMEM_ROW, CE_VEC16, ce_plan,
    };
    let mut rng = Rng::new(0x91a2);
    let mut classes_list: Vec<usize> = vec![1, 2, 3, 4, 7, 8, 9, 16, 1000, 1001, 32_000, 128_256];
    classes_list.extend((0..300).map(|_| 1 + rng.below(600_000)));
    for &classes in &classes_list {
        for elem in [2usize, 4] {
            for aligned in [false, true] {
                for max_cluster in [1u32, 8] {
                    for (target, max) in [(48 * 1024, 232_448), (1100, 1100), (4096, 65_536)] {
                        let p = ce_plan(classes, elem, aligned, max_cluster, target, max);
                        let what = format!(
                            "{classes} x {elem} B aligned {aligned} max_cluster {max_cluster} \
                             budget {target}/{max}: {p:?}"
                        );
                        let vw = 16 / elem;
                        let vec = aligned && classes % vw == 0;
                        assert_eq!(p.flags & CE_VEC16 != 0, vec, "{what}");
                        assert!(p.threads.is_power_of_two(), "{what}");
                        assert!((32..=CE_MAX_THREADS).contains(&p.threads), "{what}");
                        assert!([1, 2, 4, 8].contains(&p.cluster), "{what}");
                        assert!(p.cluster <= max_cluster, "{what}");
                        let k = p.cluster as usize;
                        if p.flags & CE_SMEM_ROW != 0 {
                            // Covered (trailing ranks may hold nothing: the kernels allow
                            // it), slices of whole vectors, within the budget.
                            assert!(p.slice * k >= classes, "{what}");
                            if vec {
                                assert_eq!(p.slice % vw, 0, "{what}");
                            }
                            let bytes = CE_HEADER_BYTES + p.slice * elem;
                            assert_eq!(p.smem_bytes as usize, bytes, "{what}");
                            assert!(bytes <= max.max(target), "{what}");
                            if bytes > target {
                                // Only when no allowed cluster fits the target.
                                assert_eq!(p.cluster, max_cluster, "{what}");
                            }
                            // No smaller cluster would have fitted the target.
                            for smaller in [1usize, 2, 4].into_iter().filter(|&s| s < k) {
                                let unit = if vec { vw } else { 1 };
                                let sl = classes.div_ceil(smaller).div_ceil(unit) * unit;
                                assert!(CE_HEADER_BYTES + sl * elem > target, "{what}");
                            }
                        } else {
                            // The re-read path: one block per row, and even the largest
                            // cluster's slice would not fit the maximum.
                            assert_eq!((p.cluster, p.slice), (1, classes), "{what}");
                            let unit = if vec { vw } else { 1 };
                            let mc = max_cluster as usize;
                            let sl = classes.div_ceil(mc).div_ceil(unit) * unit;
                            assert!(CE_HEADER_BYTES + sl * elem > max, "{what}");
                            assert_eq!(p.smem_bytes as usize, CE_HEADER_BYTES, "{what}");
                        }
                    }
                }
            }
        }
    }
}

/// Degenerate arguments give a plan, not a panic: element sizes 0, 3, 32, no classes, zero
/// budgets, a zero cluster limit.
#[test]
fn ce_plan_degenerate_arguments_do_not_panic() {
    use smoothloss_cuda::geometry::{CE_SMEM_ROW, CE_VEC16, ce_plan, ce_rows_grid};
    for elem in [0usize, 1, 3, 32] {
        for classes in [0usize, 1, 16, 1000] {
            for (target, max) in [(0usize, 0usize), (1 << 20, 1 << 20)] {
                for max_cluster in [0u32, 1, 8, 100] {
                    let p = ce_plan(classes, elem, true, max_cluster, target, max);
                    assert!(p.threads >= 32 && p.cluster >= 1, "{p:?}");
                    if elem != 1 {
                        // Only 1-, 2-, 4-, 8- and 16-byte elements get vectors.
                        assert_eq!(p.flags & CE_VEC16, 0, "{elem} {p:?}");
                    }
                    if target == 0 && max == 0 {
                        assert_eq!(p.flags & CE_SMEM_ROW, 0, "{p:?}");
                    }
                }
            }
        }
    }
    assert_eq!(ce_rows_grid(0), (1, 1));
}

/// One block per row (no clusters) keeps a 32,000-class f32 row on chip with the
/// shared-memory opt-in (129,024 bytes), against the reference.
#[test]
#[ignore = "needs a CUDA device"]
fn cross_entropy_one_block_per_row_with_opt_in() {
    let b = backend().with_ce_max_cluster(1);
    let (rows, classes) = (3usize, 32_000usize);
    let plan = b.ce_plan(classes, 4, true);
    assert_eq!(
        (plan.cluster, plan.flags, plan.smem_bytes),
        (1, 3, 1024 + 128_000)
    );
    let mut rng = Rng::new(0x0b1);
    let logits: Vec<f32> = (0..rows * classes)
        .map(|_| rng.range_f32(-8.0, 8.0))
        .collect();
    let targets: Vec<i64> = (0..rows).map(|_| rng.below(classes) as i64).collect();
    let cfg = CrossEntropy::new().with_label_smoothing(0.1);
    let tgt = CeTargets::Classes(&targets);
    check_ce(
        &b,
        "one block",
        &cfg,
        &logits,
        rows,
        classes,
        tgt,
        Upstream::ONE,
    );
    // The same with 64 threads per block (250 loop turns per thread) and with clusters.
    for bk in [b.with_ce_max_threads(64), backend().with_ce_max_threads(64)] {
        assert_eq!(bk.ce_plan(classes, 4, true).threads, 64);
        check_ce(
            &bk,
            "64 threads",
            &cfg,
            &logits,
            rows,
            classes,
            tgt,
            Upstream::ONE,
        );
    }
}

/// Binary targets in device buffers are checked on the device: outside [0, 1] or NaN is the
/// same `InvalidParameter` error the host-slice path's validation gives, for the first such
/// element; valid targets pass.
#[test]
#[ignore = "needs a CUDA device"]
fn binary_targets_are_checked_on_the_device() {
    let b = backend();
    let st = b.stream().clone();
    let n = 5000usize;
    let x = st.clone_htod(&vec![0.3f32; n]).unwrap();
    for (bad, want) in [
        (vec![], None),
        (vec![(4000usize, 2.0f32), (1234, -1.0)], Some(-1.0f64)),
        (vec![(77, f32::NAN)], Some(f64::NAN)),
    ] {
        let mut y_host = vec![0.5f32; n];
        for &(i, v) in &bad {
            y_host[i] = v;
        }
        let y = st.clone_htod(&y_host).unwrap();
        let cfg = BceWithLogits {
            pos_weight: None,
            reduction: Reduction::Mean,
        };
        let got = b
            .bce_with_logits_dev(&cfg, &x, &y, DeviceUpstream::Scalar(1.0), None)
            .unwrap()
            .to_host();
        let focal = SigmoidFocal {
            alpha: 0.25,
            gamma: 2.0,
            reduction: Reduction::Sum,
        };
        let got_f = b
            .sigmoid_focal_dev(&focal, &x, &y, DeviceUpstream::Scalar(1.0), None)
            .unwrap()
            .to_host();
        for r in [got, got_f] {
            match (r, want) {
                (Ok(v), None) => assert!(v[0].is_finite(), "{v:?}"),
                (Err(LossError::InvalidParameter { name, value, .. }), Some(w)) => {
                    assert_eq!(name, "targets");
                    assert!(
                        value == w || (value.is_nan() && w.is_nan()),
                        "{value} vs {w}"
                    );
                }
                (other, w) => panic!("{bad:?}: got {other:?}, want {w:?}"),
            }
        }
    }
}
