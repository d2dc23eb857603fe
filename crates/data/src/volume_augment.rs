//! 3D augmentation of training patches, nnU-Net's default set (`nnUNetTrainer.
//! get_training_transforms`), each transform with its own probability and drawn from the
//! patch's own generator (seed, epoch, batch, slot), so a resumed run draws the same:
//!
//! | transform | probability | range |
//! |---|---|---|
//! | rotation | 0.2 | ±30° about each axis; ±180° about z only when the patch is anisotropic (its largest side over its z side above 3) |
//! | scaling | 0.2 | 0.7 to 1.4, one factor for all axes |
//! | Gaussian noise | 0.1 | SD drawn in 0 to 0.1 |
//! | Gaussian blur | 0.2 (each channel 0.5) | sigma 0.5 to 1 voxel, per axis |
//! | brightness (multiplicative) | 0.15 | 0.75 to 1.25 |
//! | contrast | 0.15 | 0.75 to 1.25, about the mean, clipped to the former range |
//! | gamma, inverted | 0.1 | 0.7 to 1.5, mean and SD kept |
//! | gamma | 0.3 | 0.7 to 1.5, mean and SD kept |
//! | mirroring | 0.5 per axis | |
//!
//! A factor range [low, high] around 1 is drawn as nnU-Net's `BGContrast`: below 1 or
//! above it with even odds, then uniformly on that side. Rotation and scaling move image
//! and labels together: the image is sampled trilinearly, the labels by the nearest
//! voxel, and what falls outside the case is 0 (background). nnU-Net's simulated low
//! resolution and elastic deformation (off in its defaults) are not applied.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::intensity::mean_sd;

/// The probabilities and ranges of [`augment`]; `Default` is nnU-Net's set.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VolumeAugment {
    pub rotation: f64,
    /// Largest angle in degrees (about each axis; about z only for anisotropic patches,
    /// then up to 180).
    pub rotation_degrees: f64,
    pub scaling: f64,
    pub scaling_range: [f64; 2],
    pub noise: f64,
    pub noise_sd: f64,
    pub blur: f64,
    pub blur_sigma: [f64; 2],
    pub brightness: f64,
    pub brightness_range: [f64; 2],
    pub contrast: f64,
    pub contrast_range: [f64; 2],
    pub inverted_gamma: f64,
    pub gamma: f64,
    pub gamma_range: [f64; 2],
    /// Per axis.
    pub mirror: f64,
}

impl Default for VolumeAugment {
    fn default() -> Self {
        Self {
            rotation: 0.2,
            rotation_degrees: 30.0,
            scaling: 0.2,
            scaling_range: [0.7, 1.4],
            noise: 0.1,
            noise_sd: 0.1,
            blur: 0.2,
            blur_sigma: [0.5, 1.0],
            brightness: 0.15,
            brightness_range: [0.75, 1.25],
            contrast: 0.15,
            contrast_range: [0.75, 1.25],
            inverted_gamma: 0.1,
            gamma: 0.3,
            gamma_range: [0.7, 1.5],
            mirror: 0.5,
        }
    }
}

/// nnU-Net's `BGContrast`: below or above 1 with even odds, then uniform on that side.
fn around_one(rng: &mut ChaCha8Rng, [low, high]: [f64; 2]) -> f64 {
    if rng.random_bool(0.5) && low < 1.0 { rng.random_range(low..1.0) } else { rng.random_range(1.0..=high) }
}

/// The rotation matrix (z, y, x axes) of angles (radians) about z, y and x.
fn rotation(angles: [f64; 3]) -> [[f64; 3]; 3] {
    let [a, b, c] = angles;
    let (sa, ca, sb, cb, sc, cc) = (a.sin(), a.cos(), b.sin(), b.cos(), c.sin(), c.cos());
    // about z: turns y and x; about y: z and x; about x: z and y
    let rz = [[1.0, 0.0, 0.0], [0.0, ca, -sa], [0.0, sa, ca]];
    let ry = [[cb, 0.0, sb], [0.0, 1.0, 0.0], [-sb, 0.0, cb]];
    let rx = [[cc, -sc, 0.0], [sc, cc, 0.0], [0.0, 0.0, 1.0]];
    let mul = |m: [[f64; 3]; 3], n: [[f64; 3]; 3]| -> [[f64; 3]; 3] {
        std::array::from_fn(|i| std::array::from_fn(|j| (0..3).map(|k| m[i][k] * n[k][j]).sum()))
    };
    mul(mul(rz, ry), rx)
}

/// The spatial part of one patch's augmentation: where each patch voxel reads from,
/// relative to the patch's centre in the case, and the mirrored axes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spatial {
    matrix: [[f64; 3]; 3],
    flips: [bool; 3],
    /// Neither turned nor scaled: the patch is the block, mirrored.
    plain: bool,
}

