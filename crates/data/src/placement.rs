//! Where a working volume came from, so that an output goes back onto the patient's scan:
//! a source volume is reoriented (flips and permutations), cropped to its foreground
//! (MONAI's `CropForeground`: the box of voxels above 0 in any channel, margin 0) and
//! resampled; [`Placement::place_back`] undoes the three in reverse order for a label
//! map (nearest-voxel resampling back to the cropped grid, zeros outside the crop, the
//! source's axis order and directions), so its shape and affine are the source's.

use crate::resample::{orders_for, resample, resample_labels, shape_for};
use crate::volume::{AxisMap, Orientation, Volume, axis_map};

/// The steps from a source volume to a working one, to be undone.
#[derive(Debug, Clone, PartialEq)]
pub struct Placement {
    /// The source's axis order and directions, and the orientation it was given.
    source_axes: AxisMap,
    orientation: Orientation,
    /// The reoriented volume's shape, and the box kept of it (lower, upper exclusive).
    reoriented_shape: [usize; 3],
    crop: ([usize; 3], [usize; 3]),
}

/// How to make a working volume.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Preparation {
    pub orientation: Orientation,
    pub crop_foreground: bool,
    /// Resample to this spacing (mm), with this order for images (nearest along the
    /// coarse axis of an anisotropic volume, as nnU-Net).
    pub spacing: Option<[f64; 3]>,
    pub order: u8,
}

impl Placement {
    /// The working volume made from `source` (an image, or a label map with `order` 0),
    /// and its placement.
    pub fn prepare(source: &Volume, how: &Preparation) -> (Volume, Placement) {
        let reoriented = source.reoriented(how.orientation);
        let full = ([0; 3], reoriented.shape);
        let crop = if how.crop_foreground { foreground_box(&reoriented).unwrap_or(full) } else { full };
        let cropped = cropped(&reoriented, crop);
        let working = match how.spacing {
            Some(spacing) => {
                let shape = shape_for(cropped.shape, cropped.spacing(), spacing);
                resample(&cropped, shape, orders_for(cropped.spacing(), how.order))
            }
            None => cropped,
        };
        let placement = Placement {
            source_axes: axis_map(&source.affine),
            orientation: how.orientation,
            reoriented_shape: reoriented.shape,
            crop,
        };
        (working, placement)
    }

    /// The label map of the source's grid (a mask of the image this placement was made
    /// from) on the working grid of `shape`: reoriented and cropped as the image was,
    /// then resampled by [`resample_labels`].
    pub fn labels_forward(&self, labels: &Volume, shape: [usize; 3], per_label_linear: bool) -> Volume {
        let cropped = cropped(&labels.reoriented(self.orientation), self.crop);
        if cropped.shape == shape { cropped } else { resample_labels(&cropped, shape, per_label_linear) }
    }

    /// A label map of the working grid on the source's grid: shape and affine the
    /// source's, voxels outside the crop 0.
    pub fn place_back(&self, labels: &Volume) -> Volume {
        let (lower, upper) = self.crop;
        let cropped_shape: [usize; 3] = std::array::from_fn(|a| upper[a] - lower[a]);
        let unresampled =
            if labels.shape == cropped_shape { labels.clone() } else { resample_labels(labels, cropped_shape, false) };
        padded(&unresampled, self.reoriented_shape, lower).reoriented_to(self.source_axes)
    }
}

/// The box (lower, upper exclusive) of voxels above 0 in any channel; `None` if none is.
pub fn foreground_box(volume: &Volume) -> Option<([usize; 3], [usize; 3])> {
    let [nx, ny, nz] = volume.shape;
    let per_channel = nx * ny * nz;
    let (mut lower, mut upper) = ([usize::MAX; 3], [0; 3]);
    for (at, &v) in volume.voxels.iter().enumerate() {
        if v > 0.0 {
            let at = at % per_channel;
            let index = [at % nx, (at / nx) % ny, at / (nx * ny)];
            for a in 0..3 {
                lower[a] = lower[a].min(index[a]);
                upper[a] = upper[a].max(index[a] + 1);
            }
        }
    }
    (lower[0] != usize::MAX).then_some((lower, upper))
}

