//! Static performance budgets of the box, element-wise and dense-detector kernels
//! (`box_loss.cu`, `regression.cu`, `binary.cu`, `distribution.cu`, `quality.cu`,
//! `oriented_box.cu`), read from the SASS of the NVRTC cubin (sm_90) without a GPU (issue 16,
//! finding 6; the model and its inputs are in NOTES.md, "Static budgets of the other kernels").
//!
//! For every loss entry point: registers and spills (ptxas), and its hot loop, the innermost
//! loop that loads the kernel's main input (`LDG`): instructions per item (element, pair,
//! output or logit) of that loop, f64-pipe instructions per item (`D*` opcodes and the f64
//! conversions), calls (the f64 division and square-root slow paths) and 16-byte accesses.
//! Every instruction between the loop's head and its backward branch counts, predicated-off
//! ones and every box kind's branch included, so the box kernel's figures bound what one kind
//! executes from above. The issue-time model (instructions / 128 per clock per SM, f64 /
//! 64 per clock per SM) of each kernel's benchmark workload is printed beside its memory floor.
//!
//! Budgets (the test fails above them): no spills; registers within the kernel's
//! `__launch_bounds__`; per-item instruction and f64 counts within the ceilings below (this
//! session's SASS plus headroom, so a change that adds work shows); smooth L1 / Huber issue
//! time <= 70 % of their memory floor. Without `cuobjdump` it prints `SKIPPED`, unless
//! `SMOOTHLOSS_REQUIRE_SASS` is set.

use smoothloss_cuda::{Family, KernelFamily, compile_cubin};

use super::ptxas_report;
use super::sass::{
    BYTES_PER_S, CLOCK_HZ, Func, ISSUE_PER_CLK_SM, SMS, innermost_spans, parse_sass, sass_of,
    sass_tool_or_skip,
};

/// f64 results per clock per SM (H200: 64 FP64 lanes per SM).
const F64_PER_CLK_SM: f64 = 64.0;
/// The memory-bound kernels' issue time as a fraction of their floor, at most.
const FLOOR_FRACTION: f64 = 0.70;

/// One loss entry point's budget and benchmark workload.
struct Budget {
    family: Family,
    name: &'static str,
    /// Registers at most (the kernel's `__launch_bounds__`: 65,536 / (threads x min blocks)).
    regs: u64,
    /// Items (elements, pairs, outputs, logits) handled per 16-byte load of the main input in
    /// the vector loop (1 for a scalar loop: one item per iteration).
    per_vector: usize,
    /// Instructions per item of the hot loop, at most.
    ins: f64,
    /// f64-pipe instructions per item of the hot loop, at most.
    f64_ins: f64,
    /// The benchmark workload: items, and bytes moved per item (read once, write once).
    items: f64,
    bytes: f64,
    /// Whether the issue time must stay within `FLOOR_FRACTION` of the floor.
    memory_bound: bool,
}

/// The budgets: ceilings are this session's SASS (NVRTC 13.2, sm_90) plus about 15 %.
const BUDGETS: &[Budget] = &[
    Budget {
        family: Family::Regression,
        name: "reg_smooth_l1",
        regs: 64,
        per_vector: 4,
        ins: 65.0,
        f64_ins: 34.0,
        items: 67_108_864.0,
        bytes: 12.0,
        memory_bound: true,
    },
    Budget {
        family: Family::Regression,
        name: "reg_huber",
        regs: 64,
        per_vector: 4,
        ins: 67.0,
        f64_ins: 34.0,
        items: 67_108_864.0,
        bytes: 12.0,
        memory_bound: true,
    },
    Budget {
        family: Family::Binary,
        name: "bin_bce_with_logits",
        regs: 64,
        per_vector: 4,
        ins: 350.0,
        f64_ins: 121.0,
        items: 67_108_864.0,
        bytes: 12.0,
        memory_bound: false,
    },
    Budget {
        family: Family::Binary,
        name: "bin_sigmoid_focal",
        regs: 64,
        per_vector: 4,
        ins: 525.0,
        f64_ins: 180.0,
        items: 67_108_864.0,
        bytes: 12.0,
        memory_bound: false,
    },
    Budget {
        family: Family::BoxLoss,
        name: "box_loss_fwd_bwd",
        regs: 255,
        per_vector: 1,
        ins: 8070.0,
        f64_ins: 3610.0,
        items: 4_194_304.0,
        bytes: 48.0,
        memory_bound: false,
    },
    Budget {
        family: Family::BoxLoss,
        name: "box_iou_pairwise",
        regs: 64,
        per_vector: 1,
        ins: 186.0,
        f64_ins: 55.0,
        items: 16_777_216.0,
        bytes: 4.0,
        memory_bound: false,
    },
    Budget {
        family: Family::Distribution,
        name: "dfl_fwd_bwd",
        regs: 128,
        per_vector: 1,
        ins: 170.0,
        f64_ins: 61.0,
        items: 8_601_600.0,
        bytes: 8.0,
        memory_bound: false,
    },
    Budget {
        family: Family::Quality,
        name: "qual_varifocal",
        regs: 64,
        per_vector: 1,
        ins: 755.0,
        f64_ins: 214.0,
        items: 10_752_000.0,
        bytes: 16.0,
        memory_bound: false,
    },
    Budget {
        family: Family::Quality,
        name: "qual_quality_focal",
        regs: 64,
        per_vector: 1,
        ins: 710.0,
        f64_ins: 213.0,
        items: 10_752_000.0,
        bytes: 8.0,
        memory_bound: false,
    },
    Budget {
        family: Family::OrientedBox,
        name: "obb_probiou_fwd_bwd",
        regs: 128,
        per_vector: 1,
        ins: 1860.0,
        f64_ins: 760.0,
        items: 1_048_576.0,
        bytes: 60.0,
        memory_bound: false,
    },
    Budget {
        family: Family::OrientedBox,
        name: "obb_probiou_pairwise",
        regs: 64,
        per_vector: 1,
        ins: 885.0,
        f64_ins: 365.0,
        items: 4_194_304.0,
        bytes: 4.0,
        memory_bound: false,
    },
];

