//! The NCCL collective (`VP-*`): refusals without NCCL or a device, here; the vocab-parallel
//! cross-entropy over two GPUs against the unsharded reference where two devices exist.

use smoothloss_core::vocab_parallel::{self, VocabShard};
use smoothloss_core::{CrossEntropy, Input, Losses, ReferenceBackend};
use smoothloss_cuda::{CudaBackend, NcclCollective, nccl_library_present};

#[test]
fn without_nccl_the_collective_is_a_typed_error_not_a_panic() {
    let id = NcclCollective::unique_id();
    if nccl_library_present() {
        // Making an id needs a device only at communicator creation.
        assert!(id.is_ok() || matches!(id, Err(smoothloss_core::LossError::Collective(_))));
    } else {
        let err = id.unwrap_err();
        assert!(
            matches!(&err, smoothloss_core::LossError::Device(m) if m.contains("libnccl")),
            "{err}"
        );
    }
}

/// Whether two CUDA devices and libnccl are here; without them the test says so and stops
/// (so that `cargo test -p smoothloss-cuda --release -- --include-ignored` goes on). With
/// `SMOOTHLOSS_REQUIRE_GPU=1` (the GPU bundle, as the device tests of `tests/gpu/`) no device at
/// all is a failure; a machine of one GPU, or without libnccl, still skips this test.
fn two_devices_and_nccl() -> bool {
    let missing = match (CudaBackend::new(0), CudaBackend::new(1)) {
        (Err(e), _) => {
            let required = std::env::var_os("SMOOTHLOSS_REQUIRE_GPU").is_some_and(|v| v != "0");
            assert!(
                !required,
                "SMOOTHLOSS_REQUIRE_GPU is set but there is no CUDA device: {e}"
            );
            format!("no CUDA device ({e})")
        }
        (_, Err(e)) => format!("no second CUDA device ({e})"),
        _ if !nccl_library_present() => "no libnccl".to_string(),
        _ => return true,
    };
    eprintln!(
        "skipped: {missing}; the two-GPU vocab-parallel test needs two CUDA devices and libnccl"
    );
    false
}

#[test]
#[ignore = "needs two CUDA devices and libnccl"]
fn two_gpu_vocab_parallel_cross_entropy_matches_the_unsharded_loss() {
    if !two_devices_and_nccl() {
        return;
    }
    let (n, v) = (4usize, 10usize);
    let z: Vec<f64> = (0..n * v)
        .map(|k| ((k * 37 % 17) as f64 - 8.0) * 0.3)
        .collect();
    let t = [1i64, 9, -100, 4];
    let cfg = CrossEntropy::smooth_loss(0.1);
    let mut want_g = vec![0.0; n * v];
    let want = ReferenceBackend
        .cross_entropy(&cfg, Input::matrix(&z, n, v).with_grad(&mut want_g), &t)
        .unwrap()
        .value();
    let id = NcclCollective::unique_id().unwrap();
    let widths = [6usize, 4];
    let out: Vec<(f64, Vec<f32>)> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..2)
            .map(|r| {
                let (z, cfg) = (&z, &cfg);
                s.spawn(move || {
                    let b = CudaBackend::new(r).unwrap();
                    let comm = NcclCollective::from_rank(&b, r, 2, id).unwrap();
                    let off = if r == 0 { 0 } else { widths[0] };
                    let local: Vec<f32> = (0..n)
                        .flat_map(|i| (0..widths[r]).map(move |j| z[i * v + off + j] as f32))
                        .collect();
                    let mut g = vec![0.0f32; local.len()];
                    let shard = VocabShard::new(&local, n, v, off).with_grad(&mut g);
                    let l = vocab_parallel::cross_entropy(&comm, cfg, shard, &t).unwrap();
                    (l.value(), g)
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (l, _) in &out {
        assert!((l - want).abs() <= 1e-6 * want.abs(), "{l} vs {want}");
    }
    for (r, (_, g)) in out.iter().enumerate() {
        let off = if r == 0 { 0 } else { widths[0] };
        for i in 0..n {
            for j in 0..widths[r] {
                let w = want_g[i * v + off + j];
                assert!((f64::from(g[i * widths[r] + j]) - w).abs() <= 1e-6 + 1e-5 * w.abs());
            }
        }
    }
}
