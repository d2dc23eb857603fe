//! Surface distances between two binary masks on a grid of known spacing (anisotropic
//! voxels), for volumes and for images (a volume of one slice that is not eroded along
//! z): the 95th-percentile Hausdorff distance, the average symmetric surface distance
//! and the normalised surface distance at a tolerance, all in millimetres, with Dice, IoU
//! and the volumes in mL.
//!
//! Definitions are MONAI's (`get_mask_edges`, `compute_hausdorff_distance`,
//! `compute_average_surface_distance(symmetric=True)`, `compute_surface_dice` without
//! sub-voxels), which equal DeepMind's `surface-distance` on voxel surfaces:
//! - a mask's surface is the mask minus its erosion by the face-connected cross (outside
//!   the grid counts as background, so a mask touching the border has a surface there);
//! - distances are exact Euclidean distances in mm from each surface voxel's centre to
//!   the nearest surface voxel of the other mask;
//! - HD95: the larger of the two directions' 95th percentiles (linear interpolation, as
//!   `numpy.percentile` and `torch.quantile`); ASSD: the mean of both directions'
//!   distances pooled; NSD: the share of both surfaces within the tolerance (`<=`).
//!
//! Distances come from an exact Euclidean distance transform (Felzenszwalb and
//! Huttenlocher's separable lower envelope of parabolas, in f64, one pass per axis with
//! that axis' spacing) over the bounding box of the two surfaces, which holds every
//! surface voxel, so the nearest one is always inside it.
//!
//! Empty masks follow Metrics Reloaded's "best" and "worst" values, so that every case
//! stays in the averages (MONAI gives NaN and drops it, nnU-Net gives NaN for Dice): both
//! empty, the structure is rightly absent: Dice, IoU and NSD 1, distances 0; one empty:
//! Dice, IoU and NSD 0, distances the grid's diagonal in mm (the aggregation rule of
//! Metrics Reloaded for a missing structure).

use serde::Serialize;

use crate::percentile;

/// Scores of one label in one volume (or image), distances in mm.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SurfaceScores {
    pub dice: f64,
    pub iou: f64,
    pub hd95_mm: f64,
    /// Average symmetric surface distance.
    pub assd_mm: f64,
    /// Normalised surface distance at the tolerance.
    pub nsd: f64,
    pub reference_ml: f64,
    pub predicted_ml: f64,
    /// Predicted minus reference volume.
    pub volume_difference_ml: f64,
}

/// A grid of `shape` `[z, y, x]` voxels of `spacing` mm, first index slowest; `erode_z`
/// false for an image stored as one slice (its surface is the 2D one).
#[derive(Debug, Clone, Copy)]
pub struct Grid {
    pub shape: [usize; 3],
    pub spacing: [f64; 3],
    pub erode_z: bool,
}

impl Grid {
    /// A volume.
    pub fn volume(shape: [usize; 3], spacing: [f64; 3]) -> Self {
        Self { shape, spacing, erode_z: true }
    }

    /// An image of `height` x `width` pixels of `spacing` (row, column) mm.
    pub fn image(height: usize, width: usize, spacing: [f64; 2]) -> Self {
        Self { shape: [1, height, width], spacing: [1.0, spacing[0], spacing[1]], erode_z: false }
    }

    fn len(&self) -> usize {
        self.shape.iter().product()
    }

    fn diagonal_mm(&self) -> f64 {
        (0..3).map(|d| (self.shape[d] as f64 * self.spacing[d]).powi(2)).sum::<f64>().sqrt()
    }

    fn voxel_ml(&self) -> f64 {
        self.spacing.iter().product::<f64>() / 1000.0
    }
}

/// The voxels of `mask` with a face neighbour outside it (or outside the grid).
pub fn surface_voxels(mask: &[bool], grid: &Grid) -> Vec<[usize; 3]> {
    let [nz, ny, nx] = grid.shape;
    let at = |z: usize, y: usize, x: usize| mask[(z * ny + y) * nx + x];
    let mut points = Vec::new();
    for z in 0..nz {
        for y in 0..ny {
            for x in 0..nx {
                if !at(z, y, x) {
                    continue;
                }
                let inside_z = !grid.erode_z || (z > 0 && z + 1 < nz && at(z - 1, y, x) && at(z + 1, y, x));
                let inside = inside_z
                    && y > 0
                    && y + 1 < ny
                    && x > 0
                    && x + 1 < nx
                    && at(z, y - 1, x)
                    && at(z, y + 1, x)
                    && at(z, y, x - 1)
                    && at(z, y, x + 1);
                if !inside {
                    points.push([z, y, x]);
                }
            }
        }
    }
    points
}

