//! The CUDA kernels run on the CPU, against the f64 reference, without a GPU.
//!
//! Each kernel file is compiled by the host C++ compiler (`g++ -std=c++20`, or `$CXX`) together
//! with `tests/emu/host_emu.h`, a small emulation of the CUDA features the kernels use (the
//! threads of a cluster as cooperative fibers on the launching thread, cooperative barriers for
//! `__syncthreads`, per-warp buffers for shuffles),
//! and one wrapper per entry point (generated here from `KernelFamily::entries` with the macro
//! of `tests/emu/wrappers.inc`), `emu_<kernel>(grid, block, smem, const Params* p)`. The
//! launches below use the same launch geometry as the real ones (`smoothloss_cuda::geometry`)
//! and the same parameter structs (`smoothloss_cuda::params`, with host addresses); the
//! sources include the generated layout `static_assert`s, so g++ checks the structs too.
//! This checks the kernels' indexing, block reductions and formulas; it does not check the
//! GPU's arithmetic (FMA contraction, `expf` ulps), timing, or the cudarc launch (the ignored
//! tests in `tests/gpu/` do).
//!
//! Modules: `cross_entropy` (every plan, half precision, the helper kernels), `elementwise`
//! (box, regression, binary and the binary target check), `suite` (the shared conformance
//! suite through the emulation), `fuzz` (the spec's fuzz campaign through the emulation).
//!
//! Without a C++20 compiler the tests print why and pass (they are only skipped; on this
//! project's machines g++ 12 is present).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use libloading::Library;
use smoothloss_core::op::Op;
use smoothloss_core::{
    BceWithLogits, BinaryOps, BoxFormat, BoxLoss, BoxLossKind, BoxLossOps, CeCall, CeTargets,
    CrossEntropy, CrossEntropyOps, Huber, Input, Io, IouCall, Loss, Losses, PairCall, Parts,
    Reduction, ReferenceBackend, RegressionOps, SigmoidFocal, SmoothL1, Upstream,
};
use smoothloss_cuda::geometry::{
    CE_ROWS_THREADS, CE_SMEM_TARGET, CePlan, ELEM_THREADS, REDUCE_THREADS, ce_plan, ce_rows_grid,
    elem_grid,
};
use smoothloss_cuda::kernels::{
    BIN_TARGET_CHECK, CE_CLUSTERS, CE_PREPARE, CE_REDUCE_ROWS, REDUCE_FINAL, entry_name,
};
use smoothloss_cuda::params::{
    BceParams, BinTargetCheckParams, BoxIouParams, BoxLossParams, CePrepareParams,
    CeReduceRowsParams, CeRowOptParams, CeRowParams, FocalParams, ReduceFinalParams, RegParams,
};
use smoothloss_cuda::{Family, KernelFamily};
use smoothloss_spec::kit::{self, Rng};

const NULL_F64: *const f64 = std::ptr::null();

/// A host address as a parameter field (0 for null), as the device addresses of a real launch.
fn addr<T>(p: *const T) -> u64 {
    p as usize as u64
}

fn build_dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("smoothloss-emu-{}", std::process::id()));
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

/// Writes the emulation header and wrappers (embedded, so the test executable also works
/// away from this checkout, as in `gpu-bundle/`) into `dir`.
fn write_emu_support(dir: &Path) -> std::io::Result<()> {
    std::fs::write(dir.join("host_emu.h"), include_str!("../emu/host_emu.h"))?;
    std::fs::write(
        dir.join("wrappers.inc"),
        include_str!("../emu/wrappers.inc"),
    )
}

