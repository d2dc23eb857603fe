//! On-the-fly training augmentation equal to the tutorial's Keras `ImageDataGenerator`
//! (keras-preprocessing 1.1): rotation, shift and zoom about Keras' pivot,
//! flips, SciPy's fill modes and linear interpolation,
//! plus optional brightness/contrast. The random draw for an image depends only on
//! (seed, epoch, image index), so results do not depend on thread scheduling.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::settings::{AugmentSettings, FillMode};

/// One random transform, drawn once and applied to an image and, for segmentation, to
/// its mask, so both move together.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Transform {
    /// Rotation in radians.
    pub theta: f64,
    /// Shift in pixels along rows (down) and columns (right), as Keras' `tx`, `ty`.
    pub shift: (f64, f64),
    /// Zoom factors along rows and columns (above 1 shows a larger field of view).
    pub zoom: (f64, f64),
    pub flip_horizontal: bool,
    pub flip_vertical: bool,
    /// Added to intensities.
    pub brightness: f32,
    /// Multiplies intensities around the image mean.
    pub contrast: f32,
}

impl Transform {
    pub const IDENTITY: Transform = Transform {
        theta: 0.0,
        shift: (0.0, 0.0),
        zoom: (1.0, 1.0),
        flip_horizontal: false,
        flip_vertical: false,
        brightness: 0.0,
        contrast: 1.0,
    };

    /// The transform of image `index` in `epoch`, for an image of `height` x `width`.
    pub fn draw(settings: &AugmentSettings, seed: u64, epoch: u64, index: u64, height: usize, width: usize) -> Self {
        if settings.is_identity() {
            return Self::IDENTITY;
        }
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream((epoch << 40) ^ index);
        let mut sym = |range: f64| if range > 0.0 { rng.random_range(-range..=range) } else { 0.0 };
        let theta = sym(settings.rotation).to_radians();
        let shift = (sym(settings.height_shift) * height as f64, sym(settings.width_shift) * width as f64);
        let zoom = (1.0 + sym(settings.zoom), 1.0 + sym(settings.zoom));
        let brightness = sym(settings.brightness) as f32;
        let contrast = 1.0 + sym(settings.contrast) as f32;
        let flip_horizontal = settings.horizontal_flip && rng.random_bool(0.5);
        let flip_vertical = settings.vertical_flip && rng.random_bool(0.5);
        Self { theta, shift, zoom, flip_horizontal, flip_vertical, brightness, contrast }
    }

    /// Where output pixel (row, col) samples the input, as the tutorial's Keras
    /// (keras-preprocessing 1.1, TensorFlow 2.1) builds it: input = o + R (Z (p - o) + t),
    /// flips applied after. The pivot o of rotation and zoom is Keras' (h/2 + 0.5,
    /// w/2 + 0.5), one pixel below and right of the image centre; this moves an image
    /// by under one pixel and keeps radrun equal to the tutorial to 1e-5.
    fn source(&self, row: usize, col: usize, height: usize, width: usize) -> (f64, f64) {
        let row = if self.flip_vertical { height - 1 - row } else { row };
        let col = if self.flip_horizontal { width - 1 - col } else { col };
        let (or, oc) = (height as f64 / 2.0 + 0.5, width as f64 / 2.0 + 0.5);
        let (pr, pc) = (row as f64 - or, col as f64 - oc);
        let (zr, zc) = (pr * self.zoom.0 + self.shift.0, pc * self.zoom.1 + self.shift.1);
        let (s, c) = self.theta.sin_cos();
        (c * zr - s * zc + or, s * zr + c * zc + oc)
    }

    fn is_geometric_identity(&self) -> bool {
        self.theta == 0.0
            && self.shift == (0.0, 0.0)
            && self.zoom == (1.0, 1.0)
            && !self.flip_horizontal
            && !self.flip_vertical
    }

