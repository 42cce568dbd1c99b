//! Losses on a backend's own buffers (burn's associated primitives): device memory, a
//! framework's tensor storage. The same configurations and the same plans as the host front
//! door ([`Losses`](crate::Losses)); the buffers' lengths make the [`Extent`](crate::Extent),
//! and target values are checked where the buffers live (a GPU backend checks them on the
//! device and reports them when its output is read).

use crate::binary::{BceWithLogits, SigmoidFocal};
use crate::box_loss::{BoxFormat, BoxLoss};
use crate::call::Io;
use crate::cross_entropy::CrossEntropy;
use crate::error::Result;
use crate::regression::{Huber, SmoothL1};

/// Every loss on the buffers of a backend that owns its memory, for element type `T`.
///
/// `Io<'_, Self::Buffer>` says where the gradient goes, exactly as for host slices.
pub trait BufferLosses<T> {
    /// A buffer of `T` (for CUDA, `CudaSlice<T>`).
    type Buffer;
    /// Cross-entropy targets on the backend (class indices or probabilities).
    type Targets<'a>
    where
        Self: 'a;
    /// An upstream gradient on the backend (a scalar or one value per item).
    type Upstream<'a>
    where
        Self: 'a;
    /// What a call returns before its values are read (for CUDA, a device loss whose
    /// `to_host` also reports bad target values found on the device).
    type Output;

    /// Cross-entropy over logits `[rows, classes]`.
    fn cross_entropy_buf<'a>(
        &'a self,
        cfg: &CrossEntropy,
        logits: Io<'_, Self::Buffer>,
        shape: [usize; 2],
        targets: Self::Targets<'a>,
        upstream: Self::Upstream<'a>,
    ) -> Result<Self::Output>;

    /// Box loss over aligned pairs `[N, 4]`.
    fn box_loss_buf<'a>(
        &'a self,
        cfg: &BoxLoss,
        pred: Io<'_, Self::Buffer>,
        target: &Self::Buffer,
        upstream: Self::Upstream<'a>,
    ) -> Result<Self::Output>;

    /// Pairwise IoU `[N, M]` into `out`.
    fn box_iou_buf(
        &self,
        format: BoxFormat,
        boxes1: &Self::Buffer,
        boxes2: &Self::Buffer,
        out: &mut Self::Buffer,
    ) -> Result<()>;

    /// Smooth L1, element-wise.
    fn smooth_l1_buf<'a>(
        &'a self,
        cfg: &SmoothL1,
        pred: Io<'_, Self::Buffer>,
        target: &Self::Buffer,
        upstream: Self::Upstream<'a>,
    ) -> Result<Self::Output>;

    /// Huber, element-wise.
    fn huber_buf<'a>(
        &'a self,
        cfg: &Huber,
        pred: Io<'_, Self::Buffer>,
        target: &Self::Buffer,
        upstream: Self::Upstream<'a>,
    ) -> Result<Self::Output>;

    /// BCE with logits, element-wise.
    fn bce_with_logits_buf<'a>(
        &'a self,
        cfg: &BceWithLogits,
        logits: Io<'_, Self::Buffer>,
        targets: &Self::Buffer,
        upstream: Self::Upstream<'a>,
    ) -> Result<Self::Output>;

    /// Sigmoid focal, element-wise.
    fn sigmoid_focal_buf<'a>(
        &'a self,
        cfg: &SigmoidFocal,
        logits: Io<'_, Self::Buffer>,
        targets: &Self::Buffer,
        upstream: Self::Upstream<'a>,
    ) -> Result<Self::Output>;
}
