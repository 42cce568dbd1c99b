//! Tests of the CUDA backend.
//!
//! Not ignored (run everywhere): `CudaBackend::new` returns `LossError::Device` instead of
//! panicking where there is no driver; the kernel sources hold every entry point the Rust side
//! launches; every kernel file compiles with a real NVRTC when one can be found (this machine's
//! PyTorch wheels ship `libnvrtc.so.13`), to cubins without spills, and checks the parameter
//! structs' layouts.
//!
//! Ignored (`needs a CUDA device`): every loss on random inputs against
//! `smoothloss_core::reference`, the bf16/f16 and in-place cross-entropy (and in place for the
//! other losses), device-side target checks, device shape errors against the host front
//! door's, determinism, and launching on a caller's stream. Run them with
//! `cargo test -p smoothloss-cuda -- --include-ignored` (or `gpu-bundle/run.sh`). They are in
//! `losses.rs` and `errors.rs`, except `sanitizer_smoke`, which stays here:
//! `gpu-bundle/run.sh` runs it by its exact name under `compute-sanitizer`.

use std::path::PathBuf;
use std::sync::Arc;

use smoothloss_core::{
    BceWithLogits, BoxFormat, BoxLoss, BoxLossKind, CeTargets, CrossEntropy, Huber, Input, Io,
    Loss, LossError, Losses, Reduction, ReferenceBackend, SigmoidFocal, SmoothL1, Upstream,
};
use smoothloss_cuda::{
    CudaBackend, DeviceCeTargets, DeviceUpstream, Family, KernelFamily, compile_ptx,
    driver_library_present, kernels, nvrtc_library_present, params,
};
use smoothloss_spec::random::Rng;

/// The device, or `None` after saying why there is none and where the kernels are tested
/// anyway; with `SMOOTHLOSS_REQUIRE_GPU=1` (set by `gpu-bundle/run.sh`) a missing device fails.
fn device() -> Option<CudaBackend> {
    match CudaBackend::new(0) {
        Ok(b) => Some(b),
        Err(e) => {
            let required = std::env::var_os("SMOOTHLOSS_REQUIRE_GPU").is_some_and(|v| v != "0");
            assert!(
                !required,
                "SMOOTHLOSS_REQUIRE_GPU is set but there is no CUDA device: {e}"
            );
            eprintln!(
                "skipped: no CUDA device ({e}); without one the kernels run through the CPU \
                 emulation: cargo test -p smoothloss-cuda --release --test emulated"
            );
            None
        }
    }
}

/// The device for a test that needs one; without one the test says so and stops (these tests
/// are `#[ignore = "needs a CUDA device"]`, so this is reached with `--include-ignored`).
macro_rules! backend {
    () => {
        match device() {
            Some(b) => b,
            None => return,
        }
    };
}

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

/// `extern "C" __global__ void NAME(` and `SL_CE_ENTRY(NAME,` (`SL_CE_OPT_ENTRY(NAME,`, the
/// options' entry points; `SL_CE_WARP_ENTRY(NAME,`, the warp-per-row ones) definitions in a
/// source.
fn defined_entry_points(src: &str) -> Vec<String> {
    let mut out = Vec::new();
    for marker in [
        "extern \"C\" __global__ void ",
        "SL_CE_ENTRY(",
        "SL_CE_CLUSTER_ENTRY(",
        "SL_CE_OPT_ENTRY(",
        "SL_CE_OPT_CLUSTER_ENTRY(",
        "SL_CE_WARP_ENTRY(",
    ] {
        for (i, _) in src.match_indices(marker) {
            let mut rest = &src[i + marker.len()..];
            // `extern "C" __global__ void __launch_bounds__(256, 4) NAME(`
            if let Some(r) = rest.strip_prefix("__launch_bounds__(") {
                rest = r[r.find(')').map_or(0, |k| k + 1)..].trim_start();
            }
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
                fam.kernel_file()
            );
        }
        // And every kernel the file defines is listed (so it is compiled and loaded in tests).
        for d in &defined {
            assert!(
                fam.entry_points().contains(&d.as_str()),
                "{} defines `{d}`, missing from Family::entry_points",
                fam.kernel_file()
            );
        }
    }
}

