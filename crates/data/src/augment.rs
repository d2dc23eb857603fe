//! On-the-fly training augmentation with the semantics of Keras' `ImageDataGenerator`
//! (rotation, shift, zoom about the image centre, flips, fill modes, bilinear sampling),
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

    /// Where output pixel (row, col) samples the input, as Keras builds it:
    /// input = R Z (p - o) + R t + o with o the image centre; flips apply after.
    fn source(&self, row: usize, col: usize, height: usize, width: usize) -> (f64, f64) {
        let row = if self.flip_vertical { height - 1 - row } else { row };
        let col = if self.flip_horizontal { width - 1 - col } else { col };
        let (or, oc) = ((height as f64 - 1.0) / 2.0, (width as f64 - 1.0) / 2.0);
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

    /// Applies the transform to an intensity image (bilinear sampling), writing `out`.
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
                    out[row * width + col] = bilinear(src, height, width, y, x, fill, fill_value);
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
                let (y, x) = (y.round() as i64, x.round() as i64);
                out[row * width + col] = match (locate(y, height, fill), locate(x, width, fill)) {
                    (Some(y), Some(x)) => src[y * width + x],
                    _ => 0,
                };
            }
        }
    }
}

/// Maps a possibly out-of-range index into the image following the fill mode (scipy's
/// `ndimage` conventions); `None` means "use the constant".
fn locate(i: i64, n: usize, fill: FillMode) -> Option<usize> {
    let n = n as i64;
    if (0..n).contains(&i) {
        return Some(i as usize);
    }
    match fill {
        FillMode::Constant => None,
        FillMode::Nearest => Some(i.clamp(0, n - 1) as usize),
        FillMode::Wrap => Some(i.rem_euclid(n) as usize),
        FillMode::Reflect => {
            let m = i.rem_euclid(2 * n);
            Some(if m < n { m } else { 2 * n - 1 - m } as usize)
        }
    }
}

fn bilinear(src: &[f32], height: usize, width: usize, y: f64, x: f64, fill: FillMode, fill_value: f32) -> f32 {
    let (y0, x0) = (y.floor(), x.floor());
    let (fy, fx) = ((y - y0) as f32, (x - x0) as f32);
    let (y0, x0) = (y0 as i64, x0 as i64);
    let at = |yi: i64, xi: i64| match (locate(yi, height, fill), locate(xi, width, fill)) {
        (Some(r), Some(c)) => src[r * width + c],
        _ => fill_value,
    };
    let top = at(y0, x0) * (1.0 - fx) + at(y0, x0 + 1) * fx;
    let bottom = at(y0 + 1, x0) * (1.0 - fx) + at(y0 + 1, x0 + 1) * fx;
    top * (1.0 - fy) + bottom * fy
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
    fn quarter_turn_rotates_about_the_centre() {
        let t = Transform { theta: std::f64::consts::FRAC_PI_2, ..Transform::IDENTITY };
        let src: Vec<f32> = (0..9).map(|v| v as f32).collect();
        let mut out = vec![0.0; 9];
        t.apply_image(&src, 3, 3, FillMode::Nearest, 0.0, &mut out);
        let rounded: Vec<f32> = out.iter().map(|v| v.round()).collect();
        // input = R p: output (r, c) reads input (-(c-1)+1, (r-1)+1)
        assert_eq!(rounded, vec![6.0, 3.0, 0.0, 7.0, 4.0, 1.0, 8.0, 5.0, 2.0]);
    }

    #[test]
    fn fill_modes_follow_scipy() {
        assert_eq!(locate(-1, 4, FillMode::Nearest), Some(0));
        assert_eq!(locate(-1, 4, FillMode::Reflect), Some(0));
        assert_eq!(locate(-2, 4, FillMode::Reflect), Some(1));
        assert_eq!(locate(5, 4, FillMode::Reflect), Some(2));
        assert_eq!(locate(-1, 4, FillMode::Wrap), Some(3));
        assert_eq!(locate(4, 4, FillMode::Constant), None);
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