/// The emulation's wrapper of every entry point of `fam` (`wrappers.inc`'s macro; the
/// cross-entropy row kernels get one wrapper per dtype, taking the cluster size).
fn wrappers(fam: Family) -> String {
    let mut s = String::from("#include \"wrappers.inc\"\n");
    let names: Vec<&str> = fam.entries().iter().map(|e| e.name).collect();
    for e in fam.entries() {
        if e.params == "CeRowParams" || e.params == "CeRowOptParams" {
            if e.cluster != 1 {
                continue;
            }
            // The dtype's entry points of every cluster size.
            let dtype = e.name.rsplit('_').next().expect("dtype");
            s.push_str(&format!(
                "extern \"C\" void emu_{}(unsigned g, unsigned b, unsigned s, unsigned cluster,\n\
                 const {p}* p) {{\n    const {p} q = *p;\n    switch (cluster) {{\n",
                e.name,
                p = e.params
            ));
            // (The warp-per-row entry points have no cluster sizes.)
            for k in CE_CLUSTERS {
                let name = entry_name(Op::CrossEntropy, dtype, k);
                if !names.contains(&name) {
                    continue;
                }
                s.push_str(&format!(
                    "    case {k}: sl_emu_launch_cluster(g, b, s, {k}, [&] {{ {name}(q); }}); break;\n",
                ));
            }
            s.push_str("    default: std::abort();\n    }\n}\n");
        } else {
            s.push_str(&format!("SL_EMU_KERNEL({}, {})\n", e.name, e.params));
        }
    }
    s
}

