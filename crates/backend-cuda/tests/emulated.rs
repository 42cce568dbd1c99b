//! The CUDA kernels run on the CPU, against the f64 reference, without a GPU.
//!
//! Each kernel file is compiled by the host C++ compiler (`g++ -std=c++20`, or `$CXX`) together
//! with `tests/emu/host_emu.h`, a small emulation of the CUDA features the kernels use (one
//! std::thread per CUDA thread, barriers for `__syncthreads`, per-warp buffers for shuffles),
//! and `tests/emu/wrappers.inc`, which exports `emu_<kernel>(grid, block, smem, args...)`. The
//! launches below use the same launch geometry as the real ones (`smoothloss_cuda::geometry`)
//! and the same argument order, with host pointers. This checks the kernels' indexing, block
//! reductions and formulas; it does not check the GPU's arithmetic (FMA contraction, `expf`
//! ulps), timing, or the cudarc marshalling (the ignored tests in `gpu.rs` do).
//!
//! Without a C++20 compiler the tests print why and pass (they are only skipped; on this
//! project's machines g++ 12 is present).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use libloading::Library;
use smoothloss_core::{
    BceWithLogits, BinaryOps, BoxFormat, BoxLoss, BoxLossKind, BoxLossOps, CeTargets, CrossEntropy,
    CrossEntropyOps, Huber, Reduction, ReferenceBackend, RegressionOps, SigmoidFocal, SmoothL1,
    Upstream,
};
use smoothloss_cuda::geometry::{
    CE_ROWS_THREADS, CE_SMEM_TARGET, CePlan, ELEM_THREADS, REDUCE_THREADS, ce_plan, ce_rows_grid,
    elem_grid,
};
use smoothloss_cuda::{Family, kernels};
use smoothloss_spec::random::Rng;

const NULL_F64: *const f64 = std::ptr::null();

fn build_dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("smoothloss-emu-{}", std::process::id()));
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

/// Writes the emulation header and wrappers (embedded, so the test executable also works
/// away from this checkout, as in `gpu-bundle/`) into `dir`.
fn write_emu_support(dir: &Path) -> std::io::Result<()> {
    std::fs::write(dir.join("host_emu.h"), include_str!("emu/host_emu.h"))?;
    std::fs::write(dir.join("wrappers.inc"), include_str!("emu/wrappers.inc"))
}

fn family_define(f: Family) -> &'static str {
    match f {
        Family::CrossEntropy => "SL_EMU_CROSS_ENTROPY",
        Family::BoxLoss => "SL_EMU_BOX_LOSS",
        Family::Regression => "SL_EMU_REGRESSION",
        Family::Binary => "SL_EMU_BINARY",
    }
}

/// Compiles every family once per test process; `Err` says why it could not.
fn libs() -> &'static Result<HashMap<Family, Library>, String> {
    static LIBS: OnceLock<Result<HashMap<Family, Library>, String>> = OnceLock::new();
    LIBS.get_or_init(|| {
        let cxx = std::env::var("CXX").unwrap_or_else(|_| "g++".into());
        let dir = build_dir();
        write_emu_support(&dir).map_err(|e| e.to_string())?;
        let mut out = HashMap::new();
        for fam in Family::ALL {
            let src = format!(
                "#include \"host_emu.h\"\n{}\n{}\n#define {} 1\n#include \"wrappers.inc\"\n",
                kernels::COMMON,
                fam.source(),
                family_define(fam)
            );
            let cpp = dir.join(format!("{:?}.cpp", fam));
            let so = dir.join(format!("lib{:?}.so", fam));
            std::fs::write(&cpp, src).map_err(|e| e.to_string())?;
            let res = Command::new(&cxx)
                .args(["-std=c++20", "-O1", "-shared", "-fPIC", "-pthread", "-w"])
                .arg("-I")
                .arg(&dir)
                .arg("-o")
                .arg(&so)
                .arg(&cpp)
                .output()
                .map_err(|e| format!("cannot run {cxx}: {e}"))?;
            if !res.status.success() {
                return Err(format!(
                    "{cxx} failed on {}:\n{}",
                    fam.file_name(),
                    String::from_utf8_lossy(&res.stderr)
                ));
            }
            // SAFETY: the library was just built from the kernel sources and the emulation
            // wrappers; loading it runs no initialisers with preconditions.
            let lib = unsafe { Library::new(&so) }.map_err(|e| e.to_string())?;
            out.insert(fam, lib);
        }
        Ok(out)
    })
}

/// The compiled emulation, or `None` (after printing why) when no C++20 compiler works here.
fn emu() -> Option<&'static HashMap<Family, Library>> {
    match libs() {
        Ok(l) => Some(l),
        Err(e) => {
            // A missing compiler only skips (unless SMOOTHLOSS_REQUIRE_CXX is set, as in
            // `.ci/run`); a compile error of the kernels must fail.
            if e.starts_with("cannot run") && std::env::var_os("SMOOTHLOSS_REQUIRE_CXX").is_none() {
                eprintln!("SKIPPED: CPU emulation: {e}");
                None
            } else {
                panic!("{e}");
            }
        }
    }
}

macro_rules! sym {
    ($lib:expr, $name:literal, $ty:ty) => {{
        // SAFETY: `$ty` is the signature of the wrapper `$name` in tests/emu/wrappers.inc.
        let s: libloading::Symbol<'_, $ty> = unsafe { $lib.get($name) }.expect("symbol");
        s
    }};
}

type ReduceFn = unsafe extern "C" fn(u32, u32, u32, *const f64, i64, f64, *const f64, *mut f64);

fn reduce_final(lib: &Library, partials: &[f64], divisor: f64, denom: Option<&[f64]>) -> f64 {
    let f = sym!(lib, b"emu_sl_reduce_final", ReduceFn);
    let mut out = [0.0f64];
    // SAFETY: partials has `len` doubles, denom (if any) at least one, out one.
    unsafe {
        f(
            1,
            REDUCE_THREADS,
            0,
            partials.as_ptr(),
            partials.len() as i64,
            divisor,
            denom.map_or(NULL_F64, |d| d.as_ptr()),
            out.as_mut_ptr(),
        )
    };
    out[0]
}

fn assert_close(what: &str, got: &[f64], want: &[f64], rel: f64, abs: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let ok = g == w || (g.is_nan() && w.is_nan()) || (g - w).abs() <= abs + rel * w.abs();
        assert!(ok, "{what}[{i}]: got {g}, want {w}");
    }
}

fn assert_grad(what: &str, got: &[f32], want: &[f32], rel: f64, frac: f64) {
    let scale = want.iter().fold(0.0f64, |m, &w| m.max(f64::from(w).abs()));
    let g: Vec<f64> = got.iter().map(|&x| f64::from(x)).collect();
    let w: Vec<f64> = want.iter().map(|&x| f64::from(x)).collect();
    assert_close(what, &g, &w, rel, frac * scale);
}

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

const REDUCTIONS: [Reduction; 3] = [Reduction::None, Reduction::Mean, Reduction::Sum];

// ---------------------------------------------------------------- cross-entropy

type PrepareFn = unsafe extern "C" fn(
    u32,
    u32,
    u32,
    *const i64,
    i64,
    i64,
    i64,
    *const f32,
    i64,
    i32,
    *mut f64,
    *mut i64,
    *mut f64,
    *mut i64,
    *mut u32,
);
type ReduceRowsFn = unsafe extern "C" fn(
    u32,
    u32,
    u32,
    *const f64,
    i64,
    i64,
    f64,
    *const f64,
    *mut f64,
    *mut f64,
    *mut u32,
);

