//! 3D augmentation of training patches, nnU-Net's default set (`nnUNetTrainer.
//! get_training_transforms`), each transform with its own probability and drawn from the
//! patch's own generator (seed, epoch, batch, slot), so a resumed run draws the same.
//! A recipe changes any of them under `[augment.volume]` (the defaults below, their keys
//! in docs/recipes.md); a probability of 0 turns one off:
//!
//! | transform | probability | range |
//! |---|---|---|
//! | rotation | 0.2 | ±30° about each axis; ±180° about z only when the patch is anisotropic (its largest side over its z side above 3) |
//! | scaling | 0.2 | 0.7 to 1.4, one factor for all axes |
//! | elastic deformation | 0 (off, as in nnU-Net) | alpha 0 to 900, sigma 9 to 13 voxels |
//! | Gaussian noise | 0.1 | SD drawn in 0 to 0.1 |
//! | Gaussian blur | 0.2 (each channel 0.5) | sigma 0.5 to 1 voxel, per axis |
//! | brightness (multiplicative) | 0.15 | 0.75 to 1.25 |
//! | contrast | 0.15 | 0.75 to 1.25, about the mean, clipped to the former range |
//! | gamma, inverted | 0.1 | 0.7 to 1.5, mean and SD kept |
//! | gamma | 0.3 | 0.7 to 1.5, mean and SD kept |
//! | mirroring | 0.5 per axis | z, y and x |
//!
//! A factor range [low, high] around 1 is drawn as nnU-Net's `BGContrast`: below 1 or
//! above it with even odds, then uniformly on that side. The elastic deformation is
//! batchgenerators' (`elastic_deform_coordinates`, nnU-Net v1's optional transform): one
//! alpha and one sigma drawn per patch, and along each axis a displacement field of
//! uniform noise in [-1, 1] smoothed by a Gaussian of that sigma times alpha, added to
//! the patch's coordinates before they are turned and scaled. The smoothing mirrors the
//! patch at its edges, as [`blur`] does, where batchgenerators pads with 0 (which damps
//! the displacement within about 2 sigma of the edges). Its three smoothings, with
//! kernels of up to 105 taps per axis, cost about ten times the rest of the patch's
//! augmentation, which is why it is off by default. Spatial transforms move image
//! and labels together: the image is sampled trilinearly, the labels by the nearest
//! voxel, and what falls outside the case is 0 (background). nnU-Net's simulated low
//! resolution is not applied.

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::SettingError;
use crate::intensity::mean_sd;

/// A volume axis, as a recipe names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Axis {
    Z,
    Y,
    X,
}

impl Axis {
    /// Its position in `[z, y, x]`.
    pub fn index(self) -> usize {
        self as usize
    }
}

/// The `[augment.volume]` table: the probability and range of each transform of
/// [`augment`](self); `Default` is nnU-Net's set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct VolumeAugment {
    #[schemars(range(min = 0, max = 1))]
    pub rotation_probability: f64,
    /// Largest angle in degrees (about each axis; about z only for anisotropic patches,
    /// then up to 180).
    pub rotation_degrees: f64,
    #[schemars(range(min = 0, max = 1))]
    pub scaling_probability: f64,
    pub scaling_range: [f64; 2],
    #[schemars(range(min = 0, max = 1))]
    pub elastic_probability: f64,
    /// The displacement's scale, drawn in this range.
    pub elastic_alpha: [f64; 2],
    /// The displacement's smoothness (voxels), drawn in this range.
    pub elastic_sigma: [f64; 2],
    #[schemars(range(min = 0, max = 1))]
    pub noise_probability: f64,
    /// The noise's largest SD (its SD is drawn in 0 to this).
    pub noise_sd: f64,
    #[schemars(range(min = 0, max = 1))]
    pub blur_probability: f64,
    pub blur_sigma: [f64; 2],
    #[schemars(range(min = 0, max = 1))]
    pub brightness_probability: f64,
    pub brightness_range: [f64; 2],
    #[schemars(range(min = 0, max = 1))]
    pub contrast_probability: f64,
    pub contrast_range: [f64; 2],
    #[schemars(range(min = 0, max = 1))]
    pub inverted_gamma_probability: f64,
    #[schemars(range(min = 0, max = 1))]
    pub gamma_probability: f64,
    pub gamma_range: [f64; 2],
    /// Per axis.
    #[schemars(range(min = 0, max = 1))]
    pub mirror_probability: f64,
    pub mirror_axes: Vec<Axis>,
}