/// Squared distances along one line: `f` holds the squared distances so far (infinite
/// where no target is known), `step` the spacing between its samples; the lower envelope
/// of the parabolas `(q - i)^2 step^2 + f[i]` is written back into `f`.
fn envelope(f: &mut [f64], step: f64, hull: &mut Vec<usize>, bounds: &mut Vec<f64>) {
    hull.clear();
    bounds.clear();
    let pos = |i: usize| i as f64 * step;
    for i in 0..f.len() {
        if !f[i].is_finite() {
            continue;
        }
        loop {
            let Some(&j) = hull.last() else {
                hull.push(i);
                bounds.push(f64::NEG_INFINITY);
                break;
            };
            let cross = ((f[i] + pos(i).powi(2)) - (f[j] + pos(j).powi(2))) / (2.0 * (pos(i) - pos(j)));
            if cross <= bounds[bounds.len() - 1] {
                hull.pop();
                bounds.pop();
            } else {
                hull.push(i);
                bounds.push(cross);
                break;
            }
        }
    }
    if hull.is_empty() {
        return;
    }
    let values: Vec<(usize, f64)> = hull.iter().map(|&i| (i, f[i])).collect();
    let mut k = 0;
    for (q, out) in f.iter_mut().enumerate() {
        while k + 1 < values.len() && bounds[k + 1] < pos(q) {
            k += 1;
        }
        let (i, fi) = values[k];
        *out = (pos(q) - pos(i)).powi(2) + fi;
    }
}

/// Squared distance in mm from every voxel of a box of `sides` to the nearest of
/// `targets` (box coordinates), the box's first axis slowest.
fn squared_distances(targets: &[[usize; 3]], sides: [usize; 3], spacing: [f64; 3]) -> Vec<f64> {
    let [nz, ny, nx] = sides;
    let mut d = vec![f64::INFINITY; nz * ny * nx];
    for t in targets {
        d[(t[0] * ny + t[1]) * nx + t[2]] = 0.0;
    }
    let (mut hull, mut bounds) = (Vec::new(), Vec::new());
    let strides = [ny * nx, nx, 1];
    for axis in 0..3 {
        let n = sides[axis];
        let mut line = vec![0.0; n];
        for start in 0..d.len() {
            // each line once: from the voxels whose coordinate along `axis` is 0
            if (start / strides[axis]) % n != 0 {
                continue;
            }
            for (i, v) in line.iter_mut().enumerate() {
                *v = d[start + i * strides[axis]];
            }
            envelope(&mut line, spacing[axis], &mut hull, &mut bounds);
            for (i, v) in line.iter().enumerate() {
                d[start + i * strides[axis]] = *v;
            }
        }
    }
    d
}

/// Distance in mm from each of `from` to the nearest of `to` (both non-empty).
fn nearest(from: &[[usize; 3]], to: &[[usize; 3]], spacing: [f64; 3]) -> Vec<f64> {
    let mut low = [usize::MAX; 3];
    let mut high = [0usize; 3];
    for p in from.iter().chain(to) {
        for d in 0..3 {
            low[d] = low[d].min(p[d]);
            high[d] = high[d].max(p[d]);
        }
    }
    let sides = [high[0] - low[0] + 1, high[1] - low[1] + 1, high[2] - low[2] + 1];
    let local = |p: &[usize; 3]| [p[0] - low[0], p[1] - low[1], p[2] - low[2]];
    let targets: Vec<[usize; 3]> = to.iter().map(local).collect();
    let field = squared_distances(&targets, sides, spacing);
    from.iter()
        .map(|p| {
            let [z, y, x] = local(p);
            field[(z * sides[1] + y) * sides[2] + x].sqrt()
        })
        .collect()
}

/// The distances from each surface voxel of `a` to the surface of `b` and back, in mm
/// (both masks non-empty).
pub fn surface_distances(a: &[bool], b: &[bool], grid: &Grid) -> (Vec<f64>, Vec<f64>) {
    let (sa, sb) = (surface_voxels(a, grid), surface_voxels(b, grid));
    (nearest(&sa, &sb, grid.spacing), nearest(&sb, &sa, grid.spacing))
}

/// The 95th-percentile Hausdorff distance of two non-empty masks, in mm.
pub fn hd95(a: &[bool], b: &[bool], grid: &Grid) -> f64 {
    let (mut ab, mut ba) = surface_distances(a, b, grid);
    percentile(&mut ab, 95.0).max(percentile(&mut ba, 95.0))
}

