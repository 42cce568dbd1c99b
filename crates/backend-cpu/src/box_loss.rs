//! box_loss on the CPU (placeholder: the default methods call the reference until the fast path lands).

use crate::CpuBackend;
use smoothloss_core::backend::BoxLossOps;

impl BoxLossOps<f32> for CpuBackend {}