/// What the hot loop of one entry point costs.
#[derive(Debug, Clone, Default)]
struct HotLoop {
    lo: u64,
    hi: u64,
    /// Instructions from the head to the backward branch.
    n: usize,
    /// f64-pipe instructions (`DADD`, `DMUL`, `DFMA`, `DSETP`, `DMNMX`, f64 conversions, the
    /// f64 MUFU seeds).
    f64_ins: usize,
    /// `CALL` instructions (slow-path subroutines: their bodies are outside the loop).
    calls: usize,
    /// 16-byte global loads and stores.
    ldg128: usize,
    stg128: usize,
    /// All global loads.
    ldg: usize,
}

fn is_f64(op: &str) -> bool {
    (op.starts_with('D') && !op.starts_with("DEPBAR")) || op.contains("F64") || op.contains("64H")
}

/// The innermost loops of `f` that load global memory, with their costs.
fn global_loops(f: &Func) -> Vec<HotLoop> {
    innermost_spans(f)
        .into_iter()
        .map(|(lo, hi)| {
            let ops: Vec<&str> = f
                .ins
                .iter()
                .filter(|(a, _, _)| (lo..=hi).contains(a))
                .map(|(_, o, _)| o.as_str())
                .collect();
            let c = |p: &str| ops.iter().filter(|o| o.starts_with(p)).count();
            HotLoop {
                lo,
                hi,
                n: ops.len(),
                f64_ins: ops.iter().filter(|o| is_f64(o)).count(),
                calls: c("CALL"),
                ldg128: c("LDG.E.128"),
                stg128: c("STG.E.128"),
                ldg: c("LDG"),
            }
        })
        .filter(|l| l.ldg > 0)
        .collect()
}

/// The hot loop: the vector loop (16-byte loads) where the budget expects one, else the
/// costliest loop that loads global memory.
fn hot_loop(f: &Func, per_vector: usize) -> Result<HotLoop, String> {
    let all = global_loops(f);
    let pick = |v: Vec<&HotLoop>| v.into_iter().max_by_key(|l| l.n).cloned();
    let found = if per_vector > 1 {
        pick(all.iter().filter(|l| l.ldg128 > 0).collect())
    } else {
        pick(all.iter().collect())
    };
    found.ok_or_else(|| format!("{}: no hot loop in the SASS (loops: {all:?})", f.name))
}

/// The model of one workload (seconds): issue time, f64-pipe time, memory floor.
fn model(b: &Budget, ins_per_item: f64, f64_per_item: f64) -> [f64; 3] {
    let issue = b.items * ins_per_item / (ISSUE_PER_CLK_SM * SMS * CLOCK_HZ);
    let f64t = b.items * f64_per_item / (F64_PER_CLK_SM * SMS * CLOCK_HZ);
    let floor = b.items * b.bytes / BYTES_PER_S;
    [issue, f64t, floor]
}