/// Compiles every family once per test process; `Err` says why it could not.
fn libs() -> &'static Result<HashMap<Family, Library>, String> {
    static LIBS: OnceLock<Result<HashMap<Family, Library>, String>> = OnceLock::new();
    LIBS.get_or_init(|| {
        let cxx = std::env::var("CXX").unwrap_or_else(|_| "g++".into());
        let dir = build_dir();
        write_emu_support(&dir).map_err(|e| e.to_string())?;
        // Every family's compiler runs at the same time; their results are then taken in
        // family order (the first failure is the one reported).
        let mut jobs = Vec::new();
        for fam in Family::ALL {
            let src = format!(
                "#include \"host_emu.h\"\n{}\n{}",
                fam.full_source(),
                wrappers(fam)
            );
            let cpp = dir.join(format!("{:?}.cpp", fam));
            let so = dir.join(format!("lib{:?}.so", fam));
            std::fs::write(&cpp, src).map_err(|e| e.to_string())?;
            let child = Command::new(&cxx)
                .args(["-std=c++20", "-O1", "-shared", "-fPIC", "-pthread", "-w"])
                .arg("-I")
                .arg(&dir)
                .arg("-o")
                .arg(&so)
                .arg(&cpp)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .map_err(|e| format!("cannot run {cxx}: {e}"));
            jobs.push((fam, so, child));
        }
        // (Waits for every child before looking at any result, so none is left running.)
        let done: Vec<_> = jobs
            .into_iter()
            .map(|(fam, so, child)| {
                let res = child.and_then(|c| {
                    c.wait_with_output()
                        .map_err(|e| format!("cannot run {cxx}: {e}"))
                });
                (fam, so, res)
            })
            .collect();
        let mut out = HashMap::new();
        for (fam, so, res) in done {
            let res = res?;
            if !res.status.success() {
                return Err(format!(
                    "{cxx} failed on {}:\n{}",
                    fam.kernel_file(),
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

/// Runs entry point `name` of `lib` through its wrapper `emu_<name>(grid, block, smem, &params)`.
///
/// # Safety
///
/// `P` must be the entry point's parameter struct and every address in it valid for what the
/// kernel may touch (the struct's contract in `smoothloss_cuda::params`), with host pointers.
unsafe fn emu_launch<P>(lib: &Library, name: &str, grid: u32, block: u32, smem: u32, params: &P) {
    let sym = format!("emu_{name}");
    // SAFETY: every generated wrapper (`wrappers`) has this signature, with its entry point's
    // parameter struct.
    let f: libloading::Symbol<'_, unsafe extern "C" fn(u32, u32, u32, *const P)> =
        unsafe { lib.get(sym.as_bytes()) }.unwrap_or_else(|e| panic!("{sym}: {e}"));
    // SAFETY: the caller's contract.
    unsafe { f(grid, block, smem, params) }
}

/// [`emu_launch`] of a cross-entropy row kernel (`emu_ce_fwd_bwd_<dtype>`) in clusters of
/// `cluster` blocks.
///
/// # Safety
///
/// As [`emu_launch`], for [`CeRowParams`].
unsafe fn emu_launch_ce<P>(
    lib: &Library,
    dtype: &str,
    (grid, block, smem, cluster): (u32, u32, u32, u32),
    params: &P,
) {
    let sym = format!("emu_{}", entry_name(Op::CrossEntropy, dtype, 1));
    type CeFn<P> = unsafe extern "C" fn(u32, u32, u32, u32, *const P);
    // SAFETY: the generated cross-entropy wrappers (`wrappers`) have this signature.
    let f: libloading::Symbol<'_, CeFn<P>> =
        unsafe { lib.get(sym.as_bytes()) }.unwrap_or_else(|e| panic!("{sym}: {e}"));
    // SAFETY: the caller's contract.
    unsafe { f(grid, block, smem, cluster, params) }
}

fn reduce_final(lib: &Library, partials: &[f64], divisor: f64, denom: Option<&[f64]>) -> f64 {
    let mut out = [0.0f64];
    let p = ReduceFinalParams {
        partials: addr(partials.as_ptr()),
        n: partials.len() as i64,
        divisor,
        denom: addr(denom.map_or(NULL_F64, |d| d.as_ptr())),
        out: addr(out.as_mut_ptr()),
    };
    // SAFETY: partials has `len` doubles, denom (if any) at least one, out one.
    unsafe { emu_launch(lib, REDUCE_FINAL, 1, REDUCE_THREADS, 0, &p) };
    out[0]
}

fn assert_close(what: &str, got: &[f64], want: &[f64], rel: f64, abs: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            kit::close(*g, *w, abs, rel),
            "{what}[{i}]: got {g}, want {w}"
        );
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

/// g++ checks the parameter structs against Rust's layout too: the emulation's sources hold
/// the generated `static_assert`s (every family compiled above), and a layout that differs in
/// one field fails to compile.
#[test]
fn params_layouts_are_checked_by_gxx() {
    use smoothloss_cuda::{kernels, params};
    if emu().is_none() {
        return;
    }
    for fam in Family::ALL {
        assert!(fam.full_source().contains(&params::layout_asserts(fam)));
    }
    let fam = Family::Binary;
    let mut moved = params::family_layouts(fam);
    let bce = moved.iter_mut().find(|l| l.name == "BceParams").unwrap();
    bce.fields[4].1 += 8; // p_len
    let src = format!(
        "#include \"host_emu.h\"\n{}\n{}\n{}\n{}",
        kernels::prelude(),
        kernels::COMMON,
        fam.source(),
        params::layout_asserts_of(&moved)
    );
    let dir = build_dir();
    let cpp = dir.join("bad_layout.cpp");
    std::fs::write(&cpp, src).expect("write");
    let cxx = std::env::var("CXX").unwrap_or_else(|_| "g++".into());
    let res = Command::new(&cxx)
        .args(["-std=c++20", "-fsyntax-only", "-I"])
        .arg(&dir)
        .arg(&cpp)
        .output()
        .expect("run the C++ compiler");
    assert!(!res.status.success(), "a wrong layout compiled");
    let err = String::from_utf8_lossy(&res.stderr);
    assert!(err.contains("BceParams.p_len: offset"), "{err}");
}

mod ce_options;
mod confident;
mod cross_entropy;
mod cross_entropy_warp;
mod degenerate;
mod dense_checks;
mod detection;
mod elementwise;
mod fuzz;
mod hygiene;
mod odd_vocab;
mod suite;
mod vectors;
mod wise_iou_v3;