impl Default for VolumeAugment {
    fn default() -> Self {
        Self {
            rotation_probability: 0.2,
            rotation_degrees: 30.0,
            scaling_probability: 0.2,
            scaling_range: [0.7, 1.4],
            elastic_probability: 0.0,
            elastic_alpha: [0.0, 900.0],
            elastic_sigma: [9.0, 13.0],
            noise_probability: 0.1,
            noise_sd: 0.1,
            blur_probability: 0.2,
            blur_sigma: [0.5, 1.0],
            brightness_probability: 0.15,
            brightness_range: [0.75, 1.25],
            contrast_probability: 0.15,
            contrast_range: [0.75, 1.25],
            inverted_gamma_probability: 0.1,
            gamma_probability: 0.3,
            gamma_range: [0.7, 1.5],
            mirror_probability: 0.5,
            mirror_axes: vec![Axis::Z, Axis::Y, Axis::X],
        }
    }
}

impl VolumeAugment {
    /// Every probability in [0, 1], every range ordered and within its bounds, the
    /// mirrored axes named once each; errors name the key (`augment.volume.<key>`).
    pub fn validate(&self) -> Result<(), SettingError> {
        let refuse = |key: &str, message: String| Err(SettingError::new(format!("augment.volume.{key}"), message));
        let probabilities = [
            ("rotation_probability", self.rotation_probability),
            ("scaling_probability", self.scaling_probability),
            ("elastic_probability", self.elastic_probability),
            ("noise_probability", self.noise_probability),
            ("blur_probability", self.blur_probability),
            ("brightness_probability", self.brightness_probability),
            ("contrast_probability", self.contrast_probability),
            ("inverted_gamma_probability", self.inverted_gamma_probability),
            ("gamma_probability", self.gamma_probability),
            ("mirror_probability", self.mirror_probability),
        ];
        for (key, p) in probabilities {
            if !(0.0..=1.0).contains(&p) {
                return refuse(key, format!("is a probability: between 0 and 1, found {p}"));
            }
        }
        let scalars = [("rotation_degrees", self.rotation_degrees, 0.0, 180.0), ("noise_sd", self.noise_sd, 0.0, 10.0)];
        for (key, value, lo, hi) in scalars {
            if !(lo..=hi).contains(&value) {
                return refuse(key, format!("must be between {lo} and {hi}, found {value}"));
            }
        }
        let ranges = [
            ("scaling_range", self.scaling_range, 0.1, 10.0),
            ("elastic_alpha", self.elastic_alpha, 0.0, 10_000.0),
            ("elastic_sigma", self.elastic_sigma, 0.5, 100.0),
            ("blur_sigma", self.blur_sigma, 0.1, 10.0),
            ("brightness_range", self.brightness_range, 0.1, 10.0),
            ("contrast_range", self.contrast_range, 0.1, 10.0),
            ("gamma_range", self.gamma_range, 0.1, 10.0),
        ];
        for (key, [low, high], lo, hi) in ranges {
            if !(lo <= low && low <= high && high <= hi) {
                return refuse(
                    key,
                    format!("must be [low, high] with {lo} <= low <= high <= {hi}, found [{low}, {high}]"),
                );
            }
        }
        let mut axes = self.mirror_axes.clone();
        axes.sort();
        axes.dedup();
        if axes.len() != self.mirror_axes.len() {
            return refuse("mirror_axes", "names an axis twice; list each of \"z\", \"y\", \"x\" at most once".into());
        }
        Ok(())
    }