/// `ce_prepare` as `CudaBackend::ce_launch` launches it (ce_rows_grid's blocks): returns the
/// stats `[denominator, 1 / denominator]` and the target check `[row or -1, target]`.
fn emu_prepare(
    lib: &Library,
    targets: *const i64,
    rows: usize,
    classes: usize,
    weights: *const f32,
    ignore: i64,
    has_ignore: i32,
) -> ([f64; 2], [i64; 2]) {
    let prepare = sym!(lib, b"emu_ce_prepare", PrepareFn);
    let (blocks, chunk) = ce_rows_grid(rows);
    // Poisoned, as the real launch leaves them uninitialised: the kernel must write both.
    let mut stats = [f64::NAN; 2];
    let mut check = [i64::MIN; 2];
    let mut part_w = vec![0.0f64; blocks as usize];
    let mut part_bad = vec![0i64; blocks as usize];
    let mut counter = 0u32;
    // SAFETY: buffer sizes as in the real launch: targets `rows` (or null), weights `classes`
    // (or null), stats and check 2 each, the partials one per block, one counter at 0.
    unsafe {
        prepare(
            blocks,
            CE_ROWS_THREADS,
            0,
            targets,
            rows as i64,
            chunk as i64,
            classes as i64,
            weights,
            ignore,
            has_ignore,
            stats.as_mut_ptr(),
            check.as_mut_ptr(),
            part_w.as_mut_ptr(),
            part_bad.as_mut_ptr(),
            &mut counter,
        )
    };
    assert_eq!(counter, 0, "the last block resets the counter");
    (stats, check)
}

/// `ce_reduce_rows` as `CudaBackend::ce_launch` launches it: sum of `values`, divided by
/// `denom[0]` when given.
fn emu_reduce_rows(lib: &Library, values: &[f64], denom: Option<&[f64]>) -> f64 {
    let reduce = sym!(lib, b"emu_ce_reduce_rows", ReduceRowsFn);
    let (blocks, chunk) = ce_rows_grid(values.len());
    let mut out = f64::NAN; // uninitialised in the real launch
    let mut part = vec![0.0f64; blocks as usize];
    let mut counter = 0u32;
    // SAFETY: values has `len` doubles, denom at least one, out one, part one per block.
    unsafe {
        reduce(
            blocks,
            CE_ROWS_THREADS,
            0,
            values.as_ptr(),
            values.len() as i64,
            chunk as i64,
            1.0,
            denom.map_or(NULL_F64, |d| d.as_ptr()),
            &mut out,
            part.as_mut_ptr(),
            &mut counter,
        )
    };
    assert_eq!(counter, 0, "the last block resets the counter");
    out
}
type CeFn<T> = unsafe extern "C" fn(
    u32,
    u32,
    u32,
    u32,
    *mut T,
    *mut T,
    i32,
    *const i64,
    *const T,
    i64,
    i64,
    *const f32,
    f64,
    i64,
    i32,
    f64,
    *const f64,
    f64,
    *const f64,
    *mut f64,
    i32,
);

/// The H200's opt-in shared memory per block (bytes), for plans as on that device.
const SMEM_OPT_IN_H200: usize = 232_448;

/// How the emulated launch is planned: shared-memory target and limit of one block.
#[derive(Clone, Copy, Debug)]
struct Budget {
    target: usize,
    max: usize,
}

/// The plan a real launch would use on an H200 (clusters of up to 8 blocks).
const H200: Budget = Budget {
    target: CE_SMEM_TARGET,
    max: SMEM_OPT_IN_H200,
};

/// The plan of a launch over these host buffers, as `CudaBackend::ce_plan` makes it.
fn plan_for(classes: usize, elem: usize, bufs: &[usize], budget: Budget) -> CePlan {
    let aligned16 = bufs.iter().all(|&p| p % 16 == 0);
    ce_plan(classes, elem, aligned16, 8, budget.target, budget.max)
}

/// The launch sequence of `CudaBackend::ce_launch` (f32 logits) on host buffers, planned on
/// an H200. Returns the loss values and the device-side target check `[row or -1, target]`.
#[allow(clippy::too_many_arguments)]
fn emu_ce(
    lib: &Library,
    cfg: &CrossEntropy,
    logits: &mut [f32],
    rows: usize,
    classes: usize,
    targets: CeTargets<'_, f32>,
    upstream: Upstream<'_>,
    grad: Option<&mut [f32]>,
    in_place: bool,
) -> (Vec<f64>, [i64; 2]) {
    emu_ce_with(
        lib, cfg, logits, rows, classes, targets, upstream, grad, in_place, H200,
    )
    .0
}

/// [`emu_ce`] under another shared-memory budget; also returns the plan used.
#[allow(clippy::too_many_arguments)]
fn emu_ce_with(
    lib: &Library,
    cfg: &CrossEntropy,
    logits: &mut [f32],
    rows: usize,
    classes: usize,
    targets: CeTargets<'_, f32>,
    upstream: Upstream<'_>,
    grad: Option<&mut [f32]>,
    in_place: bool,
    budget: Budget,
) -> ((Vec<f64>, [i64; 2]), CePlan) {
    let ce = sym!(lib, b"emu_ce_fwd_bwd_f32", CeFn<f32>);
    let w32: Option<Vec<f32>> = cfg
        .class_weights
        .as_ref()
        .map(|w| w.iter().map(|&v| v as f32).collect());
    let wsum: f64 = w32
        .as_ref()
        .map_or(classes as f64, |w| w.iter().map(|&v| f64::from(v)).sum());
    let w_ptr = w32.as_ref().map_or(std::ptr::null(), |w| w.as_ptr());
    let mut row_loss = vec![f64::NAN; rows]; // uninitialised in the real launch
    let ignore = cfg.ignore_index.unwrap_or(0);
    let has_ignore = i32::from(cfg.ignore_index.is_some());
    let (t_ptr, p_ptr) = match targets {
        CeTargets::Classes(t) => (t.as_ptr(), std::ptr::null()),
        CeTargets::Probs(p) => (std::ptr::null(), p.as_ptr()),
    };
    let (stats, check) = emu_prepare(lib, t_ptr, rows, classes, w_ptr, ignore, has_ignore);
    let (up_scalar, up_ptr) = match upstream {
        Upstream::Scalar(s) => (s, NULL_F64),
        Upstream::PerElement(u) => (0.0, u.as_ptr()),
    };
    let g_ptr = grad.map_or(std::ptr::null_mut(), |g| g.as_mut_ptr());
    let g_ptr = if in_place {
        std::ptr::null_mut()
    } else {
        g_ptr
    };
    let plan = plan_for(
        classes,
        4,
        &[logits.as_ptr() as usize, g_ptr as usize, p_ptr as usize],
        budget,
    );
    let s_ptr = if cfg.reduction == Reduction::Mean {
        stats.as_ptr()
    } else {
        NULL_F64
    };
    // SAFETY: logits, grad and probs have rows*classes elements, row_loss and up `rows`; the
    // plan's geometry is the real launch's.
    unsafe {
        ce(
            plan.grid(rows).expect("grid"),
            plan.threads,
            plan.smem_bytes,
            plan.cluster,
            logits.as_mut_ptr(),
            g_ptr,
            i32::from(in_place),
            t_ptr,
            p_ptr,
            classes as i64,
            plan.slice as i64,
            w_ptr,
            wsum,
            ignore,
            has_ignore,
            cfg.label_smoothing,
            s_ptr,
            up_scalar,
            up_ptr,
            row_loss.as_mut_ptr(),
            plan.flags,
        )
    };
    let values = match cfg.reduction {
        Reduction::None => row_loss,
        Reduction::Sum => vec![emu_reduce_rows(lib, &row_loss, None)],
        Reduction::Mean => vec![emu_reduce_rows(lib, &row_loss, Some(&stats))],
    };
    ((values, check), plan)
}

