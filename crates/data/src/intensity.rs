//! Volume intensities normalised as nnU-Net normalises them, in f64 then stored as f32.
//!
//! - **CT** ([`CtStatistics`]): the 0.5th and 99.5th percentiles (numpy's linear rule),
//!   the mean and the standard deviation (population) of the foreground voxels (label
//!   above 0) of the *training* volumes; each volume is clipped to the percentiles, then
//!   `(x - mean) / max(sd, 1e-8)`. nnU-Net samples 10,000 foreground voxels per case for
//!   these; radrun uses every one, so the statistics do not depend on a random draw.
//! - **z-score** ([`zscore`]): per volume, `(x - mean) / max(sd, 1e-8)` over all its
//!   voxels, or over its nonzero ones only (MR with a background of zeros: nnU-Net's
//!   `use_mask_for_norm`), the others then 0.

use crate::volume::Volume;

/// What nnU-Net's CT normalisation needs from a training set's foreground.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CtStatistics {
    pub lower: f64,
    pub upper: f64,
    pub mean: f64,
    pub sd: f64,
}

impl CtStatistics {
    /// The statistics of the voxels where each training volume's label map is above 0
    /// (one label map per volume, same shape); `None` when no voxel is foreground.
    pub fn of_foreground(training: &[(&Volume, &Volume)]) -> Option<CtStatistics> {
        let mut values: Vec<f64> = training
            .iter()
            .flat_map(|(image, labels)| {
                image.voxels.iter().zip(&labels.voxels).filter(|(_, l)| **l > 0.0).map(|(v, _)| f64::from(*v))
            })
            .collect();
        Self::of_values(&mut values)
    }

    /// The statistics of these foreground values (reordered); `None` when there are none.
    pub fn of_values(values: &mut [f64]) -> Option<CtStatistics> {
        if values.is_empty() {
            return None;
        }
        let (mean, sd) = mean_sd(values.iter().copied());
        Some(CtStatistics { lower: percentile(values, 0.5), upper: percentile(values, 99.5), mean, sd })
    }

    /// Clips one channel's values to the percentiles and standardises them with the mean
    /// and SD.
    pub fn apply_to(&self, values: &mut [f32]) {
        let scale = self.sd.max(1e-8);
        for v in values {
            *v = ((f64::from(*v).clamp(self.lower, self.upper) - self.mean) / scale) as f32;
        }
    }
}

/// Standardises one channel's `voxels` by their own mean and SD: over every voxel, or
/// (`within_nonzero`) over its nonzero voxels, the zeros staying 0.
pub fn zscore(voxels: &mut [f32], within_nonzero: bool) {
    let inside = |v: f32| !within_nonzero || v != 0.0;
    if !voxels.iter().any(|&v| inside(v)) {
        return;
    }
    let (mean, sd) = mean_sd(voxels.iter().filter(|&&v| inside(v)).map(|&v| f64::from(v)));
    let scale = sd.max(1e-8);
    for v in voxels {
        *v = if inside(*v) { ((f64::from(*v) - mean) / scale) as f32 } else { 0.0 };
    }
}

/// Mean and population SD, in two passes.
pub(crate) fn mean_sd(values: impl Iterator<Item = f64> + Clone) -> (f64, f64) {
    let n = values.clone().count() as f64;
    let mean = values.clone().sum::<f64>() / n;
    let variance = values.map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
    (mean, variance.sqrt())
}

/// numpy's `percentile` with its default linear rule (`values` are sorted in place),
/// operation for operation (`(n - 1) * (q / 100)`, then its `_lerp`, which counts back
/// from the upper neighbour past the midpoint), so that a percentile that falls on a
/// value falls on it exactly here too (calibration bins cut there); the metrics'
/// intervals and summaries use it too.
pub fn percentile(values: &mut [f64], q: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    let last = values.len() - 1;
    let position = last as f64 * (q / 100.0);
    if position >= last as f64 {
        return values[last];
    }
    let below = position.floor() as usize;
    let (a, b) = (values[below], values[below + 1]);
    let gamma = position - below as f64;
    let difference = b - a;
    if gamma >= 0.5 { b - difference * (1.0 - gamma) } else { a + difference * gamma }
}
