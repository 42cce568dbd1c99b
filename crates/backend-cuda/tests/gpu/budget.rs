//! Static performance budgets of the cross-entropy row kernels, read from the SASS of the
//! NVRTC cubin (sm_90), without a GPU (issue 16; the model and its inputs are in NOTES.md,
//! "cross_entropy.cu v3").
//!
//! The SASS comes from `cuobjdump -sass` (with `nvdisasm` beside it): `SMOOTHLOSS_CUOBJDUMP`,
//! `PATH`, `/usr/local/cuda/bin`, or the `nvidia/cu13/bin` folder of the `nvidia-cuda-cuobjdump`
//! and `nvidia-cuda-nvdisasm` wheels (`.ci/run` installs them), or Triton's copy. Without one
//! the tests print `SKIPPED` and pass, unless `SMOOTHLOSS_REQUIRE_SASS` is set (as in `.ci/run`).
//!
//! Hot loops are found as backward branches (innermost loops) and classified by what they
//! touch: phase A (global 128-bit loads stored to shared memory: `LDG.E.128` + `STS.128`),
//! phase B (`LDS.128` + `MUFU.EX2`, no store, no global load), the store phase of class
//! targets without class weights (`LDS.128` + `STG.E.128`, no global load). Instructions per
//! element = the loop's instructions / (its 16-byte accesses x elements per vector); every
//! instruction between the loop's head and its branch counts, also predicated-off ones.

use std::path::Path;

use smoothloss_cuda::geometry::{CE_SMEM_TARGET, CE_WARP_ROWS, CePlan, ce_plan};
use smoothloss_cuda::{Family, compile_cubin};

use super::ptxas_report;
use super::sass::{
    BYTES_PER_S, CLOCK_HZ, Func, ISSUE_PER_CLK_SM, MUFU_PER_CLK_SM, SMS, innermost_spans,
    parse_sass, sass_of, sass_tool_or_skip,
};

/// One innermost loop: instructions from the branch target to the backward branch.
#[derive(Debug, Clone)]
struct Loop {
    lo: u64,
    hi: u64,
    n: usize,
    lds128: usize,
    sts128: usize,
    ldg128: usize,
    ldg: usize,
    stg128: usize,
    stg: usize,
    ex2: usize,
    mufu: usize,
}

/// Innermost loops of a function (no other loop nested in them).
fn loops(f: &Func) -> Vec<Loop> {
    let inner = innermost_spans(f);
    inner
        .into_iter()
        .map(|(lo, hi)| {
            let ops: Vec<&str> = f
                .ins
                .iter()
                .filter(|(a, _, _)| (lo..=hi).contains(a))
                .map(|(_, o, _)| o.as_str())
                .collect();
            let c = |p: &str| ops.iter().filter(|o| o.starts_with(p)).count();
            Loop {
                lo,
                hi,
                n: ops.len(),
                lds128: c("LDS.128"),
                sts128: c("STS.128"),
                ldg128: c("LDG.E.128"),
                ldg: c("LDG"),
                stg128: c("STG.E.128"),
                stg: c("STG"),
                ex2: c("MUFU.EX2"),
                mufu: c("MUFU"),
            }
        })
        .collect()
}

/// The hot loops of one row-kernel entry point and what they cost per element.
#[derive(Debug)]
struct Hot {
    /// Phase A (load the slice, its max), per element.
    a: f64,
    /// Phase B (the sum of exponentials and the loss partial), per element: the costliest
    /// of its variants (with label smoothing).
    b: f64,
    /// The store phase (the gradient, class targets without class weights), per element.
    d: f64,
    /// MUFU instructions per element in the store phase, and in phases A + B + D.
    mufu_d: f64,
    mufu_all: f64,
    /// Instructions per element of every loop found (for the log).
    all: Vec<Loop>,
}

