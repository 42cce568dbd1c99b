//! The device-buffer linear cross-entropy (`CudaBackend::linear_cross_entropy_dev`, `LCE-6`)
//! in `f32`, `bf16` and `f16` against the f64 reference composite on the same rounded inputs,
//! with a given chunk and the free-memory one; its refusals (ignored without a GPU).

use super::*;
use smoothloss_core::{Linear, LinearCrossEntropy};
use smoothloss_cuda::half::{bf16, f16};
use smoothloss_cuda::{DeviceLinear, LceElement, chunk_rows_for_free};
use smoothloss_spec::covers;
use smoothloss_spec::tolerance::Tolerance;

/// `LCE-6`'s bound for `T` (`bits` mantissa bits: 24, 8 or 11).
fn tol(bits: i32) -> Tolerance {
    if bits >= 24 {
        Tolerance::LCE_F32
    } else {
        let u = 2f64.powi(-bits);
        Tolerance {
            abs: 4.0 * u,
            rel: 4.0 * u,
            scaled: 8.0 * u,
            capped_logit: Tolerance::F32_CAPPED_LOGIT,
        }
    }
}

fn check<T: LceElement>(
    b: &CudaBackend,
    to: impl Fn(f64) -> T,
    from: impl Fn(T) -> f64,
    bits: i32,
) {
    let st = b.stream().clone();
    let (n, h, v) = (37usize, 64usize, 1000usize);
    let mut rng = Rng::new(17);
    let r = |x: Vec<f64>| -> Vec<f64> { x.into_iter().map(|x| from(to(x))).collect() };
    let hid = r(rng.vec(n * h, -1.0, 1.0));
    let w = r(rng.vec(v * h, -0.5, 0.5));
    let bias = r(rng.vec(v, -1.0, 1.0));
    let t: Vec<i64> = (0..n)
        .map(|i| {
            if i % 6 == 5 {
                -100
            } else {
                ((i * 31) % v) as i64
            }
        })
        .collect();
    let ce = CrossEntropy::new()
        .with_label_smoothing(0.1)
        .with_softcap(15.0)
        .with_z_loss(1e-4);
    for lce in [
        LinearCrossEntropy::new(ce.clone()).with_chunk_rows(16),
        LinearCrossEntropy::new(ce.clone()),
    ] {
        let (mut dh, mut dw, mut db) = (vec![0.0; n * h], vec![0.0; v * h], vec![0.0; v]);
        let want = ReferenceBackend
            .linear_cross_entropy(
                &lce,
                Linear::new(&hid, &w, h)
                    .with_bias(&bias)
                    .with_grads(&mut dh, &mut dw)
                    .with_bias_grad(&mut db),
                &t[..],
            )
            .unwrap()
            .into_values();
        let dev = |x: &[f64]| {
            st.clone_htod(&x.iter().map(|&x| to(x)).collect::<Vec<T>>())
                .unwrap()
        };
        let (hd, wd, bd) = (dev(&hid), dev(&w), dev(&bias));
        let td = st.clone_htod(&t).unwrap();
        let mut gh = st.alloc_zeros::<T>(n * h).unwrap();
        let (mut gw, mut gb) = (
            st.alloc_zeros::<f32>(v * h).unwrap(),
            st.alloc_zeros::<f32>(v).unwrap(),
        );
        let got = b
            .linear_cross_entropy_dev(
                &lce,
                DeviceLinear::new(&hd, &wd, h)
                    .with_bias(&bd)
                    .with_grads(&mut gh, &mut gw)
                    .with_bias_grad(&mut gb),
                DeviceCeTargets::Classes(&td),
            )
            .unwrap()
            .into_values();
        let tl = tol(bits);
        tl.check(&got, &want).unwrap();
        let gh: Vec<f64> = st.clone_dtoh(&gh).unwrap().into_iter().map(&from).collect();
        tl.check(&gh, &dh).unwrap();
        tl.check(&widen(&st.clone_dtoh(&gw).unwrap()), &dw).unwrap();
        tl.check(&widen(&st.clone_dtoh(&gb).unwrap()), &db).unwrap();
    }
}

#[test]
#[ignore = "needs a CUDA device"]
fn device_linear_ce_matches_the_reference_in_every_dtype() {
    let b = backend!();
    check::<f32>(&b, |x| x as f32, f64::from, 24);
    check::<bf16>(&b, bf16::from_f64, bf16::to_f64, 8);
    check::<f16>(&b, f16::from_f64, f16::to_f64, 11);
}

#[test]
#[ignore = "needs a CUDA device"]
fn device_linear_ce_refusals_are_the_hosts() {
    let b = backend!();
    let st = b.stream().clone();
    let (n, h, v) = (4usize, 3usize, 5usize);
    let hid = st.clone_htod(&vec![0.5f32; n * h]).unwrap();
    let w_bad = st.clone_htod(&vec![0.5f32; v * h - 1]).unwrap();
    let t = st.clone_htod(&[0i64, 1, 2, 3]).unwrap();
    let lce = LinearCrossEntropy::new(CrossEntropy::new());
    let e = b.linear_cross_entropy_dev(
        &lce,
        DeviceLinear::new(&hid, &w_bad, h),
        DeviceCeTargets::Classes(&t),
    );
    let (hh, wh) = (vec![0.5f32; n * h], vec![0.5f32; v * h - 1]);
    let want =
        ReferenceBackend.linear_cross_entropy(&lce, Linear::new(&hh, &wh, h), &[0i64, 1, 2, 3][..]);
    assert_eq!(e.err(), want.err());
    // A target outside the vocabulary: the host's error, found before any launch.
    let w = st.clone_htod(&vec![0.5f32; v * h]).unwrap();
    let t_bad = st.clone_htod(&[0i64, 1, 9, 3]).unwrap();
    let e = b.linear_cross_entropy_dev(
        &lce,
        DeviceLinear::new(&hid, &w, h),
        DeviceCeTargets::Classes(&t_bad),
    );
    assert!(
        matches!(e, Err(LossError::TargetOutOfRange { row: 2, .. })),
        "{e:?}"
    );
    // Probability targets: not on this path.
    let p = st.clone_htod(&vec![0.2f32; n * v]).unwrap();
    let e = b.linear_cross_entropy_dev(
        &lce,
        DeviceLinear::new(&hid, &w, h),
        DeviceCeTargets::Probs(&p),
    );
    assert!(matches!(e, Err(LossError::Unsupported { .. })), "{e:?}");
}

#[test]
fn chunk_rows_fill_a_quarter_of_the_free_memory() {
    covers!("LCE-6");
    // 80 GiB free, V = 128256 bf16: a quarter holds 83,713 rows, rounded down to 16s.
    let r = chunk_rows_for_free(80 << 30, 128_256, 2, 1 << 20);
    assert_eq!(r, ((80usize << 30) / 4 / (128_256 * 2)) / 16 * 16);
    assert!(r * 128_256 * 2 <= (80usize << 30) / 4 && r.is_multiple_of(16));
    // At most N; at least 1 with almost nothing free; no overflow with absurd inputs.
    assert_eq!(chunk_rows_for_free(80 << 30, 128_256, 2, 8192), 8192);
    assert_eq!(chunk_rows_for_free(10, 128_256, 2, 8192), 1);
    assert_eq!(chunk_rows_for_free(usize::MAX, usize::MAX, 8, 3), 1);
    assert_eq!(chunk_rows_for_free(0, 0, 0, 0), 1);
    assert_eq!(chunk_rows_for_free(15 * 4 * 100, 100, 1, 1000), 15);
}
