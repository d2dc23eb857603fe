//! How a decoded, resized image is kept for all epochs: as the 8-bit or 16-bit levels it
//! holds when it holds exactly such levels (lossless), else as 16-bit fixed point over
//! the image's own range; in memory, or in an image cache file (`data.cache = "disk"`)
//! from which each batch reads it. A 224 x 224 image takes 50 kB (8-bit) or 100 kB
//! instead of 200 kB as 32-bit floats.
//!
//! Images whose values are all k/255 (8-bit files at their size, or resized by nearest
//! neighbour) are stored as those k; all k/65535 (16-bit files) likewise. Anything else
//! (an interpolating resize, a DICOM window, a slab of slices) is stored as
//! low + k * step with step = (max - min) / 65535, so each value is off by at most half a
//! step: 7.6e-6 for an image spanning [0, 1], about 500 times finer than one grey level
//! of an 8-bit display (Keras, which resized 8-bit images, rounded to whole levels).

use std::borrow::Cow;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// How an image's values are coded as levels.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Packing {
    /// Value k / 255, one byte per value.
    Bytes,
    /// Value k / 65535, two bytes (little-endian) per value.
    Words,
    /// Value low + k * step, two bytes (little-endian) per value.
    Scaled { low: f32, step: f32 },
}

impl Packing {
    /// Bytes per value.
    fn width(self) -> usize {
        match self {
            Packing::Bytes => 1,
            Packing::Words | Packing::Scaled { .. } => 2,
        }
    }

    fn value(self, level: u16) -> f32 {
        match self {
            Packing::Bytes => f32::from(level) / 255.0,
            Packing::Words => f32::from(level) / 65535.0,
            Packing::Scaled { low, step } => low + f32::from(level) * step,
        }
    }
}

/// An open image cache file and its name (for error messages).
#[derive(Debug)]
pub struct StoredFile {
    pub(crate) file: File,
    pub(crate) path: PathBuf,
}

/// Where the levels are.
#[derive(Debug, Clone)]
enum Store {
    /// Shared by the clones of a sample (a run's splits are made of clones).
    Memory(Arc<[u8]>),
    /// At this byte offset of an image cache file.
    File { file: Arc<StoredFile>, offset: u64 },
}

/// An image's intensities, one or more planes of `height x width`, row-major. Cloning
/// shares the levels.
#[derive(Debug, Clone)]
pub struct Pixels {
    packing: Packing,
    len: usize,
    store: Store,
}

impl Default for Pixels {
    fn default() -> Self {
        Pixels { packing: Packing::Bytes, len: 0, store: Store::Memory(Arc::from([])) }
    }
}

