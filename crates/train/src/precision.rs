//! `train.precision` and `train.channels_last`: autocast of the forward pass and loss to
//! bfloat16 or float16 (libtorch's own autocast, its dtype set through
//! `csrc/autocast.cpp`), the gradient scaler float16 needs, and images laid out NHWC.

use std::marker::PhantomData;

use tch::{Device, Tensor};

use radrun_settings::Precision;

unsafe extern "C" {
    fn radrun_autocast_enter(cuda: i32, bf16: i32, was_enabled: *mut i32, was_dtype: *mut i32) -> i32;
    fn radrun_autocast_exit(cuda: i32, was_enabled: i32, was_dtype: i32);
}

/// Autocast on this thread while the value lives; dropping it restores the state it
/// replaced.
pub struct Autocast {
    cuda: i32,
    was_enabled: i32,
    was_dtype: i32,
    /// The state is the thread's: the guard must not move to another thread.
    _thread: PhantomData<*const ()>,
}

impl Autocast {
    /// Autocast on `device` to `precision`'s type; `None` for fp32 (nothing to do).
    pub fn enter(device: Device, precision: Precision) -> Option<Self> {
        let bf16 = match precision {
            Precision::Fp32 => return None,
            Precision::Bf16 => 1,
            Precision::Fp16 => 0,
        };
        let cuda = i32::from(device.is_cuda());
        let (mut was_enabled, mut was_dtype) = (0, 0);
        // SAFETY: sets libtorch's thread-local autocast state; the two pointers are to
        // live locals
        let refused = unsafe { radrun_autocast_enter(cuda, bf16, &mut was_enabled, &mut was_dtype) };
        // libtorch has autocast for both devices and both types: a refusal is a broken build
        assert_eq!(refused, 0, "libtorch refused autocast to {precision:?} (`train.precision`) on {device:?}");
        Some(Autocast { cuda, was_enabled, was_dtype, _thread: PhantomData })
    }
}

impl Drop for Autocast {
    fn drop(&mut self) {
        // SAFETY: undoes what `enter` did, on the same thread (the guard is not Send)
        unsafe { radrun_autocast_exit(self.cuda, self.was_enabled, self.was_dtype) }
    }
}

/// Float16's loss scaling, with PyTorch GradScaler's defaults: the loss is multiplied by
/// `scale` before the backward pass and the gradients divided by it, so that small
/// gradients do not flush to zero in float16; a step whose gradients are not finite is
/// skipped and the scale halved; 2000 finite steps in a row double it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GradScaler {
    scale: f64,
    finite_steps: u32,
}

impl Default for GradScaler {
    fn default() -> Self {
        GradScaler { scale: 65536.0, finite_steps: 0 }
    }
}

impl GradScaler {
    const GROWTH_INTERVAL: u32 = 2000;

    pub fn scale(&self) -> f64 {
        self.scale
    }

    /// After a step: whether its gradients were all finite.
    pub fn update(&mut self, finite: bool) {
        if finite {
            self.finite_steps += 1;
            if self.finite_steps == Self::GROWTH_INTERVAL {
                self.scale *= 2.0;
                self.finite_steps = 0;
            }
        } else {
            self.scale *= 0.5;
            self.finite_steps = 0;
        }
    }
}

/// `images` (N, C, H, W) with NHWC strides: the same values, each pixel's channels
/// next to each other in memory.
pub fn channels_last(images: &Tensor) -> Tensor {
    images.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2])
}

/// Lays out every convolution kernel (4-D variable) of `network` NHWC, frozen ones too;
/// the optimizer keeps the layout of those it trains.
pub fn lay_out_channels_last(network: &radrun_models::Network) {
    tch::no_grad(|| {
        for (_, mut variable) in network.vs.variables().into_iter().filter(|(_, v)| v.dim() == 4) {
            variable.set_data(&channels_last(&variable));
        }
    });
}

/// Whether `t` (4-D) is laid out NHWC and not NCHW. Dimensions of size 1 have no say,
/// as libtorch counts them; a tensor both layouts describe (a kernel of one input
/// channel) counts as NCHW, so that it keeps the strides libtorch gave it.
pub fn is_channels_last(t: &Tensor) -> bool {
    let (size, stride) = (t.size(), t.stride());
    if size.len() != 4 || t.is_contiguous() {
        return false;
    }
    let (c, h, w) = (size[1], size[2], size[3]);
    let nhwc = [h * w * c, 1, w * c, c];
    (0..4).all(|d| size[d] == 1 || stride[d] == nhwc[d])
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Kind;

    #[test]
    fn autocast_casts_products_to_the_chosen_type_and_ends_with_its_guard() {
        let a = Tensor::ones([4, 4], (Kind::Float, Device::Cpu));
        {
            let _cast = Autocast::enter(Device::Cpu, Precision::Bf16).expect("bf16 casts");
            assert_eq!(a.matmul(&a).kind(), Kind::BFloat16);
            {
                // a nested guard gives back the outer one's state
                let _inner = Autocast::enter(Device::Cpu, Precision::Fp16);
                assert_eq!(a.matmul(&a).kind(), Kind::Half);
            }
            assert_eq!(a.matmul(&a).kind(), Kind::BFloat16);
        }
        assert_eq!(a.matmul(&a).kind(), Kind::Float);
        assert!(Autocast::enter(Device::Cpu, Precision::Fp32).is_none());
    }

    #[test]
    fn the_scale_halves_on_overflow_and_doubles_after_2000_finite_steps() {
        let mut scaler = GradScaler::default();
        scaler.update(false);
        assert_eq!(scaler.scale(), 32768.0);
        for _ in 0..1999 {
            scaler.update(true);
        }
        assert_eq!(scaler.scale(), 32768.0);
        scaler.update(true);
        assert_eq!(scaler.scale(), 65536.0);
    }

    #[test]
    fn channels_last_keeps_the_values_in_nhwc_order() {
        let x = Tensor::arange(2 * 3 * 4 * 5, (Kind::Float, Device::Cpu)).view([2, 3, 4, 5]);
        let y = channels_last(&x);
        assert!(is_channels_last(&y) && !is_channels_last(&x));
        assert_eq!(y.size(), x.size());
        assert!(y.equal(&x));
    }
}