    /// Applies the transform to an intensity image (linear interpolation, as Keras'
    /// `interpolation_order = 1`), writing `out`.
    pub fn apply_image(
        &self,
        src: &[f32],
        height: usize,
        width: usize,
        fill: FillMode,
        fill_value: f32,
        out: &mut [f32],
    ) {
        if self.is_geometric_identity() {
            out.copy_from_slice(src);
        } else {
            for row in 0..height {
                for col in 0..width {
                    let (y, x) = self.source(row, col, height, width);
                    out[row * width + col] = match (Taps::along(y, height, fill), Taps::along(x, width, fill)) {
                        (Some(y), Some(x)) => y.blend(|r| x.blend(|c| f64::from(src[r * width + c]))) as f32,
                        _ => fill_value,
                    };
                }
            }
        }
        if self.brightness != 0.0 || self.contrast != 1.0 {
            let mean = out.iter().sum::<f32>() / out.len() as f32;
            for v in out.iter_mut() {
                *v = ((*v - mean) * self.contrast + mean + self.brightness).clamp(0.0, 1.0);
            }
        }
    }

    /// Applies the geometric part to a label mask (nearest neighbour, never interpolated;
    /// uncovered areas follow the fill mode, with background 0 for `constant`).
    pub fn apply_mask(&self, src: &[u8], height: usize, width: usize, fill: FillMode, out: &mut [u8]) {
        if self.is_geometric_identity() {
            out.copy_from_slice(src);
            return;
        }
        for row in 0..height {
            for col in 0..width {
                let (y, x) = self.source(row, col, height, width);
                out[row * width + col] = match (Taps::along(y, height, fill), Taps::along(x, width, fill)) {
                    (Some(y), Some(x)) => src[y.nearest() * width + x.nearest()],
                    _ => 0,
                };
            }
        }
    }
}

/// Where a source coordinate samples along one axis of `n` pixels, with the rules of
/// `scipy.ndimage.affine_transform` at order 1, which Keras' `apply_affine_transform`
/// calls: a coordinate outside `[0, n - 1]` is first folded into the image by the fill
/// mode (`reflect` mirrors about the pixel edge, `wrap` repeats with period `n - 1`,
/// SciPy's own convention, `nearest` clamps; `constant` gives no sample at all, so the
/// pixel takes the fill value unblended), then the two neighbouring pixels are blended.
/// A neighbour past the edge (only `reflect` reaches one) is the edge pixel itself.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Taps {
    below: usize,
    above: usize,
    /// Weight of `above`.
    weight: f64,
}

impl Taps {
    fn along(c: f64, n: usize, fill: FillMode) -> Option<Self> {
        let last = n as f64 - 1.0;
        let c = if (0.0..=last).contains(&c) {
            c
        } else if n <= 1 {
            if fill == FillMode::Constant { return None } else { 0.0 }
        } else {
            match fill {
                FillMode::Constant => return None,
                FillMode::Nearest => c.clamp(0.0, last),
                // SciPy's `map_coordinate`, transliterated (`trunc` for its integer casts)
                FillMode::Reflect => {
                    let period = 2.0 * n as f64;
                    if c < 0.0 {
                        let c = if c < -period { period * (-c / period).trunc() + c } else { c };
                        if c < -(n as f64) { c + period } else { -c - 1.0 }
                    } else {
                        let c = c - period * (c / period).trunc();
                        if c >= n as f64 { period - c - 1.0 } else { c }
                    }
                }
                FillMode::Wrap if c < 0.0 => c + last * ((-c / last).trunc() + 1.0),
                FillMode::Wrap => c - last * (c / last).trunc(),
            }
        };
        let floor = c.floor();
        let clamp = |i: f64| i.clamp(0.0, last) as usize;
        Some(Self { below: clamp(floor), above: clamp(floor + 1.0), weight: c - floor })
    }

    fn blend(self, value: impl Fn(usize) -> f64) -> f64 {
        let low = value(self.below);
        if self.weight == 0.0 { low } else { low * (1.0 - self.weight) + value(self.above) * self.weight }
    }