impl PartialEq for Pixels {
    fn eq(&self, other: &Self) -> bool {
        self.packing == other.packing && self.len == other.len && self.levels() == other.levels()
    }
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
        let len = values.len();
        if exact(255.0, 255.0) {
            let levels = values.iter().map(|&v| (v * 255.0).round() as u8).collect();
            return Pixels { packing: Packing::Bytes, len, store: Store::Memory(levels) };
        }
        let words = |levels: &mut dyn Iterator<Item = u16>| Store::Memory(levels.flat_map(u16::to_le_bytes).collect());
        if exact(65535.0, 65535.0) {
            let store = words(&mut values.iter().map(|&v| (v * 65535.0).round() as u16));
            return Pixels { packing: Packing::Words, len, store };
        }
        let (low, high) = values.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(l, h), &v| (l.min(v), h.max(v)));
        let step = if high > low { (high - low) / 65535.0 } else { 0.0 };
        let store = words(
            &mut values
                .iter()
                .map(|&v| if step > 0.0 { ((v - low) / step).round().clamp(0.0, 65535.0) as u16 } else { 0 }),
        );
        Pixels { packing: Packing::Scaled { low, step }, len, store }
    }

    /// Pixels kept at `offset` of an image cache file, as [`Pixels::levels`] gave them.
    pub(crate) fn stored(packing: Packing, len: usize, file: Arc<StoredFile>, offset: u64) -> Self {
        Pixels { packing, len, store: Store::File { file, offset } }
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn packing(&self) -> Packing {
        self.packing
    }

    /// Bytes of memory the values take (none when they are in a cache file).
    pub fn bytes(&self) -> usize {
        match &self.store {
            Store::Memory(levels) => levels.len(),
            Store::File { .. } => 0,
        }
    }

    /// Where the values are in this cache file, if they are in it.
    pub(crate) fn offset_in(&self, file: &Arc<StoredFile>) -> Option<u64> {
        match &self.store {
            Store::File { file: f, offset } if Arc::ptr_eq(f, file) => Some(*offset),
            _ => None,
        }
    }

    /// The levels of values `start..end` as stored (see [`Packing`]).
    fn levels_of(&self, start: usize, end: usize) -> Cow<'_, [u8]> {
        let width = self.packing.width();
        match &self.store {
            Store::Memory(levels) => Cow::Borrowed(&levels[start * width..end * width]),
            Store::File { file, offset } => {
                let mut levels = vec![0; (end - start) * width];
                // a cache file checked when opened and changed since: the disk, or another
                // program, is at fault; nothing can be trained on
                file.file.read_exact_at(&mut levels, offset + (start * width) as u64).unwrap_or_else(|e| {
                    panic!(
                        "cannot read image cache {}: {e}; delete it (radrun rebuilds it) or set data.cache = \"memory\"",
                        file.path.display()
                    )
                });
                Cow::Owned(levels)
            }
        }
    }

    /// Every level as stored: what a cache file holds.
    pub(crate) fn levels(&self) -> Cow<'_, [u8]> {
        self.levels_of(0, self.len)
    }

    /// Writes values `start..start + out.len()` as floats into `out`.
    pub fn unpack_into(&self, start: usize, out: &mut [f32]) {
        let levels = self.levels_of(start, start + out.len());
        let packing = self.packing;
        match packing {
            Packing::Bytes => out.iter_mut().zip(levels.iter()).for_each(|(o, &k)| *o = packing.value(u16::from(k))),
            Packing::Words | Packing::Scaled { .. } => out
                .iter_mut()
                .zip(levels.chunks_exact(2))
                .for_each(|(o, k)| *o = packing.value(u16::from_le_bytes([k[0], k[1]]))),
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
        assert_eq!(packed.packing(), Packing::Bytes);
        assert_eq!(packed.to_vec(), eight);
        assert_eq!(packed.bytes(), 256);
        let sixteen: Vec<f32> = [0u16, 1, 257, 4095, 65535].iter().map(|&k| f32::from(k) / 65535.0).collect();
        let packed = Pixels::pack(sixteen.clone());
        assert_eq!(packed.packing(), Packing::Words);
        assert_eq!(packed.to_vec(), sixteen);
        assert_eq!(packed.bytes(), 10);
    }

    #[test]
    fn other_values_are_within_half_a_step_of_their_range() {
        // an interpolating resize overshoots [0, 1] a little; a window is any float
        let values: Vec<f32> = (0..1000).map(|i| -0.03 + 1.06 * (i as f32 * 0.7311).sin().abs()).collect();
        let packed = Pixels::pack(values.clone());
        let Packing::Scaled { low, step } = packed.packing() else { panic!("{packed:?}") };
        // low is the smallest value itself, no arithmetic
        assert!((low - values.iter().cloned().fold(f32::INFINITY, f32::min)).abs() < 1e-9);
        let worst = packed.to_vec().iter().zip(&values).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
        // half a step, plus four float32 roundings of values below 2, half a float32 step
        // (6e-8) each: v - low and its division by the step choose the level, k x step and
        // low + k x step give the value back
        assert!(worst <= step * 0.5 + 2.0 * f32::EPSILON, "{worst} vs step {step}");
        // what the module's docs promise: half a step of this 1.06 range is 8.1e-6
        assert!(worst < 1e-5, "{worst}");
        // a flat image has no range: every value is low
        let flat = Pixels::pack(vec![0.3; 4]);
        assert_eq!(flat.to_vec(), vec![0.3; 4]);
        // a part of the values
        let mut part = [0.0; 2];
        Pixels::pack(vec![0.0, 1.0, 2.0 / 255.0]).unpack_into(1, &mut part);
        assert_eq!(part, [1.0, 2.0 / 255.0]);
    }

    #[test]
    fn stored_pixels_read_back_from_their_file_as_in_memory() {
        let values: Vec<f32> = (0..50).map(|i| (i as f32 * 0.37).sin()).collect();
        let packed = Pixels::pack(values);
        let mut file = tempfile::tempfile().unwrap();
        std::io::Write::write_all(&mut file, b"header").unwrap();
        std::io::Write::write_all(&mut file, &packed.levels()).unwrap();
        let file = Arc::new(StoredFile { file, path: "test".into() });
        let stored = Pixels::stored(packed.packing(), packed.len(), file.clone(), 6);
        assert_eq!((stored.offset_in(&file), packed.offset_in(&file)), (Some(6), None));
        assert_eq!(stored.bytes(), 0);
        assert_eq!(stored, packed);
        let (mut a, mut b) = ([0.0; 7], [0.0; 7]);
        stored.unpack_into(40, &mut a);
        packed.unpack_into(40, &mut b);
        assert_eq!(a, b);
    }
}