/// Every score of `predicted` against `reference` on `grid`, NSD at `tolerance_mm`.
pub fn surface_scores(reference: &[bool], predicted: &[bool], grid: &Grid, tolerance_mm: f64) -> SurfaceScores {
    assert_eq!(reference.len(), grid.len(), "one reference voxel per grid voxel");
    assert_eq!(predicted.len(), grid.len(), "one predicted voxel per grid voxel");
    let count = |m: &[bool]| m.iter().filter(|&&v| v).count() as f64;
    let (r, p) = (count(reference), count(predicted));
    let both = reference.iter().zip(predicted).filter(|(a, b)| **a && **b).count() as f64;
    let volumes = (r * grid.voxel_ml(), p * grid.voxel_ml());
    let scores = |dice, iou, hd95_mm, assd_mm, nsd| SurfaceScores {
        dice,
        iou,
        hd95_mm,
        assd_mm,
        nsd,
        reference_ml: volumes.0,
        predicted_ml: volumes.1,
        volume_difference_ml: volumes.1 - volumes.0,
    };
    match (r > 0.0, p > 0.0) {
        (false, false) => scores(1.0, 1.0, 0.0, 0.0, 1.0),
        (true, true) => {
            let (mut pr, mut rp) = surface_distances(predicted, reference, grid);
            let pooled = (pr.len() + rp.len()) as f64;
            let assd = (pr.iter().sum::<f64>() + rp.iter().sum::<f64>()) / pooled;
            let within = pr.iter().chain(&rp).filter(|&&d| d <= tolerance_mm).count() as f64;
            let hd = percentile(&mut pr, 95.0).max(percentile(&mut rp, 95.0));
            scores(2.0 * both / (r + p), both / (r + p - both), hd, assd, within / pooled)
        }
        _ => scores(0.0, 0.0, grid.diagonal_mm(), grid.diagonal_mm(), 0.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances_between_two_points_are_euclidean_in_mm() {
        // one voxel each, 2 slices, 3 rows and 1 column apart at 2.5 x 0.8 x 0.7 mm
        let grid = Grid::volume([4, 5, 6], [2.5, 0.8, 0.7]);
        let mut a = vec![false; 120];
        let mut b = vec![false; 120];
        a[0] = true;
        b[(2 * 5 + 3) * 6 + 1] = true;
        let want = ((2.0f64 * 2.5).powi(2) + (3.0f64 * 0.8).powi(2) + 0.7f64.powi(2)).sqrt();
        let (ab, ba) = surface_distances(&a, &b, &grid);
        assert!((ab[0] - want).abs() < 1e-12 && (ba[0] - want).abs() < 1e-12, "{ab:?} {ba:?} vs {want}");
    }

    #[test]
    fn the_transform_equals_brute_force_on_scattered_points() {
        let grid = Grid::volume([7, 9, 8], [3.0, 0.6, 1.1]);
        let mut state = 12345u64;
        let mut bits = || {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (state >> 33).is_multiple_of(11)
        };
        let a: Vec<bool> = (0..grid.len()).map(|_| bits()).collect();
        let b: Vec<bool> = (0..grid.len()).map(|_| bits()).collect();
        let (sa, sb) = (surface_voxels(&a, &grid), surface_voxels(&b, &grid));
        let fast = nearest(&sa, &sb, grid.spacing);
        for (p, got) in sa.iter().zip(fast) {
            let want = sb
                .iter()
                .map(|q| (0..3).map(|d| ((p[d] as f64 - q[d] as f64) * grid.spacing[d]).powi(2)).sum::<f64>())
                .fold(f64::INFINITY, f64::min)
                .sqrt();
            assert!((got - want).abs() < 1e-9, "{p:?}: {got} vs {want}");
        }
    }

    #[test]
    fn empty_masks_score_best_when_both_are_empty_and_worst_when_one_is() {
        let grid = Grid::volume([2, 3, 4], [2.0, 1.0, 1.0]);
        let none = vec![false; 24];
        let mut some = none.clone();
        some[5] = true;
        let s = surface_scores(&none, &none, &grid, 1.0);
        assert_eq!((s.dice, s.iou, s.nsd, s.hd95_mm, s.assd_mm), (1.0, 1.0, 1.0, 0.0, 0.0));
        let s = surface_scores(&some, &none, &grid, 1.0);
        let diagonal = (16.0f64 + 9.0 + 16.0).sqrt();
        assert_eq!((s.dice, s.iou, s.nsd, s.hd95_mm, s.assd_mm), (0.0, 0.0, 0.0, diagonal, diagonal));
        assert!((s.reference_ml - 0.002).abs() < 1e-15 && (s.volume_difference_ml + 0.002).abs() < 1e-15);
    }
}