fn hot_loops(f: &Func, vw: usize) -> Result<Hot, String> {
    let all = loops(f);
    let per = |l: &Loop, accesses: usize| l.n as f64 / (accesses * vw) as f64;
    let worst = |sel: &dyn Fn(&Loop) -> Option<usize>, what: &str| {
        all.iter()
            .filter_map(|l| sel(l).map(|k| (per(l, k), l.mufu as f64 / (k * vw) as f64)))
            .fold(None, |acc: Option<(f64, f64)>, x| {
                Some(acc.map_or(x, |a| (a.0.max(x.0), a.1.max(x.1))))
            })
            .ok_or_else(|| format!("{}: no {what} loop in the SASS", f.name))
    };
    let (a, mufu_a) = worst(
        &|l| (l.ldg128 > 0 && l.sts128 > 0 && l.stg == 0).then_some(l.sts128),
        "phase A (LDG.E.128 + STS.128)",
    )?;
    let (b, mufu_b) = worst(
        &|l| (l.lds128 > 0 && l.ex2 > 0 && l.stg == 0 && l.ldg == 0).then_some(l.lds128),
        "phase B (LDS.128 + MUFU.EX2)",
    )?;
    let (d, mufu_d) = worst(
        &|l| (l.lds128 > 0 && l.stg128 > 0 && l.ldg == 0).then_some(l.stg128),
        "store phase (LDS.128 + STG.E.128)",
    )?;
    Ok(Hot {
        a,
        b,
        d,
        mufu_d,
        mufu_all: mufu_a + mufu_b + mufu_d,
        all,
    })
}

/// Warp instructions each warp of a block issues per row outside the hot loops (entry loads,
/// four block reductions, the cluster combine, the row's loss): an estimate read off the
/// SASS, not traced (NOTES.md), reported beside the budget's model (which, as issue 16's
/// figures, counts the hot loops only). Blocks of one warp reduce with shuffles only.
const FIXED_PER_WARP_ONE_WARP: f64 = 160.0;
const FIXED_PER_WARP: f64 = 300.0;
/// The budgets of issue 16.
const STORE_BUDGET_F32: f64 = 20.0;
const STORE_BUDGET_16: f64 = 16.0;
const MUFU_BUDGET: f64 = 1.0;
const FLOOR_FRACTION: f64 = 0.70;

/// The benchmark shapes of the budget (rows, classes).
const SHAPES: [(usize, usize); 3] = [(8192, 32000), (4096, 128256), (65536, 1000)];

struct Compiled {
    funcs: Vec<Func>,
    regs: Vec<(String, u64, u64)>,
}

fn compile_sm90(tool: &Path) -> Compiled {
    let c = compile_cubin(Family::CrossEntropy, "sm_90", &["-Xptxas=-v"])
        .unwrap_or_else(|e| panic!("sm_90: {e}"));
    let text = sass_of(tool, &c.image, "cross_entropy_sm_90");
    let funcs = parse_sass(&text);
    assert!(
        !funcs.is_empty(),
        "no function in the SASS:\n{}",
        &text[..text.len().min(2000)]
    );
    Compiled {
        funcs,
        regs: ptxas_report(&c.log),
    }
}

fn entry(dtype: &str, cluster: u32) -> String {
    if cluster == 1 {
        format!("ce_fwd_bwd_{dtype}")
    } else {
        format!("ce_fwd_bwd_{dtype}_c{cluster}")
    }
}

/// The model of one call (seconds): issue time of the hot loops (the budget's estimate), the
/// same with the per-row estimate added, MUFU time, and the memory floor.
fn model(hot: &Hot, rows: usize, classes: usize, elem: usize, plan: &CePlan) -> [f64; 4] {
    let elems = (rows * classes) as f64;
    // Warps per row: one in the warp-per-row layout (several rows per block).
    let warp_rows = plan.flags & CE_WARP_ROWS != 0;
    let threads = if warp_rows { 32 } else { plan.threads };
    let warps = (threads / 32).max(1) as f64 * plan.cluster as f64;
    let fixed = if threads <= 32 {
        FIXED_PER_WARP_ONE_WARP
    } else {
        FIXED_PER_WARP
    };
    let rate = ISSUE_PER_CLK_SM * SMS * CLOCK_HZ;
    let issue = elems * (hot.a + hot.b + hot.d) / rate;
    let with_rows = issue + rows as f64 * warps * fixed * 32.0 / rate;
    let mufu = elems * hot.mufu_all / (MUFU_PER_CLK_SM * SMS * CLOCK_HZ);
    let floor = (2.0 * elems * elem as f64 + 8.0 * rows as f64) / BYTES_PER_S;
    [issue, with_rows, mufu, floor]
}

