//! Sliding-window inference over a whole volume, as MONAI's
//! `sliding_window_inference(mode=..., sigma_scale=0.125)` computes it, window for window:
//! - a volume thinner than the patch along an axis is padded with zeros, half before and
//!   half after (the padding is cut off the result);
//! - windows start every `int(patch * (1 - overlap))` voxels along each axis (at least 1;
//!   the whole side when the patch fills it), the last one moved back to end at the
//!   volume's edge;
//! - each window's output is weighted by an importance map: 1 everywhere (`constant`), or
//!   a Gaussian centred on the patch with sigma = 1/8 of the patch per axis, not
//!   normalised, its smallest values clamped to 1e-3 (`gaussian`); the weighted outputs
//!   and the weights are summed over the windows and divided.
//!
//! With mirroring (nnU-Net's test-time augmentation) each window is predicted as it is
//! and flipped along every non-empty subset of the chosen axes (flipped back), and the
//! outputs are averaged before weighting.
//!
//! Memory: the network sees `batch` windows at a time on its device; the sums are kept on
//! the CPU in float32: (outputs + 1) x 4 bytes per voxel, beside the input's channels x 4
//! bytes. A 512 x 512 x 400 CT with 3 output maps needs 1.7 GB for the sums and 0.4 GB
//! for the input.

use radrun_data::volume::Volume;
pub use radrun_metrics::evaluate::Blend;
use radrun_models::Network;
use tch::{Device, Kind, Tensor};

/// What [`infer`] needs besides the volume and the network.
#[derive(Debug, Clone, PartialEq)]
pub struct SlidingWindow {
    /// The window, `[z, y, x]` voxels (the network's patch).
    pub patch: [i64; 3],
    /// The share of a window its neighbour covers, in [0, 1).
    pub overlap: f64,
    pub blend: Blend,
    /// Spatial axes (0 = z, 1 = y, 2 = x) to mirror along; empty for none.
    pub mirror_axes: Vec<usize>,
    /// Windows per forward pass.
    pub batch: usize,
}

/// MONAI's `compute_importance_map` for `patch`.
pub fn importance_map(patch: [i64; 3], blend: Blend) -> Tensor {
    let options = (Kind::Float, Device::Cpu);
    match blend {
        Blend::Constant => Tensor::ones(patch, options),
        Blend::Gaussian => {
            let axis = |d: usize| {
                let n = patch[d];
                let sigma = n as f32 * 0.125;
                let first = -(n as f32 - 1.0) / 2.0;
                let values: Vec<f32> = (0..n)
                    .map(|i| {
                        let x = first + i as f32;
                        (x * x / (-2.0 * sigma * sigma)).exp()
                    })
                    .collect();
                Tensor::from_slice(&values)
            };
            let map = axis(0).view([-1, 1, 1]) * axis(1).view([1, -1, 1]) * axis(2).view([1, 1, -1]);
            let smallest = map.min().double_value(&[]).max(1e-3);
            map.clamp_min(smallest)
        }
    }
}

/// Where windows of `patch` voxels start along a side of `size` (at least `patch`).
pub fn window_starts(size: i64, patch: i64, overlap: f64) -> Vec<i64> {
    let interval = if patch == size { patch } else { ((patch as f64 * (1.0 - overlap)) as i64).max(1) };
    let mut starts = Vec::new();
    for i in 0.. {
        let start = i * interval;
        starts.push(start - (start + patch - size).max(0));
        if start + patch >= size {
            break;
        }
    }
    starts
}

/// The mean of `predict` over `x` and its flips along every non-empty subset of `axes`
/// (spatial axes; `x` is `[n, channels, z, y, x]`).
fn mirrored(x: &Tensor, axes: &[usize], predict: &mut dyn FnMut(&Tensor) -> Tensor) -> Tensor {
    let mut total = predict(x);
    let subsets = (1u32..1 << axes.len()).map(|bits| {
        axes.iter().enumerate().filter(|(i, _)| bits & (1 << i) != 0).map(|(_, a)| *a as i64 + 2).collect::<Vec<_>>()
    });
    // MONAI's reference order: by subset size, then by position (itertools.combinations)
    let mut subsets: Vec<Vec<i64>> = subsets.collect();
    subsets.sort_by_key(|s| (s.len(), s.clone()));
    for dims in &subsets {
        total += predict(&x.flip(dims.as_slice())).flip(dims.as_slice());
    }
    total / (subsets.len() + 1) as f64
}

