//! The core's `BufferLosses` trait on device slices: code generic over a backend's own buffers
//! gets the same values as the host front door.

use super::*;
use smoothloss_core::BufferLosses;

/// Smooth L1 (mean, gradient into `g`) through any buffer backend.
fn smooth_l1_on<'a, B: BufferLosses<f32>>(
    b: &'a B,
    x: &B::Buffer,
    y: &B::Buffer,
    g: &mut B::Buffer,
    up: B::Upstream<'a>,
) -> smoothloss_core::Result<B::Output> {
    b.smooth_l1_buf(
        &SmoothL1::default(),
        Io::Separate { input: x, grad: g },
        y,
        up,
    )
}

#[test]
#[ignore = "needs a CUDA device"]
fn buffer_losses_on_device_slices_match_the_front_door() {
    let b = backend!();
    let st = b.stream().clone();
    let (x, y) = ([0.0f32, 1.0, 2.0, 3.0], [0.5f32, 1.0, 0.0, 10.0]);
    let (xd, yd) = (st.clone_htod(&x).unwrap(), st.clone_htod(&y).unwrap());
    let mut gd = st.alloc_zeros::<f32>(4).unwrap();
    let out = smooth_l1_on(&b, &xd, &yd, &mut gd, DeviceUpstream::Scalar(1.0)).unwrap();
    let mut g = [0.0f32; 4];
    let want = ReferenceBackend
        .smooth_l1(&SmoothL1::default(), Input::new(&x).with_grad(&mut g), &y)
        .unwrap();
    assert_close("loss", &out.to_host().unwrap(), want.values(), 1e-12, 0.0);
    let got_g: Vec<f64> = st
        .clone_dtoh(&gd)
        .unwrap()
        .iter()
        .map(|&v| f64::from(v))
        .collect();
    let want_g: Vec<f64> = g.iter().map(|&v| f64::from(v)).collect();
    assert_close("grad", &got_g, &want_g, 1e-6, 0.0);
}
