//! Resampling volumes to another grid, as `scipy.ndimage.zoom` does it (the function
//! users check against, and nnU-Net's images): the first and last voxel centres of each
//! axis stay where they are (`grid_mode=False`), so the new spacing along an axis is the
//! old one times `(old - 1) / (new - 1)` and the affine follows exactly.
//!
//! - **Order 0** (nearest voxel), **1** (linear) and **3** (cubic B-spline, after SciPy's
//!   spline prefilter with its mirror boundary; `mode="constant"` samples nothing
//!   outside the grid with these corners) are separable, so each axis takes its own order:
//!   nnU-Net's rule for anisotropic volumes (when the coarsest spacing is over 3 times
//!   the finest) resamples that axis by nearest and the others in-plane ([`orders_for`]).
//! - An axis of one voxel (or resampled to one) keeps its extent as voxel sizes instead:
//!   the spacing is divided by the new count, so the affine stays invertible.
//! - **Labels** (masks): nearest, or as nnU-Net does, each label resampled linearly as a
//!   0/1 map and kept where it reaches 0.5 ([`resample_labels`]); or moved by nearest
//!   voxel onto another volume's grid, whatever its extent ([`labels_onto`]).

use crate::volume::{Affine, Volume, invert3};

/// The voxels of `volume` on a grid of `shape` over the same extent (see the module's
/// documentation), each axis interpolated with its order (0, 1 or 3).
pub fn resample(volume: &Volume, shape: [usize; 3], orders: [u8; 3]) -> Volume {
    let mut voxels = volume.voxels.iter().map(|&v| f64::from(v)).collect::<Vec<_>>();
    let mut current = volume.shape;
    let per_channel = |s: [usize; 3]| s[0] * s[1] * s[2];
    for axis in 0..3 {
        let mut next = current;
        next[axis] = shape[axis];
        let mut out = Vec::with_capacity(per_channel(next) * volume.channels);
        for channel in voxels.chunks_exact(per_channel(current).max(1)) {
            out.extend(resample_axis(channel, current, axis, shape[axis], orders[axis]));
        }
        voxels = out;
        current = next;
    }
    let mut affine = volume.affine;
    for (axis, (&old, &new)) in volume.shape.iter().zip(&shape).enumerate() {
        // a one-voxel axis has no extent between centres: its voxels are split instead
        let step = if old > 1 && new > 1 { step(old, new) } else { old as f64 / new as f64 };
        for row in affine.iter_mut().take(3) {
            row[axis] *= step;
        }
    }
    Volume { voxels: voxels.into_iter().map(|v| v as f32).collect(), shape, channels: volume.channels, affine }
}

/// The grid of `shape` voxels at `old` spacing resampled to `spacing` (mm per axis):
/// `round(voxels x old spacing / spacing)` voxels per axis, at least 1 (nnU-Net's new
/// shape); [`resample`] then keeps the extent between the first and last voxel centres,
/// so the spacing it gives is within a voxel of this.
pub fn shape_for(shape: [usize; 3], old: [f64; 3], spacing: [f64; 3]) -> [usize; 3] {
    std::array::from_fn(|a| ((shape[a] as f64 * old[a] / spacing[a]).round() as usize).max(1))
}

/// The orders for each axis: `order` everywhere, except nearest (0) along the coarsest
/// axis of an anisotropic volume (its spacing over 3 times the finest: nnU-Net's rule).
pub fn orders_for(spacing: [f64; 3], order: u8) -> [u8; 3] {
    let finest = spacing.iter().copied().fold(f64::INFINITY, f64::min);
    let (coarsest, &largest) = spacing.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).expect("three spacings");
    std::array::from_fn(|a| if a == coarsest && largest > 3.0 * finest { 0 } else { order })
}