#[test]
fn cross_entropy_kernels_match_the_reference_on_the_cpu() {
    let Some(libs) = emu() else { return };
    let lib = &libs[&Family::CrossEntropy];
    let mut rng = Rng::new(0xce);
    // Row in shared memory (37, 300 classes) and the re-reading path (10,241 classes).
    for &(rows, classes) in &[(5usize, 37usize), (3, 300), (2, 10_241)] {
        // (Each emulated launch starts up to 1024 OS threads: keep the case count small.)
        let logits: Vec<f32> = (0..rows * classes)
            .map(|_| rng.range_f32(-6.0, 6.0))
            .collect();
        let mut targets: Vec<i64> = (0..rows).map(|_| rng.below(classes) as i64).collect();
        targets[1] = -100;
        let probs = random_probs(&mut rng, rows, classes);
        let weights: Vec<f64> = (0..classes).map(|_| rng.unit() * 2.0).collect();
        let up_rows: Vec<f64> = (0..rows).map(|_| rng.unit() - 0.5).collect();
        for r in REDUCTIONS {
            for cfg in [
                CrossEntropy::new().with_reduction(r),
                CrossEntropy::new()
                    .with_label_smoothing(0.2)
                    .with_class_weights(weights.clone())
                    .with_reduction(r),
            ] {
                let up = if r == Reduction::None {
                    Upstream::PerElement(&up_rows)
                } else {
                    Upstream::Scalar(1.5)
                };
                for tgt in [CeTargets::Classes(&targets), CeTargets::Probs(&probs)] {
                    let what = format!("CE {rows}x{classes} {r:?} eps {}", cfg.label_smoothing);
                    let mut z = logits.clone();
                    let mut g = vec![0f32; rows * classes];
                    let (got, check) = emu_ce(
                        lib,
                        &cfg,
                        &mut z,
                        rows,
                        classes,
                        tgt,
                        up,
                        Some(&mut g),
                        false,
                    );
                    assert_eq!(check[0], -1, "{what}: target check");
                    let mut gr = vec![0f32; rows * classes];
                    let want = ReferenceBackend
                        .cross_entropy(&cfg, &logits, rows, classes, tgt, up, Some(&mut gr))
                        .unwrap();
                    assert_close(&format!("{what} loss"), &got, &want, 1e-5, 1e-6);
                    assert_grad(&format!("{what} grad"), &g, &gr, 1e-4, 1e-6);
                    assert_eq!(z, logits, "{what}: logits changed");
                    if r != Reduction::None {
                        continue;
                    }
                    // In place: the same loss, the same gradient written over the logits.
                    let (got_ip, _) = emu_ce(lib, &cfg, &mut z, rows, classes, tgt, up, None, true);
                    assert_eq!(got_ip, got, "{what}: in-place loss");
                    assert_eq!(z, g, "{what}: in-place gradient");
                }
            }
        }
    }
}

/// Every launch shape of the cross-entropy kernel against the reference: rows split over
/// clusters of 2, 4 and 8 blocks (small shared-memory targets force them), one block per row,
/// the re-reading path (no slice fits), 16-byte vectors and scalar accesses (a buffer off a
/// 16-byte boundary, or a row that is not a whole number of vectors), in place too.
#[test]
fn cross_entropy_clusters_and_access_paths_on_the_cpu() {
    let Some(libs) = emu() else { return };
    let lib = &libs[&Family::CrossEntropy];
    let mut rng = Rng::new(0xc1);
    let rows = 3usize;
    let mut planned = Vec::new();
    // (Each launch starts rows x cluster x threads OS threads: each launch shape runs two of
    // the four (config, target kind) pairs, rotating, so every pair meets several shapes.)
    let mut turn = 0usize;
    // 9 classes over 8 blocks: slices of 2, so ranks 5..7 hold no class at all.
    for classes in [9usize, 37, 1000, 1001] {
        let vec_rows = classes % 4 == 0;
        // (cluster wanted, budget): the target fits exactly the slice of that cluster size.
        let exact = |k: usize| {
            let unit = if vec_rows { 4 } else { 1 };
            1024 + classes.div_ceil(k).div_ceil(unit) * unit * 4
        };
        let mut cases: Vec<(u32, Budget)> = [1usize, 2, 4, 8]
            .iter()
            .map(|&k| {
                let t = exact(k);
                (k as u32, Budget { target: t, max: t })
            })
            .collect();
        // Nothing fits: one block per row re-reads the row from global memory.
        cases.push((
            0,
            Budget {
                target: 1030,
                max: 1030,
            },
        ));
        let mut store: Vec<f32> = (0..rows * classes + 1)
            .map(|_| rng.range_f32(-5.0, 5.0))
            .collect();
        let targets: Vec<i64> = vec![rng.below(classes) as i64, -100, (classes - 1) as i64];
        let probs = random_probs(&mut rng, rows, classes);
        let weights: Vec<f64> = (0..classes).map(|_| 0.25 + rng.unit()).collect();
        let up_rows: Vec<f64> = (0..rows).map(|_| rng.unit() - 0.5).collect();
        for (want_k, budget) in cases {
            let offsets: &[usize] = if vec_rows { &[0, 1] } else { &[0] };
            for &offset in offsets {
                // offset 1: the logits start 4 bytes past the allocation (off 16 bytes).
                let n = rows * classes;
                let logits: Vec<f32> = store[offset..offset + n].to_vec();
                let cfgs = [
                    (
                        CrossEntropy::new().with_label_smoothing(0.1),
                        Upstream::Scalar(1.0),
                    ),
                    (
                        CrossEntropy::new()
                            .with_class_weights(weights.clone())
                            .with_label_smoothing(0.3)
                            .with_reduction(Reduction::None),
                        Upstream::PerElement(&up_rows),
                    ),
                ];
                let tgts = [CeTargets::Classes(&targets), CeTargets::Probs(&probs)];
                for _ in 0..2 {
                    let (cfg, up) = cfgs[turn % 2].clone();
                    let tgt = tgts[(turn / 2) % 2];
                    turn += 1;
                    {
                        let what = format!(
                            "CE {rows}x{classes} want K {want_k} offset {offset} {:?} probs {}",
                            cfg.reduction,
                            matches!(tgt, CeTargets::Probs(_))
                        );
                        store[offset..offset + n].copy_from_slice(&logits);
                        let mut g = vec![0f32; n];
                        let z = &mut store[offset..offset + n];
                        let ((got, _), plan) = emu_ce_with(
                            lib,
                            &cfg,
                            z,
                            rows,
                            classes,
                            tgt,
                            up,
                            Some(&mut g),
                            false,
                            budget,
                        );
                        let aligned = (z.as_ptr() as usize).is_multiple_of(16)
                            && (g.as_ptr() as usize).is_multiple_of(16)
                            && match tgt {
                                CeTargets::Probs(p) => (p.as_ptr() as usize).is_multiple_of(16),
                                CeTargets::Classes(_) => true,
                            };
                        assert_eq!(plan.flags & 2 != 0, aligned && vec_rows, "{what}: {plan:?}");
                        if want_k == 0 {
                            assert_eq!((plan.cluster, plan.flags & 1), (1, 0), "{what}: {plan:?}");
                        } else {
                            assert_eq!(
                                (plan.cluster, plan.flags & 1),
                                (want_k, 1),
                                "{what}: {plan:?}"
                            );
                        }
                        planned.push((plan.cluster, plan.flags));
                        let mut gr = vec![0f32; n];
                        let want = ReferenceBackend
                            .cross_entropy(&cfg, &logits, rows, classes, tgt, up, Some(&mut gr))
                            .unwrap();
                        assert_close(&format!("{what} loss"), &got, &want, 1e-5, 1e-6);
                        assert_grad(&format!("{what} grad"), &g, &gr, 1e-4, 1e-6);
                        assert_eq!(
                            &store[offset..offset + n],
                            &logits[..],
                            "{what}: logits changed"
                        );
                        // In place: the same loss, the gradient written over the logits.
                        let z = &mut store[offset..offset + n];
                        let ((got_ip, _), plan_ip) =
                            emu_ce_with(lib, &cfg, z, rows, classes, tgt, up, None, true, budget);
                        assert_eq!(plan_ip, plan, "{what}: in-place plan");
                        assert_eq!(got_ip, got, "{what}: in-place loss");
                        assert_eq!(
                            &store[offset..offset + n],
                            &g[..],
                            "{what}: in-place gradient"
                        );
                    }
                }
            }
        }
    }
    // Every path was taken: clusters 1..8 with and without vectors, and the re-read path.
    for k in [1, 2, 4, 8] {
        for flags in [1, 3] {
            assert!(
                planned.contains(&(k, flags)),
                "no launch with cluster {k} flags {flags}"
            );
        }
    }
    assert!(planned.contains(&(1, 0)) && planned.contains(&(1, 2)));
}