    /// The axes (0 = z, 1 = y, 2 = x, in this order) training mirrors along: those of
    /// `mirror_axes` while `mirror_probability` is above 0, else none.
    pub fn mirrored_axes(&self) -> Vec<usize> {
        let mut axes: Vec<usize> = match self.mirror_probability > 0.0 {
            true => self.mirror_axes.iter().map(|a| a.index()).collect(),
            false => Vec::new(),
        };
        axes.sort_unstable();
        axes
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
#[derive(Debug, Clone, PartialEq)]
pub struct Spatial {
    matrix: [[f64; 3]; 3],
    flips: [bool; 3],
    /// The elastic displacement of each patch voxel, `[z, y, x]` fields one after the
    /// other; empty when none was drawn.
    displacement: Vec<f32>,
    /// Neither turned, scaled nor deformed: the patch is the block, mirrored.
    plain: bool,
}

impl Spatial {
    /// Draws rotation, scaling and mirroring for a patch of `size` (in this order, from
    /// `rng`; mirroring draws only along `mirror_axes` and only while its probability is
    /// above 0), and the elastic deformation from a stream of its own, so that turning it
    /// on leaves every other draw of the patch, those `rng` gives next included, as it
    /// was.
    pub fn draw(settings: &VolumeAugment, size: [usize; 3], rng: &mut ChaCha8Rng) -> Self {
        let anisotropic = size.iter().max().copied().unwrap_or(1) as f64 / size[0] as f64 > 3.0;
        let angles = if rng.random_bool(settings.rotation_probability) {
            let limit = if anisotropic { 180f64 } else { settings.rotation_degrees }.to_radians();
            let mut draw = || rng.random_range(-limit..=limit);
            if anisotropic { [draw(), 0.0, 0.0] } else { [draw(), draw(), draw()] }
        } else {
            [0.0; 3]
        };
        let scale = match rng.random_bool(settings.scaling_probability) {
            true => around_one(rng, settings.scaling_range),
            false => 1.0,
        };
        let mirrored = settings.mirrored_axes();
        let flips = std::array::from_fn(|d| mirrored.contains(&d) && rng.random_bool(settings.mirror_probability));
        // the elastic deformation draws from its own stream, forked from the patch's
        // without advancing it: the draws after it (the intensity transforms) stay those
        // of the same patch without it
        let displacement = if settings.elastic_probability > 0.0 {
            let mut own = rng.clone();
            own.set_stream(rng.get_stream() ^ ELASTIC_STREAM);
            match own.random_bool(settings.elastic_probability) {
                true => elastic_field(settings, size, &mut own),
                false => Vec::new(),
            }
        } else {
            Vec::new()
        };
        let mut matrix = rotation(angles);
        for row in &mut matrix {
            for v in row {
                *v /= scale;
            }
        }
        let plain = angles == [0.0; 3] && scale == 1.0 && displacement.is_empty();
        Self { matrix, flips, displacement, plain }
    }

    /// Whether the patch is the block it covers, mirrored ([`Spatial::mirror`]) and no
    /// more.
    pub fn is_plain(&self) -> bool {
        self.plain
    }

    /// The source offset (voxels from the patch centre) of patch voxel `at`, at offset
    /// `q` from the centre: mirrored, displaced, then turned and scaled.
    pub fn source(&self, at: usize, q: [f64; 3]) -> [f64; 3] {
        let mut q: [f64; 3] = std::array::from_fn(|d| if self.flips[d] { -q[d] } else { q[d] });
        if !self.displacement.is_empty() {
            let voxels = self.displacement.len() / 3;
            for (d, v) in q.iter_mut().enumerate() {
                *v += f64::from(self.displacement[d * voxels + at]);
            }
        }
        std::array::from_fn(|i| (0..3).map(|j| self.matrix[i][j] * q[j]).sum())
    }

    /// Mirrors a plain patch along the drawn axes.
    pub fn mirror(&self, image: &mut [f32], labels: &mut [u8], size: [usize; 3], channels: usize) {
        mirror(image, labels, size, channels, self.flips);
    }
}

/// The bit that turns a patch's stream into its elastic deformation's
/// ([`Spatial::draw`]); patch streams (epoch, batch, slot) stay far below it.
const ELASTIC_STREAM: u64 = 1 << 63;

/// batchgenerators' `elastic_deform_coordinates`: alpha and sigma drawn in their ranges,
/// then per axis uniform noise in [-1, 1] over the patch, smoothed with sigma, times alpha.
fn elastic_field(settings: &VolumeAugment, size: [usize; 3], rng: &mut ChaCha8Rng) -> Vec<f32> {
    let [a0, a1] = settings.elastic_alpha;
    let [s0, s1] = settings.elastic_sigma;
    let alpha = rng.random_range(a0..=a1) as f32;
    let sigma = rng.random_range(s0..=s1);
    let voxels: usize = size.iter().product();
    let mut field: Vec<f32> = (0..3 * voxels).map(|_| rng.random_range(-1.0f32..=1.0)).collect();
    for axis in field.chunks_mut(voxels) {
        blur(axis, size, [sigma; 3]);
        axis.iter_mut().for_each(|v| *v *= alpha);
    }
    field
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
    if rng.random_bool(s.noise_probability) {
        let sd = rng.random_range(0.0..=s.noise_sd);
        let normal = rand_distr::Normal::new(0.0, sd).expect("a finite SD");
        for v in image.iter_mut() {
            *v += rng.sample(normal) as f32;
        }
    }
    if rng.random_bool(s.blur_probability) {
        for channel in image.chunks_mut(voxels).take(channels) {
            if rng.random_bool(0.5) {
                let sigma = std::array::from_fn(|_| rng.random_range(s.blur_sigma[0]..=s.blur_sigma[1]));
                blur(channel, size, sigma);
            }
        }
    }
    if rng.random_bool(s.brightness_probability) {
        let factor = around_one(rng, s.brightness_range) as f32;
        image.iter_mut().for_each(|v| *v *= factor);
    }
    if rng.random_bool(s.contrast_probability) {
        let factor = around_one(rng, s.contrast_range);
        image.chunks_mut(voxels).for_each(|c| contrast(c, factor));
    }
    for (chance, inverted) in [(s.inverted_gamma_probability, true), (s.gamma_probability, false)] {
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

    /// Only the elastic deformation on, with alpha fixed at `alpha` and sigma at 2.
    fn elastic_only(alpha: f64) -> VolumeAugment {
        VolumeAugment {
            rotation_probability: 0.0,
            scaling_probability: 0.0,
            mirror_probability: 0.0,
            elastic_probability: 1.0,
            elastic_alpha: [alpha, alpha],
            elastic_sigma: [2.0, 2.0],
            ..VolumeAugment::default()
        }
    }

    #[test]
    fn turning_elastic_deformation_on_keeps_every_other_draw_of_a_patch() {
        use rand::SeedableRng;
        let size = [6, 8, 8];
        for seed in 0..20 {
            let draw = |elastic: f64| {
                let settings = VolumeAugment { elastic_probability: elastic, ..VolumeAugment::default() };
                let mut rng = ChaCha8Rng::seed_from_u64(seed);
                let spatial = Spatial::draw(&settings, size, &mut rng);
                // what the intensity transforms draw next
                (spatial, rng.random::<u64>())
            };
            let ((off, next_off), (on, next_on)) = (draw(0.0), draw(1.0));
            assert_eq!((off.matrix, off.flips, next_off), (on.matrix, on.flips, next_on), "seed {seed}");
            assert!(off.displacement.is_empty() && on.displacement.len() == 3 * 384 && !on.is_plain());
        }
    }

    #[test]
    fn an_elastic_field_is_smoothed_noise_times_alpha_added_before_the_turn() {
        use rand::SeedableRng;
        let size = [8, 10, 12];
        let voxels = 960;
        let draw = |alpha: f64| Spatial::draw(&elastic_only(alpha), size, &mut ChaCha8Rng::seed_from_u64(3));
        let (one, ten) = (draw(1.0), draw(10.0));
        // alpha scales the same smoothed noise (one rounding of f32 apart)
        for (a, b) in one.displacement.iter().zip(&ten.displacement) {
            assert!((a * 10.0 - b).abs() <= 1e-5 * b.abs().max(1.0), "{a} x 10 vs {b}");
        }
        // smoothed: a voxel's displacement is far closer to its neighbour's than the
        // noise's SD (1/sqrt(3) before smoothing)
        let x_steps: Vec<f32> = (0..voxels - 1)
            .filter(|at| at % 12 != 11)
            .map(|at| (one.displacement[at + 1] - one.displacement[at]).abs())
            .collect();
        let mean_step = x_steps.iter().sum::<f32>() / x_steps.len() as f32;
        assert!(mean_step < 0.05 && mean_step > 0.0, "mean step along x {mean_step}");
        // no turn, scale or mirror drawn: each voxel reads its own offset, displaced
        let q = [1.5, -2.0, 0.5];
        let at = 517;
        let s = ten.source(at, q);
        for d in 0..3 {
            let want = q[d] + f64::from(ten.displacement[d * voxels + at]);
            assert!((s[d] - want).abs() < 1e-12, "axis {d}: {} vs {want}", s[d]);
        }
    }

    #[test]
    fn keys_are_checked_and_mirror_axes_drive_test_time_mirroring() {
        let fine = VolumeAugment::default();
        assert!(fine.validate().is_ok());
        assert_eq!(fine.mirrored_axes(), vec![0, 1, 2]);
        let two = VolumeAugment { mirror_axes: vec![Axis::X, Axis::Z], ..VolumeAugment::default() };
        assert_eq!(two.mirrored_axes(), vec![0, 2]);
        let never = VolumeAugment { mirror_probability: 0.0, ..VolumeAugment::default() };
        assert!(never.mirrored_axes().is_empty());
        let cases = [
            (VolumeAugment { gamma_probability: 1.5, ..VolumeAugment::default() }, "augment.volume.gamma_probability"),
            (VolumeAugment { scaling_range: [1.4, 0.7], ..VolumeAugment::default() }, "augment.volume.scaling_range"),
            (VolumeAugment { elastic_sigma: [0.0, 3.0], ..VolumeAugment::default() }, "augment.volume.elastic_sigma"),
            (VolumeAugment { rotation_degrees: 200.0, ..VolumeAugment::default() }, "augment.volume.rotation_degrees"),
            (
                VolumeAugment { mirror_axes: vec![Axis::Y, Axis::Y], ..VolumeAugment::default() },
                "augment.volume.mirror_axes",
            ),
        ];
        for (settings, key) in cases {
            assert_eq!(settings.validate().unwrap_err().key, key);
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