impl Spatial {
    /// Draws rotation, scaling and mirroring for a patch of `size` (in this order, from
    /// `rng`).
    pub fn draw(settings: &VolumeAugment, size: [usize; 3], rng: &mut ChaCha8Rng) -> Self {
        let anisotropic = size.iter().max().copied().unwrap_or(1) as f64 / size[0] as f64 > 3.0;
        let angles = if rng.random_bool(settings.rotation) {
            let limit = if anisotropic { 180f64 } else { settings.rotation_degrees }.to_radians();
            let mut draw = || rng.random_range(-limit..=limit);
            if anisotropic { [draw(), 0.0, 0.0] } else { [draw(), draw(), draw()] }
        } else {
            [0.0; 3]
        };
        let scale = if rng.random_bool(settings.scaling) { around_one(rng, settings.scaling_range) } else { 1.0 };
        let flips = std::array::from_fn(|_| rng.random_bool(settings.mirror));
        let mut matrix = rotation(angles);
        for row in &mut matrix {
            for v in row {
                *v /= scale;
            }
        }
        Self { matrix, flips, plain: angles == [0.0; 3] && scale == 1.0 }
    }

    /// Whether the patch is the block it covers, mirrored ([`Spatial::mirror`]) and no
    /// more.
    pub fn is_plain(&self) -> bool {
        self.plain
    }

    /// The source offset (voxels from the patch centre) of patch offset `q`.
    pub fn source(&self, q: [f64; 3]) -> [f64; 3] {
        let q: [f64; 3] = std::array::from_fn(|d| if self.flips[d] { -q[d] } else { q[d] });
        std::array::from_fn(|i| (0..3).map(|j| self.matrix[i][j] * q[j]).sum())
    }

    /// Mirrors a plain patch along the drawn axes.
    pub fn mirror(&self, image: &mut [f32], labels: &mut [u8], size: [usize; 3], channels: usize) {
        mirror(image, labels, size, channels, self.flips);
    }
}

/// Mirrors the patch along the flagged axes.
fn mirror(image: &mut [f32], labels: &mut [u8], size: [usize; 3], channels: usize, flips: [bool; 3]) {
    if flips == [false; 3] {
        return;
    }
    let [pz, py, px] = size;
    let voxels = pz * py * px;
    let from = |z: usize, y: usize, x: usize| {
        let f = |v: usize, n: usize, flip: bool| if flip { n - 1 - v } else { v };
        (f(z, pz, flips[0]) * py + f(y, py, flips[1])) * px + f(x, px, flips[2])
    };
    let order: Vec<usize> = (0..voxels).map(|i| from(i / (py * px), (i / px) % py, i % px)).collect();
    for channel in image.chunks_mut(voxels).take(channels) {
        let copy = channel.to_vec();
        for (out, &at) in channel.iter_mut().zip(&order) {
            *out = copy[at];
        }
    }
    let copy = labels.to_vec();
    for (out, &at) in labels.iter_mut().zip(&order) {
        *out = copy[at];
    }
}

/// Mean and SD of a channel's values.
fn channel_mean_sd(values: &[f32]) -> (f64, f64) {
    mean_sd(values.iter().map(|&v| f64::from(v)))
}

/// nnU-Net's gamma with `retain_stats`: to [0, 1] by the channel's range, to the power
/// `gamma`, back to the range, then its former mean and SD restored; inverted: on the
/// negated values.
pub fn gamma(channel: &mut [f32], gamma: f64, inverted: bool) {
    let sign = if inverted { -1.0 } else { 1.0 };
    let (mean, sd) = channel_mean_sd(channel);
    let (lo, hi) = channel.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
        let v = sign * f64::from(v);
        (lo.min(v), hi.max(v))
    });
    let range = hi - lo;
    for v in channel.iter_mut() {
        let x = (sign * f64::from(*v) - lo) / (range + 1e-7);
        *v = (sign * (x.powf(gamma) * range + lo)) as f32;
    }
    let (new_mean, new_sd) = channel_mean_sd(channel);
    for v in channel.iter_mut() {
        *v = ((f64::from(*v) - new_mean) / (new_sd + 1e-7) * sd + mean) as f32;
    }
}

/// Contrast about the mean by `factor`, clipped to the former range.
pub fn contrast(channel: &mut [f32], factor: f64) {
    let (mean, _) = channel_mean_sd(channel);
    let (lo, hi) = channel.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    for v in channel.iter_mut() {
        *v = (((f64::from(*v) - mean) * factor + mean) as f32).clamp(lo, hi);
    }
}