/// A label map on a new grid: nearest, or (`per_label_linear`) each label's 0/1 map
/// resampled linearly and kept where it reaches 0.5, later labels over earlier ones
/// (nnU-Net's `resize_segmentation`).
pub fn resample_labels(labels: &Volume, shape: [usize; 3], per_label_linear: bool) -> Volume {
    let mut out = resample(labels, shape, [0; 3]);
    if !per_label_linear {
        return out;
    }
    let mut present: Vec<f32> = labels.voxels.iter().copied().filter(|&l| l != 0.0).collect();
    present.sort_by(f32::total_cmp);
    present.dedup();
    out.voxels.fill(0.0);
    for label in present {
        let map = Volume {
            voxels: labels.voxels.iter().map(|&v| f32::from(u8::from(v == label))).collect(),
            ..labels.clone()
        };
        let resampled = resample(&map, shape, [1; 3]);
        for (o, &v) in out.voxels.iter_mut().zip(&resampled.voxels) {
            if v >= 0.5 {
                *o = label;
            }
        }
    }
    out
}

/// The input coordinate step between output voxels: `(old - 1) / (new - 1)`, 1 for one
/// output voxel (SciPy's `zoom` with `grid_mode=False`).
fn step(old: usize, new: usize) -> f64 {
    if new > 1 { (old as f64 - 1.0) / (new as f64 - 1.0) } else { 1.0 }
}

/// One channel resampled along `axis` to `length` voxels.
fn resample_axis(data: &[f64], shape: [usize; 3], axis: usize, length: usize, order: u8) -> Vec<f64> {
    let strides = [1, shape[0], shape[0] * shape[1]];
    let mut out_shape = shape;
    out_shape[axis] = length;
    let out_strides = [1, out_shape[0], out_shape[0] * out_shape[1]];
    let mut out = vec![0.0; out_shape.iter().product()];
    let n = shape[axis];
    let step = step(n, length);
    let (a, b) = ((axis + 1) % 3, (axis + 2) % 3);
    let mut line = vec![0.0; n];
    for j in 0..shape[b] {
        for i in 0..shape[a] {
            let base = i * strides[a] + j * strides[b];
            for (k, v) in line.iter_mut().enumerate() {
                *v = data[base + k * strides[axis]];
            }
            if order == 3 {
                spline_prefilter(&mut line);
            }
            let out_base = i * out_strides[a] + j * out_strides[b];
            for k in 0..length {
                out[out_base + k * out_strides[axis]] = sample(&line, k as f64 * step, order);
            }
        }
    }
    out
}

/// An index beyond either end mirrored back (SciPy's "mirror": `x[-k] = x[k]`).
fn mirror(index: isize, n: usize) -> usize {
    if n == 1 {
        return 0;
    }
    let period = 2 * (n as isize - 1);
    let folded = index.rem_euclid(period);
    (if folded >= n as isize { period - folded } else { folded }) as usize
}

/// `line` (spline coefficients for order 3) at coordinate `x`.
fn sample(line: &[f64], x: f64, order: u8) -> f64 {
    let n = line.len();
    match order {
        0 => line[mirror((x + 0.5).floor() as isize, n)],
        1 => {
            let left = x.floor();
            let t = x - left;
            let i = left as isize;
            line[mirror(i, n)] * (1.0 - t) + if t > 0.0 { line[mirror(i + 1, n)] * t } else { 0.0 }
        }
        _ => {
            let left = x.floor();
            let t = x - left;
            let i = left as isize;
            // cubic B-spline weights of the neighbours i-1 .. i+2
            let w = [
                (1.0 - t).powi(3) / 6.0,
                (4.0 - 6.0 * t * t + 3.0 * t.powi(3)) / 6.0,
                (1.0 + 3.0 * t + 3.0 * t * t - 3.0 * t.powi(3)) / 6.0,
                t.powi(3) / 6.0,
            ];
            (0..4).map(|k| w[k] * line[mirror(i - 1 + k as isize, n)]).sum()
        }
    }
}