#[test]
fn cross_entropy_edge_rows_on_the_cpu() {
    let Some(libs) = emu() else { return };
    let lib = &libs[&Family::CrossEntropy];
    let (rows, classes) = (5usize, 4usize);
    let inf = f32::INFINITY;
    #[rustfmt::skip]
    let logits = vec![
        0.0, f32::NAN, 1.0, 2.0,   // NaN: NaN loss and gradient
        -inf, 0.0, 1.0, -inf,      // -inf logits: probability 0
        inf, 0.0, 0.0, 0.0,        // +inf: NaN
        1.0, 2.0, 3.0, 4.0,        // ignored
        1.0, 1.0, 1.0, 1.0,
    ];
    let targets = [2i64, 2, 1, -100, 3];
    for cfg in [
        CrossEntropy::new().with_reduction(Reduction::None),
        CrossEntropy::new()
            .with_label_smoothing(0.1)
            .with_reduction(Reduction::None),
    ] {
        let mut z = logits.clone();
        let mut g = vec![0f32; rows * classes];
        let (got, _) = emu_ce(
            lib,
            &cfg,
            &mut z,
            rows,
            classes,
            CeTargets::Classes(&targets),
            Upstream::ONE,
            Some(&mut g),
            false,
        );
        let mut gr = vec![0f32; rows * classes];
        let want = ReferenceBackend
            .cross_entropy(
                &cfg,
                &logits,
                rows,
                classes,
                CeTargets::Classes(&targets),
                Upstream::ONE,
                Some(&mut gr),
            )
            .unwrap();
        assert_close("edge loss", &got, &want, 1e-6, 1e-6);
        assert_grad("edge grad", &g, &gr, 1e-5, 1e-6);
    }
    // All rows ignored under mean: NaN loss, zero gradient.
    let cfg = CrossEntropy::new();
    let mut z = vec![0.5f32; 2 * classes];
    let mut g = vec![1f32; 2 * classes];
    let (got, _) = emu_ce(
        lib,
        &cfg,
        &mut z,
        2,
        classes,
        CeTargets::Classes(&[-100, -100]),
        Upstream::ONE,
        Some(&mut g),
        false,
    );
    assert!(got[0].is_nan(), "{got:?}");
    assert!(g.iter().all(|&x| x == 0.0), "{g:?}");
}

#[test]
fn out_of_range_targets_are_flagged_by_ce_prepare_on_the_cpu() {
    let Some(libs) = emu() else { return };
    let lib = &libs[&Family::CrossEntropy];
    let (rows, classes) = (2000usize, 3usize);
    let mut targets: Vec<i64> = (0..rows).map(|i| (i % 3) as i64).collect();
    targets[1500] = 3;
    targets[1777] = -5;
    targets[20] = -100;
    let mut z = vec![0.0f32; rows * classes];
    let (_, check) = emu_ce(
        lib,
        &CrossEntropy::new(),
        &mut z,
        rows,
        classes,
        CeTargets::Classes(&targets),
        Upstream::ONE,
        None,
        false,
    );
    assert_eq!(check, [1500, 3]);
}

/// Mean and sum over enough rows that `ce_prepare` and `ce_reduce_rows` run several blocks
/// (the last one partial) and combine them in the last block.
#[test]
fn many_rows_mean_and_sum_on_the_cpu() {
    let Some(libs) = emu() else { return };
    let lib = &libs[&Family::CrossEntropy];
    let mut rng = Rng::new(0x2600);
    let (rows, classes) = (1100usize, 3usize);
    assert_eq!(ce_rows_grid(rows), (3, 367));
    let logits: Vec<f32> = (0..rows * classes)
        .map(|_| rng.range_f32(-3.0, 3.0))
        .collect();
    let targets: Vec<i64> = (0..rows)
        .map(|i| {
            if i % 7 == 0 {
                -100
            } else {
                rng.below(classes) as i64
            }
        })
        .collect();
    for r in [Reduction::Mean, Reduction::Sum] {
        let cfg = CrossEntropy::new()
            .with_class_weights(vec![0.5, 1.0, 2.0])
            .with_label_smoothing(0.1)
            .with_reduction(r);
        let mut z = logits.clone();
        let mut g = vec![0f32; rows * classes];
        let tgt = CeTargets::Classes(&targets);
        let (got, check) = emu_ce(
            lib,
            &cfg,
            &mut z,
            rows,
            classes,
            tgt,
            Upstream::ONE,
            Some(&mut g),
            false,
        );
        assert_eq!(check, [-1, 0]);
        let mut gr = vec![0f32; rows * classes];
        let want = ReferenceBackend
            .cross_entropy(
                &cfg,
                &logits,
                rows,
                classes,
                tgt,
                Upstream::ONE,
                Some(&mut gr),
            )
            .unwrap();
        // f32 softmax against the f64 reference; a lost block of rows would be off by ~1/3.
        assert_close(&format!("{r:?} loss"), &got, &want, 1e-6, 0.0);
        assert_grad(&format!("{r:?} grad"), &g, &gr, 1e-4, 1e-6);
    }
}

