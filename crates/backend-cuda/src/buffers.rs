//! [`BufferLosses`]: the core trait for a backend's own buffers, on CUDA device slices. Each
//! method is the matching `*_dev` method (the same core plan, built from the slices' lengths).

use crate::{CudaBackend, DeviceCeTargets, DeviceLoss, DeviceUpstream};
use cudarc::driver::CudaSlice;
use smoothloss_core::{
    BceWithLogits, BoxFormat, BoxLoss, BufferLosses, CrossEntropy, Huber, Io, Result, SigmoidFocal,
    SmoothL1,
};

impl BufferLosses<f32> for CudaBackend {
    type Buffer = CudaSlice<f32>;
    type Targets<'a> = DeviceCeTargets<'a, f32>;
    type Upstream<'a> = DeviceUpstream<'a>;
    type Output = DeviceLoss;

    fn cross_entropy_buf<'a>(
        &'a self,
        cfg: &CrossEntropy,
        logits: Io<'_, CudaSlice<f32>>,
        shape: [usize; 2],
        targets: DeviceCeTargets<'a, f32>,
        upstream: DeviceUpstream<'a>,
    ) -> Result<DeviceLoss> {
        self.cross_entropy_dev(cfg, logits, shape, targets, upstream)
    }

    fn box_loss_buf<'a>(
        &'a self,
        cfg: &BoxLoss,
        pred: Io<'_, CudaSlice<f32>>,
        target: &CudaSlice<f32>,
        upstream: DeviceUpstream<'a>,
    ) -> Result<DeviceLoss> {
        self.box_loss_dev(cfg, pred, target, upstream)
    }

    fn box_iou_buf(
        &self,
        format: BoxFormat,
        boxes1: &CudaSlice<f32>,
        boxes2: &CudaSlice<f32>,
        out: &mut CudaSlice<f32>,
    ) -> Result<()> {
        self.box_iou_dev(format, boxes1, boxes2, out)
    }

    fn smooth_l1_buf<'a>(
        &'a self,
        cfg: &SmoothL1,
        pred: Io<'_, CudaSlice<f32>>,
        target: &CudaSlice<f32>,
        upstream: DeviceUpstream<'a>,
    ) -> Result<DeviceLoss> {
        self.smooth_l1_dev(cfg, pred, target, upstream)
    }

    fn huber_buf<'a>(
        &'a self,
        cfg: &Huber,
        pred: Io<'_, CudaSlice<f32>>,
        target: &CudaSlice<f32>,
        upstream: DeviceUpstream<'a>,
    ) -> Result<DeviceLoss> {
        self.huber_dev(cfg, pred, target, upstream)
    }

    fn bce_with_logits_buf<'a>(
        &'a self,
        cfg: &BceWithLogits,
        logits: Io<'_, CudaSlice<f32>>,
        targets: &CudaSlice<f32>,
        upstream: DeviceUpstream<'a>,
    ) -> Result<DeviceLoss> {
        self.bce_with_logits_dev(cfg, logits, targets, upstream)
    }

    fn sigmoid_focal_buf<'a>(
        &'a self,
        cfg: &SigmoidFocal,
        logits: Io<'_, CudaSlice<f32>>,
        targets: &CudaSlice<f32>,
        upstream: DeviceUpstream<'a>,
    ) -> Result<DeviceLoss> {
        self.sigmoid_focal_dev(cfg, logits, targets, upstream)
    }
}