/// The voxels of the box (lower, upper exclusive); the affine's origin moves to its
/// first voxel.
pub fn cropped(volume: &Volume, (lower, upper): ([usize; 3], [usize; 3])) -> Volume {
    let shape: [usize; 3] = std::array::from_fn(|a| upper[a] - lower[a]);
    let [nx, ny, nz] = volume.shape;
    let mut voxels = Vec::with_capacity(shape.iter().product::<usize>() * volume.channels);
    for channel in volume.voxels.chunks_exact((nx * ny * nz).max(1)) {
        for k in lower[2]..upper[2] {
            for j in lower[1]..upper[1] {
                let row = nx * (j + ny * k);
                voxels.extend_from_slice(&channel[row + lower[0]..row + upper[0]]);
            }
        }
    }
    Volume { voxels, shape, channels: volume.channels, affine: shifted(volume, lower, 1.0) }
}

/// `volume` inside a zero volume of `shape`, its first voxel at `lower`.
fn padded(volume: &Volume, shape: [usize; 3], lower: [usize; 3]) -> Volume {
    let [nx, ny, nz] = shape;
    let [cx, cy, cz] = volume.shape;
    let mut voxels = vec![0.0; nx * ny * nz * volume.channels];
    for (c, channel) in volume.voxels.chunks_exact((cx * cy * cz).max(1)).enumerate() {
        for k in 0..cz {
            for j in 0..cy {
                let to = c * nx * ny * nz + lower[0] + nx * (lower[1] + j + ny * (lower[2] + k));
                voxels[to..to + cx].copy_from_slice(&channel[cx * (j + cy * k)..cx * (j + cy * k) + cx]);
            }
        }
    }
    Volume { voxels, shape, channels: volume.channels, affine: shifted(volume, lower, -1.0) }
}

/// The affine with its origin moved by `sign` x `offset` voxels.
fn shifted(volume: &Volume, offset: [usize; 3], sign: f64) -> crate::volume::Affine {
    let mut affine = volume.affine;
    for (r, row) in affine.iter_mut().take(3).enumerate() {
        row[3] += sign * (0..3).map(|c| volume.affine[r][c] * offset[c] as f64).sum::<f64>();
    }
    affine
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 7 x 6 x 5 label map stored sagittally (i towards posterior, j inferior, k left:
    /// "PIL"), 0.8 x 0.7 x 2.5 mm, with a block of label 1 holding a voxel of label 2.
    fn source() -> Volume {
        let affine = [[0.0, 0.0, -2.5, 30.0], [-0.8, 0.0, 0.0, 12.0], [0.0, -0.7, 0.0, -4.0], [0.0, 0.0, 0.0, 1.0]];
        let shape = [7, 6, 5];
        let mut voxels = vec![0.0; 7 * 6 * 5];
        for k in 1..4 {
            for j in 2..5 {
                for i in 1..5 {
                    voxels[i + 7 * (j + 6 * k)] = 1.0;
                }
            }
        }
        voxels[3 + 7 * (3 + 6 * 2)] = 2.0;
        Volume { voxels, shape, channels: 1, affine }
    }

    #[test]
    fn an_identity_pipeline_gives_the_label_back_voxel_for_voxel_on_the_source_grid() {
        let source = source();
        assert_eq!(source.axis_codes(), "PIL");
        // RAS order: the source's k (2.5 mm), i (0.8 mm), j (0.7 mm); halved
        for spacing in [None, Some([1.25, 0.4, 0.35])] {
            let how = Preparation { orientation: Orientation::Ras, crop_foreground: true, spacing, order: 0 };
            let (working, placement) = Placement::prepare(&source, &how);
            assert_eq!(working.axis_codes(), "RAS");
            // cropped to the block (3 x 4 x 3 in RAS order: k, i, j), twice as fine when resampled
            let expected = if spacing.is_some() { [6, 8, 6] } else { [3, 4, 3] };
            assert_eq!(working.shape, expected, "{spacing:?}");
            // the "model" returns the label it was given
            let back = placement.place_back(&working);
            assert_eq!(back.shape, source.shape);
            assert_eq!(back.voxels, source.voxels, "{spacing:?}");
            for (a, b) in back.affine.iter().flatten().zip(source.affine.iter().flatten()) {
                assert!((a - b).abs() < 1e-12, "{:?} against {:?}", back.affine, source.affine);
            }
        }
    }

    #[test]
    fn cropping_moves_the_origin_to_the_first_kept_voxel() {
        let source = source();
        let (lower, upper) = foreground_box(&source).unwrap();
        assert_eq!((lower, upper), ([1, 2, 1], [5, 5, 4]));
        let crop = cropped(&source, (lower, upper));
        // voxel (1, 2, 1) of the source: 30 - 2.5, 12 - 0.8, -4 - 1.4
        assert_eq!([crop.affine[0][3], crop.affine[1][3], crop.affine[2][3]], [27.5, 11.2, -5.4]);
        assert!(crop.voxels.iter().all(|&v| v >= 1.0));
    }
}