/// Every box, element-wise and dense-detector loss kernel within its budget (registers,
/// spills, instructions and f64 instructions per item of its hot loop, the memory-bound ones'
/// issue time within 70 % of the floor); the figures are printed.
#[test]
fn elementwise_and_box_kernels_within_their_sass_budget() {
    let Some(tool) = sass_tool_or_skip("SASS budget (element-wise and box kernels)") else {
        return;
    };
    let mut failures = Vec::new();
    for fam in [
        Family::Regression,
        Family::Binary,
        Family::BoxLoss,
        Family::Distribution,
        Family::Quality,
        Family::OrientedBox,
    ] {
        let c = compile_cubin(fam, "sm_90", &["-Xptxas=-v"])
            .unwrap_or_else(|e| panic!("sm_90 {}: {e}", fam.kernel_file()));
        let text = sass_of(&tool, &c.image, &format!("{fam:?}_sm_90"));
        let funcs = parse_sass(&text);
        let regs = ptxas_report(&c.log);
        for b in BUDGETS.iter().filter(|b| b.family == fam) {
            assert!(
                fam.entry_points().contains(&b.name),
                "{}: not an entry",
                b.name
            );
            let f = funcs
                .iter()
                .find(|f| f.name == b.name)
                .unwrap_or_else(|| panic!("no SASS for {}", b.name));
            let (_, spill, r) = regs
                .iter()
                .find(|(n, _, _)| n == b.name)
                .unwrap_or_else(|| panic!("no ptxas report for {}", b.name));
            let hot = match hot_loop(f, b.per_vector) {
                Ok(h) => h,
                Err(e) => {
                    failures.push(e);
                    continue;
                }
            };
            let per = b.per_vector as f64;
            let (ins, f64i) = (hot.n as f64 / per, hot.f64_ins as f64 / per);
            let [issue, f64t, floor] = model(b, ins, f64i);
            eprintln!(
                "{}: {r} registers, {spill} B spills; hot loop [{:#x}, {:#x}]: {:.2} \
                 instructions and {:.2} f64 per item, {} calls, {} LDG.E.128, {} STG.E.128; \
                 {:.0} items: floor {:.4} ms, issue {:.4} ms ({:.0} %), f64 {:.4} ms ({:.0} %)",
                b.name,
                hot.lo,
                hot.hi,
                ins,
                f64i,
                hot.calls,
                hot.ldg128,
                hot.stg128,
                b.items,
                floor * 1e3,
                issue * 1e3,
                issue / floor * 100.0,
                f64t * 1e3,
                f64t / floor * 100.0
            );
            if *spill != 0 {
                failures.push(format!("{}: {spill} bytes of spills", b.name));
            }
            if *r > b.regs {
                failures.push(format!("{}: {r} registers > {}", b.name, b.regs));
            }
            if ins > b.ins {
                failures.push(format!(
                    "{}: {ins:.2} instructions per item > {}",
                    b.name, b.ins
                ));
            }
            if f64i > b.f64_ins {
                failures.push(format!(
                    "{}: {f64i:.2} f64 per item > {}",
                    b.name, b.f64_ins
                ));
            }
            if b.memory_bound && issue.max(f64t) > FLOOR_FRACTION * floor {
                failures.push(format!(
                    "{}: issue {:.0} % of the floor > {:.0} %",
                    b.name,
                    issue.max(f64t) / floor * 100.0,
                    FLOOR_FRACTION * 100.0
                ));
            }
        }
    }
    assert!(failures.is_empty(), "over budget: {failures:#?}");
}

/// The f64 classifier and the hot-loop finder on a hand-written listing: a vector loop with a
/// 16-byte load, two f64 instructions and a call, and a scalar tail loop.
#[test]
fn hot_loop_finder_counts_a_hand_written_listing() {
    let text = "\t\tFunction : k\n\
        /*0000*/ MOV R1, c[0x0][0x28] ;\n\
        /*0010*/ LDG.E.128 R4, desc[UR4][R2.64] ;\n\
        /*0020*/ F2F.F64.F32 R8, R4 ;\n\
        /*0030*/ DADD R8, R8, R10 ;\n\
        /*0040*/ CALL.REL.NOINC 0x100 ;\n\
        /*0050*/ @!P0 BRA 0x10 ;\n\
        /*0060*/ LDG.E R4, desc[UR4][R2.64] ;\n\
        /*0070*/ @!P1 BRA 0x60 ;\n\
        /*0080*/ DEPBAR.LE SB0, 0x0 ;\n\
        /*0090*/ EXIT ;\n";
    let funcs = parse_sass(text);
    let ls = global_loops(&funcs[0]);
    assert_eq!(ls.len(), 2, "{ls:?}");
    let v = hot_loop(&funcs[0], 4).unwrap();
    assert_eq!(
        (v.lo, v.hi, v.n, v.f64_ins, v.calls, v.ldg128),
        (0x10, 0x50, 5, 2, 1, 1)
    );
    let s = hot_loop(&funcs[0], 1).unwrap();
    assert_eq!((s.lo, s.n), (0x10, 5), "the costliest loop");
    assert!(!is_f64("DEPBAR.LE") && is_f64("DFMA") && is_f64("MUFU.RCP64H"));
}
