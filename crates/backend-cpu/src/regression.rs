//! regression on the CPU (placeholder: the default methods call the reference until the fast path lands).

use crate::CpuBackend;
use smoothloss_core::backend::RegressionOps;

impl RegressionOps<f32> for CpuBackend {}