#[test]
fn rust_side_launches_only_listed_entry_points() {
    // Every source file of the crate that may name kernels: the losses' entry points come from
    // `smoothloss_core::op` (`Op::kernel_stem`, `kernel_name`); only the helpers' names are
    // string literals, in kernels.rs.
    let lib = [
        include_str!("../../src/lib.rs"),
        include_str!("../../src/device.rs"),
        include_str!("../../src/launch.rs"),
        include_str!("../../src/kernels.rs"),
        include_str!("../../src/cross_entropy.rs"),
        include_str!("../../src/box_loss.rs"),
        include_str!("../../src/regression.rs"),
        include_str!("../../src/binary.rs"),
    ]
    .concat();
    let all: Vec<&str> = Family::ALL.iter().flat_map(|f| f.entry_points()).collect();
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
        seen >= 4,
        "expected the helper kernels' names in src/kernels.rs, found {seen}"
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
                    fam.kernel_file()
                );
            }
            eprintln!(
                "compiled {} for {arch}: {} bytes of PTX",
                fam.kernel_file(),
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
                fam.kernel_file()
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

/// Every parameter struct's layout as Rust compiles it (`size_of`, `align_of`, `offset_of!` of
/// every field) is asserted in the source NVRTC compiles, and a layout that differs in one
/// field fails to compile there: the kernels' ABI cannot drift on one side only.
#[test]
fn params_layouts_are_checked_by_nvrtc() {
    // Every struct and field is asserted in the source of the family whose kernels take it.
    for l in params::layouts() {
        let fam = Family::ALL
            .into_iter()
            .find(|f| {
                params::family_layouts(*f)
                    .iter()
                    .any(|fl| fl.name == l.name)
            })
            .unwrap_or_else(|| panic!("{} is taken by no entry point", l.name));
        let src = fam.full_source();
        assert!(src.contains(&format!("struct {} {{", l.name)), "{}", l.name);
        assert!(src.contains(&format!("sizeof({}) == {}", l.name, l.size)));
        for (f, off, _) in &l.fields {
            assert!(
                src.contains(&format!("SL_OFFSETOF({}, {f}) == {off}", l.name)),
                "{}.{f}",
                l.name
            );
        }
    }
    if nvrtc_or_skip("parameter layout check").is_none() {
        return;
    }
    let compile = |src: String| {
        let opts = cudarc::nvrtc::CompileOptions {
            arch: Some("sm_90"),
            ..Default::default()
        };
        cudarc::nvrtc::compile_ptx_with_opts(src, opts)
    };
    // The Rust layouts compile against the .cu structs (the compile tests compile them for
    // every family and both architectures too).
    let fam = Family::Regression;
    let base = format!(
        "{}\n{}\n{}\n",
        kernels::prelude(),
        kernels::COMMON,
        fam.source()
    );
    compile(base.clone() + &params::layout_asserts(fam)).expect("the Rust layouts compile");
    // One field moved by 8 bytes, one struct 8 bytes larger: each fails, naming what differs.
    let mut moved = params::family_layouts(fam);
    let reg = moved.iter_mut().find(|l| l.name == "RegParams").unwrap();
    reg.fields[3].1 += 8;
    let mut grown = params::family_layouts(fam);
    grown[0].size += 8;
    for (layouts, want) in [
        (moved, "RegParams.param: offset"),
        (grown, "ReduceFinalParams: size"),
    ] {
        let err = compile(base.clone() + &params::layout_asserts_of(&layouts))
            .expect_err("a wrong layout compiled");
        let log = match err {
            cudarc::nvrtc::CompileError::CompileError { log, .. } => {
                log.to_string_lossy().into_owned()
            }
            other => panic!("{other:?}"),
        };
        assert!(log.contains(want), "{want}: {log}");
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
        .cross_entropy(
            cfg,
            Input::matrix(logits, rows, classes)
                .with_upstream(up)
                .with_grad(&mut g),
            tgt,
        )
        .map(Loss::into_values)
        .unwrap();
    let want = ReferenceBackend
        .cross_entropy(
            cfg,
            Input::matrix(logits, rows, classes)
                .with_upstream(up)
                .with_grad(&mut gr),
            tgt,
        )
        .map(Loss::into_values)
        .unwrap();
    assert_close(&format!("{what} loss"), &got, &want, 1e-4, 1e-5);
    assert_grad(&format!("{what} grad"), &g, &gr, 1e-3, 1e-5);
    let mut z = logits.to_vec();
    let got_ip = b
        .cross_entropy(
            cfg,
            Input::in_place(&mut z)
                .shaped(rows, classes)
                .with_upstream(up),
            tgt,
        )
        .map(Loss::into_values)
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

/// One launch of every kernel and cross-entropy plan on small, awkward inputs (ignored and
/// out-of-range targets, rows that are not a whole number of vectors, cluster ranks with no
/// class, in place, 16-bit logits, sizes that are not multiples of a block), for
/// `compute-sanitizer` (`gpu-bundle/run.sh` runs this test under memcheck, racecheck and
/// synccheck). It also checks each value against the reference, loosely.
#[test]
#[ignore = "needs a CUDA device"]
fn sanitizer_smoke() {
    use smoothloss_cuda::half::{bf16, f16};
    let b = backend!();
    let st = b.stream().clone();
    let mut rng = Rng::new(0x5a71);
    // Cross-entropy: forced plans (target, max) for 1, 2, 4, 8 blocks per row, re-reading, and
    // the warp-per-row layout.
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
            // The default budget: one warp per row, several rows per block (CE_WARP_ROWS).
            .chain([(1, 48 * 1024, 232_448)])
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
                    Io::Separate {
                        input: &zb_dev,
                        grad: &mut gb,
                    },
                    [rows, classes],
                    DeviceCeTargets::Classes(&t_dev),
                    DeviceUpstream::Scalar(1.0),
                )
                .unwrap()
                .to_host()
                .unwrap();
            assert!(v[0].is_finite(), "{v:?}");
            let zh: Vec<f16> = logits.iter().map(|&x| f16::from_f32(x)).collect();
            let mut zh_dev = st.clone_htod(&zh).unwrap();
            bk.cross_entropy_dev(
                &cfg,
                Io::InPlace(&mut zh_dev),
                [rows, classes],
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
        let z_dev = st.clone_htod(&logits).unwrap();
        let bad_dev = st.clone_htod(&bad).unwrap();
        let err = b
            .cross_entropy_dev(
                &CrossEntropy::new(),
                Io::Read(&z_dev),
                [rows, classes],
                DeviceCeTargets::Classes(&bad_dev),
                DeviceUpstream::Scalar(1.0),
            )
            .unwrap()
            .to_host()
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
            let cfg = BoxLoss::new(kind, format)
                .with_options(smoothloss_spec::random::box_options(kind, 0))
                .with_threshold_weight(0.3, 0.5);
            let mut g = vec![0f32; 4 * n];
            let got = b
                .box_loss(&cfg, Input::new(&pred).with_grad(&mut g), &target)
                .map(Loss::into_values)
                .unwrap();
            let want = ReferenceBackend
                .box_loss(&cfg, &pred, &target)
                .map(Loss::into_values)
                .unwrap();
            assert_close("smoke box", &got, &want, 1e-4, 1e-6);
        }
    }
    // In place (the gradient over the input, read first by the same thread), against the
    // separate gradient, bit for bit.
    let cfg = BoxLoss::new(BoxLossKind::Ciou, BoxFormat::Xyxy);
    let mut g = vec![0f32; 4 * n];
    let sep = b.box_loss(&cfg, Input::new(&pred).with_grad(&mut g), &target);
    let mut z = pred.clone();
    let ip = b.box_loss(&cfg, Input::in_place(&mut z), &target);
    assert_eq!(sep.unwrap(), ip.unwrap());
    assert_eq!(widen(&z), widen(&g), "box in place");
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
    let sep = b.smooth_l1(&SmoothL1::default(), Input::new(&x).with_grad(&mut g), &y);
    let mut z = x.clone();
    let ip = b.smooth_l1(&SmoothL1::default(), Input::in_place(&mut z), &y);
    assert_eq!(sep.unwrap(), ip.unwrap());
    assert_eq!(widen(&z), widen(&g), "smooth L1 in place");
    b.huber(
        &Huber {
            delta: 0.5,
            reduction: Reduction::Mean,
        },
        Input::new(&x).with_grad(&mut g),
        &y,
    )
    .map(Loss::into_values)
    .unwrap();
    b.bce_with_logits(
        &BceWithLogits {
            pos_weight: None,
            reduction: Reduction::Sum,
        },
        Input::new(&x).with_grad(&mut g),
        &y,
    )
    .map(Loss::into_values)
    .unwrap();
    b.sigmoid_focal(
        &SigmoidFocal {
            alpha: 0.25,
            gamma: 2.0,
            reduction: Reduction::Mean,
        },
        Input::new(&x).with_grad(&mut g),
        &y,
    )
    .map(Loss::into_values)
    .unwrap();
    dense::dense_dev_smoke(&b, &mut rng);
}

mod budget;
mod budget_elementwise;
mod buffers;
mod dense;
mod errors;
mod linear_ce_dev;
mod losses;
mod rows_dev;
mod sass;
mod vocab_parallel_dev;
