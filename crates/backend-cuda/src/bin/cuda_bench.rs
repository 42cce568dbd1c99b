//! `cuda_bench`: times the CUDA kernels on the shapes of the seed article's findings and prints
//! one JSON object per line (`gpu-bundle/run.sh` runs it; `benches/peers/torch_ce_gpu.py` reads
//! the lines).
//!
//! Each figure is the median over `--iters` timed calls (CUDA events on the backend's stream,
//! one call per event pair, after `--warmup` untimed calls) of one whole device-API loss call:
//! forward + gradient, mean reduction, including the call's small allocations and the final
//! reduction, without any host synchronisation inside. `floor_ms` is the bytes the call must
//! move (read the inputs once, write the gradient once) at the copy bandwidth measured in the
//! same run.
//!
//! Cross-entropy rows also give the launch plan (blocks per row, threads, shared memory per
//! block), an in-place row (`cross_entropy_inplace`), and, unless `--no-sweep`, the same call
//! under other shared-memory targets per block (`cross_entropy_sweep`, for tuning
//! `geometry::CE_SMEM_TARGET`).
//!
//! Usage: `cuda_bench [--quick] [--no-sweep] [--iters N] [--warmup N] [--batch N]` (`--batch`:
//! calls per event pair, default 10).

use std::process::ExitCode;
use std::sync::Arc;

use cudarc::driver::sys::CUevent_flags;
use cudarc::driver::{CudaSlice, CudaStream};
use smoothloss_core::{
    BoxFormat, BoxLoss, BoxLossKind, CrossEntropy, Io, LossError, Result, SmoothL1,
};
use smoothloss_cuda::half::bf16;
use smoothloss_cuda::{CeElement, CudaBackend, DeviceCeTargets, DeviceUpstream, WrapErr};

struct Opts {
    quick: bool,
    sweep: bool,
    iters: usize,
    warmup: usize,
    batch: usize,
}