/// The network outputs over the whole of `volume` (`[channels, z, y, x]`, float32 on the
/// CPU), `[outputs, z, y, x]` float32 on the CPU. `predict` takes a batch of windows
/// `[n, channels, pz, py, px]` on `device` and returns `[n, outputs, pz, py, px]`.
pub fn infer(
    volume: &Tensor,
    window: &SlidingWindow,
    device: Device,
    predict: &mut dyn FnMut(&Tensor) -> Tensor,
) -> Tensor {
    let size = volume.size();
    let sides = [size[1], size[2], size[3]];
    // pad (before, after) per axis, given from the last axis back
    let pads: Vec<[i64; 2]> = (0..3).map(|d| (window.patch[d] - sides[d]).max(0)).map(|p| [p / 2, p - p / 2]).collect();
    let padding: Vec<i64> = pads.iter().rev().flatten().copied().collect();
    let input = if padding.iter().any(|&p| p > 0) {
        volume.constant_pad_nd(padding.as_slice())
    } else {
        volume.shallow_clone()
    };
    let padded = [0, 1, 2].map(|d| sides[d] + pads[d][0] + pads[d][1]);
    let starts: Vec<Vec<i64>> = (0..3).map(|d| window_starts(padded[d], window.patch[d], window.overlap)).collect();
    let mut corners = Vec::new();
    for &z in &starts[0] {
        for &y in &starts[1] {
            for &x in &starts[2] {
                corners.push([z, y, x]);
            }
        }
    }
    let weights = importance_map(window.patch, window.blend);
    let device_weights = weights.to_device(device);
    let mut sum: Option<Tensor> = None;
    let count = Tensor::zeros(padded, (Kind::Float, Device::Cpu));
    let region = |t: &Tensor, c: &[i64; 3]| {
        (0..3).fold(t.shallow_clone(), |t, d| t.narrow(t.dim() as i64 - 3 + d as i64, c[d], window.patch[d]))
    };
    tch::no_grad(|| {
        for group in corners.chunks(window.batch.max(1)) {
            let batch =
                Tensor::stack(&group.iter().map(|c| region(&input, c)).collect::<Vec<_>>(), 0).to_device(device);
            let out = if window.mirror_axes.is_empty() {
                predict(&batch)
            } else {
                mirrored(&batch, &window.mirror_axes, predict)
            };
            let weighted = (out.to_kind(Kind::Float) * &device_weights).to_device(Device::Cpu);
            let sum = sum.get_or_insert_with(|| {
                Tensor::zeros([weighted.size()[1], padded[0], padded[1], padded[2]], (Kind::Float, Device::Cpu))
            });
            for (i, c) in group.iter().enumerate() {
                let _ = region(sum, c).g_add_(&weighted.get(i as i64));
            }
        }
        for c in &corners {
            let _ = region(&count, c).g_add_(&weights);
        }
    });
    // divided in place: a CT of 512 x 512 x 400 voxels holds 0.4 GB per map
    let mut result = sum.expect("a volume has at least one window");
    let _ = result.g_div_(&count);
    drop(count);
    for (d, [before, _]) in pads.iter().enumerate() {
        result = result.narrow(1 + d as i64, *before, sides[d]);
    }
    result.contiguous()
}

/// Each label's probability per voxel, `[labels, z, y, x]`, from a network's outputs
/// `[maps, z, y, x]`: the softmax over the maps, or, for one structure's single map
/// (the tutorial's head), its sigmoid as the structure's and one minus it as the
/// background's, so that the most probable label is the structure where the sigmoid is
/// above 0.5 (at exactly 0.5, the background), as for 2D masks.
pub fn label_probabilities(outputs: &Tensor) -> Tensor {
    if outputs.size()[0] == 1 {
        let structure = outputs.to_kind(Kind::Float).sigmoid();
        Tensor::cat(&[structure.ones_like() - &structure, structure], 0)
    } else {
        outputs.softmax(0, Kind::Float)
    }
}