#[test]
fn half_precision_cross_entropy_on_the_cpu() {
    use smoothloss_cuda::half::{bf16, f16};
    let Some(libs) = emu() else { return };
    let lib = &libs[&Family::CrossEntropy];
    let ce_b = sym!(lib, b"emu_ce_fwd_bwd_bf16", CeFn<bf16>);
    let ce_h = sym!(lib, b"emu_ce_fwd_bwd_f16", CeFn<f16>);
    let mut rng = Rng::new(16);
    // 500 classes: scalar accesses (not a whole number of 16-byte vectors); 512: vectors of 8,
    // in one block per row and split over a cluster of 4 (2 KiB of shared memory per block).
    let tiny = Budget {
        target: 1024 + 256,
        max: SMEM_OPT_IN_H200,
    };
    for (classes, budget, want_cluster, want_vec) in [
        (500usize, H200, 1u32, false),
        (512, H200, 1, true),
        (512, tiny, 4, true),
    ] {
        let rows = 3usize;
        let logits: Vec<f32> = (0..rows * classes)
            .map(|_| rng.range_f32(-4.0, 4.0))
            .collect();
        let targets: Vec<i64> = (0..rows).map(|_| rng.below(classes) as i64).collect();
        let cfg = CrossEntropy::new().with_label_smoothing(0.1);
        let (stats, _) = emu_prepare(
            lib,
            targets.as_ptr(),
            rows,
            classes,
            std::ptr::null(),
            -100,
            1,
        );
        let reference = |rounded: &[f32]| {
            let mut gr = vec![0f32; rows * classes];
            let v = ReferenceBackend
                .cross_entropy(
                    &cfg,
                    rounded,
                    rows,
                    classes,
                    CeTargets::Classes(&targets),
                    Upstream::ONE,
                    Some(&mut gr),
                )
                .unwrap();
            (v[0], gr)
        };
        macro_rules! run {
            ($ty:ty, $f:expr) => {{
                let mut z: Vec<$ty> = logits.iter().map(|&x| <$ty>::from_f32(x)).collect();
                let mut g: Vec<$ty> = vec![<$ty>::ZERO; rows * classes];
                let mut row_loss = vec![f64::NAN; rows]; // uninitialised in the real launch
                let plan = plan_for(
                    classes,
                    2,
                    &[z.as_ptr() as usize, g.as_ptr() as usize],
                    budget,
                );
                // SAFETY: as in emu_ce, with 2-byte elements.
                unsafe {
                    $f(
                        plan.grid(rows).expect("grid"),
                        plan.threads,
                        plan.smem_bytes,
                        plan.cluster,
                        z.as_mut_ptr(),
                        g.as_mut_ptr(),
                        0,
                        targets.as_ptr(),
                        std::ptr::null(),
                        classes as i64,
                        plan.slice as i64,
                        std::ptr::null(),
                        classes as f64,
                        -100,
                        1,
                        0.1,
                        stats.as_ptr(),
                        1.0,
                        NULL_F64,
                        row_loss.as_mut_ptr(),
                        plan.flags,
                    )
                };
                assert_eq!(
                    (plan.cluster, plan.flags & 2 != 0),
                    (want_cluster, want_vec),
                    "{plan:?}"
                );
                let loss = emu_reduce_rows(lib, &row_loss, Some(&stats));
                let rounded: Vec<f32> = z.iter().map(|x| x.to_f32()).collect();
                let (want, gr) = reference(&rounded);
                assert_close(stringify!($ty), &[loss], &[want], 1e-5, 1e-6);
                let g32: Vec<f32> = g.iter().map(|x| x.to_f32()).collect();
                assert_grad(stringify!($ty), &g32, &gr, 1e-2, 1e-3);
            }};
        }
        run!(bf16, ce_b);
        run!(f16, ce_h);
    }
}

/// Binary targets outside [0, 1] (NaN included) are flagged on the device: the smallest such
/// index (whichever thread or block sees it first) and its value; none for valid targets.
#[test]
fn binary_targets_outside_0_1_are_flagged_on_the_cpu() {
    type CheckFn = unsafe extern "C" fn(u32, u32, u32, *const f32, *mut u64);
    let Some(libs) = emu() else { return };
    let lib = &libs[&Family::Binary];
    let bce = sym!(lib, b"emu_bin_bce_with_logits", BceFn);
    let foc = sym!(lib, b"emu_bin_sigmoid_focal", FocalFn);
    let fetch = sym!(lib, b"emu_bin_target_check", CheckFn);
    let n = 3000usize;
    let x = vec![0.25f32; n];
    let blocks = elem_grid(n);
    for (bad, want) in [
        (vec![], None),
        (
            vec![(2900usize, 1.5f32), (1700, -0.25), (2999, f32::NAN)],
            Some((1700u64, -0.25f64)),
        ),
        (vec![(2999, f32::NAN)], Some((2999, f64::NAN))),
        (vec![(0, 1.0000001)], Some((0, f64::from(1.0000001f32)))),
    ] {
        let mut y = vec![0.5f32; n];
        y[10] = 0.0;
        y[11] = 1.0; // the bounds themselves are valid
        for &(i, v) in &bad {
            y[i] = v;
        }
        for focal in [false, true] {
            let mut partials = vec![0.0f64; blocks as usize];
            let mut check = [0u64; 2];
            // SAFETY: x, y have n elements, partials one per block, check two words; losses
            // and grad are null (sum reduction, no gradient).
            unsafe {
                if focal {
                    foc(
                        blocks,
                        ELEM_THREADS,
                        0,
                        x.as_ptr(),
                        y.as_ptr(),
                        n as i64,
                        0.25,
                        2.0,
                        1.0,
                        NULL_F64,
                        1.0,
                        std::ptr::null_mut(),
                        partials.as_mut_ptr(),
                        std::ptr::null_mut(),
                        check.as_mut_ptr(),
                    );
                } else {
                    bce(
                        blocks,
                        ELEM_THREADS,
                        0,
                        x.as_ptr(),
                        y.as_ptr(),
                        n as i64,
                        NULL_F64,
                        1,
                        1.0,
                        NULL_F64,
                        1.0,
                        std::ptr::null_mut(),
                        partials.as_mut_ptr(),
                        std::ptr::null_mut(),
                        check.as_mut_ptr(),
                    );
                }
                fetch(1, 32, 0, y.as_ptr(), check.as_mut_ptr());
            }
            match want {
                None => assert_eq!(check, [0, 0], "valid targets flagged"),
                Some((i, v)) => {
                    assert_eq!(!check[0], i, "{bad:?}: first bad index");
                    let got = f64::from_bits(check[1]);
                    assert!(got == v || (got.is_nan() && v.is_nan()), "{got} vs {v}");
                }
            }
        }
    }
}

// ---------------------------------------------------------------- box losses

type BoxFn = unsafe extern "C" fn(
    u32,
    u32,
    u32,
    *const f32,
    *const f32,
    i64,
    i32,
    i32,
    f64,
    i32,
    f64,
    f64,
    f64,
    *const f64,
    f64,
    *mut f64,
    *mut f64,
    *mut f32,
);
type IouFn = unsafe extern "C" fn(u32, u32, u32, *const f32, *const f32, i64, i64, i32, *mut f32);

fn format_code(f: BoxFormat) -> i32 {
    match f {
        BoxFormat::Xyxy => 0,
        BoxFormat::Xywh => 1,
        BoxFormat::Cxcywh => 2,
    }
}

