//! The report's picture of a volume test case: three orthogonal slices (axial, coronal,
//! sagittal, side by side) through the centre of its smallest structure: the reference
//! voxels of the highest label the case holds, else the predicted ones, else the volume's
//! centre. Drawn on the run's working grid turned to RAS and shown in radiological
//! convention (the patient's right on the viewer's left, anterior and superior up,
//! anterior on the left of the sagittal slice), the three at one scale of square
//! millimetres, the longest side 256 pixels; the first channel in gray between its 0.5th and 99.5th
//! percentiles; the outline of each reference label green, of each predicted label
//! magenta, white where both lie.

use image::{Rgb, RgbImage, imageops};
use radrun_data::volume::{Orientation, Volume};

use crate::percentile;

const REFERENCE: Rgb<u8> = Rgb([0, 200, 0]);
const PREDICTION: Rgb<u8> = Rgb([230, 0, 230]);
const BOTH: Rgb<u8> = Rgb([255, 255, 255]);
/// Pixels of the longer side of a slice at most.
const LONGEST: f64 = 256.0;
/// Black pixels between two slices.
const GAP: u32 = 4;

/// The picture of a case: `image` (its working channels), its `reference` labels (if it
/// has a mask) and `predicted` labels on the same grid.
pub fn case_slices(image: &Volume, reference: Option<&Volume>, predicted: &Volume) -> RgbImage {
    let ras = |v: &Volume| v.reoriented(Orientation::Ras);
    let voxels = image.voxels[..image.shape.iter().product()].to_vec();
    let first = Volume { voxels, shape: image.shape, channels: 1, affine: image.affine };
    let (image, predicted) = (ras(&first), ras(predicted));
    let reference = reference.map(ras);
    let centre = reference
        .as_ref()
        .and_then(centre_of_highest_label)
        .or_else(|| centre_of_highest_label(&predicted))
        .unwrap_or(image.shape.map(|n| n / 2));
    let mut values: Vec<f64> = image.voxels.iter().map(|&v| f64::from(v)).collect();
    let (low, high) = (percentile(&mut values, 0.5), percentile(&mut values, 99.5));
    let gray = |v: f32| (((f64::from(v) - low) / (high - low).max(f64::EPSILON)).clamp(0.0, 1.0) * 255.0) as u8;
    let spacing = image.spacing();
    let planes = [Plane::Axial, Plane::Coronal, Plane::Sagittal];
    // one scale for the three: the longest side of any at LONGEST pixels
    let longest_mm = planes
        .iter()
        .map(|plane| plane.extent_mm(image.shape, spacing))
        .fold(0.0, |longest, [rows, columns]| f64::max(longest, rows.max(columns)));
    let mm_per_pixel = longest_mm / LONGEST;
    let panels: Vec<RgbImage> = planes
        .into_iter()
        .map(|plane| {
            let slice = |v: &Volume| plane.cut(v, centre);
            let (rows, columns, pixels) = slice(&image);
            let mut panel = RgbImage::from_fn(columns as u32, rows as u32, |c, r| {
                let g = gray(pixels[r as usize * columns + c as usize]);
                Rgb([g, g, g])
            });
            let predicted = slice(&predicted).2;
            let reference = reference.as_ref().map(|v| slice(v).2);
            draw_outlines(&mut panel, reference.as_deref(), &predicted);
            let [rows_mm, columns_mm] = plane.extent_mm(image.shape, spacing);
            let size = |mm: f64| ((mm / mm_per_pixel).round() as u32).max(1);
            imageops::resize(&panel, size(columns_mm), size(rows_mm), imageops::FilterType::Nearest)
        })
        .collect();
    let width = panels.iter().map(|p| p.width()).sum::<u32>() + GAP * 2;
    let height = panels.iter().map(|p| p.height()).max().unwrap_or(1);
    let mut out = RgbImage::new(width, height);
    let mut x = 0;
    for panel in &panels {
        imageops::replace(&mut out, panel, i64::from(x), 0);
        x += panel.width() + GAP;
    }
    out
}

/// A slice through a volume in RAS order (`i` towards the right, `j` anterior, `k`
/// superior), as displayed.
#[derive(Clone, Copy)]
enum Plane {
    Axial,
    Coronal,
    Sagittal,
}

impl Plane {
    /// The slice through `at` of `volume`'s first channel: rows, columns and the values
    /// row by row, in radiological display.
    fn cut(self, volume: &Volume, at: [usize; 3]) -> (usize, usize, Vec<f32>) {
        let [nx, ny, nz] = volume.shape;
        let value = |i: usize, j: usize, k: usize| volume.voxels[i + nx * (j + ny * k)];
        let (rows, columns) = match self {
            Plane::Axial => (ny, nx),
            Plane::Coronal => (nz, nx),
            Plane::Sagittal => (nz, ny),
        };
        let mut pixels = Vec::with_capacity(rows * columns);
        for r in 0..rows {
            for c in 0..columns {
                // the patient's right on the left: i from high to low; up: j or k high
                pixels.push(match self {
                    Plane::Axial => value(nx - 1 - c, ny - 1 - r, at[2]),
                    Plane::Coronal => value(nx - 1 - c, at[1], nz - 1 - r),
                    Plane::Sagittal => value(at[0], ny - 1 - c, nz - 1 - r),
                });
            }
        }
        (rows, columns, pixels)
    }