/// A Gaussian blur with `sigma` voxels per axis (SciPy's `gaussian_filter`: kernel
/// truncated at 4 sigma, edges mirrored as its "reflect" mode).
pub fn blur(channel: &mut [f32], size: [usize; 3], sigma: [f64; 3]) {
    let strides = [size[1] * size[2], size[2], 1];
    for axis in 0..3 {
        let radius = (4.0 * sigma[axis] + 0.5) as i64;
        let weights: Vec<f64> =
            (-radius..=radius).map(|i| (-(i * i) as f64 / (2.0 * sigma[axis].powi(2))).exp()).collect();
        let total: f64 = weights.iter().sum();
        let n = size[axis] as i64;
        let reflect = |i: i64| {
            let period = 2 * n;
            let i = i.rem_euclid(period);
            if i < n { i } else { period - 1 - i }
        };
        let copy = channel.to_vec();
        for (at, out) in channel.iter_mut().enumerate() {
            let position = (at / strides[axis]) as i64 % n;
            let base = at as i64 - position * strides[axis] as i64;
            let sum: f64 = weights
                .iter()
                .zip(-radius..=radius)
                .map(|(w, k)| w * f64::from(copy[(base + reflect(position + k) * strides[axis] as i64) as usize]))
                .sum();
            *out = (sum / total) as f32;
        }
    }
}

/// The intensity transforms, in nnU-Net's order, on each channel.
pub fn colour(image: &mut [f32], size: [usize; 3], channels: usize, s: &VolumeAugment, rng: &mut ChaCha8Rng) {
    let voxels: usize = size.iter().product();
    if rng.random_bool(s.noise) {
        let sd = rng.random_range(0.0..=s.noise_sd);
        let normal = rand_distr::Normal::new(0.0, sd).expect("a finite SD");
        for v in image.iter_mut() {
            *v += rng.sample(normal) as f32;
        }
    }
    if rng.random_bool(s.blur) {
        for channel in image.chunks_mut(voxels).take(channels) {
            if rng.random_bool(0.5) {
                let sigma = std::array::from_fn(|_| rng.random_range(s.blur_sigma[0]..=s.blur_sigma[1]));
                blur(channel, size, sigma);
            }
        }
    }
    if rng.random_bool(s.brightness) {
        let factor = around_one(rng, s.brightness_range) as f32;
        image.iter_mut().for_each(|v| *v *= factor);
    }
    if rng.random_bool(s.contrast) {
        let factor = around_one(rng, s.contrast_range);
        image.chunks_mut(voxels).for_each(|c| contrast(c, factor));
    }
    for (chance, inverted) in [(s.inverted_gamma, true), (s.gamma, false)] {
        if rng.random_bool(chance) {
            let g = around_one(rng, s.gamma_range);
            image.chunks_mut(voxels).for_each(|c| gamma(c, g, inverted));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values() -> Vec<f32> {
        (0..60).map(|i| ((i * 37) % 23) as f32 * 0.7 - 4.0).collect()
    }

    #[test]
    fn gamma_keeps_the_mean_and_sd_and_gamma_one_changes_nothing() {
        let (mean, sd) = channel_mean_sd(&values());
        for (g, inverted) in [(0.7, false), (1.5, true), (1.0, false)] {
            let mut v = values();
            gamma(&mut v, g, inverted);
            let (m, s) = channel_mean_sd(&v);
            assert!((m - mean).abs() < 1e-5 && (s - sd).abs() < 1e-5, "gamma {g}: {m} {s} vs {mean} {sd}");
            if g == 1.0 {
                assert!(v.iter().zip(values()).all(|(a, b)| (a - b).abs() < 1e-5));
            }
        }
    }

    #[test]
    fn lower_contrast_scales_each_value_about_the_mean() {
        let mut v = values();
        let (mean, _) = channel_mean_sd(&v);
        contrast(&mut v, 0.8);
        for (a, b) in v.iter().zip(values()) {
            let want = (f64::from(b) - mean) * 0.8 + mean;
            assert!((f64::from(*a) - want).abs() < 1e-5, "{a} vs {want}");
        }
    }

    #[test]
    fn a_blur_keeps_a_constant_and_the_mass_of_an_impulse() {
        let size = [5, 6, 7];
        let mut flat = vec![2.5f32; 210];
        blur(&mut flat, size, [0.7, 1.0, 0.5]);
        assert!(flat.iter().all(|v| (v - 2.5).abs() < 1e-5));
        let mut impulse = vec![0f32; 210];
        impulse[(2 * 6 + 3) * 7 + 3] = 1.0;
        blur(&mut impulse, size, [0.6, 0.6, 0.6]);
        let total: f32 = impulse.iter().sum();
        assert!((total - 1.0).abs() < 1e-5, "{total}");
        // symmetric about the impulse along x
        let at = |z: usize, y: usize, x: usize| impulse[(z * 6 + y) * 7 + x];
        assert!((at(2, 3, 2) - at(2, 3, 4)).abs() < 1e-7);
    }
}
