//! The target split of the distribution focal loss (`DFL-1`), in `f64` as the reference; the
//! rows' softmax is in `lanes.rs`.

use smoothloss_core::DflConvention;

/// The left bin and the two weights of target `t` (`DFL-1`), in `f64` as the reference (the
/// clamp bound `bins - 1 - 0.01` and the weights are then rounded once).
#[inline]
pub(crate) fn split(t: f32, bins: usize, conv: DflConvention) -> (usize, f32, f32) {
    let t = f64::from(t);
    match conv {
        DflConvention::Ultralytics => {
            let t = t.clamp(0.0, bins as f64 - 1.0 - 0.01);
            let l = t as usize;
            let wl = (l + 1) as f64 - t;
            (l, wl as f32, (1.0 - wl) as f32)
        }
        DflConvention::Mmdetection => {
            let l = t as usize;
            (l, ((l + 1) as f64 - t) as f32, (t - l as f64) as f32)
        }
    }
}