/// The label map of a working case by each network of `members` on its own working
/// volume of the case (channels `[c, z, y, x]` stored x fastest; one grid for all, each
/// normalised by its network's run): each one's sliding-window outputs made
/// probabilities ([`label_probabilities`]), averaged over the networks (an ensemble),
/// and the most probable label of each voxel, in the volumes' voxel order. One network's
/// most probable label is read from its outputs directly, which holds one set of maps
/// the size of the volume instead of two (the memory bound in docs/volumes.md).
pub fn segment(members: &[(&Network, &Volume)], window: &SlidingWindow, device: Device) -> Vec<u8> {
    let outputs = |(network, volume): &(&Network, &Volume)| {
        let [nx, ny, nz] = volume.shape;
        let size = [volume.channels as i64, nz as i64, ny as i64, nx as i64];
        let input = Tensor::from_slice(&volume.voxels).view(size);
        infer(&input, window, device, &mut |x| network.forward(x, false))
    };
    let labels = match members {
        // one network: the most probable label is its largest output (the softmax and
        // the sigmoid keep the order), without a second copy of every map
        [member] => {
            let outputs = outputs(member);
            if outputs.size()[0] == 1 { outputs.gt(0.0).squeeze_dim(0) } else { outputs.argmax(0, false) }
        }
        _ => {
            let mut total = label_probabilities(&outputs(&members[0]));
            for member in &members[1..] {
                let _ = total.g_add_(&label_probabilities(&outputs(member)));
            }
            total.argmax(0, false)
        }
    };
    Vec::<u8>::try_from(&labels.to_kind(Kind::Uint8).flatten(0, -1)).expect("a CPU tensor of bytes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_structure_s_single_map_gives_it_where_its_sigmoid_passes_one_half() {
        // logits -2, 0, 0.5, 3: sigmoid 0.12, 0.5, 0.62, 0.95
        let outputs = Tensor::from_slice(&[-2.0f32, 0.0, 0.5, 3.0]).view([1, 1, 1, 4]);
        let p = label_probabilities(&outputs);
        assert_eq!(p.size(), [2, 1, 1, 4]);
        let labels = Vec::<i64>::try_from(p.argmax(0, false).flatten(0, -1)).unwrap();
        assert_eq!(labels, [0, 0, 1, 1]);
        let sums = Vec::<f32>::try_from(p.sum_dim_intlist(0, false, Kind::Float).flatten(0, -1)).unwrap();
        assert!(sums.iter().all(|s| (s - 1.0).abs() < 1e-6), "{sums:?}");
        // several maps: the softmax
        let outputs = Tensor::from_slice(&[0.0f32, 1.0, 2.0]).view([3, 1, 1, 1]);
        let p = Vec::<f32>::try_from(label_probabilities(&outputs).flatten(0, -1)).unwrap();
        let e = [1.0f32, 1f32.exp(), 2f32.exp()];
        let total: f32 = e.iter().sum();
        assert!(p.iter().zip(e).all(|(p, e)| (p - e / total).abs() < 1e-6), "{p:?}");
    }

    #[test]
    fn windows_cover_the_side_and_the_last_one_ends_at_its_edge() {
        // MONAI's dense_patch_slices: interval int(32 * 0.5) = 16
        assert_eq!(window_starts(45, 32, 0.5), [0, 13]);
        assert_eq!(window_starts(100, 32, 0.5), [0, 16, 32, 48, 64, 68]);
        assert_eq!(window_starts(32, 32, 0.5), [0]);
        // overlap 0.25 of 16: interval 12
        assert_eq!(window_starts(40, 16, 0.25), [0, 12, 24]);
    }

    #[test]
    fn averaging_a_constant_prediction_gives_it_back_wherever_windows_overlap() {
        let volume = Tensor::ones([1, 9, 20, 17], (Kind::Float, Device::Cpu)) * 3.0;
        let window =
            SlidingWindow { patch: [4, 8, 8], overlap: 0.5, blend: Blend::Gaussian, mirror_axes: vec![1, 2], batch: 3 };
        let out = infer(&volume, &window, Device::Cpu, &mut |x| x * 2.0);
        assert_eq!(out.size(), [1, 9, 20, 17]);
        let error = (out - 6.0).abs().max().double_value(&[]);
        // a weighted mean of equal values: a few float32 roundings of 6
        assert!(error < 1e-5, "{error}");
    }
}
