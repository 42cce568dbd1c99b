//! `lce_gpu_bench`: times smoothloss's device linear cross-entropy
//! (`CudaBackend::linear_cross_entropy_dev`, `LCE-6`) forward + backward in bf16 at
//! `N x H x V` (default 8192 x 4096 x 128256, the GPU bundle's `lce-peers` shape; `--quick`:
//! N = 2048) and prints one JSON line beside `torch_linear_ce_gpu.py`'s peers.
//!
//! Time: median wall-clock of `--iters` calls (after one warm-up), each ended by a stream
//! synchronisation (the call itself synchronises once per chunk to read the chunk's losses).
//! Memory: the device's free memory sampled every 0.2 ms on a second thread during the calls;
//! `peak_extra_bytes` = free memory before the calls minus its minimum, i.e. what the call
//! allocated beyond the inputs and gradients (cuBLAS workspace included; driver-level, where
//! `torch.cuda.max_memory_allocated` counts PyTorch's allocator: compare with that in mind).
//!
//! Usage: `lce_gpu_bench [--quick] [--iters N] [--chunk ROWS]`.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

use smoothloss_core::{CrossEntropy, LinearCrossEntropy, LossError, Result};
use smoothloss_cuda::half::bf16;
use smoothloss_cuda::{CudaBackend, DeviceCeTargets, DeviceLinear, WrapErr};

fn fill(n: usize, seed: u64, a: f32) -> Vec<bf16> {
    let mut s = seed | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            bf16::from_f32(((s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * a)
        })
        .collect()
}

fn run(quick: bool, iters: usize, chunk: Option<usize>) -> Result<()> {
    let (n, h, v) = (if quick { 2048 } else { 8192 }, 4096usize, 128_256usize);
    let b = CudaBackend::new(0)?;
    let st = b.stream().clone();
    let hid = st.clone_htod(&fill(n * h, 1, 1.0)).w()?;
    let w = st
        .clone_htod(&fill(v * h, 2, 1.0 / (h as f32).sqrt()))
        .w()?;
    let t: Vec<i64> = (0..n).map(|i| ((i * 7919) % v) as i64).collect();
    let t = st.clone_htod(&t).w()?;
    let mut dh = st.alloc_zeros::<bf16>(n * h).w()?;
    let mut dw = st.alloc_zeros::<f32>(v * h).w()?;
    let mut cfg = LinearCrossEntropy::new(CrossEntropy::new());
    if let Some(c) = chunk {
        cfg = cfg.with_chunk_rows(c);
    }
    let mut call = || -> Result<f64> {
        let input = DeviceLinear::new(&hid, &w, h).with_grads(&mut dh, &mut dw);
        let l = b.linear_cross_entropy_dev(&cfg, input, DeviceCeTargets::Classes(&t))?;
        st.synchronize().w()?;
        Ok(l.value())
    };
    let loss = call()?; // warm-up (cuBLAS handle, kernels compiled)
    st.synchronize().w()?;
    b.context().bind_to_thread().w()?;
    let (free0, total) = cudarc::driver::result::mem_get_info().w()?;
    let (stop, low) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicUsize::new(free0)),
    );
    let sampler = {
        let (stop, low, ctx) = (stop.clone(), low.clone(), b.context().clone());
        std::thread::spawn(move || {
            if ctx.bind_to_thread().is_err() {
                return;
            }
            while !stop.load(Ordering::Relaxed) {
                if let Ok((f, _)) = cudarc::driver::result::mem_get_info() {
                    low.fetch_min(f, Ordering::Relaxed);
                }
                std::thread::sleep(std::time::Duration::from_micros(200));
            }
        })
    };
    let mut ms = Vec::with_capacity(iters);
    for _ in 0..iters {
        let t0 = Instant::now();
        call()?;
        ms.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    stop.store(true, Ordering::Relaxed);
    let _ = sampler.join();
    ms.sort_by(f64::total_cmp);
    let median = ms[ms.len() / 2];
    let peak_extra = free0.saturating_sub(low.load(Ordering::Relaxed));
    println!(
        "{{\"bench\": \"linear_ce_dev\", \"impl\": \"smoothloss\", \"shape\": \"{n}x{h}x{v}\", \"dtype\": \"bf16\", \"iters\": {iters}, \"median_ms\": {median:.3}, \"min_ms\": {:.3}, \"loss\": {loss}, \"peak_extra_bytes\": {peak_extra}, \"inputs_bytes\": {}, \"grads_bytes\": {}, \"device_total_bytes\": {total}}}",
        ms[0],
        (n * h + v * h) * 2 + n * 8,
        n * h * 2 + v * h * 4,
    );
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (mut quick, mut iters, mut chunk) = (false, 5usize, None);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--quick" => quick = true,
            "--iters" => iters = it.next().and_then(|x| x.parse().ok()).unwrap_or(5).max(1),
            "--chunk" => chunk = it.next().and_then(|x| x.parse().ok()),
            other => {
                eprintln!("lce_gpu_bench: unknown argument `{other}`");
                return ExitCode::from(2);
            }
        }
    }
    match run(quick, iters, chunk) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let msg = match &e {
                LossError::Device(m) => m.clone(),
                other => other.to_string(),
            };
            println!("{{\"bench\": \"linear_ce_dev\", \"error\": {msg:?}}}");
            ExitCode::FAILURE
        }
    }
}
