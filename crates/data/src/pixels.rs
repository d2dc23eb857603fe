//! How a decoded, resized image is kept in memory for all epochs: as the 8-bit or 16-bit
//! levels it holds when it holds exactly such levels (lossless), else as 16-bit fixed
//! point over the image's own range. A 224 x 224 image takes 50 kB (8-bit) or 100 kB
//! instead of 200 kB as 32-bit floats.
//!
//! Images whose values are all k/255 (8-bit files at their size, or resized by nearest
//! neighbour) are stored as those k; all k/65535 (16-bit files) likewise. Anything else
//! (an interpolating resize, a DICOM window, a slab of slices) is stored as
//! low + k * step with step = (max - min) / 65535, so each value is off by at most half a
//! step: 7.6e-6 for an image spanning [0, 1], about 500 times finer than one grey level
//! of an 8-bit display (Keras, which resized 8-bit images, rounded to whole levels).

/// An image's intensities, one or more planes of `height x width`, row-major.
#[derive(Debug, Clone, PartialEq)]
pub enum Pixels {
    /// Value k / 255.
    Bytes(Vec<u8>),
    /// Value k / 65535.
    Words(Vec<u16>),
    /// Value low + k * step.
    Scaled { levels: Vec<u16>, low: f32, step: f32 },
}

impl Pixels {
    /// The most compact of the three forms that holds `values` (see the module docs).
    pub fn pack(values: Vec<f32>) -> Self {
        let exact = |scale: f32, max: f32| {
            values.iter().all(|&v| {
                let k = (v * scale).round();
                (0.0..=max).contains(&k) && k / scale == v
            })
        };
        if exact(255.0, 255.0) {
            return Pixels::Bytes(values.iter().map(|&v| (v * 255.0).round() as u8).collect());
        }
        if exact(65535.0, 65535.0) {
            return Pixels::Words(values.iter().map(|&v| (v * 65535.0).round() as u16).collect());
        }
        let (low, high) = values.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(l, h), &v| (l.min(v), h.max(v)));
        let step = if high > low { (high - low) / 65535.0 } else { 0.0 };
        let levels = values
            .iter()
            .map(|&v| if step > 0.0 { ((v - low) / step).round().clamp(0.0, 65535.0) as u16 } else { 0 })
            .collect();
        Pixels::Scaled { levels, low, step }
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        match self {
            Pixels::Bytes(v) => v.len(),
            Pixels::Words(v) => v.len(),
            Pixels::Scaled { levels, .. } => levels.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of memory the values take.
    pub fn bytes(&self) -> usize {
        match self {
            Pixels::Bytes(v) => v.len(),
            Pixels::Words(v) | Pixels::Scaled { levels: v, .. } => v.len() * 2,
        }
    }

    /// Writes values `start..start + out.len()` as floats into `out`.
    pub fn unpack_into(&self, start: usize, out: &mut [f32]) {
        let end = start + out.len();
        match self {
            Pixels::Bytes(v) => out.iter_mut().zip(&v[start..end]).for_each(|(o, &k)| *o = f32::from(k) / 255.0),
            Pixels::Words(v) => out.iter_mut().zip(&v[start..end]).for_each(|(o, &k)| *o = f32::from(k) / 65535.0),
            Pixels::Scaled { levels, low, step } => {
                out.iter_mut().zip(&levels[start..end]).for_each(|(o, &k)| *o = low + f32::from(k) * step)
            }
        }
    }

    /// All values as floats.
    pub fn to_vec(&self) -> Vec<f32> {
        let mut out = vec![0.0; self.len()];
        self.unpack_into(0, &mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eight_and_sixteen_bit_levels_are_kept_exactly() {
        let eight: Vec<f32> = (0..=255u16).map(|k| f32::from(k) / 255.0).collect();
        let packed = Pixels::pack(eight.clone());
        assert!(matches!(packed, Pixels::Bytes(_)));
        assert_eq!(packed.to_vec(), eight);
        assert_eq!(packed.bytes(), 256);
        let sixteen: Vec<f32> = [0u16, 1, 257, 4095, 65535].iter().map(|&k| f32::from(k) / 65535.0).collect();
        let packed = Pixels::pack(sixteen.clone());
        assert!(matches!(packed, Pixels::Words(_)));
        assert_eq!(packed.to_vec(), sixteen);
    }

    #[test]
    fn other_values_are_within_half_a_step_of_their_range() {
        // an interpolating resize overshoots [0, 1] a little; a window is any float
        let values: Vec<f32> = (0..1000).map(|i| -0.03 + 1.06 * (i as f32 * 0.7311).sin().abs()).collect();
        let packed = Pixels::pack(values.clone());
        let Pixels::Scaled { low, step, .. } = packed else { panic!("{packed:?}") };
        assert!((low - values.iter().cloned().fold(f32::INFINITY, f32::min)).abs() < 1e-9);
        let worst = packed.to_vec().iter().zip(&values).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
        assert!(worst <= step * 0.5 + 1e-7, "{worst} vs step {step}");
        assert!(worst < 1e-5, "{worst}");
        // a flat image has no range: every value is low
        let flat = Pixels::pack(vec![0.3; 4]);
        assert_eq!(flat.to_vec(), vec![0.3; 4]);
        // a part of the values
        let mut part = [0.0; 2];
        Pixels::pack(vec![0.0, 1.0, 2.0 / 255.0]).unpack_into(1, &mut part);
        assert_eq!(part, [1.0, 2.0 / 255.0]);
    }
}