fn parse(args: &[String]) -> std::result::Result<Opts, String> {
    let mut o = Opts {
        quick: false,
        sweep: true,
        iters: 20,
        warmup: 3,
        batch: 10,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut num = |name: &str| -> std::result::Result<usize, String> {
            it.next()
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| format!("{name} needs a number"))
        };
        match a.as_str() {
            "--quick" => o.quick = true,
            "--no-sweep" => o.sweep = false,
            "--iters" => o.iters = num("--iters")?.max(1),
            "--warmup" => o.warmup = num("--warmup")?,
            "--batch" => o.batch = num("--batch")?.max(1),
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    Ok(o)
}

/// Median and minimum in milliseconds per call of `iters` timed samples of `f`, each sample
/// `batch` back-to-back calls between one event pair (so the per-call host work overlaps the
/// device's, as in a training loop, instead of being timed alone).
fn time(b: &CudaBackend, o: &Opts, mut f: impl FnMut() -> Result<()>) -> Result<(f64, f64)> {
    let st: &Arc<CudaStream> = b.stream();
    for _ in 0..o.warmup {
        f()?;
    }
    let mut ms = Vec::with_capacity(o.iters);
    for _ in 0..o.iters {
        let start = b
            .context()
            .new_event(Some(CUevent_flags::CU_EVENT_DEFAULT))
            .w()?;
        let end = b
            .context()
            .new_event(Some(CUevent_flags::CU_EVENT_DEFAULT))
            .w()?;
        start.record(st).w()?;
        for _ in 0..o.batch {
            f()?;
        }
        end.record(st).w()?;
        end.synchronize().w()?;
        ms.push(f64::from(start.elapsed_ms(&end).w()?) / o.batch as f64);
    }
    ms.sort_by(f64::total_cmp);
    Ok((ms[ms.len() / 2], ms[0]))
}

fn pattern(n: usize, lo: f32, hi: f32) -> Vec<f32> {
    (0..n)
        .map(|i| {
            let h = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40;
            lo + (hi - lo) * (h as f32 / (1u64 << 24) as f32)
        })
        .collect()
}

fn emit(fields: &[(&str, String)]) {
    let body: Vec<String> = fields.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
    println!("{{{}}}", body.join(","));
}

/// A device input with its gradient into a separate buffer.
fn sep<'a, T>(input: &'a CudaSlice<T>, grad: &'a mut CudaSlice<T>) -> Io<'a, CudaSlice<T>> {
    Io::Separate { input, grad }
}

fn s(v: &str) -> String {
    format!("\"{v}\"")
}

fn copy_bandwidth(b: &CudaBackend, o: &Opts) -> Result<f64> {
    let n: usize = if o.quick { 1 << 26 } else { 1 << 28 }; // f32 elements: 256 MiB / 1 GiB
    let st = b.stream().clone();
    let src = st.alloc_zeros::<f32>(n).w()?;
    let mut dst = st.alloc_zeros::<f32>(n).w()?;
    let (med, min) = time(b, o, || st.memcpy_dtod(&src, &mut dst).w())?;
    let bytes = 2.0 * (n * 4) as f64;
    let tbs = bytes / (med * 1e-3) / 1e12;
    emit(&[
        ("bench", s("copy")),
        ("bytes_moved", format!("{bytes}")),
        ("median_ms", format!("{med:.4}")),
        ("min_ms", format!("{min:.4}")),
        ("tb_per_s", format!("{tbs:.3}")),
    ]);
    Ok(tbs)
}

/// Times cross-entropy on one shape and dtype: the default backend with a separate gradient
/// buffer (`cross_entropy`), the `sweep` backends likewise (`cross_entropy_sweep`), then in
/// place (`cross_entropy_inplace`, last: it overwrites the logits). The logits are generated
/// and uploaded once.
#[allow(clippy::too_many_arguments)]
fn bench_ce<T: CeElement>(
    b: &CudaBackend,
    sweep: &[CudaBackend],
    o: &Opts,
    rows: usize,
    classes: usize,
    tbs: f64,
    convert: impl Fn(f32) -> T,
) -> Result<()> {
    let st = b.stream().clone();
    let host: Vec<T> = pattern(rows * classes, -8.0, 8.0)
        .into_iter()
        .map(&convert)
        .collect();
    let mut z: CudaSlice<T> = st.clone_htod(&host).w()?;
    drop(host);
    let targets: Vec<i64> = (0..rows).map(|i| ((i * 7919) % classes) as i64).collect();
    let t = st.clone_htod(&targets).w()?;
    let mut g = st.alloc_zeros::<T>(rows * classes).w()?;
    let cfg = CrossEntropy::new().with_label_smoothing(0.1);
    let elem = std::mem::size_of::<T>() as f64;
    let bytes = 2.0 * (rows * classes) as f64 * elem;
    let floor_ms = bytes / (tbs * 1e12) * 1e3;
    let tg = DeviceCeTargets::Classes(&t);
    let up = DeviceUpstream::Scalar(1.0);
    let report = |bench: &str, bk: &CudaBackend, med: f64, min: f64, loss: f64| {
        let plan = bk.ce_plan(classes, std::mem::size_of::<T>(), true);
        emit(&[
            ("bench", s(bench)),
            ("impl", s("smoothloss-cuda")),
            ("rows", rows.to_string()),
            ("classes", classes.to_string()),
            ("dtype", s(T::DTYPE)),
            ("label_smoothing", "0.1".into()),
            ("median_ms", format!("{med:.4}")),
            ("min_ms", format!("{min:.4}")),
            ("floor_ms", format!("{floor_ms:.4}")),
            ("pct_of_floor", format!("{:.1}", 100.0 * floor_ms / med)),
            ("loss", format!("{loss}")),
            ("cluster", plan.cluster.to_string()),
            ("threads", plan.threads.to_string()),
            ("smem_bytes", plan.smem_bytes.to_string()),
            ("flags", plan.flags.to_string()),
            ("rows_per_block", plan.rows_per_block.to_string()),
        ]);
    };
    let separate = std::iter::once(("cross_entropy", b))
        .chain(sweep.iter().map(|bk| ("cross_entropy_sweep", bk)));
    // A failing variant is reported as an error line; the others still run.
    let mut first_err = None;
    for (bench, bk) in separate {
        let mut one = || -> Result<()> {
            // One checked call first (errors surface here, with the device's check).
            let loss = bk
                .cross_entropy_dev(&cfg, sep(&z, &mut g), [rows, classes], tg, up)?
                .to_host()?[0];
            let (med, min) = time(bk, o, || {
                bk.cross_entropy_dev(&cfg, sep(&z, &mut g), [rows, classes], tg, up)
                    .map(drop)
            })?;
            report(bench, bk, med, min, loss);
            Ok(())
        };
        if let Err(e) = one() {
            let plan = bk.ce_plan(classes, std::mem::size_of::<T>(), true);
            emit(&[
                ("bench", s("error")),
                (
                    "what",
                    s(&format!("{bench} {rows}x{classes} {} {plan:?}", T::DTYPE)),
                ),
                ("error", s(&e.to_string().replace('"', "'"))),
            ]);
            first_err.get_or_insert(e);
        }
    }
    let loss = b
        .cross_entropy_dev(&cfg, Io::InPlace(&mut z), [rows, classes], tg, up)?
        .to_host()?[0];
    // (Later calls overwrite gradients with gradients: the same traffic and work.)
    let (med, min) = time(b, o, || {
        b.cross_entropy_dev(&cfg, Io::InPlace(&mut z), [rows, classes], tg, up)
            .map(drop)
    })?;
    report("cross_entropy_inplace", b, med, min, loss);
    first_err.map_or(Ok(()), Err)
}

fn bench_box(b: &CudaBackend, o: &Opts, n: usize, kind: BoxLossKind, tbs: f64) -> Result<()> {
    let st = b.stream().clone();
    let mut pred = Vec::with_capacity(4 * n);
    let mut target = Vec::with_capacity(4 * n);
    let r = pattern(8 * n, 0.0, 1.0);
    for i in 0..n {
        let q = &r[8 * i..8 * i + 8];
        let (x, y, w, h) = (
            q[0] * 100.0,
            q[1] * 100.0,
            1.0 + q[2] * 30.0,
            1.0 + q[3] * 30.0,
        );
        target.extend_from_slice(&[x, y, x + w, y + h]);
        let (px, py) = (x + (q[4] - 0.5) * 10.0, y + (q[5] - 0.5) * 10.0);
        pred.extend_from_slice(&[px, py, px + 1.0 + q[6] * 30.0, py + 1.0 + q[7] * 30.0]);
    }
    let p = st.clone_htod(&pred).w()?;
    let t = st.clone_htod(&target).w()?;
    let mut g = st.alloc_zeros::<f32>(4 * n).w()?;
    let cfg = BoxLoss::new(kind, BoxFormat::Xyxy);
    let bytes = (n * 12 * 4) as f64;
    let floor_ms = bytes / (tbs * 1e12) * 1e3;
    let (med, min) = time(b, o, || {
        b.box_loss_dev(&cfg, sep(&p, &mut g), &t, DeviceUpstream::Scalar(1.0))
            .map(drop)
    })?;
    let v = b
        .box_loss_dev(&cfg, sep(&p, &mut g), &t, DeviceUpstream::Scalar(1.0))?
        .to_host()?;
    emit(&[
        ("bench", s("box_loss")),
        ("impl", s("smoothloss-cuda")),
        ("kind", s(kind.as_str())),
        ("pairs", n.to_string()),
        ("median_ms", format!("{med:.4}")),
        ("min_ms", format!("{min:.4}")),
        ("floor_ms", format!("{floor_ms:.4}")),
        ("pct_of_floor", format!("{:.1}", 100.0 * floor_ms / med)),
        ("loss", format!("{}", v[0])),
    ]);
    Ok(())
}

/// Pairwise IoU of `n` boxes against `n` boxes (`box_iou_dev`, `BOX-13`), as torchvision's
/// `box_iou` (the peer script times it on the same boxes); floor: writing the `n * n` outputs.
fn bench_box_iou(b: &CudaBackend, o: &Opts, n: usize, tbs: f64) -> Result<()> {
    let st = b.stream().clone();
    let r = pattern(8 * n, 0.0, 1.0);
    let boxes = |k: usize| -> Vec<f32> {
        (0..n)
            .flat_map(|i| {
                let q = &r[8 * i + 4 * k..8 * i + 4 * k + 4];
                let (x, y) = (q[0] * 100.0, q[1] * 100.0);
                [x, y, x + 1.0 + q[2] * 30.0, y + 1.0 + q[3] * 30.0]
            })
            .collect()
    };
    let b1 = st.clone_htod(&boxes(0)).w()?;
    let b2 = st.clone_htod(&boxes(1)).w()?;
    let mut out = st.alloc_zeros::<f32>(n * n).w()?;
    let floor_ms = (n * n * 4 + 2 * n * 16) as f64 / (tbs * 1e12) * 1e3;
    let (med, min) = time(b, o, || b.box_iou_dev(BoxFormat::Xyxy, &b1, &b2, &mut out))?;
    emit(&[
        ("bench", s("box_iou")),
        ("impl", s("smoothloss-cuda")),
        ("boxes", n.to_string()),
        ("median_ms", format!("{med:.4}")),
        ("min_ms", format!("{min:.4}")),
        ("floor_ms", format!("{floor_ms:.4}")),
        ("pct_of_floor", format!("{:.1}", 100.0 * floor_ms / med)),
    ]);
    Ok(())
}

fn bench_smooth_l1(b: &CudaBackend, o: &Opts, n: usize, tbs: f64) -> Result<()> {
    let st = b.stream().clone();
    let p = st.clone_htod(&pattern(n, -3.0, 3.0)).w()?;
    let t = st.clone_htod(&pattern(n, -2.0, 2.0)).w()?;
    let mut g = st.alloc_zeros::<f32>(n).w()?;
    let cfg = SmoothL1::default();
    let floor_ms = (n * 12) as f64 / (tbs * 1e12) * 1e3;
    let (med, min) = time(b, o, || {
        b.smooth_l1_dev(&cfg, sep(&p, &mut g), &t, DeviceUpstream::Scalar(1.0))
            .map(drop)
    })?;
    emit(&[
        ("bench", s("smooth_l1")),
        ("impl", s("smoothloss-cuda")),
        ("elements", n.to_string()),
        ("median_ms", format!("{med:.4}")),
        ("min_ms", format!("{min:.4}")),
        ("floor_ms", format!("{floor_ms:.4}")),
        ("pct_of_floor", format!("{:.1}", 100.0 * floor_ms / med)),
    ]);
    Ok(())
}

fn run(o: &Opts) -> Result<()> {
    let b = CudaBackend::new(0)?;
    b.load_all()?;
    emit(&[
        ("bench", s("device")),
        ("arch", s(b.arch())),
        ("name", s(&b.context().name().w()?.replace('"', "'"))),
    ]);
    let tbs = copy_bandwidth(&b, o)?;
    // The budget's shapes (issue 16) also in the quick run (fewer repeats, no sweep there).
    let ce_shapes: &[(usize, usize)] = &[(8192, 32000), (4096, 128_256), (65536, 1000)];
    // The sweep: the same calls with 24, 96 and 200 KiB shared-memory targets per block
    // (default 48 KiB), with one block per row (no clusters; rows kept on chip up to the
    // opt-in limit), and with at most 256 or 128 threads per block (default 512; 8 or 4 rows
    // per block in the warp-per-row layout). 5 KiB: under two 1000-class rows' regions, so
    // those rows take one block per row instead of the warp layout (its comparison).
    let sweep: Vec<CudaBackend> = if o.sweep {
        [5 * 1024, 24 * 1024, 96 * 1024, 200 * 1024]
            .iter()
            .map(|&t| b.with_ce_shared_memory(t, usize::MAX))
            .chain([
                b.with_ce_max_cluster(1),
                b.with_ce_max_threads(256),
                b.with_ce_max_threads(128),
            ])
            .collect()
    } else {
        Vec::new()
    };
    // A failing benchmark is reported and the others still run (the exit status says).
    let mut failed = 0;
    let mut check = |what: String, r: Result<()>| {
        if let Err(e) = r {
            emit(&[
                ("bench", s("error")),
                ("what", s(&what)),
                ("error", s(&e.to_string().replace('"', "'"))),
            ]);
            failed += 1;
        }
    };
    for &(rows, classes) in ce_shapes {
        check(
            format!("cross_entropy {rows}x{classes} f32"),
            bench_ce::<f32>(&b, &sweep, o, rows, classes, tbs, |x| x),
        );
        check(
            format!("cross_entropy {rows}x{classes} bf16"),
            bench_ce::<bf16>(&b, &sweep, o, rows, classes, tbs, bf16::from_f32),
        );
    }
    let pairs = if o.quick { 1 << 20 } else { 4_194_304 };
    for kind in [BoxLossKind::Giou, BoxLossKind::Diou, BoxLossKind::Ciou] {
        check(format!("box {kind:?}"), bench_box(&b, o, pairs, kind, tbs));
    }
    let boxes = if o.quick { 2048 } else { 4096 };
    check("box_iou".into(), bench_box_iou(&b, o, boxes, tbs));
    let n = if o.quick { 1 << 24 } else { 1 << 26 };
    check("smooth_l1".into(), bench_smooth_l1(&b, o, n, tbs));
    if failed > 0 {
        return Err(LossError::Device(format!(
            "{failed} benchmark(s) failed (error lines above)"
        )));
    }
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let o = match parse(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("cuda_bench: {e}\nusage: cuda_bench [--quick] [--iters N] [--warmup N]");
            return ExitCode::from(2);
        }
    };
    match run(&o) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let msg = match &e {
                LossError::Device(m) => m.clone(),
                other => other.to_string(),
            };
            emit(&[("bench", s("error")), ("error", format!("{msg:?}"))]);
            ExitCode::FAILURE
        }
    }
}