/// The cubic B-spline coefficients of `line` in place, with mirror boundaries (SciPy's
/// `spline_filter1d(order=3, mode="mirror")`: gain, then a causal and an anticausal
/// pass with the pole `sqrt(3) - 2`, each initialised exactly for a mirrored signal).
fn spline_prefilter(line: &mut [f64]) {
    let n = line.len();
    if n < 2 {
        return;
    }
    let z = 3f64.sqrt() - 2.0;
    let gain = (1.0 - z) * (1.0 - 1.0 / z);
    for v in line.iter_mut() {
        *v *= gain;
    }
    // causal initialisation: the sum over the mirrored signal, in closed form
    let z_n1 = z.powi(n as i32 - 1);
    let mut first = line[0] + z_n1 * line[n - 1];
    let mut zi = z;
    for i in 1..n - 1 {
        first += zi * (line[i] + z_n1 * line[n - 1 - i]);
        zi *= z;
    }
    line[0] = first / (1.0 - z_n1 * z_n1);
    for i in 1..n {
        line[i] += z * line[i - 1];
    }
    line[n - 1] = (z * line[n - 2] + line[n - 1]) * z / (z * z - 1.0);
    for i in (0..n - 1).rev() {
        line[i] = z * (line[i + 1] - line[i]);
    }
}
/// A label map moved onto another grid (`affine`, `shape`) by nearest voxel: each voxel
/// takes the label at its centre's position in `labels` (rounded half up), 0 outside
/// (`data.mask_geometry = "resample"`). `None` when `labels`' affine cannot be inverted.
pub fn labels_onto(labels: &Volume, affine: &Affine, shape: [usize; 3]) -> Option<Volume> {
    let linear: [[f64; 3]; 3] = std::array::from_fn(|r| std::array::from_fn(|c| labels.affine[r][c]));
    let inverse = invert3(&linear)?;
    // target index -> world -> labels index: inverse · (affine · ijk + t - origin)
    let index_of = |ijk: [f64; 3]| -> [f64; 3] {
        let world: [f64; 3] = std::array::from_fn(|r| {
            (0..3).map(|c| affine[r][c] * ijk[c]).sum::<f64>() + affine[r][3] - labels.affine[r][3]
        });
        std::array::from_fn(|r| (0..3).map(|c| inverse[r][c] * world[c]).sum())
    };
    let [nx, ny, nz] = labels.shape;
    let mut voxels = Vec::with_capacity(shape.iter().product());
    for k in 0..shape[2] {
        for j in 0..shape[1] {
            for i in 0..shape[0] {
                let at = index_of([i as f64, j as f64, k as f64]).map(|v| (v + 0.5).floor());
                let inside = at.iter().zip([nx, ny, nz]).all(|(&v, n)| v >= 0.0 && v < n as f64);
                let value = if inside {
                    labels.voxels[at[0] as usize + nx * (at[1] as usize + ny * at[2] as usize)]
                } else {
                    0.0
                };
                voxels.push(value);
            }
        }
    }
    Some(Volume { voxels, shape, channels: 1, affine: *affine })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_move_onto_a_shifted_grid_by_whole_voxels() {
        // a 4 x 1 x 1 label row at 2 mm; the target grid starts 2 mm (one voxel) further
        // along x and has 1 mm voxels: centres at 2, 3, 4, 5, 6, 7 mm
        let diag = |s: f64, o: f64| -> Affine {
            [[s, 0.0, 0.0, o], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]]
        };
        let labels = Volume { voxels: vec![1.0, 2.0, 3.0, 4.0], shape: [4, 1, 1], channels: 1, affine: diag(2.0, 0.0) };
        let moved = labels_onto(&labels, &diag(1.0, 2.0), [6, 1, 1]).unwrap();
        // 2 mm: voxel 1; 3 mm: 1.5 rounds up to 2; 4: 2; 5: 2.5 -> 3; 6: 3; 7: 3.5 -> 4, outside
        assert_eq!(moved.voxels, vec![2.0, 3.0, 3.0, 4.0, 4.0, 0.0]);
        assert_eq!(moved.affine, diag(1.0, 2.0));
    }
}
