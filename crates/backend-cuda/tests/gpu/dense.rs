//! The dense-detector device-buffer entry points (`probiou_loss_dev`, `batch_probiou_dev`)
//! against the host front door of the same backend and the f64 reference (ignored without a
//! device), and their shape errors against the host's.

use super::*;
use smoothloss_core::ProbIou;

/// `n` pairs `[n, 5]`: targets anywhere, predictions near them.
fn obb_pairs(rng: &mut Rng, n: usize) -> (Vec<f32>, Vec<f32>) {
    let (mut p, mut t) = (Vec::new(), Vec::new());
    for _ in 0..n {
        let tb = [
            rng.range_f32(-50.0, 50.0),
            rng.range_f32(-50.0, 50.0),
            rng.range_f32(1.0, 30.0),
            rng.range_f32(1.0, 30.0),
            rng.range_f32(-3.0, 3.0),
        ];
        p.extend([
            tb[0] + rng.range_f32(-2.0, 2.0),
            tb[1] + rng.range_f32(-2.0, 2.0),
            tb[2] * rng.range_f32(0.7, 1.3),
            tb[3] * rng.range_f32(0.7, 1.3),
            tb[4] + rng.range_f32(-0.3, 0.3),
        ]);
        t.extend(tb);
    }
    (p, t)
}

#[test]
#[ignore = "needs a CUDA device"]
fn probiou_device_entries_match_the_front_door_and_the_reference() {
    let b = backend!();
    let st = b.stream().clone();
    let mut rng = Rng::new(1313);
    let n = 1001;
    let (p, t) = obb_pairs(&mut rng, n);
    let (pd, td) = (st.clone_htod(&p).unwrap(), st.clone_htod(&t).unwrap());
    for cfg in [
        ProbIou::new().with_reduction(Reduction::None),
        ProbIou::new().with_ciou(true),
        ProbIou::new()
            .with_floor(0.3)
            .with_reduction(Reduction::Sum),
    ] {
        let mut gd = st.alloc_zeros::<f32>(5 * n).unwrap();
        let out = b
            .probiou_loss_dev(
                &cfg,
                Io::Separate {
                    input: &pd,
                    grad: &mut gd,
                },
                &td,
                DeviceUpstream::Scalar(1.0),
            )
            .unwrap();
        let mut g = vec![0.0f32; 5 * n];
        let host = b
            .probiou_loss(&cfg, Input::new(&p).with_grad(&mut g), &t)
            .unwrap();
        // The same kernel on the same numbers: the same bits.
        assert_eq!(out.to_host().unwrap(), host.values(), "{cfg:?}");
        assert_eq!(st.clone_dtoh(&gd).unwrap(), g, "{cfg:?}");
        let (pw, tw) = (widen(&p), widen(&t));
        let mut gw = vec![0.0f64; 5 * n];
        let want = ReferenceBackend
            .probiou_loss(&cfg, Input::new(&pw).with_grad(&mut gw), &tw)
            .unwrap();
        assert_close("probiou loss", host.values(), want.values(), 1e-6, 1e-7);
        let gw32: Vec<f32> = gw.iter().map(|&v| v as f32).collect();
        assert_grad("probiou grad", &g, &gw32, 1e-5, 1e-6);
        // In place: the gradient over the predictions.
        let mut inplace = st.clone_htod(&p).unwrap();
        let again = b
            .probiou_loss_dev(
                &cfg,
                Io::InPlace(&mut inplace),
                &td,
                DeviceUpstream::Scalar(1.0),
            )
            .unwrap();
        assert_eq!(again.to_host().unwrap(), host.values(), "{cfg:?} in place");
        assert_eq!(st.clone_dtoh(&inplace).unwrap(), g, "{cfg:?} in place");
    }
    // Pairwise.
    let (a, c) = (&p[..5 * 37], &t[..5 * 53]);
    let (ad, cd) = (st.clone_htod(a).unwrap(), st.clone_htod(c).unwrap());
    let mut od = st.alloc_zeros::<f32>(37 * 53).unwrap();
    b.batch_probiou_dev(1e-7, &ad, &cd, &mut od).unwrap();
    let mut host = vec![0.0f32; 37 * 53];
    b.batch_probiou(1e-7, a, c, &mut host).unwrap();
    assert_eq!(st.clone_dtoh(&od).unwrap(), host);
    let mut want = vec![0.0f64; 37 * 53];
    ReferenceBackend
        .batch_probiou(1e-7, &widen(a), &widen(c), &mut want)
        .unwrap();
    assert_close("batch_probiou", &widen(&host), &want, 1e-6, 1e-7);
}

#[test]
#[ignore = "needs a CUDA device"]
fn probiou_device_shape_errors_are_the_hosts() {
    let b = backend!();
    let st = b.stream().clone();
    for (cfg, p_len, t_len) in [(ProbIou::new(), 12usize, 12usize), (ProbIou::new(), 10, 15)] {
        let (p, t) = (vec![1.0f32; p_len], vec![2.0f32; t_len]);
        let want = b.probiou_loss(&cfg, &p, &t).unwrap_err();
        let (pd, td) = (st.clone_htod(&p).unwrap(), st.clone_htod(&t).unwrap());
        let got = b
            .probiou_loss_dev(&cfg, Io::Read(&pd), &td, DeviceUpstream::Scalar(1.0))
            .unwrap_err();
        assert_eq!(got, want, "probiou {p_len} {t_len}");
    }
    let (a, c) = (vec![1.0f32; 10], vec![1.0f32; 15]);
    let (ad, cd) = (st.clone_htod(&a).unwrap(), st.clone_htod(&c).unwrap());
    let mut od = st.alloc_zeros::<f32>(5).unwrap();
    let mut host = vec![0.0f32; 5];
    assert_eq!(
        b.batch_probiou_dev(1e-7, &ad, &cd, &mut od).unwrap_err(),
        b.batch_probiou(1e-7, &a, &c, &mut host).unwrap_err()
    );
}
