//! The vocab-parallel fused linear cross-entropy (`VP-6`) with this backend's cuBLAS chunk
//! products (`ChunkGemm<f32> for CudaBackend`): the three products against the reference's
//! `f64` sums, then the whole loss sharded over 1-4 in-process ranks (threads, one GPU) and
//! over a one-rank NCCL communicator, against the unsharded `f64` reference on the same rounded
//! inputs (ignored without a GPU; the GPU bundle runs this test binary).

use super::*;
use smoothloss_core::vocab_parallel::{self, LinearShard};
use smoothloss_core::{ChunkGemm, Linear};
use smoothloss_cuda::{NcclCollective, nccl_library_present};
use smoothloss_spec::cases::linear_ce::{
    LinearCeCall, LinearCeOutput, run_linear_ce, run_linear_ce_sharded,
};
use smoothloss_spec::conformance::linear_ce::compare_linear;
use smoothloss_spec::conformance::{AbsScale, Outcome};
use smoothloss_spec::tolerance::Tolerance;

/// `got` within `rel` of `want` relative to `want`'s largest magnitude.
fn close(what: &str, got: &[f32], want: &[f32], rel: f64) {
    assert_eq!(got.len(), want.len(), "{what}");
    let scale = want
        .iter()
        .fold(1e-30f64, |m, &v| m.max(f64::from(v).abs()));
    for (k, (&g, &w)) in got.iter().zip(want).enumerate() {
        let d = (f64::from(g) - f64::from(w)).abs();
        assert!(d <= rel * scale, "{what} {k}: {g} vs {w}");
    }
}

#[test]
#[ignore = "needs a CUDA device"]
fn cublas_chunk_products_match_the_reference_sums() {
    let b = backend!();
    let (m, n, k) = (13usize, 37usize, 24usize);
    let mut rng = Rng::new(61);
    let f = |v: Vec<f64>| -> Vec<f32> { v.into_iter().map(|x| x as f32).collect() };
    let (h, w, bias) = (
        f(rng.vec(m * k, -1.0, 1.0)),
        f(rng.vec(n * k, -1.0, 1.0)),
        f(rng.vec(n, -1.0, 1.0)),
    );
    let g = f(rng.vec(m * n, -1.0, 1.0));
    let dw0 = f(rng.vec(n * k, -1.0, 1.0));
    for with_bias in [false, true] {
        let bb = with_bias.then_some(&bias[..]);
        let (mut z1, mut z2) = (vec![0.0f32; m * n], vec![0.0f32; m * n]);
        b.chunk_logits(&h, &w, bb, k, &mut z1).unwrap();
        ReferenceBackend
            .chunk_logits(&h, &w, bb, k, &mut z2)
            .unwrap();
        close("logits", &z1, &z2, 1e-5);
    }
    let (mut d1, mut d2) = (vec![7.0f32; m * k], vec![0.0f32; m * k]);
    b.chunk_grad_hidden(&g, &w, k, &mut d1).unwrap();
    ReferenceBackend
        .chunk_grad_hidden(&g, &w, k, &mut d2)
        .unwrap();
    close("d hidden", &d1, &d2, 1e-5);
    let (mut w1, mut w2) = (dw0.clone(), dw0.clone());
    b.chunk_grad_weight(&g, &h, k, &mut w1).unwrap();
    ReferenceBackend
        .chunk_grad_weight(&g, &h, k, &mut w2)
        .unwrap();
    close("d weight (accumulated)", &w1, &w2, 1e-5);
    // An empty vocabulary slice: d hidden is zero, d weight untouched; a wrong length is a
    // typed error and leaves the output as it was.
    let mut dz = vec![3.0f32; m * k];
    b.chunk_grad_hidden(&[], &[], k, &mut dz).unwrap();
    assert!(dz.iter().all(|&v| v == 0.0));
    let mut z = vec![5.0f32; m * n - 1];
    let e = b.chunk_logits(&h, &w, None, k, &mut z).unwrap_err();
    assert!(
        matches!(e, LossError::ShapeMismatch { what: "logits", .. }),
        "{e}"
    );
    assert!(z.iter().all(|&v| v == 5.0));
}