/// The store phase of every default f32 / bf16 row kernel stays within its instruction and
/// MUFU budget, with no `MEMBAR.ALL.GPU` after the first gradient store (the exit barrier is a
/// relaxed arrive), 64 registers at most (two 512-thread blocks per SM) and no spills.
#[test]
fn ce_store_phase_within_its_sass_budget() {
    let Some(tool) = sass_tool_or_skip("SASS budget") else {
        return;
    };
    let c = compile_sm90(&tool);
    // MUFU per element over phases A + B + D: 1 where the slice keeps e_j = exp(x_j - m_b) in
    // shared memory (f32), 2 for the 16-bit slices kept raw (an f32 copy of them would double
    // the plan's shared memory: NOTES.md).
    for (dtype, vw, budget, mufu_all_budget) in [
        ("f32", 4, STORE_BUDGET_F32, MUFU_BUDGET),
        ("bf16", 8, STORE_BUDGET_16, 2.0),
        ("f16", 8, STORE_BUDGET_16, 2.0),
    ] {
        // Every cluster size, and the warp-per-row entry point (`ce_fwd_bwd_<dtype>w`).
        let names = [1, 2, 4, 8]
            .map(|k| entry(dtype, k))
            .into_iter()
            .chain([format!("ce_fwd_bwd_{dtype}w")]);
        for name in names {
            let f = c
                .funcs
                .iter()
                .find(|f| f.name == name)
                .unwrap_or_else(|| panic!("no SASS for {name}"));
            let hot = hot_loops(f, vw).unwrap_or_else(|e| panic!("{e}"));
            eprintln!(
                "{name}: A {:.2}, B {:.2}, D {:.2} instructions per element; MUFU {:.2} (store phase) {:.2} (A+B+D)",
                hot.a, hot.b, hot.d, hot.mufu_d, hot.mufu_all
            );
            for l in &hot.all {
                eprintln!("  loop [{:#x}, {:#x}]: {l:?}", l.lo, l.hi);
            }
            assert!(
                hot.d <= budget,
                "{name}: store phase {:.2} instructions per element > {budget}",
                hot.d
            );
            assert!(
                hot.mufu_d <= MUFU_BUDGET,
                "{name}: {:.2} MUFU per element in the store phase",
                hot.mufu_d
            );
            assert!(
                hot.mufu_all <= mufu_all_budget,
                "{name}: {:.2} MUFU per element over phases A + B + D > {mufu_all_budget}",
                hot.mufu_all
            );
            let first_store = f
                .ins
                .iter()
                .find(|(_, op, _)| op.starts_with("STG.E.128"))
                .map(|(a, _, _)| *a)
                .unwrap_or_else(|| panic!("{name}: no STG.E.128"));
            let membar: Vec<u64> = f
                .ins
                .iter()
                .filter(|(a, _, t)| *a > first_store && t.contains("MEMBAR.ALL.GPU"))
                .map(|(a, _, _)| *a)
                .collect();
            assert!(
                membar.is_empty(),
                "{name}: MEMBAR.ALL.GPU after the gradient stores at {membar:x?}"
            );
            let (_, spill, regs) = c
                .regs
                .iter()
                .find(|(n, _, _)| *n == name)
                .unwrap_or_else(|| panic!("no ptxas report for {name}"));
            assert_eq!(*spill, 0, "{name}: {spill} bytes of spills");
            // The warp-per-row entry points: __launch_bounds__(256, 2), at most 128.
            let max_regs = if name.ends_with('w') { 128 } else { 64 };
            assert!(
                *regs <= max_regs,
                "{name}: {regs} registers (over the {max_regs} of its __launch_bounds__)"
            );
            eprintln!("{name}: {regs} registers, no spills");
        }
    }
}