#[test]
fn box_kernels_match_the_reference_on_the_cpu() {
    let Some(libs) = emu() else { return };
    let lib = &libs[&Family::BoxLoss];
    let f = sym!(lib, b"emu_box_loss_fwd_bwd", BoxFn);
    let mut rng = Rng::new(0xb0);
    let n = 300usize;
    let mut pred = Vec::new();
    let mut target = Vec::new();
    for i in 0..n {
        let (x, y) = (rng.range_f32(0.0, 40.0), rng.range_f32(0.0, 40.0));
        let (w, h) = (rng.range_f32(0.5, 15.0), rng.range_f32(0.5, 15.0));
        target.extend_from_slice(&[x, y, x + w, y + h]);
        match i % 7 {
            0 => pred.extend_from_slice(&[x, y, x + w, y + h]),
            1 => pred.extend_from_slice(&[x, y - 2.0, x + w, y + h + 1.0]),
            2 => pred.extend_from_slice(&[x + 100.0, y, x + 101.0, y + 1.0]),
            3 => pred.extend_from_slice(&[x, y, x, y + 3.0]),
            _ => {
                let (px, py) = (x + rng.range_f32(-4.0, 4.0), y + rng.range_f32(-4.0, 4.0));
                pred.extend_from_slice(&[
                    px,
                    py,
                    px + rng.range_f32(0.5, 15.0),
                    py + rng.range_f32(0.5, 15.0),
                ]);
            }
        }
    }
    pred[4 * 5 + 1] = f32::NAN;
    let up: Vec<f64> = (0..n).map(|_| rng.unit()).collect();
    for kind in BoxLossKind::ALL {
        for format in [BoxFormat::Xyxy, BoxFormat::Xywh, BoxFormat::Cxcywh] {
            for r in REDUCTIONS {
                let mut cfg = BoxLoss::new(kind, format).with_reduction(r);
                if r == Reduction::Sum {
                    cfg = cfg.with_threshold_weight(0.4, 0.5);
                }
                let upstream = if r == Reduction::None {
                    Upstream::PerElement(&up)
                } else {
                    Upstream::Scalar(2.0)
                };
                let (up_scalar, up_ptr) = match upstream {
                    Upstream::Scalar(s) => (s, NULL_F64),
                    Upstream::PerElement(u) => (0.0, u.as_ptr()),
                };
                let scale = if r == Reduction::Mean {
                    1.0 / n as f64
                } else {
                    1.0
                };
                let blocks = elem_grid(n);
                let mut losses = vec![0.0f64; n];
                let mut partials = vec![0.0f64; blocks as usize];
                let mut g = vec![0f32; 4 * n];
                let (has_tw, a, t) = match cfg.threshold_weight {
                    Some(tw) => (1, tw.alpha, tw.threshold),
                    None => (0, 0.0, 0.0),
                };
                // SAFETY: pred/target/grad 4n, up/losses n, partials `blocks`.
                unsafe {
                    f(
                        blocks,
                        ELEM_THREADS,
                        0,
                        pred.as_ptr(),
                        target.as_ptr(),
                        n as i64,
                        kind as i32,
                        format_code(format),
                        cfg.eps,
                        has_tw,
                        a,
                        t,
                        up_scalar,
                        up_ptr,
                        scale,
                        losses.as_mut_ptr(),
                        partials.as_mut_ptr(),
                        g.as_mut_ptr(),
                    )
                };
                let got = if r == Reduction::None {
                    losses
                } else {
                    vec![reduce_final(lib, &partials, 1.0 / scale, None)]
                };
                let mut gr = vec![0f32; 4 * n];
                let want = ReferenceBackend
                    .box_loss(&cfg, &pred, &target, upstream, Some(&mut gr))
                    .unwrap();
                let what = format!("{kind:?} {format:?} {r:?}");
                assert_close(&format!("{what} loss"), &got, &want, 1e-12, 1e-14);
                assert_grad(&format!("{what} grad"), &g, &gr, 1e-6, 1e-9);
            }
        }
    }
    let iou = sym!(lib, b"emu_box_iou_pairwise", IouFn);
    let (n1, m) = (7usize, 13usize);
    let b1: Vec<f32> = (0..4 * n1).map(|_| rng.range_f32(0.0, 10.0)).collect();
    let b2: Vec<f32> = (0..4 * m).map(|_| rng.range_f32(0.0, 10.0)).collect();
    for format in [BoxFormat::Xywh, BoxFormat::Cxcywh, BoxFormat::Xyxy] {
        let mut got = vec![0f32; n1 * m];
        // SAFETY: b1 4*n1, b2 4*m, out n1*m floats.
        unsafe {
            iou(
                1,
                ELEM_THREADS,
                0,
                b1.as_ptr(),
                b2.as_ptr(),
                n1 as i64,
                m as i64,
                format_code(format),
                got.as_mut_ptr(),
            )
        };
        let mut want = vec![0f32; n1 * m];
        ReferenceBackend
            .box_iou(format, &b1, &b2, &mut want)
            .unwrap();
        assert_grad("box_iou", &got, &want, 0.0, 0.0);
    }
}

// ---------------------------------------------------------------- element-wise

type RegFn = unsafe extern "C" fn(
    u32,
    u32,
    u32,
    *const f32,
    *const f32,
    i64,
    f64,
    f64,
    *const f64,
    f64,
    *mut f64,
    *mut f64,
    *mut f32,
);
type BceFn = unsafe extern "C" fn(
    u32,
    u32,
    u32,
    *const f32,
    *const f32,
    i64,
    *const f64,
    i64,
    f64,
    *const f64,
    f64,
    *mut f64,
    *mut f64,
    *mut f32,
    *mut u64,
);
type FocalFn = unsafe extern "C" fn(
    u32,
    u32,
    u32,
    *const f32,
    *const f32,
    i64,
    f64,
    f64,
    f64,
    *const f64,
    f64,
    *mut f64,
    *mut f64,
    *mut f32,
    *mut u64,
);

/// Runs one element-wise launch through `call(up_scalar, up_ptr, scale, losses, partials,
/// grad)` and reduces as the backend does.
fn emu_elementwise(
    lib: &Library,
    n: usize,
    r: Reduction,
    upstream: Upstream<'_>,
    grad: &mut [f32],
    call: impl FnOnce(u32, f64, *const f64, f64, *mut f64, *mut f64, *mut f32),
) -> Vec<f64> {
    let (up_scalar, up_ptr) = match upstream {
        Upstream::Scalar(s) => (s, NULL_F64),
        Upstream::PerElement(u) => (0.0, u.as_ptr()),
    };
    let scale = if r == Reduction::Mean {
        1.0 / n as f64
    } else {
        1.0
    };
    let blocks = elem_grid(n);
    let mut losses = vec![0.0f64; n];
    let mut partials = vec![0.0f64; blocks as usize];
    call(
        blocks,
        up_scalar,
        up_ptr,
        scale,
        losses.as_mut_ptr(),
        partials.as_mut_ptr(),
        grad.as_mut_ptr(),
    );
    if r == Reduction::None {
        losses
    } else {
        vec![reduce_final(lib, &partials, 1.0 / scale, None)]
    }
}

