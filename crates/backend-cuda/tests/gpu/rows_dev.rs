//! The per-row outputs of the device-buffer cross-entropy (`CE-14`,
//! `CudaBackend::cross_entropy_rows_dev`) against the host entry's rows and the f64
//! reference's, and their length checks (ignored without a GPU).

use super::*;
use smoothloss_core::CeRowOutputs;
use smoothloss_cuda::DeviceRowOutputs;

#[test]
#[ignore = "needs a CUDA device"]
fn device_rows_match_the_reference_rows() {
    let b = backend!();
    let st = b.stream().clone();
    let (rows, classes) = (37usize, 301usize);
    let mut rng = Rng::new(5);
    let z: Vec<f32> = rng
        .vec(rows * classes, -6.0, 6.0)
        .iter()
        .map(|&x| x as f32)
        .collect();
    let mut t: Vec<i64> = (0..rows)
        .map(|i| {
            if i % 7 == 3 {
                -100
            } else {
                ((i * 13) % classes) as i64
            }
        })
        .collect();
    // Every fourth row's target is its argmax: hits and misses both.
    for i in (0..rows).step_by(4) {
        let r = &z[i * classes..(i + 1) * classes];
        t[i] = (0..classes).fold(0, |m, j| if r[j] > r[m] { j } else { m }) as i64;
    }
    for cfg in [
        CrossEntropy::new(),
        CrossEntropy::new().with_softcap(2.5).with_z_loss(1e-3),
    ] {
        let z64: Vec<f64> = z.iter().map(|&x| f64::from(x)).collect();
        let (mut lse, mut hit) = (vec![0.0f64; rows], vec![false; rows]);
        let want = ReferenceBackend
            .cross_entropy_rows(
                &cfg,
                Input::matrix(&z64, rows, classes),
                &t[..],
                CeRowOutputs::new().with_lse(&mut lse).with_hits(&mut hit),
            )
            .unwrap();
        let (zd, td) = (st.clone_htod(&z).unwrap(), st.clone_htod(&t).unwrap());
        let (mut ld, mut hd) = (
            st.alloc_zeros::<f32>(rows).unwrap(),
            st.alloc_zeros::<u8>(rows).unwrap(),
        );
        let out = b
            .cross_entropy_rows_dev(
                &cfg,
                Io::Read(&zd),
                [rows, classes],
                DeviceCeTargets::Classes(&td),
                DeviceUpstream::Scalar(1.0),
                DeviceRowOutputs {
                    lse: Some(&mut ld),
                    hit: Some(&mut hd),
                },
            )
            .unwrap();
        let loss = out.to_host().unwrap();
        let tol = smoothloss_spec::tolerance::Tolerance::F32;
        assert!(tol.check(&loss, &want.loss.into_values()).is_ok());
        let got_lse: Vec<f64> = st
            .clone_dtoh(&ld)
            .unwrap()
            .iter()
            .map(|&x| f64::from(x))
            .collect();
        assert!(tol.check(&got_lse, &lse).is_ok(), "{cfg:?}");
        let got_hit: Vec<bool> = st
            .clone_dtoh(&hd)
            .unwrap()
            .iter()
            .map(|&x| x != 0)
            .collect();
        assert_eq!(got_hit, hit, "{cfg:?}");
    }
}

#[test]
#[ignore = "needs a CUDA device"]
fn device_rows_of_the_wrong_length_are_refused_as_on_the_host() {
    let b = backend!();
    let st = b.stream().clone();
    let (rows, classes) = (4usize, 5usize);
    let z = st.clone_htod(&vec![0.5f32; rows * classes]).unwrap();
    let t = st.clone_htod(&[0i64, 1, 2, 3]).unwrap();
    let mut short = st.alloc_zeros::<f32>(rows - 1).unwrap();
    let e = b.cross_entropy_rows_dev(
        &CrossEntropy::new(),
        Io::Read(&z),
        [rows, classes],
        DeviceCeTargets::Classes(&t),
        DeviceUpstream::Scalar(1.0),
        DeviceRowOutputs {
            lse: Some(&mut short),
            hit: None,
        },
    );
    let zh = vec![0.5f32; rows * classes];
    let mut short_h = vec![0.0f32; rows - 1];
    let w = ReferenceBackend.cross_entropy_rows(
        &CrossEntropy::new(),
        Input::matrix(&zh, rows, classes),
        &[0i64, 1, 2, 3][..],
        CeRowOutputs::new().with_lse(&mut short_h),
    );
    assert_eq!(e.err(), w.err());
}