    /// The nearer neighbour (labels are never blended).
    fn nearest(self) -> usize {
        if self.weight < 0.5 { self.below } else { self.above }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(h: usize, w: usize) -> Vec<f32> {
        (0..h * w).map(|i| (i % w) as f32 / (w - 1) as f32).collect()
    }

    #[test]
    fn pure_shift_moves_pixels_and_fills_nearest() {
        let t = Transform { shift: (0.0, 2.0), ..Transform::IDENTITY };
        let src = ramp(3, 5);
        let mut out = vec![0.0; 15];
        t.apply_image(&src, 3, 5, FillMode::Nearest, 0.0, &mut out);
        // output col c samples input col c + 2: content moves left, right edge repeats.
        assert_eq!(&out[..5], &[0.5, 0.75, 1.0, 1.0, 1.0]);
        t.apply_image(&src, 3, 5, FillMode::Constant, 0.25, &mut out);
        assert_eq!(&out[..5], &[0.5, 0.75, 1.0, 0.25, 0.25]);
    }

    #[test]
    fn quarter_turn_turns_about_the_keras_pivot() {
        // 5x5, pivot (3, 3): output (r, c) reads input (3 - (c - 3), 3 + (r - 3))
        let t = Transform { theta: std::f64::consts::FRAC_PI_2, ..Transform::IDENTITY };
        let src: Vec<f32> = (0..25).map(|v| v as f32).collect();
        let mut out = vec![0.0; 25];
        t.apply_image(&src, 5, 5, FillMode::Nearest, 0.0, &mut out);
        let at = |r: usize, c: usize| out[r * 5 + c].round();
        assert_eq!(at(3, 3), 18.0, "the pivot stays");
        assert_eq!(at(2, 3), 17.0, "above the pivot reads left of it");
        assert_eq!(at(3, 4), 13.0, "right of the pivot reads above it");
    }

    #[test]
    fn fill_modes_fold_coordinates_as_scipy() {
        // scipy.ndimage.map_coordinates(np.arange(5.), [[c]], order=1, mode=m)
        let x: Vec<f64> = (0..5).map(f64::from).collect();
        let at = |c: f64, fill| Taps::along(c, 5, fill).map(|s| s.blend(|i| x[i]));
        assert_eq!(at(-1.5, FillMode::Nearest), Some(0.0));
        assert_eq!(at(-0.5, FillMode::Constant), None, "no blending with the fill value");
        assert_eq!(at(4.0, FillMode::Constant), Some(4.0));
        assert_eq!(at(4.5, FillMode::Reflect), Some(4.0));
        assert_eq!(at(5.5, FillMode::Reflect), Some(3.5));
        assert_eq!(at(-2.5, FillMode::Reflect), Some(1.5));
        assert_eq!(at(4.5, FillMode::Wrap), Some(0.5), "period n - 1");
        assert_eq!(at(-4.0, FillMode::Wrap), Some(4.0));
        assert_eq!(at(-1.0, FillMode::Wrap), Some(3.0));
    }

    #[test]
    fn draws_depend_only_on_seed_epoch_and_index() {
        let s = AugmentSettings::default();
        let a = Transform::draw(&s, 7, 3, 11, 64, 64);
        assert_eq!(a, Transform::draw(&s, 7, 3, 11, 64, 64));
        assert_ne!(a, Transform::draw(&s, 7, 4, 11, 64, 64));
        assert_ne!(a, Transform::draw(&s, 7, 3, 12, 64, 64));
        assert!(a.theta.abs() <= 15f64.to_radians());
        assert!(a.shift.0.abs() <= 0.2 * 64.0 && a.shift.1.abs() <= 0.2 * 64.0);
        assert!((0.7..=1.3).contains(&a.zoom.0) && (0.7..=1.3).contains(&a.zoom.1));
        let off = AugmentSettings { enabled: false, ..s };
        assert_eq!(Transform::draw(&off, 7, 3, 11, 64, 64), Transform::IDENTITY);
    }

    #[test]
    fn mask_follows_image() {
        // A mask drawn from the image itself (threshold) stays equal to the threshold of
        // the transformed image wherever the image is not on a blurred edge.
        let (h, w) = (32, 32);
        let img: Vec<f32> = (0..h * w)
            .map(|i| if (8..20).contains(&(i / w)) && (10..26).contains(&(i % w)) { 1.0 } else { 0.0 })
            .collect();
        let mask: Vec<u8> = img.iter().map(|&v| (v > 0.5) as u8).collect();
        let s = AugmentSettings::default();
        for index in 0..20 {
            let t = Transform::draw(&s, 1, 0, index, h, w);
            let (mut oi, mut om) = (vec![0.0; h * w], vec![0; h * w]);
            t.apply_image(&img, h, w, FillMode::Nearest, 0.0, &mut oi);
            t.apply_mask(&mask, h, w, FillMode::Nearest, &mut om);
            let agree = oi.iter().zip(&om).filter(|(v, m)| (**v > 0.5) == (**m == 1)).count();
            assert!(agree as f64 >= 0.97 * (h * w) as f64, "transform {index}: {agree}");
        }
    }
}