#[test]
fn elementwise_kernels_match_the_reference_on_the_cpu() {
    let Some(libs) = emu() else { return };
    let reg = &libs[&Family::Regression];
    let bin = &libs[&Family::Binary];
    let sl1 = sym!(reg, b"emu_reg_smooth_l1", RegFn);
    let hub = sym!(reg, b"emu_reg_huber", RegFn);
    let bce = sym!(bin, b"emu_bin_bce_with_logits", BceFn);
    let foc = sym!(bin, b"emu_bin_sigmoid_focal", FocalFn);
    let mut rng = Rng::new(0xe1);
    let n = 1001usize; // 7 * 11 * 13
    let mut x: Vec<f32> = (0..n).map(|_| rng.range_f32(-5.0, 5.0)).collect();
    let t: Vec<f32> = (0..n).map(|_| rng.range_f32(-5.0, 5.0)).collect();
    let y: Vec<f32> = (0..n)
        .map(|i| {
            if i % 3 == 0 {
                rng.range_f32(0.0, 1.0)
            } else {
                (i % 2) as f32
            }
        })
        .collect();
    x[3] = t[3]; // d = 0
    x[10] = f32::NAN;
    let up: Vec<f64> = (0..n).map(|_| rng.unit() - 0.5).collect();
    let pw: Vec<f64> = (0..7).map(|_| rng.unit() * 3.0).collect();
    let close = |what: &str, got: &[f64], want: &[f64], g: &[f32], gr: &[f32]| {
        assert_close(what, got, want, 1e-12, 1e-12);
        assert_grad(what, g, gr, 1e-6, 1e-12);
    };
    for r in REDUCTIONS {
        let u = if r == Reduction::None {
            Upstream::PerElement(&up)
        } else {
            Upstream::Scalar(0.5)
        };
        for beta in [0.0, 1.0] {
            let cfg = SmoothL1 { beta, reduction: r };
            let mut g = vec![0f32; n];
            let got = emu_elementwise(reg, n, r, u, &mut g, |b, us, up, sc, l, p, gp| {
                // SAFETY: x, t, grad, up, losses have n elements; partials `b`.
                unsafe {
                    sl1(
                        b,
                        ELEM_THREADS,
                        0,
                        x.as_ptr(),
                        t.as_ptr(),
                        n as i64,
                        beta,
                        us,
                        up,
                        sc,
                        l,
                        p,
                        gp,
                    )
                }
            });
            let mut gr = vec![0f32; n];
            let want = ReferenceBackend
                .smooth_l1(&cfg, &x, &t, u, Some(&mut gr))
                .unwrap();
            close(&format!("smooth_l1 {r:?} {beta}"), &got, &want, &g, &gr);
        }
        let cfg = Huber {
            delta: 1.5,
            reduction: r,
        };
        let mut g = vec![0f32; n];
        let got = emu_elementwise(reg, n, r, u, &mut g, |b, us, up, sc, l, p, gp| {
            // SAFETY: as above.
            unsafe {
                hub(
                    b,
                    ELEM_THREADS,
                    0,
                    x.as_ptr(),
                    t.as_ptr(),
                    n as i64,
                    1.5,
                    us,
                    up,
                    sc,
                    l,
                    p,
                    gp,
                )
            }
        });
        let mut gr = vec![0f32; n];
        let want = ReferenceBackend
            .huber(&cfg, &x, &t, u, Some(&mut gr))
            .unwrap();
        close(&format!("huber {r:?}"), &got, &want, &g, &gr);

        for pos_weight in [None, Some(pw.clone())] {
            let (pw_ptr, p_len) = pos_weight
                .as_ref()
                .map_or((NULL_F64, 1), |w| (w.as_ptr(), w.len() as i64));
            let xf: Vec<f32> = x
                .iter()
                .map(|v| if v.is_nan() { 0.5 } else { *v })
                .collect();
            let mut g = vec![0f32; n];
            let got = emu_elementwise(bin, n, r, u, &mut g, |b, us, up, sc, l, p, gp| {
                // SAFETY: as above; pos_weight has p_len >= 1 doubles.
                unsafe {
                    bce(
                        b,
                        ELEM_THREADS,
                        0,
                        xf.as_ptr(),
                        y.as_ptr(),
                        n as i64,
                        pw_ptr,
                        p_len,
                        us,
                        up,
                        sc,
                        l,
                        p,
                        gp,
                        std::ptr::null_mut(),
                    )
                }
            });
            let cfg = BceWithLogits {
                pos_weight,
                reduction: r,
            };
            let mut gr = vec![0f32; n];
            let want = ReferenceBackend
                .bce_with_logits(&cfg, &xf, &y, u, Some(&mut gr))
                .unwrap();
            close(&format!("bce {r:?}"), &got, &want, &g, &gr);
        }
        for (alpha, gamma) in [(0.25, 2.0), (-1.0, 0.0), (0.5, 1.5)] {
            let mut g = vec![0f32; n];
            let got = emu_elementwise(bin, n, r, u, &mut g, |b, us, up, sc, l, p, gp| {
                // SAFETY: as above.
                unsafe {
                    foc(
                        b,
                        ELEM_THREADS,
                        0,
                        x.as_ptr(),
                        y.as_ptr(),
                        n as i64,
                        alpha,
                        gamma,
                        us,
                        up,
                        sc,
                        l,
                        p,
                        gp,
                        std::ptr::null_mut(),
                    )
                }
            });
            let cfg = SigmoidFocal {
                alpha,
                gamma,
                reduction: r,
            };
            let mut gr = vec![0f32; n];
            let want = ReferenceBackend
                .sigmoid_focal(&cfg, &x, &y, u, Some(&mut gr))
                .unwrap();
            close(
                &format!("focal {r:?} {alpha} {gamma}"),
                &got,
                &want,
                &g,
                &gr,
            );
        }
    }
}

// ---------------------------------------------------------------- the shared suite

/// The kernels behind the host-slice traits, through the CPU emulation, with the same
/// validation and launch sequence as `CudaBackend`: lets the shared conformance suite check
/// the kernels' semantics (non-finite inputs, ties, reductions, errors) without a GPU.
struct EmuBackend;

fn libs_ok() -> &'static HashMap<Family, Library> {
    libs().as_ref().expect("emulation libraries")
}

impl CrossEntropyOps<f32> for EmuBackend {
    fn cross_entropy(
        &self,
        cfg: &CrossEntropy,
        logits: &[f32],
        rows: usize,
        classes: usize,
        targets: CeTargets<'_, f32>,
        upstream: Upstream<'_>,
        grad: Option<&mut [f32]>,
    ) -> smoothloss_core::Result<Vec<f64>> {
        cfg.validate(
            logits.len(),
            rows,
            classes,
            &targets,
            &upstream,
            grad.as_ref().map(|g| g.len()),
        )?;
        let lib = &libs_ok()[&Family::CrossEntropy];
        let mut z = logits.to_vec();
        let (v, check) = emu_ce(
            lib, cfg, &mut z, rows, classes, targets, upstream, grad, false,
        );
        assert_eq!(check[0], -1, "host-validated targets flagged on the device");
        Ok(v)
    }

    fn cross_entropy_in_place(
        &self,
        cfg: &CrossEntropy,
        logits: &mut [f32],
        rows: usize,
        classes: usize,
        targets: CeTargets<'_, f32>,
        upstream: Upstream<'_>,
    ) -> smoothloss_core::Result<Vec<f64>> {
        cfg.validate(logits.len(), rows, classes, &targets, &upstream, None)?;
        let lib = &libs_ok()[&Family::CrossEntropy];
        let (v, _) = emu_ce(
            lib, cfg, logits, rows, classes, targets, upstream, None, true,
        );
        Ok(v)
    }
}

impl BoxLossOps<f32> for EmuBackend {
    fn box_loss(
        &self,
        cfg: &BoxLoss,
        pred: &[f32],
        target: &[f32],
        upstream: Upstream<'_>,
        grad: Option<&mut [f32]>,
    ) -> smoothloss_core::Result<Vec<f64>> {
        let n = cfg.validate(pred, target, &upstream, grad.as_ref().map(|g| g.len()))?;
        let lib = &libs_ok()[&Family::BoxLoss];
        let f = sym!(lib, b"emu_box_loss_fwd_bwd", BoxFn);
        let r = cfg.reduction;
        let (up_scalar, up_ptr) = match upstream {
            Upstream::Scalar(s) => (s, NULL_F64),
            Upstream::PerElement(u) => (0.0, u.as_ptr()),
        };
        let scale = if r == Reduction::Mean {
            1.0 / n as f64
        } else {
            1.0
        };
        let blocks = elem_grid(n);
        let mut losses = vec![0.0f64; n];
        let mut partials = vec![0.0f64; blocks as usize];
        let (has_tw, a, t) = match cfg.threshold_weight {
            Some(tw) => (1, tw.alpha, tw.threshold),
            None => (0, 0.0, 0.0),
        };
        let g_ptr = grad.map_or(std::ptr::null_mut(), |g| g.as_mut_ptr());
        // SAFETY: pred/target/grad 4n, up/losses n, partials `blocks`.
        unsafe {
            f(
                blocks,
                ELEM_THREADS,
                0,
                pred.as_ptr(),
                target.as_ptr(),
                n as i64,
                cfg.kind as i32,
                format_code(cfg.format),
                cfg.eps,
                has_tw,
                a,
                t,
                up_scalar,
                up_ptr,
                scale,
                losses.as_mut_ptr(),
                partials.as_mut_ptr(),
                g_ptr,
            )
        };
        Ok(if r == Reduction::None {
            losses
        } else {
            vec![reduce_final(lib, &partials, 1.0 / scale, None)]
        })
    }