fn call(seed: u64, cfg: CrossEntropy) -> LinearCeCall {
    let mut c = LinearCeCall::random(seed, 19, 16, 53, cfg, seed.is_multiple_of(2));
    c.cfg = c.cfg.with_chunk_rows(8);
    c
}

#[test]
#[ignore = "needs a CUDA device"]
fn vocab_parallel_linear_ce_on_cublas_matches_the_unsharded_reference() {
    let b = backend!();
    let cfgs = [
        CrossEntropy::new(),
        CrossEntropy::smooth_loss(0.1)
            .with_softcap(2.5)
            .with_z_loss(1e-3),
    ];
    for (s, cfg) in cfgs.into_iter().enumerate() {
        let c = call(400 + s as u64, cfg);
        let up = Upstream::Scalar(1.0);
        let want =
            run_linear_ce::<f64, _>(&ReferenceBackend, &c.rounded::<f32>(), up, true).unwrap();
        let wmax = AbsScale::of_weights(c.cfg.ce.class_weights.as_deref());
        for widths in [vec![53], vec![20, 33], vec![10, 0, 30, 13]] {
            let got = run_linear_ce_sharded::<f32, _>(&b, &c, up, &widths).unwrap();
            let o = compare_linear(&got.whole, &want, &Tolerance::LCE_F32, wmax);
            assert_eq!(o, Outcome::Passed, "{widths:?}");
        }
    }
}

#[test]
#[ignore = "needs a CUDA device"]
fn vocab_parallel_linear_ce_over_a_one_rank_nccl_communicator() {
    let b = backend!();
    if !nccl_library_present() {
        eprintln!("skipped: no libnccl (the one-rank NCCL run needs it)");
        return;
    }
    let c = call(77, CrossEntropy::smooth_loss(0.1));
    let (n, h, v) = (c.rows(), c.hidden_dim, c.vocab());
    let up = Upstream::Scalar(1.0);
    let want = run_linear_ce::<f64, _>(&ReferenceBackend, &c.rounded::<f32>(), up, true).unwrap();
    let f = |x: &[f64]| -> Vec<f32> { x.iter().map(|&x| x as f32).collect() };
    let (hid, w) = (f(&c.hidden), f(&c.weight));
    let bias = c.bias.as_deref().map(f);
    let t = match &c.targets {
        smoothloss_spec::cases::Targets::Classes(t) => t.clone(),
        smoothloss_spec::cases::Targets::Probs(_) => unreachable!("class targets"),
    };
    let (mut dh, mut dw, mut db) = (vec![0.0f32; n * h], vec![0.0f32; v * h], vec![0.0f32; v]);
    let id = NcclCollective::unique_id().unwrap();
    let comm = NcclCollective::from_rank(&b, 0, 1, id).unwrap();
    let mut linear = Linear::new(&hid, &w, h).with_grads(&mut dh, &mut dw);
    if let Some(bb) = bias.as_deref() {
        linear = linear.with_bias(bb).with_bias_grad(&mut db);
    }
    let shard = LinearShard::new(linear, v, 0);
    let got = vocab_parallel::linear_cross_entropy(&b, &comm, &c.cfg, shard, &t[..]).unwrap();
    let wide = |x: &[f32]| -> Vec<f64> { x.iter().map(|&v| f64::from(v)).collect() };
    let db = if bias.is_some() {
        wide(&db)
    } else {
        Vec::new()
    };
    let got = LinearCeOutput {
        loss: got.into_values(),
        grads: Some([wide(&dh), wide(&dw), db]),
    };
    let wmax = AbsScale::of_weights(c.cfg.ce.class_weights.as_deref());
    let o = compare_linear(&got, &want, &Tolerance::LCE_F32, wmax);
    assert_eq!(o, Outcome::Passed);
}