/// The issue-time and MUFU-time estimates of the plans of the benchmark shapes stay within 70 %
/// of the memory floor (f32 and bf16), so the kernels can stream at the floor. The issue time
/// is issue 16's model: the hot loops' instructions per element (phases A + B + D) at 128
/// thread-instructions per clock per SM; the per-row estimate is printed beside it.
#[test]
fn ce_issue_time_within_70_percent_of_the_memory_floor() {
    let Some(tool) = sass_tool_or_skip("issue-time budget") else {
        return;
    };
    let c = compile_sm90(&tool);
    let mut over = Vec::new();
    for (dtype, elem) in [("f32", 4usize), ("bf16", 2)] {
        for (rows, classes) in SHAPES {
            // The plan of an H200 (227 KiB of opt-in shared memory), as the launch takes it.
            let plan = ce_plan(classes, elem, true, 8, CE_SMEM_TARGET, 227 * 1024);
            let name = if plan.flags & CE_WARP_ROWS != 0 {
                format!("ce_fwd_bwd_{dtype}w")
            } else {
                entry(dtype, plan.cluster)
            };
            let f = c
                .funcs
                .iter()
                .find(|f| f.name == name)
                .unwrap_or_else(|| panic!("no SASS for {name}"));
            let hot = hot_loops(f, 16 / elem).unwrap_or_else(|e| panic!("{e}"));
            let [issue, with_rows, mufu, floor] = model(&hot, rows, classes, elem, &plan);
            let frac = issue.max(mufu) / floor;
            eprintln!(
                "{rows}x{classes} {dtype} ({name}, {} threads, {} rows per block): floor {:.3} ms; issue {:.3} ms \
                 ({:.1} instructions per element), MUFU {:.3} ms: {:.0} % of the floor; with the \
                 per-row estimate {:.3} ms ({:.0} %); predicted {:.3} ms",
                plan.threads,
                plan.rows_per_block,
                floor * 1e3,
                issue * 1e3,
                hot.a + hot.b + hot.d,
                mufu * 1e3,
                frac * 100.0,
                with_rows * 1e3,
                with_rows.max(mufu) / floor * 100.0,
                floor.max(with_rows).max(mufu) * 1e3
            );
            if frac > FLOOR_FRACTION {
                over.push(format!("{rows}x{classes} {dtype}: {:.0} %", frac * 100.0));
            }
        }
    }
    assert!(
        over.is_empty(),
        "over {:.0} % of the memory floor: {over:?}",
        FLOOR_FRACTION * 100.0
    );
}

/// The loop finder on a hand-written listing: one loop of 4 instructions with a 128-bit shared
/// load and a 128-bit global store (4 f32 per vector: 1 instruction per element), nested in
/// an outer loop that is not innermost.
#[test]
fn sass_loop_finder_counts_a_hand_written_listing() {
    let text = "\t\tFunction : k\n\
        /*0000*/ MOV R1, c[0x0][0x28] ;\n\
        /*0010*/ LDS.128 R4, [R2] ;\n\
        /*0020*/ FADD R4, R4, R5 ;\n\
        /*0030*/ STG.E.128 desc[UR4][R8.64], R4 ;\n\
        /*0040*/ @!P0 BRA 0x10 ;\n\
        /*0050*/ @P1 BRA 0x0 ;\n\
        /*0060*/ EXIT ;\n";
    let funcs = parse_sass(text);
    assert_eq!(funcs.len(), 1);
    let ls = loops(&funcs[0]);
    assert_eq!(ls.len(), 1, "{ls:?}");
    assert_eq!(
        (ls[0].lo, ls[0].hi, ls[0].n, ls[0].lds128, ls[0].stg128),
        (0x10, 0x40, 4, 1, 1)
    );
}