    /// Millimetres the slice spans along its rows and its columns.
    fn extent_mm(self, [nx, ny, nz]: [usize; 3], [x, y, z]: [f64; 3]) -> [f64; 2] {
        let ([nx, ny, nz], [x, y, z]) = ([nx as f64, ny as f64, nz as f64], [x, y, z]);
        match self {
            Plane::Axial => [ny * y, nx * x],
            Plane::Coronal => [nz * z, nx * x],
            Plane::Sagittal => [nz * z, ny * y],
        }
    }
}

/// The centre (voxel indices) of the voxels of the highest label `labels` holds.
fn centre_of_highest_label(labels: &Volume) -> Option<[usize; 3]> {
    let highest = labels.voxels.iter().copied().fold(0.0f32, f32::max);
    if highest <= 0.0 {
        return None;
    }
    let [nx, ny, _] = labels.shape;
    let (mut sum, mut count) = ([0usize; 3], 0usize);
    for (at, _) in labels.voxels.iter().enumerate().filter(|(_, v)| **v == highest) {
        let index = [at % nx, (at / nx) % ny, at / (nx * ny)];
        (0..3).for_each(|a| sum[a] += index[a]);
        count += 1;
    }
    Some(sum.map(|s| s / count))
}

/// Draws the outline of each label of `predicted` (and `reference`) on `panel`: the
/// pixels of a label with a 4-neighbour of another value, or on the slice's edge.
fn draw_outlines(panel: &mut RgbImage, reference: Option<&[f32]>, predicted: &[f32]) {
    let (w, h) = (panel.width() as usize, panel.height() as usize);
    let outline = |labels: &[f32], r: usize, c: usize| {
        let v = labels[r * w + c];
        v > 0.0
            && (r == 0
                || c == 0
                || r + 1 == h
                || c + 1 == w
                || [labels[(r - 1) * w + c], labels[(r + 1) * w + c], labels[r * w + c - 1], labels[r * w + c + 1]]
                    .iter()
                    .any(|&n| n != v))
    };
    for r in 0..h {
        for c in 0..w {
            let on_reference = reference.is_some_and(|labels| outline(labels, r, c));
            let colour = match (on_reference, outline(predicted, r, c)) {
                (true, true) => BOTH,
                (true, false) => REFERENCE,
                (false, true) => PREDICTION,
                (false, false) => continue,
            };
            panel.put_pixel(c as u32, r as u32, colour);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 6 x 5 x 4 RAS volume of 1 x 1 x 2 mm.
    fn volume(voxels: Vec<f32>) -> Volume {
        let affine = [[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 2.0, 0.0], [0.0, 0.0, 0.0, 1.0]];
        Volume { voxels, shape: [6, 5, 4], channels: 1, affine }
    }

    #[test]
    fn the_slices_cross_the_smallest_structure_and_keep_millimetres_square() {
        let at = |i: usize, j: usize, k: usize| i + 6 * (j + 5 * k);
        let mut labels = vec![0.0; 120];
        // label 1 everywhere in slice k = 1; label 2 at the single voxel (4, 3, 2)
        for i in 0..6 {
            for j in 0..5 {
                labels[at(i, j, 1)] = 1.0;
            }
        }
        labels[at(4, 3, 2)] = 2.0;
        let labels = volume(labels);
        assert_eq!(centre_of_highest_label(&labels), Some([4, 3, 2]));
        // the axial slice through k = 2, displayed with the right on the left and
        // anterior up: voxel (4, 3) is at row 5 - 1 - 3 = 1, column 6 - 1 - 4 = 1
        let (rows, columns, pixels) = Plane::Axial.cut(&labels, [4, 3, 2]);
        assert_eq!((rows, columns), (5, 6));
        assert_eq!(pixels.iter().position(|&v| v == 2.0), Some(6 + 1));
        // the picture: axial 6 x 5 mm, coronal 6 x 8 mm, sagittal 5 x 8 mm (wide x
        // high), the longest 8 mm at 256 pixels: 32 pixels a mm
        let image = volume((0..120).map(|v| v as f32).collect());
        let picture = case_slices(&image, Some(&labels), &labels);
        assert_eq!((picture.width(), picture.height()), (32 * (6 + 6 + 5) + 2 * GAP, 256));
        // the structure's voxel, outlined in white (reference and prediction) on the
        // axial slice, is its pixels 32 to 63 across and down
        assert_eq!(*picture.get_pixel(40, 40), BOTH);
        assert_ne!(*picture.get_pixel(20, 40), BOTH);
    }
}