    fn box_iou(
        &self,
        format: BoxFormat,
        boxes1: &[f32],
        boxes2: &[f32],
        out: &mut [f32],
    ) -> smoothloss_core::Result<()> {
        let (n, m) = smoothloss_core::box_loss::validate_box_iou(boxes1, boxes2, out.len())?;
        if n * m == 0 {
            return Ok(());
        }
        let lib = &libs_ok()[&Family::BoxLoss];
        let iou = sym!(lib, b"emu_box_iou_pairwise", IouFn);
        let blocks = (n * m).div_ceil(ELEM_THREADS as usize) as u32;
        // SAFETY: boxes1 4n, boxes2 4m, out n*m floats.
        unsafe {
            iou(
                blocks,
                ELEM_THREADS,
                0,
                boxes1.as_ptr(),
                boxes2.as_ptr(),
                n as i64,
                m as i64,
                format_code(format),
                out.as_mut_ptr(),
            )
        };
        Ok(())
    }
}

/// Calls `f` with the caller's gradient buffer, or a scratch one when none is asked for.
fn with_grad<R>(grad: Option<&mut [f32]>, n: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    match grad {
        Some(g) => f(g),
        None => f(&mut vec![0.0; n]),
    }
}

impl RegressionOps<f32> for EmuBackend {
    fn smooth_l1(
        &self,
        cfg: &SmoothL1,
        pred: &[f32],
        target: &[f32],
        upstream: Upstream<'_>,
        grad: Option<&mut [f32]>,
    ) -> smoothloss_core::Result<Vec<f64>> {
        let n = cfg.validate(pred, target, &upstream, grad.as_ref().map(|g| g.len()))?;
        let lib = &libs_ok()[&Family::Regression];
        let f = sym!(lib, b"emu_reg_smooth_l1", RegFn);
        Ok(with_grad(grad, n, |g| {
            emu_elementwise(
                lib,
                n,
                cfg.reduction,
                upstream,
                g,
                |b, us, up, sc, l, p, gp| {
                    // SAFETY: pred, target, grad, up, losses have n elements; partials `b`.
                    unsafe {
                        f(
                            b,
                            ELEM_THREADS,
                            0,
                            pred.as_ptr(),
                            target.as_ptr(),
                            n as i64,
                            cfg.beta,
                            us,
                            up,
                            sc,
                            l,
                            p,
                            gp,
                        )
                    }
                },
            )
        }))
    }

    fn huber(
        &self,
        cfg: &Huber,
        pred: &[f32],
        target: &[f32],
        upstream: Upstream<'_>,
        grad: Option<&mut [f32]>,
    ) -> smoothloss_core::Result<Vec<f64>> {
        let n = cfg.validate(pred, target, &upstream, grad.as_ref().map(|g| g.len()))?;
        let lib = &libs_ok()[&Family::Regression];
        let f = sym!(lib, b"emu_reg_huber", RegFn);
        Ok(with_grad(grad, n, |g| {
            emu_elementwise(
                lib,
                n,
                cfg.reduction,
                upstream,
                g,
                |b, us, up, sc, l, p, gp| {
                    // SAFETY: as above.
                    unsafe {
                        f(
                            b,
                            ELEM_THREADS,
                            0,
                            pred.as_ptr(),
                            target.as_ptr(),
                            n as i64,
                            cfg.delta,
                            us,
                            up,
                            sc,
                            l,
                            p,
                            gp,
                        )
                    }
                },
            )
        }))
    }
}

impl BinaryOps<f32> for EmuBackend {
    fn bce_with_logits(
        &self,
        cfg: &BceWithLogits,
        logits: &[f32],
        targets: &[f32],
        upstream: Upstream<'_>,
        grad: Option<&mut [f32]>,
    ) -> smoothloss_core::Result<Vec<f64>> {
        let n = cfg.validate(logits, targets, &upstream, grad.as_ref().map(|g| g.len()))?;
        let lib = &libs_ok()[&Family::Binary];
        let f = sym!(lib, b"emu_bin_bce_with_logits", BceFn);
        let (pw_ptr, p_len) = cfg
            .pos_weight
            .as_ref()
            .map_or((NULL_F64, 1), |w| (w.as_ptr(), w.len() as i64));
        Ok(with_grad(grad, n, |g| {
            emu_elementwise(
                lib,
                n,
                cfg.reduction,
                upstream,
                g,
                |b, us, up, sc, l, p, gp| {
                    // SAFETY: as above; pos_weight has p_len >= 1 doubles.
                    unsafe {
                        f(
                            b,
                            ELEM_THREADS,
                            0,
                            logits.as_ptr(),
                            targets.as_ptr(),
                            n as i64,
                            pw_ptr,
                            p_len,
                            us,
                            up,
                            sc,
                            l,
                            p,
                            gp,
                            std::ptr::null_mut(),
                        )
                    }
                },
            )
        }))
    }

    fn sigmoid_focal(
        &self,
        cfg: &SigmoidFocal,
        logits: &[f32],
        targets: &[f32],
        upstream: Upstream<'_>,
        grad: Option<&mut [f32]>,
    ) -> smoothloss_core::Result<Vec<f64>> {
        let n = cfg.validate(logits, targets, &upstream, grad.as_ref().map(|g| g.len()))?;
        let lib = &libs_ok()[&Family::Binary];
        let f = sym!(lib, b"emu_bin_sigmoid_focal", FocalFn);
        Ok(with_grad(grad, n, |g| {
            emu_elementwise(
                lib,
                n,
                cfg.reduction,
                upstream,
                g,
                |b, us, up, sc, l, p, gp| {
                    // SAFETY: as above.
                    unsafe {
                        f(
                            b,
                            ELEM_THREADS,
                            0,
                            logits.as_ptr(),
                            targets.as_ptr(),
                            n as i64,
                            cfg.alpha,
                            cfg.gamma,
                            us,
                            up,
                            sc,
                            l,
                            p,
                            gp,
                            std::ptr::null_mut(),
                        )
                    }
                },
            )
        }))
    }
}

impl smoothloss_core::Backend<f32> for EmuBackend {
    fn name(&self) -> String {
        "cuda-kernels-on-cpu-emulation".into()
    }
}

#[test]
#[ignore = "slow (minutes): the shared conformance suite through the CPU emulation"]
fn conformance_suite_through_the_cpu_emulation() {
    use smoothloss_spec::conformance::{self, Tolerances};
    if emu().is_none() {
        return;
    }
    let r = conformance::run_all::<f32, _>(&EmuBackend, &Tolerances::F32);
    assert!(r.all_passed(), "{r}");
}
